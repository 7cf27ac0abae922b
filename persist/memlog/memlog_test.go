package memlog

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/tx"
)

func TestConformance(t *testing.T) {
	logtest.Run(t, func(t *testing.T) logtest.Storage {
		store := NewStore()
		return logtest.Storage{
			Open: func(t *testing.T) persist.Log { return store.Open() },
			Damage: func(t *testing.T, first tx.Version, damage func([]byte) []byte) {
				old, ok := store.Segment(first)
				if !ok {
					t.Fatalf("memlog: no segment %d to damage", first)
				}
				store.SetSegment(first, damage(old))
			},
		}
	})
}

// A crash loses the segments whose Append had not returned; recovery then
// sees a gap and discards what followed.
func TestCrashCloneKeepsOnlyCompletedAppends(t *testing.T) {
	ctx := context.Background()
	store := NewStore()
	l := store.Open()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seg := range [][]byte{logtest.Segment(0, 0, "c"), logtest.Segment(1, 5, "c")} {
		if err := l.Append(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	l.SetAppendHook(func(ctx context.Context, first tx.Version) error {
		if first == 6 {
			close(entered)
			<-release
		}
		return nil
	})
	var wg sync.WaitGroup
	var slowErr error
	wg.Go(func() { slowErr = l.Append(ctx, logtest.Segment(6, 7, "c")) })
	<-entered
	if err := l.Append(ctx, logtest.Segment(8, 9, "c")); err != nil {
		t.Fatal(err)
	}
	crashed := store.CrashClone()
	close(release)
	wg.Wait()
	if slowErr != nil {
		t.Fatal(slowErr)
	}

	after := crashed.Open()
	rec, err := after.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Last() != 5 || len(rec.Discarded) != 1 || rec.Discarded[0].First != 8 {
		t.Fatalf("after crash: recovered to %d, discarded %+v; want 5 and segment 8", rec.Last(), rec.Discarded)
	}
	// The original store, which did not crash, has everything.
	rec, err = store.Open().Recover(ctx)
	if err != nil || rec.Last() != 9 {
		t.Fatalf("uncrashed store: last %d, %v; want 9", rec.Last(), err)
	}
}

func TestAppendHookError(t *testing.T) {
	ctx := context.Background()
	store := NewStore()
	l := store.Open()
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	errFull := errors.New("disk full")
	l.SetAppendHook(func(context.Context, tx.Version) error { return errFull })
	if err := l.Append(ctx, logtest.Segment(0, 0, "e")); !errors.Is(err, errFull) {
		t.Fatalf("Append with failing hook: %v, want errFull", err)
	}
	l.SetAppendHook(nil)
	// The failed write claimed nothing: the same name can be written.
	if err := l.Append(ctx, logtest.Segment(0, 0, "e")); err != nil {
		t.Fatalf("Append after the fault cleared: %v", err)
	}
	if firsts := store.Firsts(); len(firsts) != 1 {
		t.Fatalf("store holds %v, want [0]", firsts)
	}
}

func TestClosedAndUnrecovered(t *testing.T) {
	ctx := context.Background()
	l := NewStore().Open()
	if err := l.Append(ctx, logtest.Segment(0, 0, "u")); err == nil {
		t.Fatal("Append before Recover succeeded")
	}
	if _, err := l.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Append(ctx, logtest.Segment(0, 0, "u")); err == nil {
		t.Fatal("Append after Close succeeded")
	}
}

// TestRecoverSkipsAppendsInFlight: a segment whose Append is in flight is
// not listed by another Log's Recover (an S3 PUT is invisible until it
// completes), and its name stays taken: the other Log's claim of it is
// fenced. When the Append then fails and is withdrawn, a new recovery
// claims the name. Before the fix Recover listed the in-flight segment, a
// new leader claimed after it, and the withdrawal left a hole under every
// segment the new leader acknowledged (found by engine/sim).
func TestRecoverSkipsAppendsInFlight(t *testing.T) {
	ctx := context.Background()
	store := NewStore()
	old := store.Open()
	if _, err := old.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seg := range [][]byte{logtest.Segment(0, 0, "old"), logtest.Segment(1, 4, "old")} {
		if err := old.Append(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	entered, release := make(chan struct{}), make(chan struct{})
	old.SetAppendHook(func(ctx context.Context, first tx.Version) error {
		close(entered)
		<-release
		return errors.New("injected: write failed")
	})
	slow := make(chan error, 1)
	go func() { slow <- old.Append(ctx, logtest.Segment(5, 5, "old")) }()
	<-entered

	next := store.Open()
	rec, err := next.Recover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Last() != 4 {
		t.Fatalf("recovery with segment 5 in flight ends at %d, want 4", rec.Last())
	}
	if err := next.Append(ctx, logtest.Segment(5, 5, "new")); !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("claim of a name in flight: %v, want ErrFenced", err)
	}
	close(release)
	if err := <-slow; err == nil {
		t.Fatal("the slow Append succeeded despite its hook's error")
	}
	again := store.Open()
	if rec, err = again.Recover(ctx); err != nil || rec.Last() != 4 {
		t.Fatalf("recovery after the withdrawal: last %d, %v; want 4", rec.Last(), err)
	}
	if err := again.Append(ctx, logtest.Segment(5, 5, "new")); err != nil {
		t.Fatalf("claim after the withdrawal: %v", err)
	}
}
