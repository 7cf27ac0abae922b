package tests

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/client"
)

// backends are the persistence backends every test here runs on; those the
// binary does not support yet are skipped by startServer.
var backends = []string{"disk", "fakes3", "s3"}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

// TestRestart: versions, policies, the conflict window and the stream
// survive a graceful restart; a subscriber resuming with Last-Event-ID gets
// every later version exactly once, chained.
func TestRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		s := startServer(t, spec{backend: backend})
		ctx := context.Background()
		const n1, n2 = 30, 20
		ids := map[uint64]string{}
		for i := range n1 {
			res, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("k", i%7)), []byte(fmt.Sprint(i))))
			if err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
			ids[res.Version] = res.RequestID
		}
		// Version 0 keeps everything: truncation may run at any moment
		// (also right after the restart) and must not take what the
		// subscriber below reads from version 1 on.
		if _, err := s.C.PutPolicy(ctx, "keeper", 0); err != nil {
			t.Fatalf("put policy: %v", err)
		}
		before, err := s.C.Version(ctx)
		if err != nil || before.Version != n1 {
			t.Fatalf("version %+v %v, want %d", before, err, n1)
		}

		// Read part of the stream, remember the last event id.
		st, status, o := s.subscribeRaw("after=0")
		if st == nil {
			t.Fatalf("subscribe: %d %v", status, o)
		}
		var lastID uint64
		for v := uint64(1); v <= 12; v++ {
			tx := st.nextTx()
			if tx.Version != v || tx.PrevVersion != v-1 || tx.RequestID != ids[v] {
				t.Fatalf("before restart: %+v, want version %d", tx, v)
			}
			lastID = tx.Version
		}

		s.restart()

		after, err := s.C.Version(ctx)
		// The new leader claims the log with a segment of its own, which
		// may hold an empty transaction: the version may move by one.
		if err != nil || after.Version < before.Version || after.Version > before.Version+1 || after.LeaderID == before.LeaderID || after.LeaderID == "" {
			t.Fatalf("after restart: %+v %v; want version %d (+1 for the claim) and a new leader id (was %s)", after, err, before.Version, before.LeaderID)
		}
		if p, err := s.C.GetPolicy(ctx, "keeper"); err != nil || p.Version != 0 {
			t.Errorf("policy after restart: %+v %v, want version 0", p, err)
		}
		// A read version handed out before the restart is still usable
		// (the conflict window was rebuilt from the log tail) and still
		// detects conflicts.
		_, err = s.C.Commit(ctx, client.NewTxn().ReadVersion(before.Version).PointRead([]byte("k0")).Write([]byte("fresh"), []byte("x")))
		if err != nil {
			t.Errorf("read at the pre-restart version %d: %v", before.Version, err)
		}
		_, err = s.C.Commit(ctx, client.NewTxn().PointReadAt([]byte("k0"), 10).Write([]byte("fresh"), []byte("y")))
		var apiErr *client.APIError
		if !errors.Is(err, client.ErrConflict) || !errors.As(err, &apiErr) || fmt.Sprint(apiErr.Conflicts) != "[0]" {
			t.Errorf("k0 read at version 10, rewritten at 15 before the restart: %v, want a conflict on [0]", err)
		}
		// Duplicate detection remembers request ids across the restart.
		dup, err := s.C.Commit(ctx, client.NewTxn().RequestID(ids[5]).Write([]byte("dup"), nil))
		if err != nil || !dup.Duplicate || dup.Version != 5 {
			t.Errorf("re-sent request id of version 5 after restart: %+v %v, want duplicate at 5", dup, err)
		}
		// ... and answers with the leader id of the term that committed it.
		if dup.LeaderID != before.LeaderID {
			t.Errorf("duplicate answer after restart names leader %q, want the committing leader %q (current %q)", dup.LeaderID, before.LeaderID, after.LeaderID)
		}
		for i := range n2 {
			res, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("after", i)), nil))
			if err != nil {
				t.Fatalf("commit after restart %d: %v", i, err)
			}
			ids[res.Version] = res.RequestID
		}
		last := s.version()

		st, status, o = s.subscribeRaw("after=0", "Last-Event-ID", itoa(lastID))
		if st == nil {
			t.Fatalf("resubscribe: %d %v", status, o)
		}
		for v := lastID + 1; v <= last; v++ {
			tx := st.nextTx()
			if tx.Version != v || tx.PrevVersion != v-1 {
				t.Fatalf("after restart: %+v, want version %d prev %d", tx, v, v-1)
			}
			if id, ok := ids[v]; ok && tx.RequestID != id {
				t.Fatalf("version %d: request_id %s, want %s", v, tx.RequestID, id)
			}
		}
	})
}

