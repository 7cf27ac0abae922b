package disk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

// damagedLog writes genesis and 1-3 and returns the log (its periodic check
// off unless interval > 0) and the path of the file holding segment 1.
func damagedLog(t *testing.T, interval time.Duration) (*Log, string) {
	t.Helper()
	if interval == 0 {
		interval = -1
	}
	l, _ := recovered(t, t.TempDir(), Options{CheckInterval: interval})
	appendAll(t, l, logtest.Segment(0, 0, "d"), logtest.Segment(1, 3, "d"))
	path, _, _, ok := l.SegmentLocation(1)
	if !ok {
		t.Fatal("SegmentLocation(1): not found")
	}
	return l, path
}

// expectRefusedRestart closes l and checks that a reopen refuses to recover
// and says why.
func expectRefusedRestart(t *testing.T, l *Log, want string) {
	t.Helper()
	dir := l.Dir()
	l.Close()
	marker, err := os.ReadFile(filepath.Join(dir, damagedName))
	if err != nil || !strings.Contains(string(marker), want) {
		t.Fatalf("marker %s: %v\n%s\nwant it to say %q", damagedName, err, marker, want)
	}
	l2 := mustOpen(t, dir, Options{})
	defer l2.Close()
	_, err = l2.Recover(context.Background())
	if !errors.Is(err, persist.ErrDamaged) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Recover of a directory marked damaged: %v, want ErrDamaged saying %q", err, want)
	}
}

// A log file deleted under a running Log: the next Append must fail (its
// fdatasync went to an inode no name reaches), the Log must say why, keep a
// copy of what was acknowledged, and a restart must refuse.
func TestDeletedActiveFileFailsNextAppend(t *testing.T) {
	l, path := damagedLog(t, 0)
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	err = l.Append(context.Background(), logtest.Segment(4, 6, "d"))
	if !errors.Is(err, persist.ErrDamaged) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("Append after the file was deleted: %v, want ErrDamaged naming the deletion", err)
	}
	if d := l.Damage(); !errors.Is(d, persist.ErrDamaged) {
		t.Fatalf("Damage() = %v", d)
	}
	if err := l.Append(context.Background(), logtest.Segment(4, 6, "d")); !errors.Is(err, persist.ErrDamaged) {
		t.Fatalf("second Append: %v, want ErrDamaged (sticky)", err)
	}
	rescued, err := os.ReadFile(path + rescuedSuffix)
	if err != nil || !bytes.Equal(rescued, before) {
		t.Fatalf("rescued copy: %v, %d bytes, want the %d acknowledged bytes", err, len(rescued), len(before))
	}
	expectRefusedRestart(t, l, "deleted")
}

// A file cut short while the Log is idle is found by the periodic check.
func TestCutFileFoundByPeriodicCheck(t *testing.T) {
	l, path := damagedLog(t, 5*time.Millisecond)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-10); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for l.Damage() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the periodic check did not notice a file cut by 10 bytes within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := l.Append(context.Background(), logtest.Segment(4, 6, "d")); !errors.Is(err, persist.ErrDamaged) {
		t.Fatalf("Append after the cut was found: %v, want ErrDamaged", err)
	}
	expectRefusedRestart(t, l, "cut to")
}

// A file replaced by another one of the same name (say, restored from an
// old copy) is damage too: its inode is not the one written.
func TestReplacedFileFoundByPeriodicCheck(t *testing.T) {
	l, path := damagedLog(t, 0)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	l.checkAll()
	if d := l.Damage(); d == nil || !strings.Contains(d.Error(), "replaced") {
		t.Fatalf("Damage() = %v, want a replaced file", d)
	}
	expectRefusedRestart(t, l, "replaced")
}

// A sound log is never reported: the check runs between appends.
func TestPeriodicCheckQuietOnSoundLog(t *testing.T) {
	l, _ := damagedLog(t, time.Millisecond)
	for i := range 50 {
		v := 4 + 3*i
		appendAll(t, l, logtest.Segment(tx.Version(v), tx.Version(v+2), "q"))
	}
	l.checkAll()
	if d := l.Damage(); d != nil {
		t.Fatalf("Damage() on a sound log: %v", d)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), damagedName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a sound log got a %s marker: %v", damagedName, err)
	}
}

// A file cut while no server runs, after a clean Close: Recover refuses it
// (the sizes the Close recorded are lower bounds), and says how to accept
// the loss. After a crash (no record) the same cut is a torn tail.
func TestCutAfterCleanCloseRefused(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(0, 0, "s"), logtest.Segment(1, 3, "s"), logtest.Segment(4, 6, "s"))
	path, off, _, _ := l.SegmentLocation(4)
	l.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()-10); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, dir, Options{})
	_, err = l2.Recover(context.Background())
	l2.Close()
	if !errors.Is(err, persist.ErrDamaged) || !strings.Contains(err.Error(), "cut while no server ran") || !strings.Contains(err.Error(), sizesName) {
		t.Fatalf("Recover after a cut following a clean Close: %v, want ErrDamaged", err)
	}
	in, err := Inspect(dir)
	if err != nil || in.Cut == nil {
		t.Fatalf("Inspect does not report the cut: %+v %v", in, err)
	}
	crashed(t, dir) // the operator accepts the loss
	_, rec := recovered(t, dir, Options{})
	if rec.Last() != 3 {
		t.Fatalf("recovered to %d, want 3 (segment 4-6 at offset %d cut)", rec.Last(), off)
	}
}

// Sizes are lower bounds for as long as the file lives: a run after the
// clean Close that appends to a new file and crashes (leaving the older
// record) with a torn tail has a plain torn tail, cut by recovery.
func TestSizesAreLowerBounds(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(0, 0, "b"), logtest.Segment(1, 3, "b"))
	l.Close()
	record, err := os.ReadFile(filepath.Join(dir, sizesName))
	if err != nil {
		t.Fatal(err)
	}
	l, _ = recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(4, 6, "b"), logtest.Segment(7, 9, "b"))
	path, off, n, _ := l.SegmentLocation(7)
	l.Close()
	// The crash: the second run's record never happened; a torn write.
	if err := os.WriteFile(filepath.Join(dir, sizesName), record, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, off+n-5); err != nil {
		t.Fatal(err)
	}
	if _, rec := recovered(t, dir, Options{}); rec.Last() != 6 {
		t.Fatalf("recovered to %d, want 6", rec.Last())
	}
}
