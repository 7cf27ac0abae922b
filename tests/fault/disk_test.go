// Package fault runs the real weaseldb binary against broken storage: a
// segment corrupted or truncated in the middle of the log (the server must
// refuse to start and name the file, never skip it), a full disk (commits
// answer 503, never a false 200, and the server recovers by itself when space
// returns), a log file deleted or cut under a running server (503, never a
// 200 that a restart would lose; the restart refuses), and — in s3_test.go — a misbehaving S3 and two servers on one
// prefix.
//
// The full-disk test mounts a 2 MiB tmpfs and so needs root (CAP_SYS_ADMIN);
// elsewhere it skips and says so. The persist/disk unit tests cover ENOSPC by
// an injected write fault (disk.SetWriteFault) everywhere.
package fault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist/disk"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

// commitN commits n blind writes one at a time (so each lands in its own
// segment) and returns their request ids and versions.
func commitN(t *testing.T, hc *http.Client, url, prefix string, n int) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64, n)
	for i := range n {
		rid := fmt.Sprintf("%s-%020d", prefix, i)
		code, ans, err := harness.Commit(context.Background(), hc, url, harness.CommitRequest{
			RequestID:  rid,
			Operations: []harness.Op{{Type: "write", Key: "a2V5", Value: "dmFsdWU="}},
		})
		if err != nil || code != 200 {
			t.Fatalf("commit %s: HTTP %d %+v %v", rid, code, ans, err)
		}
		out[rid] = ans.Version
	}
	return out
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// middleSegment returns the log file holding a segment in the middle of the
// log in dir (the server is stopped), and the segment's offset and length
// in it.
func middleSegment(t *testing.T, dir string) (path string, off, length int64) {
	t.Helper()
	l, err := disk.Open(dir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec, err := l.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Segments) < 10 {
		t.Fatalf("want at least 10 segments to damage one in the middle, have %d", len(rec.Segments))
	}
	path, off, length, ok := l.SegmentLocation(rec.Segments[len(rec.Segments)/2].First)
	if !ok {
		t.Fatal("SegmentLocation of a recovered segment: not found")
	}
	return path, off, length
}

// TestCorruptSegmentInTheMiddle damages one segment in the middle of the log
// in two ways; each time the server must refuse to start, name the file, and
// leave the log as it is.
func TestCorruptSegmentInTheMiddle(t *testing.T) {
	for _, damage := range []struct {
		name string
		do   func(frame []byte)
	}{
		{"bit flip", func(frame []byte) {
			frame[len(frame)-3] ^= 0x40 // in the body: the checksum must catch it
		}},
		{"zeroed half", func(frame []byte) {
			clear(frame[len(frame)/2:]) // a lost write: its length still says where the next one starts
		}},
	} {
		t.Run(damage.name, func(t *testing.T) {
			dir := t.TempDir()
			srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			hc := &http.Client{}
			commitN(t, hc, srv.URL, "corrupt", 20)
			if err := srv.Stop(30 * time.Second); err != nil {
				t.Fatalf("stop: %v\n%s", err, srv.Log())
			}
			victim, off, length := middleSegment(t, dir)
			data, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			damage.do(data[off : off+length])
			if err := os.WriteFile(victim, data, 0o644); err != nil {
				t.Fatal(err)
			}
			before := segments(t, dir)

			_, err = harness.Start(harness.Options{Bin: bin, DataDir: dir})
			if err == nil {
				t.Fatalf("the server started on a log with a damaged segment in the middle of %s", filepath.Base(victim))
			}
			if !errors.Is(err, harness.ErrExited) {
				t.Fatalf("want the server to exit, got %v", err)
			}
			if want := fmt.Sprintf("%s offset %d", filepath.Base(victim), off); !strings.Contains(err.Error(), want) {
				t.Fatalf("the error does not name the damaged file and offset %q:\n%v", want, err)
			}
			if !strings.Contains(err.Error(), "permanent error, not retried") || strings.Contains(err.Error(), "attempt 1 of") {
				t.Fatalf("corruption must be reported as permanent, not as a retried attempt:\n%v", err)
			}
			after, _ := os.ReadFile(victim)
			if !slices.Equal(before, segments(t, dir)) || !bytes.Equal(after, data) {
				t.Fatal("a refused start changed the log")
			}
		})
	}
}