// TestRetentionTruncation: with a policy and a fast truncation interval the
// oldest retained version moves up; positions below it are 410 and
// policies below it 409, before and after a restart.
func TestRetentionTruncation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		s := startServer(t, spec{backend: backend, conf: conf{"retention": {`truncate_interval = "50ms"`}}})
		ctx := context.Background()
		// Sequential commits: a segment each, so there is something to
		// delete below the policy.
		for i := range 30 {
			if _, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("k", i)), []byte("v"))); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
		}
		if _, err := s.C.PutPolicy(ctx, "p", 20); err != nil {
			t.Fatal(err)
		}
		var oldest uint64
		eventually(t, "oldest_retained_version moves above 0", func() bool {
			ps, err := s.C.ListPolicies(ctx)
			if err != nil {
				t.Fatal(err)
			}
			oldest = ps.OldestRetainedVersion
			return oldest > 0
		})
		if oldest > 20 {
			t.Fatalf("oldest_retained_version %d beyond the policy's 20", oldest)
		}
		checkTruncated(t, s, oldest)
		if m := metricValue(t, s, "weaseldb_retention_oldest_retained_version"); m != float64(oldest) {
			t.Errorf("metric weaseldb_retention_oldest_retained_version = %v, want %d", m, oldest)
		}

		s.restart()
		ps, err := s.C.ListPolicies(ctx)
		if err != nil || ps.OldestRetainedVersion < oldest {
			t.Fatalf("after restart: %+v %v, want oldest_retained_version >= %d", ps, err, oldest)
		}
		checkTruncated(t, s, ps.OldestRetainedVersion)
	})
}

// checkTruncated checks the answers that depend on oldest > 0.
func checkTruncated(t *testing.T, s *server, oldest uint64) {
	t.Helper()
	_, status, o := s.subscribeRaw("after=0")
	wantError(t, "subscribe after=0 below the oldest retained version", status, o, 410, "gone")
	_, status, o = s.subscribeRaw("after=0", "Last-Event-ID", itoa(oldest-1))
	wantError(t, "Last-Event-ID below the oldest retained version", status, o, 410, "gone")
	status, o = s.doJSON("PUT", "/v1/retention/low", "application/json", []byte(`{"version":`+itoa(oldest-1)+`}`))
	wantError(t, "policy below the oldest retained version", status, o, 409, "conflict")
	st, status, o := s.subscribeRaw("after=" + itoa(oldest))
	if st == nil {
		t.Fatalf("subscribe at the oldest retained version %d: %d %v", oldest, status, o)
	}
	if tx := st.nextTx(); tx.Version != oldest+1 || tx.PrevVersion != oldest {
		t.Errorf("first event after %d: %+v", oldest, tx)
	}
}

// TestGracefulShutdown: SIGTERM under concurrent commits and an open
// subscriber exits 0, and every acknowledged commit is in the log after a
// restart, at the version it was acknowledged with.
func TestGracefulShutdown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		s := startServer(t, spec{backend: backend})
		c := client.New(s.URL, client.WithMaxAttempts(1), client.WithTimeout(20*time.Second))
		st, status, o := s.subscribeRaw("after=0")
		if st == nil {
			t.Fatalf("subscribe: %d %v", status, o)
		}
		var (
			mu    sync.Mutex
			acked = map[uint64]string{}
			count atomic.Int64
			wg    sync.WaitGroup
		)
		ctx := context.Background()
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					res, err := c.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("w", w, "-", i%50)), []byte(fmt.Sprint(i))))
					if err != nil {
						return // the server is going away
					}
					mu.Lock()
					if prev, ok := acked[res.Version]; ok {
						t.Errorf("version %d acknowledged twice (%s, %s)", res.Version, prev, res.RequestID)
					}
					acked[res.Version] = res.RequestID
					mu.Unlock()
					count.Add(1)
				}
			}()
		}
		eventually(t, "200 commits acknowledged", func() bool { return count.Load() >= 200 })
		if code := s.stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("SIGTERM under load: exit code %d, want 0\n%s", code, s.proc.tail(20))
		}
		wg.Wait()

		s.start()
		latest := s.version()
		var maxAcked uint64
		for v := range acked {
			maxAcked = max(maxAcked, v)
		}
		if latest < maxAcked {
			t.Fatalf("recovered version %d below the highest acknowledged %d", latest, maxAcked)
		}
		zero := uint64(0)
		sub := s.C.Subscribe(ctx, client.SubscribeOptions{After: &zero})
		defer sub.Close()
		got := collect(t, sub, 0, latest)
		for v, id := range acked {
			if got[v] != id {
				t.Errorf("acknowledged commit %s at version %d: the log has %q there", id, v, got[v])
			}
		}
		t.Logf("%d commits acknowledged before SIGTERM, %d in the log", len(acked), latest)
	})
}

