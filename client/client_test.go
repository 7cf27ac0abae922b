package client

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

func testClient(f *fakeServer, opts ...Option) *Client {
	opts = append([]Option{WithBackoff(time.Millisecond, 5*time.Millisecond), WithTimeout(5 * time.Second),
		WithOutcomeWait(time.Millisecond)}, opts...)
	return New(f.URL(), opts...)
}

func TestVersionAndCommit(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx := context.Background()
	v, err := c.Version(ctx)
	if err != nil || v.Version != 0 || v.LeaderID != "leader-1" {
		t.Fatalf("Version = %+v, %v; want 0, leader-1", v, err)
	}
	res, err := c.Commit(ctx, NewTxn().Write([]byte("k"), []byte("v")))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if res.Version != 1 || len(res.RequestID) != 32 || res.Duplicate || res.Resolved || res.LeaderID != "leader-1" {
		t.Fatalf("Commit = %+v; want version 1, generated 32-hex id", res)
	}
	// A barrier (no operations) is a transaction too.
	if res, err = c.Commit(ctx, NewTxn()); err != nil || res.Version != 2 {
		t.Fatalf("barrier = %+v, %v; want version 2", res, err)
	}
}

func TestCommitDuplicateRequestID(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx := context.Background()
	txn := NewTxn().RequestID("req-0123456789abcdefghij").Write([]byte("a"), []byte("1"))
	first, err := c.Commit(ctx, txn)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Commit(ctx, txn)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Version != first.Version || second.RequestID != first.RequestID {
		t.Fatalf("second = %+v; want duplicate of %+v", second, first)
	}
}