// TestDiskFull fills a small tmpfs under a running server: commits must
// answer 503 (or wait), or 200 only if really durable; once space returns the server commits
// again without a restart, and every acknowledged commit is in the log.
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("cannot mount a 2 MiB tmpfs (%v): the full-disk test needs root; ENOSPC is covered by persist/disk's injected write faults", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	dataDir := filepath.Join(dir, "data")
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	acked := commitN(t, hc, srv.URL, "before-full", 10)

	filler := filepath.Join(dir, "filler")
	if err := fill(filler); err != nil {
		t.Fatal(err)
	}

	// While full: concurrent commits, each bounded; record what they got.
	type outcome struct {
		rid  string
		code int
		err  error
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				rid := fmt.Sprintf("while-full-%d-%015d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				code, _, err := harness.Commit(ctx, hc, srv.URL, harness.CommitRequest{
					RequestID:  rid,
					Operations: []harness.Op{{Type: "write", Key: "ZnVsbA==", Value: strings.Repeat("QUFB", 256)}},
				})
				cancel()
				mu.Lock()
				outcomes = append(outcomes, outcome{rid, code, err})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var got503, lost int
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			lost++ // waited for the disk: outcome resolved below
		case o.code == 503:
			got503++
		case o.code == 200:
			// Durable all the same: the append-only log file still had
			// allocated room in its last page. Checked with the others below.
		default:
			t.Errorf("commit %s on a full disk answered %d (want 503 or no answer yet)", o.rid, o.code)
		}
	}
	if got503 == 0 {
		t.Errorf("no commit answered 503 while the disk was full (%d waited)", lost)
	}
	t.Logf("disk full: %d commits answered 503, %d still waiting when their client gave up", got503, lost)

	// Space returns: the server must commit again by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		rid := fmt.Sprintf("after-full-%019d", i)
		code, ans, err := harness.Commit(context.Background(), hc, srv.URL, harness.CommitRequest{
			RequestID:  rid,
			Operations: []harness.Op{{Type: "write", Key: "a2V5", Value: "YWdhaW4="}},
		})
		if err == nil && code == 200 {
			acked[rid] = ans.Version
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no commit succeeded within 60s of freeing space: last HTTP %d %v\n%s", code, err, srv.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The commits that were waiting: status and log agree.
	checkAcked(t, hc, srv.URL, acked)
	for _, o := range outcomes {
		_, st, err := harness.Status(context.Background(), hc, srv.URL, o.rid)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == "committed" {
			acked[o.rid] = st.Version
		}
	}
	// And after a restart on the same (no longer full) disk.
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v\n%s", err, srv.Log())
	}
	srv2, err := harness.Start(harness.Options{Bin: bin, DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Kill()
	checkAcked(t, hc, srv2.URL, acked)
}

// fill writes zeros to path until the filesystem is full.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			return fmt.Errorf("fill: %w", err)
		}
	}
	for { // the last partial page
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	f.Sync()
	return nil
}

// checkAcked reads the whole log and checks every acknowledged commit is at
// its version, once.
func checkAcked(t *testing.T, hc *http.Client, url string, acked map[string]uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := harness.Version(ctx, hc, url)
	if err != nil {
		t.Fatal(err)
	}
	log, err := harness.ReadLog(ctx, hc, url, 0, v.Version)
	if err != nil {
		t.Fatal(err)
	}
	at := make(map[string]uint64)
	for i, txn := range log {
		if txn.Version != uint64(i+1) {
			t.Fatalf("log not contiguous: index %d has version %d", i, txn.Version)
		}
		if txn.RequestID == "" {
			continue // a leader's claim
		}
		if prev, dup := at[txn.RequestID]; dup {
			t.Fatalf("DUPLICATE %s at %d and %d", txn.RequestID, prev, txn.Version)
		}
		at[txn.RequestID] = txn.Version
	}
	for rid, want := range acked {
		if got, ok := at[rid]; !ok || got != want {
			t.Errorf("LOST: %s acknowledged at %d, in the log at %d (present %v)", rid, want, got, ok)
		}
	}
}
