package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// testClock is a Clock the test moves by hand.
type testClock struct{ now atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.now.Store(time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *testClock) Now() int64              { return c.now.Load() }
func (c *testClock) Advance(d time.Duration) { c.now.Add(int64(d)) }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testConfig(clock *testClock) Config {
	return Config{Clock: clock.Now, Logger: quietLogger(), RetryBackoffMin: time.Millisecond, RetryBackoffMax: 5 * time.Millisecond}
}

func openTest(t testing.TB, store *memlog.Store, cfg Config) (*Engine, *memlog.Log) {
	t.Helper()
	log := store.Open()
	e, err := Open(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Close(ctx) // second Close is harmless; tests check the first
	})
	return e, log
}

// submitWait submits r and waits for its answer.
func submitWait(t testing.TB, e *Engine, r *Request) *Request {
	t.Helper()
	ch := make(chan *Request, 1)
	e.Submit(r, func(r *Request) { ch <- r })
	select {
	case got := <-ch:
		return got
	case <-time.After(30 * time.Second):
		t.Fatalf("no answer for request %q", r.Commit.RequestID)
		return nil
	}
}

func pointRead(key string, v tx.Version) tx.Precondition {
	return tx.Precondition{Type: tx.PointRead, Key: []byte(key), Version: v, HasVersion: true}
}

func write(key, value string) tx.Operation {
	return tx.Operation{Type: tx.OpWrite, Key: []byte(key), Value: []byte(value)}
}

func commitOf(id string, pre []tx.Precondition, ops ...tx.Operation) *Request {
	r := &Request{}
	if id != "" {
		r.Commit.RequestID = []byte(id)
	}
	r.Commit.Preconditions = pre
	r.Commit.Operations = ops
	return r
}

func expectOutcome(t testing.TB, r *Request, want Outcome) {
	t.Helper()
	if r.Outcome != want {
		t.Fatalf("request %q: outcome %v (err %q, conflicts %v, version %d), want %v",
			r.RequestID, r.Outcome, r.Err, r.Conflicts, r.Version, want)
	}
}

// readLog returns every transaction in the log after `after`, decoded and
// copied.
func readLog(t testing.TB, log persist.Log, after tx.Version) []tx.Transaction {
	t.Helper()
	var out []tx.Transaction
	for {
		segs, err := log.ReadFrom(context.Background(), after, 1<<20)
		if err != nil {
			t.Fatalf("ReadFrom(%d): %v", after, err)
		}
		if len(segs) == 0 {
			return out
		}
		progressed := false
		for _, seg := range segs {
			h, txns, err := persist.DecodeSegment(seg, nil)
			if err != nil {
				t.Fatalf("DecodeSegment: %v", err)
			}
			for _, txn := range txns {
				if txn.Version > after {
					out = append(out, cloneTxn(txn))
				}
			}
			if h.Last > after {
				after = h.Last
				progressed = true
			}
		}
		if !progressed {
			return out
		}
	}
}

func cloneTxn(t tx.Transaction) tx.Transaction {
	c := tx.Transaction{Version: t.Version, RequestID: append([]byte(nil), t.RequestID...), TimestampUnixNano: t.TimestampUnixNano}
	for _, op := range t.Operations {
		c.Operations = append(c.Operations, tx.Operation{Type: op.Type,
			Key: append([]byte(nil), op.Key...), End: append([]byte(nil), op.End...), Value: append([]byte(nil), op.Value...)})
	}
	return c
}

func id(i int) string { return fmt.Sprintf("request-%016d", i) }
