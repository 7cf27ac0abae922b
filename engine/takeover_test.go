package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/logtest"
	"github.com/weaseldb/weaseldb/persist/memlog"
)

// hookedLog runs a hook after Recover, to interleave another leader's
// writes between a newcomer's recovery and its claim.
type hookedLog struct {
	persist.Log
	afterRecover func()
}

func (h *hookedLog) Recover(ctx context.Context) (persist.Recovery, error) {
	rec, err := h.Log.Recover(ctx)
	if h.afterRecover != nil {
		h.afterRecover()
	}
	return rec, err
}

// TestLosingNewcomerDeletesNothing is issue 12 item 1 at the engine: a
// newcomer recovers while the live leader's segment at the gap is in
// flight (later ones landed), the segment lands, the newcomer's claim is
// fenced — and the segments after the gap, which the leader now
// acknowledges, must still be there. Before the fix Recover deleted them.
func TestLosingNewcomerDeletesNothing(t *testing.T) {
	store := memlog.NewStore()
	leader := store.Open()
	ctx := context.Background()
	if _, err := leader.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, seg := range [][]byte{logtest.Segment(0, 0, "a"), logtest.Segment(1, 5, "a"), logtest.Segment(8, 9, "a"), logtest.Segment(10, 12, "a")} {
		if err := leader.Append(ctx, seg); err != nil {
			t.Fatal(err)
		}
	}
	newcomer := &hookedLog{Log: store.Open(), afterRecover: func() {
		// The leader's 6-7 lands: it acknowledges 1..12 now.
		if err := leader.Append(ctx, logtest.Segment(6, 7, "a")); err != nil {
			t.Error(err)
		}
	}}
	_, err := Open(ctx, testConfig(newTestClock()), newcomer)
	if !errors.Is(err, persist.ErrFenced) {
		t.Fatalf("newcomer's Open: %v, want ErrFenced", err)
	}
	if got := store.Firsts(); len(got) != 5 {
		t.Fatalf("segments after the fenced newcomer: %v, want 0 1 6 8 10 (nothing deleted)", got)
	}
}
