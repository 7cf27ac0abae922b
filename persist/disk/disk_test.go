package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// locateFrame finds the frame of the segment starting at first by scanning
// the log files as recovery does, without a Log (so it works while one is
// open or none is).
func locateFrame(t *testing.T, dir string, first tx.Version) (path string, off, n int) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+logSuffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range names {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Walk the frames by their length fields only, so that a frame
		// whose body was damaged (by an earlier Damage) is still found.
		for off := 0; off+persist.SegmentHeaderBytes <= len(data); {
			b := data[off:]
			n := persist.SegmentHeaderBytes + int(binary.LittleEndian.Uint16(b[40:])) + int(binary.LittleEndian.Uint32(b[36:]))
			if string(b[:4]) == liveMagic && tx.Version(binary.LittleEndian.Uint64(b[16:])) == first {
				return path, off, min(n, len(b))
			}
			off += n
		}
	}
	t.Fatalf("segment %d not found in %s", first, dir)
	return "", 0, 0
}

// crashed removes what only a clean Close leaves (SIZES), so that damage
// done next is what a crash leaves, not a cut after a clean stop.
func crashed(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, sizesName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// damageFrame replaces the frame of segment first with damage(its bytes),
// splicing the file.
func damageFrame(t *testing.T, dir string, first tx.Version, damage func([]byte) []byte) {
	t.Helper()
	crashed(t, dir)
	path, off, n := locateFrame(t, dir, first)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := append(bytes.Clone(data[:off]), damage(bytes.Clone(data[off:off+n]))...)
	out = append(out, data[off+n:]...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConformance runs the suite with one log file per batch, so that
// file-granular retention is exact and every torn segment is the tail of the
// last file.
func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Storage {
		dir := t.TempDir()
		return logtest.Storage{
			Open: func(t *testing.T) persist.Log { return mustOpen(t, dir, Options{MaxFileBytes: 1}) },
			ExclusiveOpen: func(t *testing.T) error {
				l, err := Open(dir, Options{})
				if err == nil {
					l.Close()
				}
				return err
			},
			FramedTail: true,
			Damage: func(t *testing.T, first tx.Version, damage func([]byte) []byte) {
				damageFrame(t, dir, first, damage)
			},
		}
	})
}

func recovered(t *testing.T, dir string, opts Options) (*Log, persist.Recovery) {
	t.Helper()
	l := mustOpen(t, dir, opts)
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

func spans(infos []persist.SegmentInfo) string {
	var b strings.Builder
	for i, s := range infos {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d-%d", s.First, s.Last)
	}
	return "[" + b.String() + "]"
}

func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*"+logSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return names
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

// threeSegmentLog writes genesis, 1-4 and 5-9 into one log file and returns
// the file's path and the last frame's offset.
func threeSegmentLog(t *testing.T, dir string) (path string, lastOff int64) {
	t.Helper()
	l, _ := recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(0, 0, "t"), logtest.Segment(1, 4, "t"), logtest.Segment(5, 9, "t"))
	path, off, _, ok := l.SegmentLocation(5)
	if !ok {
		t.Fatal("SegmentLocation(5): not found")
	}
	if p1, _, _, _ := l.SegmentLocation(1); p1 != path {
		t.Fatalf("segments 1 and 5 in different files %s, %s", p1, path)
	}
	l.Close()
	return path, off
}

// A crash may leave any prefix of the last frame: at every cut, recovery
// keeps the run before it, cuts the file back to the last whole frame, and
// the log continues.
func TestTornTailAtEveryByte(t *testing.T) {
	base := t.TempDir()
	path, lastOff := threeSegmentLog(t, base)
	full, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	step := 1
	if testing.Short() {
		step = 7
	}
	for cut := int(lastOff); cut < len(full); cut += step {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		l, rec := recovered(t, dir, Options{})
		if spans(rec.Segments) != "[0-0 1-4]" {
			t.Fatalf("cut at %d: recovered %s, want [0-0 1-4]", cut, spans(rec.Segments))
		}
		named := cut-int(lastOff) >= 24 // the torn header still names it
		if named && (len(rec.Discarded) != 1 || rec.Discarded[0].First != 5) {
			t.Fatalf("cut at %d: discarded %s, want segment 5", cut, spans(rec.Discarded))
		}
		if !named && len(rec.Discarded) != 0 {
			t.Fatalf("cut at %d: discarded %s, want nothing named", cut, spans(rec.Discarded))
		}
		if st, err := os.Stat(filepath.Join(dir, filepath.Base(path))); err != nil || st.Size() != lastOff {
			t.Fatalf("cut at %d: file not cut back to %d: %v %v", cut, lastOff, st, err)
		}
		appendAll(t, l, logtest.Segment(5, 6, "u"))
		l.Close()
		_, rec = recovered(t, dir, Options{})
		if spans(rec.Segments) != "[0-0 1-4 5-6]" || len(rec.Discarded) != 0 {
			t.Fatalf("cut at %d, rewritten: recovered %s discarded %s", cut, spans(rec.Segments), spans(rec.Discarded))
		}
	}
}

// Garbage after the last frame (a write that never completed, with no
// readable header) is cut off without naming a segment.
func TestStrayPartialFrameCut(t *testing.T) {
	dir := t.TempDir()
	path, _ := threeSegmentLog(t, dir)
	st, _ := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("partial frame garbage, not a header"))
	f.Close()
	_, rec := recovered(t, dir, Options{})
	if rec.Last() != 9 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered to %d, discarded %s; want 9, nothing", rec.Last(), spans(rec.Discarded))
	}
	if st2, _ := os.Stat(path); st2.Size() != st.Size() {
		t.Fatalf("stray bytes not cut: size %d, want %d", st2.Size(), st.Size())
	}
}

