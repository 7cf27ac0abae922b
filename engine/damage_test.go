package engine

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// A log that reports damage (persist.ErrDamaged: its files were deleted or
// cut behind the server's back) is not retried: what is in flight is
// answered Unavailable at once, and so is everything after.
func TestDamagedLogIsNotRetried(t *testing.T) {
	e, log := openTest(t, memlog.NewStore(), testConfig(newTestClock()))
	var appends atomic.Int32
	log.SetAppendHook(func(ctx context.Context, first tx.Version) error {
		appends.Add(1)
		return fmt.Errorf("%w: injected: log file deleted", persist.ErrDamaged)
	})
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("a", "1"))), Unavailable)
	expectOutcome(t, submitWait(t, e, commitOf("", nil, write("b", "1"))), Unavailable)
	if n := appends.Load(); n != 1 {
		t.Fatalf("%d appends of a damaged log, want 1 (no retry, no new writes)", n)
	}
	if e.Version() != 0 {
		t.Fatalf("version %d after the damage", e.Version())
	}
}
