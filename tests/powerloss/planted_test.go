package powerloss

import (
	"strings"
	"syscall"
	"testing"

	"github.com/weaseldb/weaseldb/internal/lazyfs"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

// plantedBugs are the durability steps a plantedbugs build can remove
// (persist/disk/planted_on.go); SIGKILL-based suites cannot see any of them.
var plantedBugs = []string{"no-dir-sync-after-create", "no-fdatasync", "policy-in-place", "fsync-retry"}

// TestPlantedBugsAreCaught builds the binary with -tags plantedbugs and
// shows that the short form (its cut budget, disk backend) fails on each
// planted bug. The release build has none of them (see planted_off.go).
func TestPlantedBugsAreCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the planted-bug builds run in the full suite")
	}
	if err := lazyfs.CanMount(); err != nil {
		t.Skipf("power-loss suite skipped: FUSE cannot mount here: %v", err)
	}
	pbin, cleanup, err := harness.BuildTags("plantedbugs")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	budget := cuts(t)
	for _, bug := range plantedBugs {
		t.Run(bug, func(t *testing.T) {
			o := Options{Bin: pbin, Backend: "disk", Cuts: budget, Seed: seed(t), Env: []string{"WEASELDB_PLANTED_BUG=" + bug}}
			if bug == "fsync-retry" {
				// Needs a failing fdatasync to show: as in TestFsyncGate.
				o.Fault = &lazyfs.Fault{Op: lazyfs.FaultFsync, Name: ".log", Errno: syscall.EIO, Count: 1}
			}
			res := Run(t, o)
			if res.Err == nil {
				t.Fatalf("planted bug %s survived %d power cuts unnoticed (%s)", bug, res.Cuts, res.Totals)
			}
			msg := res.Err.Error()
			if i := strings.IndexByte(msg, '\n'); i > 0 {
				msg = msg[:i]
			}
			t.Logf("planted bug %s caught at cut %d of %d: %s", bug, res.Cuts, budget, msg)
		})
	}
}
