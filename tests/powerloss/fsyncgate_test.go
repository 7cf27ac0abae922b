package powerloss

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/weaseldb/weaseldb/internal/lazyfs"
)

// TestFsyncGate injects, before every power cut, one kind of I/O error at
// a random moment under load, in the files each backend syncs: fsync or
// fdatasync, or write, failing with EIO or ENOSPC. As on Linux since
// "fsyncgate", data covered by a failed fsync stays readable but never
// becomes durable, not even by a later fsync that succeeds. The server must
// not acknowledge anything such a sync covered, must not trust a retried
// sync, and must stop or recover from the last state known durable: after
// the cut that follows, every acknowledged commit and policy is there.
func TestFsyncGate(t *testing.T) {
	n := 3
	if testing.Short() {
		n = 1
	}
	type fault struct {
		backend string
		f       lazyfs.Fault
	}
	var faults []fault
	for _, op := range []lazyfs.FaultOp{lazyfs.FaultFsync, lazyfs.FaultWrite} {
		for _, e := range []syscall.Errno{syscall.EIO, syscall.ENOSPC} {
			faults = append(faults, fault{"disk", lazyfs.Fault{Op: op, Name: ".log", Errno: e, Count: 2}})
		}
	}
	faults = append(faults,
		fault{"disk", lazyfs.Fault{Op: lazyfs.FaultFsync, Name: "retention.json", Errno: syscall.EIO, Count: 1}},
		fault{"fakes3", lazyfs.Fault{Op: lazyfs.FaultFsync, Name: ".tmp-", Errno: syscall.EIO, Count: 2}},
		fault{"fakes3", lazyfs.Fault{Op: lazyfs.FaultWrite, Name: ".tmp-", Errno: syscall.ENOSPC, Count: 2}},
		fault{"s3", lazyfs.Fault{Op: lazyfs.FaultFsync, Name: ".tmp-", Errno: syscall.EIO, Count: 2}},
	)
	for _, c := range faults {
		op := map[lazyfs.FaultOp]string{lazyfs.FaultFsync: "fsync", lazyfs.FaultWrite: "write"}[c.f.Op]
		t.Run(fmt.Sprintf("%s/%s-%s-%s", c.backend, op, c.f.Name, errName(c.f.Errno)), func(t *testing.T) {
			f := c.f
			res := Run(t, Options{Bin: bin, Backend: c.backend, Cuts: n, Seed: seed(t), Fault: &f})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			t.Logf("%d faults hit over %d cuts, nothing acknowledged lost", res.FaultsHit, res.Cuts)
		})
	}
}

func errName(e syscall.Errno) string {
	if e == syscall.ENOSPC {
		return "ENOSPC"
	}
	return "EIO"
}
