package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/weaseldb/weaseldb/client"
)

// TestStatusWindowBeyondMemory (issue 12 item 4): with the in-memory part
// of the status index capped low (status_memory_ids, default 4M, here
// 200), a retry of a request id thousands of commits older than that cap
// is still a duplicate, answered with the leader that committed it, and
// /v1/status finds it: the window lives on disk beside the log. So it
// stays after a crash (SIGKILL) and a graceful restart, on every backend.
// Before the fix the id was forgotten past the cap and committed twice.
func TestStatusWindowBeyondMemory(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		s := startServer(t, spec{backend: backend, conf: conf{"commit": {"status_memory_ids = 200", "status_run_ids = 100"}}})
		ctx := context.Background()
		const n = 3000
		ids := make([]string, n+1)
		var leader string
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1 + w; i <= n; i += 16 {
					res, err := s.C.Commit(ctx, client.NewTxn().RequestID(fmt.Sprintf("window-test-%08d-xxxxxxxx", i)).Write([]byte("k"), []byte("v")))
					if err != nil {
						errs <- fmt.Errorf("commit %d: %w", i, err)
						return
					}
					if res.Version == 1 {
						leader = res.LeaderID
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for i := range ids {
			ids[i] = fmt.Sprintf("window-test-%08d-xxxxxxxx", i)
		}
		// The id committed at version 1 is thousands of commits behind the
		// memory cap.
		first := ""
		for i := 1; i <= n; i++ {
			st, err := s.C.Status(ctx, ids[i], 0)
			if err != nil {
				t.Fatalf("status %s: %v", ids[i], err)
			}
			if st.Status != "committed" {
				t.Fatalf("status of %s: %+v, want committed", ids[i], st)
			}
			if st.Version == 1 {
				first = ids[i]
				break
			}
		}
		if first == "" {
			t.Fatal("no id committed at version 1")
		}
		check := func(when string) {
			t.Helper()
			dup, err := s.C.Commit(ctx, client.NewTxn().RequestID(first).Write([]byte("again"), nil))
			if err != nil || !dup.Duplicate || dup.Version != 1 || dup.LeaderID != leader {
				t.Fatalf("%s: retry of the id committed at version 1: %+v %v, want a duplicate at 1 by leader %s", when, dup, err, leader)
			}
			st, err := s.C.Status(ctx, first, 0)
			if err != nil || st.Status != "committed" || st.Version != 1 {
				t.Fatalf("%s: status of the id committed at version 1: %+v %v", when, st, err)
			}
		}
		check("running")
		if runs, _ := filepath.Glob(filepath.Join(s.dataDir, "data", "status", "*.run")); len(runs) == 0 {
			t.Errorf("no status runs under %s", filepath.Join(s.dataDir, "data", "status"))
		}
		s.stop(syscall.SIGKILL)
		s.start()
		check("after SIGKILL")
		s.restart()
		check("after a graceful restart")
	})
}

// TestStatusWindowGoneOnDisk: with the window at 1,000 versions and most
// of it on disk, a status query below its floor is 410, one inside it is
// answered.
func TestStatusWindowGoneOnDisk(t *testing.T) {
	s := startServer(t, spec{conf: conf{"commit": {"status_memory_ids = 100", "status_run_ids = 50", "status_window_versions = 1000"}}})
	ctx := context.Background()
	var ids []string
	for i := range 1500 {
		res, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("k", i)), nil))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.RequestID)
	}
	status, o := s.doJSON("GET", "/v1/status?request_id="+ids[0]+"&min_version=0", "", nil)
	wantError(t, "status below the floor", status, o, 410, "gone")
	st, err := s.C.Status(ctx, ids[1000], 0) // version 1001: inside the window, not in memory
	if err != nil || st.Status != "committed" || st.Version != 1001 {
		t.Fatalf("status inside the window: %+v %v, want committed at 1001", st, err)
	}
}
