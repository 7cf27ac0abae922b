package engine

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

func TestVersionsAreConsecutiveFromOne(t *testing.T) {
	store := memlog.NewStore()
	e, log := openTest(t, store, testConfig(newTestClock()))
	if e.Version() != 0 || len(e.LeaderID()) != 32 {
		t.Fatalf("fresh engine: version %d leader %q", e.Version(), e.LeaderID())
	}
	const n = 50
	for i := 1; i <= n; i++ {
		r := submitWait(t, e, commitOf(id(i), nil, write("k", "v")))
		expectOutcome(t, r, Committed)
		if r.Version != tx.Version(i) || string(r.RequestID) != id(i) {
			t.Fatalf("commit %d: version %d id %q", i, r.Version, r.RequestID)
		}
	}
	if e.Version() != n || e.ResolvedVersion() != n {
		t.Fatalf("Version %d ResolvedVersion %d, want %d", e.Version(), e.ResolvedVersion(), n)
	}
	txns := readLog(t, log, 0)
	if len(txns) != n {
		t.Fatalf("log holds %d transactions, want %d", len(txns), n)
	}
	for i, txn := range txns {
		if txn.Version != tx.Version(i+1) || string(txn.RequestID) != id(i+1) || len(txn.Operations) != 1 {
			t.Fatalf("log txn %d: %+v", i, txn)
		}
	}
}

func TestConcurrentSubmitsAnsweredInVersionOrder(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	const clients, each = 8, 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[tx.Version]bool{}
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last tx.Version
			for i := range each {
				r := submitWait(t, e, commitOf("", nil, write(id(c*each+i), "v")))
				expectOutcome(t, r, Committed)
				if r.Version <= last || r.Version > e.Version() {
					t.Errorf("client %d: version %d after %d, durable %d", c, r.Version, last, e.Version())
				}
				if len(r.RequestID) != 36 {
					t.Errorf("generated request id %q", r.RequestID)
				}
				last = r.Version
				mu.Lock()
				seen[r.Version] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != clients*each || len(readLog(t, log, 0)) != clients*each {
		t.Fatalf("%d distinct versions, want %d", len(seen), clients*each)
	}
}

func TestConflictAndTooOld(t *testing.T) {
	clock := newTestClock()
	cfg := testConfig(clock)
	cfg.ConflictWindow = time.Second
	cfg.ConflictWindowVersions = 3
	e, _ := openTest(t, memlog.NewStore(), cfg)

	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("a", "1"))), Committed) // v1
	r := submitWait(t, e, commitOf("", []tx.Precondition{pointRead("b", 0), pointRead("a", 0)}, write("c", "1")))
	expectOutcome(t, r, Conflict)
	if len(r.Conflicts) != 1 || r.Conflicts[0] != 1 || r.Version != 1 {
		t.Fatalf("conflict answer: conflicts %v version %d", r.Conflicts, r.Version)
	}
	expectOutcome(t, submitWait(t, e, commitOf("", []tx.Precondition{pointRead("a", 1)}, write("c", "2"))), Committed) // v2
	// Range read over a written key.
	rr := tx.Precondition{Type: tx.RangeRead, Key: []byte("b"), End: []byte("d"), Version: 1, HasVersion: true}
	expectOutcome(t, submitWait(t, e, commitOf("", []tx.Precondition{rr})), Conflict)
	// A range delete conflicts with a point read inside it.
	expectOutcome(t, submitWait(t, e, commitOf("", nil, tx.Operation{Type: tx.OpRangeDelete, Key: []byte("m"), End: []byte("p")})), Committed) // v3
	expectOutcome(t, submitWait(t, e, commitOf("", []tx.Precondition{pointRead("n", 2)})), Conflict)

	// Old enough by versions but not by time: still checked.
	for range 5 {
		expectOutcome(t, submitWait(t, e, commitOf("", nil, write("z", "1"))), Committed)
	}
	expectOutcome(t, submitWait(t, e, commitOf("", []tx.Precondition{pointRead("a", 1)})), Committed)
	// Now old by both: too old.
	clock.Advance(2 * time.Second)
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("z", "2"))), Committed)
	clock.Advance(2 * time.Second)
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("z", "3"))), Committed)
	r = submitWait(t, e, commitOf("", []tx.Precondition{pointRead("q", e.Version()), pointRead("a", 1)}))
	expectOutcome(t, r, TooOld)
	if len(r.Conflicts) != 1 || r.Conflicts[0] != 1 {
		t.Fatalf("too_old conflicts %v", r.Conflicts)
	}
}

