package disk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"weaseldb/persist"
	"weaseldb/persist/logtest"
	"weaseldb/tx"
)

func mustOpen(t *testing.T, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Storage {
		dir := t.TempDir()
		return logtest.Storage{
			Open:       func(t *testing.T) persist.Log { return mustOpen(t, dir, Options{}) },
			OpenSecond: func(t *testing.T) persist.Log { return mustOpen(t, dir, Options{DisableLock: true}) },
			Damage: func(t *testing.T, first tx.Version, damage func([]byte) []byte) {
				path := filepath.Join(dir, SegmentFileName(first))
				old, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, damage(old), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

func recovered(t *testing.T, dir string) (*Log, persist.Recovery) {
	t.Helper()
	l := mustOpen(t, dir, Options{})
	t.Cleanup(func() { l.Close() })
	rec, err := l.Recover(context.Background())
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return l, rec
}

func appendAll(t *testing.T, l *Log, segs ...[]byte) {
	t.Helper()
	for _, s := range segs {
		if err := l.Append(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLockFileRefusesSecondOpen(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open of a locked directory: %v, want an 'in use' error", err)
	}
	l.Close()
	mustOpen(t, dir, Options{}).Close()
}

// A torn last file (the machine died while the storage reordered writes) is
// cut off; the file is truncated in place, as a crash leaves it.
func TestTornLastFileTruncated(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir)
	appendAll(t, l, logtest.Segment(0, 0, "t"), logtest.Segment(1, 4, "t"), logtest.Segment(5, 9, "t"))
	l.Close()
	path := filepath.Join(dir, SegmentFileName(5))
	if err := os.Truncate(path, 60); err != nil {
		t.Fatal(err)
	}
	l, rec := recovered(t, dir)
	if rec.Last() != 4 || len(rec.Discarded) != 1 || rec.Discarded[0].First != 5 {
		t.Fatalf("recovered to %d, discarded %+v; want 4 and segment 5", rec.Last(), rec.Discarded)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("torn file still there: %v", err)
	}
	appendAll(t, l, logtest.Segment(5, 5, "u"))
}

func TestStrayTempFileRemoved(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir)
	appendAll(t, l, logtest.Segment(0, 0, "s"), logtest.Segment(1, 2, "s"))
	l.Close()
	seg := logtest.Segment(3, 3, "s")
	stray := filepath.Join(dir, SegmentFileName(3)+".7.tmp")
	if err := os.WriteFile(stray, seg[:len(seg)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	_, rec := recovered(t, dir)
	if rec.Last() != 2 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered to %d, discarded %+v; want 2, nothing", rec.Last(), rec.Discarded)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stray temp file still there: %v", err)
	}
}

func TestCorruptMiddleFileRefused(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir)
	appendAll(t, l, logtest.Segment(0, 0, "c"), logtest.Segment(1, 2, "c"), logtest.Segment(3, 3, "c"))
	l.Close()
	path := filepath.Join(dir, SegmentFileName(1))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-1] ^= 1
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, dir, Options{})
	defer l2.Close()
	_, err = l2.Recover(context.Background())
	if !errors.Is(err, persist.ErrCorruption) {
		t.Fatalf("Recover: %v, want ErrCorruption", err)
	}
	// An operator must be able to find the file (found by tests/fault).
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("Recover: %v, want the error to name %s", err, path)
	}
	if _, err := os.Stat(filepath.Join(dir, SegmentFileName(3))); err != nil {
		t.Fatalf("a refused recovery deleted a segment: %v", err)
	}
}

// The full-disk fault: the engine sees the error, nothing is left behind,
// and once the disk has room again the log continues and recovers.
func TestWriteFaultThenRecovery(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir)
	appendAll(t, l, logtest.Segment(0, 0, "f"), logtest.Segment(1, 3, "f"))
	var faults atomic.Int32
	l.SetWriteFault(func(string) error { faults.Add(1); return syscall.ENOSPC })
	err := l.Append(context.Background(), logtest.Segment(4, 6, "f"))
	if !errors.Is(err, syscall.ENOSPC) || faults.Load() != 1 {
		t.Fatalf("Append on a full disk: %v (faults %d), want ENOSPC", err, faults.Load())
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), tempSuffix) || e.Name() == SegmentFileName(4) {
			t.Fatalf("failed Append left %s behind", e.Name())
		}
	}
	l.SetWriteFault(nil)
	appendAll(t, l, logtest.Segment(4, 6, "f"))
	l.Close()
	l, rec := recovered(t, dir)
	if rec.Last() != 6 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered to %d, discarded %+v; want 6", rec.Last(), rec.Discarded)
	}
	segs, err := l.ReadFrom(context.Background(), 3, 1<<20)
	if err != nil || len(segs) != 1 || !bytes.Equal(segs[0], logtest.Segment(4, 6, "f")) {
		t.Fatalf("ReadFrom(3): %d segments, %v", len(segs), err)
	}
}

func TestCorruptPoliciesFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, policiesName), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, _ := recovered(t, dir)
	if _, err := l.LoadPolicies(context.Background()); !errors.Is(err, persist.ErrCorruption) {
		t.Fatalf("LoadPolicies of a damaged file: %v, want ErrCorruption", err)
	}
}

func TestStatsCountSyncs(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir)
	appendAll(t, l, logtest.Segment(0, 0, "s"), logtest.Segment(1, 1, "s"))
	st := l.Stats()
	if st.Appends != 2 || st.FileSyncs != 2 || st.DirSyncs != 2 {
		t.Fatalf("stats after two sequential Appends: %+v, want 2/2/2", st)
	}
}

// Every caller of dirSyncer.Sync is covered by a sync that started after it
// called, and concurrent callers share syncs.
func TestDirSyncerCoversEveryCaller(t *testing.T) {
	var written, syncedUpTo, syncs, active, overlapped atomic.Int64
	s := dirSyncer{sync: func() error {
		syncs.Add(1)
		if active.Add(1) > 1 {
			overlapped.Add(1)
		}
		defer active.Add(-1)
		start := written.Load()
		time.Sleep(20 * time.Microsecond) // give callers a chance to pile up
		for {
			cur := syncedUpTo.Load()
			if cur >= start || syncedUpTo.CompareAndSwap(cur, start) {
				return nil
			}
		}
	}}
	const callers, rounds = 16, 50
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range callers {
		wg.Go(func() {
			for range rounds {
				mine := written.Add(1)
				if err := s.Sync(); err != nil {
					bad.Add(1)
				}
				if syncedUpTo.Load() < mine {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d Sync calls returned before a sync covered them", bad.Load())
	}
	if overlapped.Load() != 0 {
		t.Fatalf("%d syncs overlapped another", overlapped.Load())
	}
	if n := syncs.Load(); n > callers*rounds {
		t.Fatalf("%d syncs for %d calls", n, callers*rounds)
	}
	t.Logf("%d calls shared %d syncs", callers*rounds, syncs.Load())
}

func TestDirSyncerReportsError(t *testing.T) {
	errBoom := errors.New("boom")
	s := dirSyncer{sync: func() error { return errBoom }}
	if err := s.Sync(); !errors.Is(err, errBoom) {
		t.Fatalf("Sync: %v, want errBoom", err)
	}
}
