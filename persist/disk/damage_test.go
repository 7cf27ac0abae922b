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

	"weaseldb/persist"
	"weaseldb/persist/logtest"
	"weaseldb/tx"
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
