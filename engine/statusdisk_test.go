package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// diskStatusConfig keeps few ids in memory and cuts small runs, so that
// most of the window lives on disk after a few thousand commits.
func diskStatusConfig(t *testing.T, clock *testClock) Config {
	cfg := testConfig(clock)
	cfg.StatusDir = filepath.Join(t.TempDir(), "status")
	cfg.StatusEntriesMax = 100
	cfg.StatusRunEntries = 64
	cfg.ConflictWindowVersions = 16 // the restart test counts what the status index reads
	return cfg
}

// commitMany commits ids from..to (inclusive), each its own transaction,
// pipelined in bursts.
func commitMany(t *testing.T, e *Engine, from, to int) {
	t.Helper()
	const burst = 64
	for i := from; i <= to; i += burst {
		var wg sync.WaitGroup
		for j := i; j < i+burst && j <= to; j++ {
			wg.Add(1)
			r := commitOf(id(j), nil, write("k", "v"))
			e.Submit(r, func(r *Request) {
				if r.Outcome != Committed || r.Duplicate {
					t.Errorf("commit %s: %v duplicate %v", r.RequestID, r.Outcome, r.Duplicate)
				}
				wg.Done()
			})
		}
		wg.Wait()
	}
}

func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.run"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// settle commits one empty transaction at a time, with pauses, until
// memory holds at most the cap plus one run (the ids not on disk yet: the
// runs are written in the background), and at least one run exists.
func settle(t *testing.T, e *Engine, cfg Config) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(runFiles(t, cfg.StatusDir)) == 0 || e.Stats().StatusIndexEntries > int64(cfg.StatusEntriesMax+cfg.StatusRunEntries) {
		if time.Now().After(deadline) {
			t.Fatalf("memory still holds %d ids (cap %d + run %d)", e.Stats().StatusIndexEntries, cfg.StatusEntriesMax, cfg.StatusRunEntries)
		}
		time.Sleep(2 * time.Millisecond)
		expectOutcome(t, submitWait(t, e, commitOf("", nil)), Committed)
	}
}

// TestStatusWindowBeyondMemory: with memory holding 500 ids, a retry of
// the first of 5,000 request ids is still a duplicate, and a status query
// finds it: the window is held on disk (issue 12 item 4: it was cut at the
// memory cap). Memory stays near its cap, and runs are merged.
func TestStatusWindowBeyondMemory(t *testing.T) {
	cfg := diskStatusConfig(t, newTestClock())
	e, _ := openTest(t, memlog.NewStore(), cfg)
	commitMany(t, e, 1, 5000)
	settle(t, e, cfg)
	for _, i := range []int{1, 2, 1000, 4321, 5000} {
		dup := submitWait(t, e, commitOf(id(i), nil, write("other", "x")))
		if dup.Outcome != Committed || !dup.Duplicate || dup.Version != tx.Version(i) {
			t.Fatalf("retry of %s: %v duplicate %v version %d, want a duplicate at %d", id(i), dup.Outcome, dup.Duplicate, dup.Version, i)
		}
		if st := e.Status(StatusQuery{RequestID: []byte(id(i))}); st.State != StatusCommitted || st.Version != tx.Version(i) {
			t.Fatalf("status of %s: %+v", id(i), st)
		}
	}
	if st := e.Status(StatusQuery{RequestID: []byte(id(6000))}); st.State != StatusNotCommitted {
		t.Fatalf("status of an id never sent: %+v", st)
	}
	if st := e.Stats(); st.StatusRuns == 0 || st.StatusDiskEntries < 4000 || st.StatusRunMemoryBytes == 0 {
		t.Fatalf("stats of the on-disk part: %d runs, %d ids, %d bytes of filters", st.StatusRuns, st.StatusDiskEntries, st.StatusRunMemoryBytes)
	}
	if n := len(runFiles(t, cfg.StatusDir)); n == 0 || n > 3*mergeFanIn {
		t.Fatalf("%d run files for ~80 runs of 64: merging does not bound them", n)
	}
}

// countingLog records the lowest version ReadFrom was asked to read after.
type countingLog struct {
	persist.Log
	mu     sync.Mutex
	lowest tx.Version
	calls  int
}

func (l *countingLog) ReadFrom(ctx context.Context, after tx.Version, maxBytes int) ([][]byte, error) {
	l.mu.Lock()
	if l.calls == 0 || after < l.lowest {
		l.lowest = after
	}
	l.calls++
	l.mu.Unlock()
	return l.Log.ReadFrom(ctx, after, maxBytes)
}