func TestRequestValidation(t *testing.T) {
	e, _ := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("a", "1"))), Committed)

	r := commitOf("", nil)
	r.Commit.LeaderID = []byte("0123456789abcdef0123456789abcdef")
	expectOutcome(t, submitWait(t, e, r), LeaderChanged)
	r = commitOf("", nil, write("b", "1"))
	r.Commit.LeaderID = []byte(e.LeaderID())
	expectOutcome(t, submitWait(t, e, r), Committed)

	r = submitWait(t, e, commitOf("", []tx.Precondition{pointRead("a", 1), pointRead("a", 99)}))
	expectOutcome(t, r, FutureVersion)
	if r.Err != "preconditions[1].version: greater than any assigned version" {
		t.Fatalf("future version err %q", r.Err)
	}
	r = submitWait(t, e, commitOf("", []tx.Precondition{{Type: tx.PointRead, Key: []byte("a")}}))
	expectOutcome(t, r, Invalid)
	r = commitOf("", []tx.Precondition{{Type: tx.PointRead, Key: []byte("a")}})
	r.Commit.ReadVersion, r.Commit.HasReadVersion = 2, true
	expectOutcome(t, submitWait(t, e, r), Committed)
	r = submitWait(t, e, commitOf("", nil, tx.Operation{Type: tx.OpRangeDelete, Key: []byte("b"), End: []byte("a")}))
	expectOutcome(t, r, Invalid)
	if r.Err != "operations[0].begin: not below end" {
		t.Fatalf("err %q", r.Err)
	}
	// An empty transaction is a transaction.
	r = submitWait(t, e, commitOf("", nil))
	expectOutcome(t, r, Committed)
	if r.Version != 4 {
		t.Fatalf("empty transaction got version %d, want 4", r.Version)
	}
}

func TestDuplicateCommitted(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	first := submitWait(t, e, commitOf(id(1), nil, write("a", "1")))
	expectOutcome(t, first, Committed)
	dup := submitWait(t, e, commitOf(id(1), []tx.Precondition{pointRead("a", 0)}, write("a", "2")))
	expectOutcome(t, dup, Committed)
	if !dup.Duplicate || dup.Version != first.Version {
		t.Fatalf("duplicate: %+v", dup)
	}
	if n := len(readLog(t, log, 0)); n != 1 {
		t.Fatalf("log holds %d transactions, want 1", n)
	}
	st := e.Status(StatusQuery{RequestID: []byte(id(1))})
	if st.State != StatusCommitted || st.Version != first.Version {
		t.Fatalf("status %+v", st)
	}
	st = e.Status(StatusQuery{RequestID: []byte(id(1)), MinVersion: first.Version, HasMinVersion: true})
	if st.State != StatusNotCommitted {
		t.Fatalf("status after its version: %+v", st)
	}
	if st := e.Status(StatusQuery{RequestID: []byte(id(2))}); st.State != StatusNotCommitted {
		t.Fatalf("status of unknown id: %+v", st)
	}
}

// blockingHook holds every Append until released.
type blockingHook struct {
	gate    chan struct{}
	entered chan tx.Version
}

func newBlockingHook() *blockingHook {
	return &blockingHook{gate: make(chan struct{}), entered: make(chan tx.Version, 100)}
}