// TestRetentionPolicies: the CRUD of /v1/retention/ and its 400s.
func TestRetentionPolicies(t *testing.T) {
	s := startServer(t, spec{})
	status, o := s.doJSON("GET", "/v1/retention/", "", nil)
	if status != 200 || fmt.Sprint(o["policies"]) != "[]" || o.num("oldest_retained_version") != 0 {
		t.Fatalf("empty list: %d %v", status, o)
	}
	status, o = s.doJSON("PUT", "/v1/retention/backup.daily-1_A", "application/json", []byte(`{"version":0}`))
	if status != 200 || o.str("policy_id") != "backup.daily-1_A" || o.num("version") != 0 {
		t.Fatalf("PUT: %d %v", status, o)
	}
	status, o = s.doJSON("PUT", "/v1/retention/backup.daily-1_A", "", []byte(`{"version":0}`))
	if status != 200 {
		t.Fatalf("PUT again without Content-Type: %d %v", status, o)
	}
	s.commitRaw(`{}`)
	status, o = s.doJSON("PUT", "/v1/retention/b", "application/json", []byte(` { "version" : 1 } `))
	if status != 200 || o.num("version") != 1 {
		t.Fatalf("PUT b: %d %v", status, o)
	}
	status, o = s.doJSON("GET", "/v1/retention/b", "", nil)
	if status != 200 || o.str("policy_id") != "b" || o.num("version") != 1 {
		t.Fatalf("GET b: %d %v", status, o)
	}
	status, o = s.doJSON("GET", "/v1/retention/", "", nil)
	if status != 200 || len(o["policies"].([]any)) != 2 {
		t.Fatalf("list: %d %v", status, o)
	}
	status, _ = s.doJSON("DELETE", "/v1/retention/b", "", nil)
	if status != 204 {
		t.Fatalf("DELETE b: %d", status)
	}
	status, o = s.doJSON("GET", "/v1/retention/b", "", nil)
	wantError(t, "GET deleted policy", status, o, 404, "not_found")
	status, o = s.doJSON("DELETE", "/v1/retention/b", "", nil)
	wantError(t, "DELETE deleted policy", status, o, 404, "not_found")

	long := make([]byte, 129)
	for i := range long {
		long[i] = 'p'
	}
	for _, id := range []string{"a*b", "a%20b", "%2E%2E", "%2E", "caf%C3%A9", string(long)} {
		status, o := s.doJSON("PUT", "/v1/retention/"+id, "application/json", []byte(`{"version":0}`))
		wantError(t, "PUT policy id "+id, status, o, 400, "bad_request")
		status, o = s.doJSON("GET", "/v1/retention/"+id, "", nil)
		wantError(t, "GET policy id "+id, status, o, 400, "bad_request")
	}
	if status, o := s.doJSON("PUT", "/v1/retention/"+string(long[:128]), "application/json", []byte(`{"version":0}`)); status != 200 {
		t.Errorf("policy id of 128 bytes: %d %v", status, o)
	}
	for _, body := range []string{``, `{}`, `{"version":"1"}`, `{"version":-1}`, `{"version":1.5}`, `{"version":1,"x":2}`, `[1]`, `{"version":1} {}`} {
		status, o := s.doJSON("PUT", "/v1/retention/q", "application/json", []byte(body))
		wantError(t, "PUT body "+url.QueryEscape(body), status, o, 400, "bad_request")
	}
	status, o = s.doJSON("PUT", "/v1/retention/q", "text/plain", []byte(`{"version":0}`))
	wantError(t, "PUT text/plain", status, o, 415, "unsupported_media_type")
	status, o = s.doJSON("GET", "/v1/retention/q", "", nil)
	wantError(t, "GET q after refused PUTs", status, o, 404, "not_found")
}
