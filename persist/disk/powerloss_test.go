package disk

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/weaseldb/weaseldb/internal/lazyfs"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

// Regression test: Truncate removes old files oldest first "so that a crash
// half-way leaves a contiguous run", but synced the directory once after all
// removals: a power cut in between may keep any subset of them, so a later
// file could be gone with an earlier one still there — a hole at the start
// of the log, and everything after it taken for unacknowledged. Each
// removal is now durable before the next. (On a lazyfs mount: the power
// goes at the third removal; the unmount of the cut also fails if a failed
// removal leaks the descriptors of the files after it, as it did.)
func TestTruncatePowerCutLeavesContiguousRun(t *testing.T) {
	if err := lazyfs.CanMount(); err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	tmp := t.TempDir()
	fsys, err := lazyfs.Mount(filepath.Join(tmp, "store"), filepath.Join(tmp, "mnt"))
	if err != nil {
		t.Skipf("FUSE cannot mount here, skipping: %v", err)
	}
	t.Cleanup(func() { fsys.Close() })
	ctx := context.Background()
	opts := Options{MaxFileBytes: 1} // one file per Append
	const n = 8
	base := tx.Version(0)
	for seed := range uint64(20) {
		dir := filepath.Join(fsys.Mountpoint(), "log")
		l := mustOpen(t, dir, opts)
		rec, err := l.Recover(ctx)
		if err != nil {
			t.Fatalf("seed %d: recover: %v", seed, err)
		}
		if len(rec.Segments) > 0 {
			base = rec.Segments[len(rec.Segments)-1].Last + 1
		}
		for i := range tx.Version(n) {
			appendAll(t, l, logtest.Segment(base+i, base+i, "x"))
		}
		fsys.InjectFault(lazyfs.Fault{Op: lazyfs.FaultUnlink, Name: ".log", Skip: 2, Count: 1, Freeze: true})
		l.Truncate(ctx, base+n-2) // fails at the third removal: the power is off
		fsys.ClearFaults()
		l.Close()
		if _, err := fsys.Cut(seed); err != nil {
			t.Fatal(err)
		}
		l = mustOpen(t, dir, opts)
		rec, err = l.Recover(ctx)
		if err != nil {
			t.Fatalf("seed %d: recover after the cut: %v", seed, err)
		}
		if got := rec.Segments; len(got) == 0 || got[len(got)-1].Last != base+n-1 {
			t.Fatalf("seed %d: after a cut during truncation recovery kept %s, want a run ending at %d", seed, spans(got), base+n-1)
		}
		base += n
		l.Close()
	}
}