func (h *blockingHook) hook(ctx context.Context, first tx.Version) error {
	h.entered <- first
	select {
	case <-h.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestDuplicateInFlight(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("a", "1"))), Committed) // v1
	h := newBlockingHook()
	log.SetAppendHook(h.hook)

	answers := make(chan *Request, 10)
	done := func(r *Request) { answers <- r }
	e.Submit(commitOf(id(1), nil, write("b", "1")), done) // v2, held
	<-h.entered
	e.Submit(commitOf(id(1), nil, write("b", "2")), done)                                  // duplicate of in-flight commit
	e.Submit(commitOf(id(2), []tx.Precondition{pointRead("a", 0)}, write("c", "1")), done) // conflict
	e.Submit(commitOf(id(2), nil, write("c", "2")), done)                                  // duplicate of in-flight conflict
	waitFor(t, func() bool { return e.ResolvedVersion() == 2 && e.Stats().ResolveRequestsTotal >= 5 })
	if st := e.Status(StatusQuery{RequestID: []byte(id(1))}); st.State != StatusInFlight {
		t.Fatalf("status of held commit: %+v", st)
	}
	if st := e.Status(StatusQuery{RequestID: []byte(id(2))}); st.State != StatusInFlight {
		t.Fatalf("status of held conflict: %+v", st)
	}
	select {
	case r := <-answers:
		t.Fatalf("answered before durable: %+v", r)
	default:
	}
	close(h.gate)
	got := []*Request{<-answers, <-answers, <-answers, <-answers}
	if got[0].Outcome != Committed || got[0].Version != 2 || got[0].Duplicate {
		t.Fatalf("first: %+v", got[0])
	}
	if got[1].Outcome != Committed || got[1].Version != 2 || !got[1].Duplicate {
		t.Fatalf("duplicate of commit: %+v", got[1])
	}
	if got[2].Outcome != Conflict || got[2].Duplicate || got[3].Outcome != Conflict || !got[3].Duplicate ||
		len(got[3].Conflicts) != 1 {
		t.Fatalf("conflict and its duplicate: %+v %+v", got[2], got[3])
	}
	// Once answered, a retry with the same id after a conflict is resolved afresh.
	expectOutcome(t, submitWait(t, e, commitOf(id(2), nil, write("c", "3"))), Committed)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTransientAppendFailureIsRetriedInOrder(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	var failures atomic.Int32
	failures.Store(3)
	log.SetAppendHook(func(ctx context.Context, first tx.Version) error {
		if failures.Add(-1) >= 0 {
			return errors.New("injected: disk on fire")
		}
		return nil
	})
	answers := make(chan *Request, 100)
	for i := range 20 {
		e.Submit(commitOf(id(i), nil, write(id(i), "v")), func(r *Request) { answers <- r })
	}
	var last tx.Version
	for range 20 {
		r := <-answers
		if r.Outcome == Unavailable {
			continue // refused at the door while failing: fine
		}
		expectOutcome(t, r, Committed)
		if r.Version <= last {
			t.Fatalf("answered %d after %d", r.Version, last)
		}
		last = r.Version
	}
	if s := e.Stats(); s.SegmentErrorsTotal < 3 {
		t.Fatalf("stats: %d errors", s.SegmentErrorsTotal)
	}
	waitFor(t, func() bool { return !e.Stats().PersistenceFailing })
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("after", "v"))), Committed)
	txns := readLog(t, log, 0)
	for i, txn := range txns {
		if txn.Version != tx.Version(i+1) {
			t.Fatalf("log txn %d has version %d", i, txn.Version)
		}
	}
}