func TestCommitConflictErrors(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx := context.Background()
	for _, k := range []string{"a", "b", "m"} {
		if _, err := c.Commit(ctx, NewTxn().Write([]byte(k), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Commit(ctx, NewTxn().ReadVersion(1).
		PointRead([]byte("a")).                   // written at 1: holds
		PointRead([]byte("b")).                   // written at 2 > 1: fails
		RangeReadAt([]byte("c"), []byte("z"), 2). // m written at 3: fails
		PointReadAt([]byte("zz"), 0))             // never written: holds
	var ae *APIError
	if !errors.As(err, &ae) || !errors.Is(err, ErrConflict) {
		t.Fatalf("err = %v; want *APIError matching ErrConflict", err)
	}
	if !reflect.DeepEqual(ae.Conflicts, []int{1, 2}) || ae.Version != 3 || ae.LeaderID != "leader-1" || ae.Status != 409 {
		t.Fatalf("APIError = %+v; want conflicts [1 2], version 3", ae)
	}
	if errors.Is(err, ErrTooOld) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("conflict also matches unrelated sentinels: %v", err)
	}

	_, err = c.Commit(ctx, NewTxn().LeaderID("someone-else").Write([]byte("a"), nil))
	if !errors.Is(err, ErrLeaderChanged) || errors.Is(err, ErrConflict) {
		t.Fatalf("leader mismatch err = %v; want ErrLeaderChanged only", err)
	}
	f.set(func(f *fakeServer) { f.tooOld = 2 })
	_, err = c.Commit(ctx, NewTxn().PointReadAt([]byte("a"), 1))
	if !errors.Is(err, ErrTooOld) {
		t.Fatalf("err = %v; want ErrTooOld", err)
	}
	_, err = c.Commit(ctx, NewTxn().PointReadAt([]byte("a"), 99))
	if !errors.Is(err, ErrFutureVersion) || !errors.Is(err, ErrBadRequest) {
		t.Fatalf("err = %v; want ErrFutureVersion and ErrBadRequest", err)
	}
	_, err = c.Commit(ctx, NewTxn().PointRead([]byte("a")))
	if !errors.Is(err, ErrBadRequest) || errors.Is(err, ErrFutureVersion) {
		t.Fatalf("err = %v; want ErrBadRequest (precondition without version)", err)
	}
	f.mu.Lock()
	calls := f.commitCalls
	f.mu.Unlock()
	if calls != 8 {
		t.Fatalf("server saw %d commits; definite answers must not be retried (want 8)", calls)
	}
}

// TestCommitLostAnswerResolvedCommitted: the server commits but the answer
// is lost; the client must learn that from /v1/status and not commit again.
func TestCommitLostAnswerResolvedCommitted(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	f.set(func(f *fakeServer) { f.dropCommitAnswers = 1; f.inFlightPolls = 2 })
	res, err := c.Commit(context.Background(), NewTxn().Write([]byte("k"), []byte("v")))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !res.Resolved || res.Version != 1 || len(f.txns) != 1 || f.commitCalls != 1 || f.statusCalls != 3 {
		t.Fatalf("res = %+v, txns %d, commits %d, status calls %d; want resolved v1, one commit, 3 status calls (2 in_flight)",
			res, len(f.txns), f.commitCalls, f.statusCalls)
	}
}

// TestCommitLostRequestRetried: the commit never reached processing;
// status says not_committed, so the client retries with the same id.
func TestCommitLostRequestRetried(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	f.set(func(f *fakeServer) { f.dropCommitsBefore = 1; f.refuse503 = 1 })
	res, err := c.Commit(context.Background(), NewTxn().RequestID("fixed-request-id-000001").Write([]byte("k"), nil))
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if res.Version != 1 || res.Resolved || res.RequestID != "fixed-request-id-000001" || f.commitCalls != 3 || f.statusCalls != 2 || len(f.txns) != 1 {
		t.Fatalf("res = %+v commits %d status %d txns %d; want v1 after 3 attempts and 2 status checks", res, f.commitCalls, f.statusCalls, len(f.txns))
	}
}

func TestCommitOutcomeUnknown(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f, WithMaxAttempts(2))
	f.set(func(f *fakeServer) { f.dropCommitAnswers = 1; f.statusDown = 100 })
	_, err := c.Commit(context.Background(), NewTxn().Write([]byte("k"), nil))
	var ou *OutcomeUnknownError
	if !errors.As(err, &ou) || !errors.Is(err, ErrOutcomeUnknown) || len(ou.RequestID) != 32 {
		t.Fatalf("err = %v; want *OutcomeUnknownError with the request id", err)
	}
	f.set(func(f *fakeServer) { f.statusDown = 0 })
	st, err := c.Status(context.Background(), ou.RequestID, 0)
	if err != nil || st.Status != StatusCommitted || st.Version != 1 {
		t.Fatalf("Status = %+v, %v; want committed at 1", st, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.commitCalls != 1 {
		t.Fatalf("commit sent %d times with unknown outcome; want 1", f.commitCalls)
	}
}

func TestCommitCanceledContextIsOutcomeUnknown(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Commit(ctx, NewTxn())
	if !errors.Is(err, ErrOutcomeUnknown) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want ErrOutcomeUnknown wrapping context.Canceled", err)
	}
}

// TestConcurrentCounter is the serial-processing check in miniature: many
// goroutines increment one counter with read-modify-write commits.
func TestConcurrentCounter(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx := context.Background()
	var mu sync.Mutex
	value, at := 0, uint64(0) // the counter as this test's "state", at version
	var wg sync.WaitGroup
	const workers, each = 4, 10
	for range workers {
		wg.Go(func() {
			for done := 0; done < each; {
				mu.Lock()
				v, read := value, at
				mu.Unlock()
				res, err := c.Commit(ctx, NewTxn().ReadVersion(read).PointRead([]byte("n")).
					Write([]byte("n"), json.RawMessage(itoa(v+1))))
				if errors.Is(err, ErrConflict) {
					var ae *APIError
					errors.As(err, &ae)
					mu.Lock()
					// Re-read: the fake's log is the truth.
					f.mu.Lock()
					value, at = countWrites(f.txns), f.last()
					f.mu.Unlock()
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if res.Version > at {
					value, at = v+1, res.Version
				}
				mu.Unlock()
				done++
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if n := countWrites(f.txns); n != workers*each {
		t.Fatalf("counter %d after %d acknowledged increments", n, workers*each)
	}
	if got := string(f.txns[len(f.txns)-1].Ops[0].Value); got != itoa(workers*each) {
		t.Fatalf("last value %q; want %d", got, workers*each)
	}
}

func countWrites(ts []fakeTxn) int { return len(ts) }

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestStatus(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx := context.Background()
	st, err := c.Status(ctx, "nobody-sent-this-id-000", 0)
	if err != nil || st.Status != StatusNotCommitted {
		t.Fatalf("Status = %+v, %v; want not_committed", st, err)
	}
}

func TestRetention(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	ctx := context.Background()
	p, err := c.PutPolicy(ctx, "backup.daily", 7)
	if err != nil || p != (Policy{PolicyID: "backup.daily", Version: 7}) {
		t.Fatalf("PutPolicy = %+v, %v", p, err)
	}
	if p, err = c.GetPolicy(ctx, "backup.daily"); err != nil || p.Version != 7 {
		t.Fatalf("GetPolicy = %+v, %v", p, err)
	}
	ps, err := c.ListPolicies(ctx)
	if err != nil || len(ps.Policies) != 1 || ps.Policies[0].PolicyID != "backup.daily" || ps.OldestRetainedVersion != 0 {
		t.Fatalf("ListPolicies = %+v, %v", ps, err)
	}
	if err := c.DeletePolicy(ctx, "backup.daily"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPolicy(ctx, "backup.daily"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetPolicy after delete: %v; want ErrNotFound", err)
	}
	if err := c.DeletePolicy(ctx, "backup.daily"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v; want ErrNotFound", err)
	}
	f.set(func(f *fakeServer) { f.oldest = 10 })
	if _, err := c.PutPolicy(ctx, "late", 3); !errors.Is(err, ErrConflict) {
		t.Fatalf("PutPolicy below oldest: %v; want ErrConflict", err)
	}
}

func TestAPIErrorFromNonJSONBody(t *testing.T) {
	c := New("http://127.0.0.1:1") // nothing listens on port 1
	_, err := c.Version(context.Background())
	if err == nil {
		t.Fatal("Version against a closed port succeeded")
	}
	f := newFakeServer(t)
	c = testClient(f)
	err = c.once(context.Background(), "GET", "/nope", nil, nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 404 || !errors.Is(err, ErrNotFound) || ae.Code != "not_found" {
		t.Fatalf("err = %#v; want 404 APIError from a plain-text body", err)
	}
}

func TestBackoffBounds(t *testing.T) {
	c := New("http://x", WithBackoff(10*time.Millisecond, 80*time.Millisecond))
	for n := 1; n < 12; n++ {
		d := min(10*time.Millisecond<<(n-1), 80*time.Millisecond)
		for range 50 {
			if got := c.backoff(n, 0); got < d/2 || got > d {
				t.Fatalf("backoff(%d) = %v; want in [%v, %v]", n, got, d/2, d)
			}
		}
	}
	if got := c.backoff(1, time.Second); got < 500*time.Millisecond {
		t.Fatalf("backoff with 1s retry hint = %v; want ≥ 500ms", got)
	}
}
