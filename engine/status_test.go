package engine

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// TestStatusIndexVsMap drives the status index with inserts, evictions and
// lookups of ids whose hashes collide on purpose (few distinct home slots,
// equal first words with different second words) and checks every lookup
// against a plain map kept alongside.
func TestStatusIndexVsMap(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 99))
		entriesMax := 1 + rng.IntN(3000)
		s := newStatusIndex(0, 0, entriesMax) // expire evicts everything older than now
		want := map[idHash]tx.Version{}
		var order []idHash // FIFO of live inserts, as the index keeps them
		randHash := func() idHash {
			// Small domains: many home-slot collisions, equal first words.
			return idHash{a: rng.Uint64N(64) << (rng.Uint64N(3) * 20), b: rng.Uint64N(4)}
		}
		v := tx.Version(0)
		for step := range 5000 {
			switch r := rng.IntN(10); {
			case r < 5:
				h := randHash()
				if _, ok := want[h]; ok {
					continue // the engine never commits one id twice in the window
				}
				v++
				s.insert(h, v, int64(step))
				want[h] = v
				order = append(order, h)
				if len(order) > entriesMax {
					delete(want, order[0])
					order = order[1:]
				}
			case r < 6 && len(order) > 0:
				// Expire the oldest third by time and versions.
				k := (len(order) + 2) / 3
				cut := s.at(s.head + uint64(k-1))
				s.expire(cut.version+tx.Version(s.windowVersions), cut.time+s.window)
				for _, h := range order[:k] {
					delete(want, h)
				}
				order = order[k:]
			default:
				h := randHash()
				got, ok, _ := s.lookup(h)
				w, wok := want[h]
				if ok != wok || got != w {
					t.Fatalf("seed %d step %d: lookup %v = %d,%v, want %d,%v", seed, step, h, got, ok, w, wok)
				}
			}
			if s.len() != len(order) || s.byHash.live != len(order) {
				t.Fatalf("seed %d step %d: len %d, table %d, want %d", seed, step, s.len(), s.byHash.live, len(order))
			}
		}
		for h, w := range want {
			if got, ok, _ := s.lookup(h); !ok || got != w {
				t.Fatalf("seed %d: final lookup %v = %d,%v, want %d", seed, h, got, ok, w)
			}
		}
	}
}

// TestStatusOfQueuedCommit: with the resolver held after taking a commit
// (not yet resolved), a status query for its id waits behind it in the
// pipeline and is answered in flight or committed, never not_committed.
// Before the fix Status read the index directly: not_committed.
func TestStatusOfQueuedCommit(t *testing.T) {
	var armed atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	cfg := testConfig(newTestClock())
	cfg.BeforeResolveBatch = func() {
		if armed.CompareAndSwap(true, false) {
			close(held)
			<-release
		}
	}
	e, _ := openTest(t, memlog.NewStore(), cfg)
	armed.Store(true)
	answers := make(chan *Request, 1)
	e.Submit(commitOf(id(1), nil, write("a", "1")), func(r *Request) { answers <- r })
	<-held
	statuses := make(chan StatusAnswer, 1)
	e.SubmitStatus(&Request{}, StatusQuery{RequestID: []byte(id(1))}, func(r *Request) { statuses <- r.StatusAnswer })
	close(release)
	var st StatusAnswer
	select {
	case st = <-statuses:
	case <-time.After(30 * time.Second):
		t.Fatal("no status answer")
	}
	if st.State != StatusInFlight && (st.State != StatusCommitted || st.Version != 1) {
		t.Fatalf("status of a queued commit: %+v, want in flight or committed at 1", st)
	}
	expectOutcome(t, <-answers, Committed)
	if st := e.Status(StatusQuery{RequestID: []byte(id(1))}); st.State != StatusCommitted || st.Version != 1 {
		t.Fatalf("status after the answer: %+v", st)
	}
}

// TestStatusRefusedWhenClosed: a closed engine answers status queries
// unavailable instead of guessing.
func TestStatusRefusedWhenClosed(t *testing.T) {
	e, _ := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(StatusQuery{RequestID: []byte(id(1))}); st.State != StatusUnavailable {
		t.Fatalf("status on a closed engine: %+v", st)
	}
}

// TestDuplicateCarriesCommittingLeader: a retry answered as a duplicate
// names the leader term that committed the transaction, across restarts
// (issue 12 item 11: it named the current leader).
func TestDuplicateCarriesCommittingLeader(t *testing.T) {
	store := memlog.NewStore()
	clock := newTestClock()
	e1, _ := openTest(t, store, testConfig(clock))
	expectOutcome(t, submitWait(t, e1, commitOf(id(1), nil, write("a", "1"))), Committed)
	leader1 := e1.LeaderID()
	if err := e1.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e2, _ := openTest(t, store, testConfig(clock))
	expectOutcome(t, submitWait(t, e2, commitOf(id(2), nil, write("b", "1"))), Committed)
	leader2 := e2.LeaderID()
	if err := e2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	e3, _ := openTest(t, store, testConfig(clock))
	for _, c := range []struct {
		id     string
		leader string
	}{{id(1), leader1}, {id(2), leader2}} {
		dup := submitWait(t, e3, commitOf(c.id, nil, write("c", "1")))
		expectOutcome(t, dup, Committed)
		if !dup.Duplicate || string(dup.LeaderID) != c.leader {
			t.Fatalf("retry of %s: duplicate %v leader %q, want the committing leader %q (current %q)", c.id, dup.Duplicate, dup.LeaderID, c.leader, e3.LeaderID())
		}
	}
	fresh := submitWait(t, e3, commitOf(id(3), nil, write("d", "1")))
	dup := submitWait(t, e3, commitOf(id(3), nil, write("d", "2")))
	if fresh.LeaderID != nil || !dup.Duplicate || string(dup.LeaderID) != e3.LeaderID() {
		t.Fatalf("this term's commit %q and its duplicate %q, want nil and %q", fresh.LeaderID, dup.LeaderID, e3.LeaderID())
	}
}