func TestPersistenceDownRefusesAndCloseAnswersUnavailable(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	log.SetAppendHook(func(ctx context.Context, first tx.Version) error { return errors.New("injected: down") })
	answers := make(chan *Request, 10)
	e.Submit(commitOf("", nil, write("a", "1")), func(r *Request) { answers <- r })
	waitFor(t, func() bool { return e.Stats().PersistenceFailing })
	if r := submitWait(t, e, commitOf("", nil, write("b", "1"))); r.Outcome != Unavailable {
		t.Fatalf("while failing: %v", r.Outcome)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := e.Close(ctx); err == nil {
		t.Fatal("Close succeeded with persistence down")
	}
	r := <-answers
	expectOutcome(t, r, Unavailable)
	if e.Version() != 0 {
		t.Fatalf("version %d after failed writes", e.Version())
	}
}

func TestFencedByNewLeader(t *testing.T) {
	store := memlog.NewStore()
	old, _ := openTest(t, store, testConfig(newTestClock()))
	expectOutcome(t, submitWait(t, old, commitOf("", nil, write("a", "1"))), Committed)

	fresh, _ := openTest(t, store, testConfig(newTestClock()))
	if fresh.Version() != 2 || fresh.LeaderID() == old.LeaderID() {
		t.Fatalf("new leader at %d (%s), old %s", fresh.Version(), fresh.LeaderID(), old.LeaderID())
	}
	r := submitWait(t, old, commitOf("", nil, write("b", "1")))
	expectOutcome(t, r, Deposed)
	select {
	case <-old.Deposed():
	case <-time.After(10 * time.Second):
		t.Fatal("Deposed not closed")
	}
	expectOutcome(t, submitWait(t, old, commitOf("", nil, write("c", "1"))), Deposed)
	if _, _, err := old.Tail().Read(0, true, nil); !errors.Is(err, ErrDeposed) {
		t.Fatalf("tail after deposed: %v", err)
	}
	r = submitWait(t, fresh, commitOf("", nil, write("b", "1")))
	expectOutcome(t, r, Committed)
	if r.Version != 3 {
		t.Fatalf("new leader's first commit at %d, want 3", r.Version)
	}
}

func TestRestartRecoversVersionsWindowsAndStatus(t *testing.T) {
	store := memlog.NewStore()
	clock := newTestClock()
	e, _ := openTest(t, store, testConfig(clock))
	for i := 1; i <= 10; i++ {
		expectOutcome(t, submitWait(t, e, commitOf(id(i), nil, write(id(i), "v"))), Committed)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := submitWait(t, e, commitOf("", nil)); r.Outcome != Unavailable {
		t.Fatalf("after Close: %v", r.Outcome)
	}

	e2, log2 := openTest(t, store, testConfig(clock))
	if e2.Version() != 11 {
		t.Fatalf("recovered engine at %d, want 11 (claim segment)", e2.Version())
	}
	// Conflict window rebuilt: a read at 5 of a key written at 7 conflicts;
	// a read at 7 does not.
	expectOutcome(t, submitWait(t, e2, commitOf("", []tx.Precondition{pointRead(id(7), 5)})), Conflict)
	r := submitWait(t, e2, commitOf("", []tx.Precondition{pointRead(id(7), 7)}, write("x", "1")))
	expectOutcome(t, r, Committed)
	if r.Version != 12 {
		t.Fatalf("first commit after restart at %d, want 12", r.Version)
	}
	// Status index rebuilt: a retried request id is a duplicate.
	dup := submitWait(t, e2, commitOf(id(3), nil, write("y", "1")))
	if dup.Outcome != Committed || !dup.Duplicate || dup.Version != 3 {
		t.Fatalf("retry after restart: %+v", dup)
	}
	if st := e2.Status(StatusQuery{RequestID: []byte(id(4))}); st.State != StatusCommitted || st.Version != 4 {
		t.Fatalf("status after restart: %+v", st)
	}
	txns := readLog(t, log2, 10)
	if len(txns) != 2 || len(txns[0].RequestID) != 36 || len(txns[0].Operations) != 0 {
		t.Fatalf("claim transaction (want a generated 36-byte request id, no operations): %+v", txns)
	}
}

func TestStatusWindowGone(t *testing.T) {
	clock := newTestClock()
	cfg := testConfig(clock)
	cfg.StatusWindow = time.Second
	cfg.StatusWindowVersions = 2
	e, _ := openTest(t, memlog.NewStore(), cfg)
	for i := 1; i <= 5; i++ {
		expectOutcome(t, submitWait(t, e, commitOf(id(i), nil)), Committed)
	}
	clock.Advance(2 * time.Second)
	expectOutcome(t, submitWait(t, e, commitOf(id(6), nil)), Committed)
	st := e.Status(StatusQuery{RequestID: []byte(id(1)), MinVersion: 0, HasMinVersion: true})
	if st.State != StatusGone || st.Floor < 3 {
		t.Fatalf("expired: %+v", st)
	}
	// Expired ids are no longer deduplicated.
	r := submitWait(t, e, commitOf(id(1), nil))
	if r.Duplicate || r.Version != 7 {
		t.Fatalf("reused id after window: %+v", r)
	}
}

func TestRetentionPolicies(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	for i := 1; i <= 30; i++ {
		expectOutcome(t, submitWait(t, e, commitOf("", nil, write(id(i), "v"))), Committed)
	}
	ctx := context.Background()
	// The lower policy first: background truncation may run between the
	// two calls, and must not have moved the floor above the second.
	if err := e.SetPolicy(ctx, "reader", 10); err != nil {
		t.Fatal(err)
	}
	if err := e.SetPolicy(ctx, "backup", 20); err != nil {
		t.Fatal(err)
	}
	if v, err := e.GetPolicy("reader"); err != nil || v != 10 {
		t.Fatalf("GetPolicy: %d %v", v, err)
	}
	if err := e.truncateOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if o := e.OldestRetained(); o == 0 || o > 10 {
		t.Fatalf("oldest retained %d after truncation to 10", o)
	}
	if err := e.SetPolicy(ctx, "late", 0); !errors.Is(err, ErrBelowOldest) {
		t.Fatalf("policy below oldest: %v", err)
	}
	if err := e.DeletePolicy(ctx, "reader"); err != nil {
		t.Fatal(err)
	}
	if err := e.DeletePolicy(ctx, "reader"); !errors.Is(err, ErrNoPolicy) {
		t.Fatalf("second delete: %v", err)
	}
	if got := e.Policies(); len(got) != 1 || got[0] != (Policy{ID: "backup", Version: 20}) {
		t.Fatalf("policies %+v", got)
	}
	stored, err := log.LoadPolicies(ctx)
	if err != nil || len(stored) != 1 || stored["backup"] != 20 {
		t.Fatalf("stored policies %v %v", stored, err)
	}
	// DeletePolicy kicked the background truncator (now up to "backup",
	// 20); truncate here too, so that OldestRetained no longer moves while
	// it is read (truncations serialise on the retention lock).
	if err := e.truncateOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := log.ReadFrom(ctx, e.OldestRetained(), 1<<20); err != nil {
		t.Fatalf("ReadFrom oldest retained: %v", err)
	}
	if _, err := log.ReadFrom(ctx, 0, 1<<20); !errors.Is(err, persist.ErrNotFound) {
		t.Fatalf("ReadFrom truncated: %v", err)
	}
}

// TestRetentionFuturePolicy: a policy above every assigned version is
// refused and not stored; one that is stored anyway (a policy file from an
// older server) holds truncation back instead of cutting the log to its
// newest segment.
func TestRetentionFuturePolicy(t *testing.T) {
	store := memlog.NewStore()
	e, log := openTest(t, store, testConfig(newTestClock()))
	for i := 1; i <= 3; i++ {
		expectOutcome(t, submitWait(t, e, commitOf("", nil, write(id(i), "v"))), Committed)
	}
	ctx := context.Background()
	if err := e.SetPolicy(ctx, "backup", 100); !errors.Is(err, ErrFutureVersion) {
		t.Fatalf("policy at 100 with the log at %d: %v, want ErrFutureVersion", e.Version(), err)
	}
	if got := e.Policies(); len(got) != 0 {
		t.Fatalf("refused policy was kept: %+v", got)
	}
	if stored, err := log.LoadPolicies(ctx); err != nil || len(stored) != 0 {
		t.Fatalf("refused policy was stored: %v %v", stored, err)
	}

	// Defence in depth: a stored future policy beside a valid one.
	if err := log.StorePolicies(ctx, map[string]tx.Version{"old": 1 << 40, "ok": 2}); err != nil {
		t.Fatal(err)
	}
	e.Close(ctx)
	e2, log2 := openTest(t, store, testConfig(newTestClock()))
	for i := 4; i <= 10; i++ {
		expectOutcome(t, submitWait(t, e2, commitOf("", nil, write(id(i), "v"))), Committed)
	}
	if err := e2.truncateOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if o := e2.OldestRetained(); o != 0 {
		t.Fatalf("oldest retained %d with a policy from the future stored: truncation ran", o)
	}
	if got := readLog(t, log2, 0); len(got) < 10 {
		t.Fatalf("log holds %d transactions after truncation, want every one (>= 10)", len(got))
	}
	if err := e2.SetPolicy(ctx, "backup", e2.ResolvedVersion()); err != nil {
		t.Fatalf("policy at the latest version: %v", err)
	}
}

// TestDeposedNeverTruncates: once deposed, the engine deletes nothing from
// the log, whatever its policies say: another server holds the log.
func TestDeposedNeverTruncates(t *testing.T) {
	cfg := testConfig(newTestClock()) // its truncation timer never fires by itself
	cfg.DefaultKeepVersions = 2
	e, _ := openTest(t, memlog.NewStore(), cfg)
	for i := 1; i <= 10; i++ {
		expectOutcome(t, submitWait(t, e, commitOf("", nil, write(id(i), "v"))), Committed)
	}
	before := e.OldestRetained()
	e.depose(errors.New("test: another leader claimed the log"))
	if err := e.truncateOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := e.OldestRetained(); got != before {
		t.Fatalf("a deposed engine truncated: oldest retained %d, was %d", got, before)
	}
}