// A damaged frame with valid frames after it in the same file is refused,
// naming the file and the offset, and nothing is changed — whether its body
// (checksum), its length or its magic (so its end is unknown) was hit.
func TestCorruptMiddleFrameRefused(t *testing.T) {
	for name, damage := range map[string]func([]byte) []byte{
		"body bit":  func(b []byte) []byte { b[len(b)-1] ^= 1; return b },
		"length":    func(b []byte) []byte { b[36] ^= 0x7f; return b },
		"magic":     func(b []byte) []byte { b[0] = 'X'; return b },
		"zeroed":    func(b []byte) []byte { clear(b[len(b)/2:]); return b },
		"tombstone": func(b []byte) []byte { copy(b, deadMagic); b[50] ^= 1; return b },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l, _ := recovered(t, dir, Options{})
			appendAll(t, l, logtest.Segment(0, 0, "c"), logtest.Segment(1, 2, "c"), logtest.Segment(3, 3, "c"))
			path, off, _, _ := l.SegmentLocation(1)
			l.Close()
			damageFrame(t, dir, 1, damage)
			before, _ := os.ReadFile(path)
			l2 := mustOpen(t, dir, Options{})
			defer l2.Close()
			_, err := l2.Recover(context.Background())
			if !errors.Is(err, persist.ErrCorruption) {
				t.Fatalf("Recover: %v, want ErrCorruption", err)
			}
			if want := fmt.Sprintf("%s offset %d", path, off); !strings.Contains(err.Error(), want) {
				t.Fatalf("Recover: %v, want the error to name %q", err, want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Fatal("a refused recovery changed the log file")
			}
		})
	}
}

// A damaged last frame of a file that is not the last file is corruption:
// files before the newest were complete and synced before it was created.
func TestCorruptTailOfOlderFileRefused(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir, Options{MaxFileBytes: 1})
	appendAll(t, l, logtest.Segment(0, 0, "c"), logtest.Segment(1, 2, "c"), logtest.Segment(3, 3, "c"))
	path, _, n, _ := l.SegmentLocation(1)
	l.Close()
	crashed(t, dir)
	if err := os.Truncate(path, n-1); err != nil {
		t.Fatal(err)
	}
	l2 := mustOpen(t, dir, Options{})
	defer l2.Close()
	if _, err := l2.Recover(context.Background()); !errors.Is(err, persist.ErrCorruption) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Recover: %v, want ErrCorruption naming %s", err, path)
	}
}