// TestStatusRestartReadsTail: after a restart the status index comes from
// its runs and the log is read only after the last of them, yet every id
// of the window is still a duplicate, with the leader that committed it;
// and a lost directory is rebuilt from the log.
func TestStatusRestartReadsTail(t *testing.T) {
	clock := newTestClock()
	cfg := diskStatusConfig(t, clock)
	store := memlog.NewStore()
	e1, _ := openTest(t, store, cfg)
	commitMany(t, e1, 1, 3000)
	leader1 := e1.LeaderID()
	if err := e1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	reopen := func() (*Engine, *countingLog) {
		t.Helper()
		cl := &countingLog{Log: store.Open()}
		e, err := Open(context.Background(), cfg, cl)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close(context.Background()) })
		return e, cl
	}
	e2, cl := reopen()
	last := e2.Version() // the claim
	if cl.lowest+tx.Version(cfg.ConflictWindowVersions)+1 < last {
		t.Fatalf("restart read the log after version %d of %d: the status index should come from its runs", cl.lowest, last)
	}
	check := func(e *Engine) {
		t.Helper()
		for _, i := range []int{1, 777, 3000} {
			dup := submitWait(t, e, commitOf(id(i), nil, write("other", "x")))
			if !dup.Duplicate || dup.Version != tx.Version(i) || string(dup.LeaderID) != leader1 {
				t.Fatalf("retry of %s after restart: %+v, want a duplicate at %d by leader %s", id(i), dup, i, leader1)
			}
		}
	}
	check(e2)
	if err := e2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Lose the directory: the whole window is read back from the log.
	if err := os.RemoveAll(cfg.StatusDir); err != nil {
		t.Fatal(err)
	}
	e3, cl := reopen()
	if cl.lowest != 0 {
		t.Fatalf("with the status directory gone the log was read after %d, want 0", cl.lowest)
	}
	check(e3)
}

// TestStatusDiskWindowGone: ids below the floor are gone from memory and
// from disk (their runs deleted), a query below the floor is 410, and an
// expired id commits again.
func TestStatusDiskWindowGone(t *testing.T) {
	clock := newTestClock()
	cfg := diskStatusConfig(t, clock)
	cfg.StatusWindowVersions = 1000
	e, _ := openTest(t, memlog.NewStore(), cfg)
	commitMany(t, e, 1, 3000)
	settle(t, e, cfg)
	last := e.Version()
	if last > 3500 {
		t.Skipf("settling took %d commits; the checks below assume fewer than 500", last-3000)
	}
	st := e.Status(StatusQuery{RequestID: []byte(id(1)), MinVersion: 0, HasMinVersion: true})
	if st.State != StatusGone || st.Floor < last-1000 {
		t.Fatalf("query below the floor: %+v, want gone with floor >= %d", st, last-1000)
	}
	// 2600 is inside the window (last-1000, last] and older than the 164
	// ids memory may hold: it is answered from disk.
	if st := e.Status(StatusQuery{RequestID: []byte(id(2600))}); st.State != StatusCommitted || st.Version != 2600 {
		t.Fatalf("id inside the window (on disk): %+v", st)
	}
	r := submitWait(t, e, commitOf(id(5), nil))
	if r.Outcome != Committed || r.Duplicate {
		t.Fatalf("expired id: %+v, want a new commit", r)
	}
	// Runs wholly below the floor are deleted (in the background).
	for i := 0; ; i++ {
		below := ""
		for _, n := range runFiles(t, cfg.StatusDir) {
			var first, last uint64
			if _, err := fmtSscanRun(filepath.Base(n), &first, &last); err != nil {
				t.Fatalf("run file %s: %v", n, err)
			}
			if tx.Version(last) <= st.Floor {
				below = n
			}
		}
		if below == "" {
			break
		}
		if i == 10000 {
			t.Fatalf("run %s is still on disk below the floor %d", below, st.Floor)
		}
		expectOutcome(t, submitWait(t, e, commitOf("", nil)), Committed)
		time.Sleep(time.Millisecond)
	}
}

func fmtSscanRun(name string, first, last *uint64) (int, error) {
	return fmt.Sscanf(name, "%020d-%020d.run", first, last)
}

// TestStatusCutWhenRunsCannotBeWritten: when runs cannot be written (the
// directory is gone), memory does not grow without bound: the window is
// cut to what memory holds, and below the new floor queries are gone
// (410), never a false not_committed.
func TestStatusCutWhenRunsCannotBeWritten(t *testing.T) {
	cfg := diskStatusConfig(t, newTestClock())
	e, _ := openTest(t, memlog.NewStore(), cfg)
	if err := os.RemoveAll(cfg.StatusDir); err != nil {
		t.Fatal(err)
	}
	commitMany(t, e, 1, 3000)
	// The failed write is learnt at a later batch: commit until it is.
	limit := int64(cfg.StatusEntriesMax + 5*cfg.StatusRunEntries)
	deadline := time.Now().Add(60 * time.Second)
	for e.Stats().StatusIndexEntries > limit {
		if time.Now().After(deadline) {
			t.Fatalf("memory holds %d ids with runs failing, want at most %d", e.Stats().StatusIndexEntries, limit)
		}
		time.Sleep(2 * time.Millisecond)
		expectOutcome(t, submitWait(t, e, commitOf("", nil)), Committed)
	}
	st := e.Status(StatusQuery{RequestID: []byte(id(1)), MinVersion: 0, HasMinVersion: true})
	if st.State != StatusGone || st.Floor == 0 {
		t.Fatalf("status below the cut: %+v, want gone", st)
	}
	if st := e.Status(StatusQuery{RequestID: []byte(id(3000))}); st.State != StatusCommitted {
		t.Fatalf("newest id: %+v", st)
	}
}
