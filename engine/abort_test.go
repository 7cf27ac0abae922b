package engine

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// TestAbortedCloseBurnsVersions: a Close whose context expired seals the
// gathered group without writing it; a request stage 1 resolves after
// that must not trip stage 2's version check (found by engine/sim: the
// persister kept its next version, and the next committed request
// panicked "stage 2 got version v+1, want v").
func TestAbortedCloseBurnsVersions(t *testing.T) {
	store := memlog.NewStore()
	cfg := testConfig(newTestClock())
	cfg.MaxInFlight = 1
	hold := make(chan struct{}) // held resolver batches wait on it
	var holding atomic.Bool
	held := make(chan struct{}, 1)
	cfg.BeforeResolveBatch = func() {
		if holding.Load() {
			held <- struct{}{}
			<-hold
		}
	}
	e, log := openTest(t, store, cfg)
	appending := make(chan struct{}, 16)
	log.SetAppendHook(func(ctx context.Context, first tx.Version) error {
		appending <- struct{}{}
		<-ctx.Done() // never durable before the abort
		return ctx.Err()
	})
	answers := make(chan *Request, 3)
	done := func(r *Request) { answers <- r }
	e.Submit(commitOf("", nil, write("a", "1")), done)
	waitSignal(t, appending)
	a := e.ResolvedVersion()          // A is being appended, so it is resolved
	time.Sleep(10 * time.Millisecond) // not needed for correctness: gives stage 2 time to gather B alone
	// B is resolved and gathered while A's write holds the only slot.
	e.Submit(commitOf("", nil, write("b", "1")), done)
	waitFor(t, func() bool { return e.ResolvedVersion() >= a+1 })
	// C waits in stage 1 until the abort sealed B's group.
	holding.Store(true)
	e.Submit(commitOf("", nil, write("c", "1")), done)
	waitSignal(t, held)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	closed := make(chan error, 1)
	go func() { closed <- e.Close(ctx) }()
	for range 2 { // A and B answered Unavailable by the aborted drain
		if r := waitAnswer(t, answers); r.Outcome != Unavailable {
			t.Fatalf("answer %v at %d, want unavailable", r.Outcome, r.Version)
		}
	}
	close(hold)
	if r := waitAnswer(t, answers); r.Outcome != Unavailable {
		t.Fatalf("C: %v at %d, want unavailable", r.Outcome, r.Version)
	}
	if err := <-closed; err == nil {
		t.Fatal("Close with an expired context returned nil")
	}
}

func waitSignal(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for the pipeline")
	}
}

func waitAnswer(t *testing.T, ch <-chan *Request) *Request {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for an answer")
		return nil
	}
}