// Segments after a gap that cannot be cut off (acknowledged frames follow
// them in the file) are tombstoned: reported once, and a later leader can
// write the same Firsts.
func TestGapInsideFileTombstoned(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(0, 0, "g"), logtest.Segment(1, 5, "g"), logtest.Segment(9, 9, "g"), logtest.Segment(6, 7, "g"))
	l.Close()
	l, rec := recovered(t, dir, Options{})
	if spans(rec.Segments) != "[0-0 1-5 6-7]" || spans(rec.Discarded) != "[9-9]" {
		t.Fatalf("recovered %s discarded %s; want [0-0 1-5 6-7] and [9-9]", spans(rec.Segments), spans(rec.Discarded))
	}
	appendAll(t, l, logtest.Segment(8, 9, "h"), logtest.Segment(10, 10, "h"))
	l.Close()
	l, rec = recovered(t, dir, Options{})
	if spans(rec.Segments) != "[0-0 1-5 6-7 8-9 10-10]" || len(rec.Discarded) != 0 {
		t.Fatalf("second recovery: %s discarded %s", spans(rec.Segments), spans(rec.Discarded))
	}
	segs, err := l.ReadFrom(context.Background(), 7, 1<<20)
	if err != nil || len(segs) != 2 || !bytes.Equal(segs[0], logtest.Segment(8, 9, "h")) {
		t.Fatalf("ReadFrom(7): %d segments, %v; want the new leader's 8-9 first", len(segs), err)
	}
}

// Files roll at MaxFileBytes; the log reads back across them, before and
// after a reopen.
func TestRollOver(t *testing.T) {
	dir := t.TempDir()
	seg := logtest.Segment(1, 3, "r")
	opts := Options{MaxFileBytes: int64(3 * len(seg))}
	l, _ := recovered(t, dir, opts)
	appendAll(t, l, logtest.Segment(0, 0, "r"))
	const n = 20
	for i := range n {
		first := tx.Version(1 + 3*i)
		appendAll(t, l, logtest.Segment(first, first+2, "r"))
	}
	last := tx.Version(3 * n)
	files := logFiles(t, dir)
	if len(files) < 5 || l.Stats().FilesCreated != uint64(len(files)) {
		t.Fatalf("%d files, %d created; want several", len(files), l.Stats().FilesCreated)
	}
	p1, _, _, _ := l.SegmentLocation(1)
	pl, _, _, _ := l.SegmentLocation(last - 2)
	if p1 == pl {
		t.Fatalf("first and last segment both in %s", p1)
	}
	check := func(l *Log) {
		t.Helper()
		var got tx.Version
		for after := tx.Version(0); after < last; {
			segs, err := l.ReadFrom(context.Background(), after, 1000)
			if err != nil || len(segs) == 0 {
				t.Fatalf("ReadFrom(%d): %d, %v", after, len(segs), err)
			}
			for _, s := range segs {
				h, err := persist.DecodeSegmentHeader(s)
				if err != nil || h.First != after+1 {
					t.Fatalf("ReadFrom: segment %+v %v after %d", h, err, after)
				}
				after, got = h.Last, h.Last
			}
		}
		if got != last {
			t.Fatalf("read up to %d, want %d", got, last)
		}
	}
	check(l)
	l.Close()
	l, rec := recovered(t, dir, opts)
	if rec.Last() != last || len(rec.Segments) != n+1 || len(rec.Discarded) != 0 {
		t.Fatalf("recovered %d segments to %d, discarded %s", len(rec.Segments), rec.Last(), spans(rec.Discarded))
	}
	check(l)
}

// Truncate removes whole files, oldest first, and only while what remains
// is contiguous: a straggler (a segment that landed in a newer file than
// later versions) holds back the files after it.
func TestTruncateAcrossFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{MaxFileBytes: 1} // one file per Append here
	l, _ := recovered(t, dir, opts)
	// Files in write order: [0-0] [1-2] [5-6] [3-4] [7-7].
	appendAll(t, l, logtest.Segment(0, 0, "x"), logtest.Segment(1, 2, "x"), logtest.Segment(5, 6, "x"),
		logtest.Segment(3, 4, "x"), logtest.Segment(7, 7, "x"))
	if n := len(logFiles(t, dir)); n != 5 {
		t.Fatalf("%d files, want 5", n)
	}
	// Removing [5-6] without [3-4] would leave a hole: only two files go.
	if oldest, err := l.Truncate(ctx, 5); err != nil || oldest != 2 {
		t.Fatalf("Truncate(5) = %d, %v; want 2", oldest, err)
	}
	if n := len(logFiles(t, dir)); n != 3 {
		t.Fatalf("%d files after Truncate(5), want 3", n)
	}
	if _, err := l.ReadFrom(ctx, 1, 100); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("ReadFrom(1): %v, want ErrNotFound", err)
	}
	// Up to 6 both stragglers go; the file of the newest segment stays.
	if oldest, err := l.Truncate(ctx, 100); err != nil || oldest != 6 {
		t.Fatalf("Truncate(100) = %d, %v; want 6", oldest, err)
	}
	l.Close()
	_, rec := recovered(t, dir, opts)
	if spans(rec.Segments) != "[7-7]" || rec.OldestRetained() != 6 {
		t.Fatalf("recovered %s (oldest retained %d), want [7-7] and 6", spans(rec.Segments), rec.OldestRetained())
	}
}

// With big files, retention is file-granular, except that a quiet log's
// only file is released by copying what must stay into a new file; a crash
// before the old file's removal is durable leaves two identical copies, and
// recovery keeps one.
func TestTruncateCarriesForwardFromActiveFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, _ := recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(0, 0, "k"), logtest.Segment(1, 10, "k"), logtest.Segment(11, 20, "k"))
	oldPath, _, _, _ := l.SegmentLocation(1)
	oldBytes, err := os.ReadFile(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	if oldest, err := l.Truncate(ctx, 15); err != nil || oldest != 10 {
		t.Fatalf("Truncate(15) = %d, %v; want 10", oldest, err)
	}
	newPath, off, _, ok := l.SegmentLocation(11)
	if !ok || newPath == oldPath || off != 0 {
		t.Fatalf("segment 11 at %s:%d (%v), want the start of a new file", newPath, off, ok)
	}
	if _, err := os.Stat(oldPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("old file still there: %v", err)
	}
	appendAll(t, l, logtest.Segment(21, 22, "k"))
	segs, err := l.ReadFrom(ctx, 10, 1<<20)
	if err != nil || len(segs) != 2 || !bytes.Equal(segs[0], logtest.Segment(11, 20, "k")) {
		t.Fatalf("ReadFrom(10): %d segments, %v", len(segs), err)
	}
	l.Close()
	// The crash case: the old file's removal was lost.
	if err := os.WriteFile(oldPath, oldBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	l, rec := recovered(t, dir, Options{})
	if spans(rec.Segments) != "[0-0 1-10 11-20 21-22]" || len(rec.Discarded) != 0 {
		t.Fatalf("recovered %s discarded %s", spans(rec.Segments), spans(rec.Discarded))
	}
	if p, _, _, _ := l.SegmentLocation(11); p != newPath {
		t.Fatalf("segment 11 recovered from %s, want the newer copy in %s", p, newPath)
	}
	if oldest, err := l.Truncate(ctx, 15); err != nil || oldest != 10 {
		t.Fatalf("Truncate(15) after recovery = %d, %v; want 10", oldest, err)
	}
	// Right after a restart (nothing written yet) the newest file can be
	// released too.
	l.Close()
	l, _ = recovered(t, dir, Options{})
	if oldest, err := l.Truncate(ctx, 20); err != nil || oldest != 20 {
		t.Fatalf("Truncate(20) after restart = %d, %v; want 20", oldest, err)
	}
	if files := logFiles(t, dir); len(files) != 1 {
		t.Fatalf("files after Truncate(20): %v, want one", files)
	}
}

// The full-disk fault: the engine sees the error, the file is cut back to
// its last whole frame, and once the disk has room again the log continues
// and recovers.
func TestWriteFaultThenRecovery(t *testing.T) {
	dir := t.TempDir()
	l, _ := recovered(t, dir, Options{})
	appendAll(t, l, logtest.Segment(0, 0, "f"), logtest.Segment(1, 3, "f"))
	path, off, n, _ := l.SegmentLocation(1)
	var faults atomic.Int32
	l.SetWriteFault(func(string) error { faults.Add(1); return syscall.ENOSPC })
	err := l.Append(context.Background(), logtest.Segment(4, 6, "f"))
	if !errors.Is(err, syscall.ENOSPC) || faults.Load() != 1 {
		t.Fatalf("Append on a full disk: %v (faults %d), want ENOSPC", err, faults.Load())
	}
	if st, err := os.Stat(path); err != nil || st.Size() != off+n {
		t.Fatalf("failed Append left bytes behind: %v %v, want size %d", st, err, off+n)
	}
	l.SetWriteFault(nil)
	appendAll(t, l, logtest.Segment(4, 6, "f"))
	l.Close()
	l, rec := recovered(t, dir, Options{})
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
	l, _ := recovered(t, dir, Options{})
	if _, err := l.LoadPolicies(context.Background()); !errors.Is(err, persist.ErrCorruption) {
		t.Fatalf("LoadPolicies of a damaged file: %v, want ErrCorruption", err)
	}
}

func TestStatsSequential(t *testing.T) {
	l, _ := recovered(t, t.TempDir(), Options{})
	appendAll(t, l, logtest.Segment(0, 0, "s"), logtest.Segment(1, 1, "s"))
	st := l.Stats()
	want := Stats{Appends: 2, GroupCommits: 2, FileSyncs: 2, DirSyncs: 1, FilesCreated: 1}
	if st != want {
		t.Fatalf("stats after two sequential Appends: %+v, want %+v", st, want)
	}
}

// Appends queued while a batch is being written all go into the next batch:
// one write and one fdatasync for all of them. The first batch is held (by
// the write hook) until the others have queued, so the test does not depend
// on timing.
func TestGroupCommit(t *testing.T) {
	const others = 15
	l, _ := recovered(t, t.TempDir(), Options{})
	appendAll(t, l, logtest.Segment(0, 0, "g"))
	var held atomic.Bool
	l.SetWriteFault(func(string) error {
		if held.CompareAndSwap(false, true) {
			for {
				l.mu.Lock()
				n := len(l.mu.queue)
				l.mu.Unlock()
				if n == others {
					return nil
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
		return nil
	})
	before := l.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, others+1)
	wg.Go(func() { errs <- l.Append(context.Background(), logtest.Segment(1, 1, "g")) })
	for !held.Load() {
		time.Sleep(100 * time.Microsecond)
	}
	for i := range others {
		v := tx.Version(2 + i)
		wg.Go(func() { errs <- l.Append(context.Background(), logtest.Segment(v, v, "g")) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st := l.Stats()
	if got := st.GroupCommits - before.GroupCommits; got != 2 {
		t.Fatalf("%d group commits for 1 + %d Appends, want 2", got, others)
	}
	if got := st.FileSyncs - before.FileSyncs; got != 2 {
		t.Fatalf("%d file syncs, want 2", got)
	}
	if got := st.Appends - before.Appends; got != others+1 {
		t.Fatalf("%d Appends counted, want %d", got, others+1)
	}
	segs, err := l.ReadFrom(context.Background(), 0, 1<<20)
	if err != nil || len(segs) != others+1 {
		t.Fatalf("ReadFrom: %d segments, %v", len(segs), err)
	}
}

// Append allocates nothing in steady state (request pooled, index slices
// amortized), counting the writer goroutine.
func TestAppendAllocs(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts need a !race build and a full run")
	}
	l, _ := recovered(t, t.TempDir(), Options{})
	appendAll(t, l, logtest.Segment(0, 0, "a"))
	txns := logtest.Txns(1, 1, "a")
	var buf []byte
	v := tx.Version(1)
	allocs := testing.AllocsPerRun(200, func() {
		txns[0].Version = v
		buf = persist.EncodeSegment(buf[:0], []byte("a"), txns)
		if err := l.Append(context.Background(), buf); err != nil {
			t.Fatal(err)
		}
		v++
	})
	if allocs > 0.1 {
		t.Fatalf("Append: %.2f allocations per call, want ~0", allocs)
	}
}

func TestClosedLogFailsQueuedAndNewAppends(t *testing.T) {
	l, _ := recovered(t, t.TempDir(), Options{})
	appendAll(t, l, logtest.Segment(0, 0, "z"))
	l.Close()
	if err := l.Append(context.Background(), logtest.Segment(1, 1, "z")); err == nil {
		t.Fatal("Append after Close succeeded")
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
}

func TestDirSyncerReportsError(t *testing.T) {
	errBoom := errors.New("boom")
	s := dirSyncer{sync: func() error { return errBoom }}
	if err := s.Sync(); !errors.Is(err, errBoom) {
		t.Fatalf("Sync: %v, want errBoom", err)
	}
}
