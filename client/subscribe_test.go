package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func commitN(t *testing.T, c *Client, n int, key string) {
	t.Helper()
	for i := range n {
		if _, err := c.Commit(context.Background(), NewTxn().Write([]byte(fmt.Sprintf("%s%d", key, i)), []byte("v"))); err != nil {
			t.Fatal(err)
		}
	}
}

// nextTxn returns the next transaction, skipping checkpoints.
func nextTxn(t *testing.T, s *Subscription) Transaction {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if ev.Kind == EventTransaction {
			return ev.Transaction
		}
	}
}

func TestSubscribeFromAfter(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	commitN(t, c, 3, "k")
	after := uint64(1)
	s := c.Subscribe(context.Background(), SubscribeOptions{After: &after})
	defer s.Close()
	for want := uint64(2); want <= 3; want++ {
		tx := nextTxn(t, s)
		if tx.Version != want || tx.PrevVersion != want-1 || len(tx.Operations) != 1 || tx.LeaderID != "leader-1" {
			t.Fatalf("txn %+v; want version %d", tx, want)
		}
		if op := tx.Operations[0]; op.Type != OpWrite || string(op.Key) != fmt.Sprintf("k%d", want-1) || string(op.Value) != "v" {
			t.Fatalf("op %+v; want write k%d=v (decoded)", op, want-1)
		}
		if tx.Timestamp.IsZero() || len(tx.RequestID) != 32 {
			t.Fatalf("txn %+v: timestamp or request id missing", tx)
		}
	}
	// Live: a commit after subscribing arrives, then a checkpoint.
	if _, err := c.Commit(context.Background(), NewTxn().RangeDelete([]byte("a"), []byte("z"))); err != nil {
		t.Fatal(err)
	}
	tx := nextTxn(t, s)
	if tx.Version != 4 || tx.Operations[0].Type != OpRangeDelete || string(tx.Operations[0].Key) != "a" || string(tx.Operations[0].End) != "z" {
		t.Fatalf("live txn %+v; want range_delete [a, z) at 4", tx)
	}
	ev, err := s.Next(context.Background())
	if err != nil || ev.Kind != EventCheckpoint || ev.Checkpoint.CommittedVersion != 4 {
		t.Fatalf("Next = %+v, %v; want checkpoint 4", ev, err)
	}
}

// TestSubscribePinsStart: with After nil the subscription pins its start
// with /v1/version on the first Next, so a commit made while it is
// disconnected is still delivered after the reconnect.
func TestSubscribePinsStart(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	commitN(t, c, 2, "old")
	s := c.Subscribe(context.Background(), SubscribeOptions{})
	defer s.Close()
	for try := 0; try < 200; try++ { // until the first connection pinned the start
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := s.Next(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next on an idle log = %v; want the deadline", err)
		}
		if _, ok := s.Position(); ok {
			break
		}
	}
	if pos, ok := s.Position(); !ok || pos != 2 {
		t.Fatalf("Position = %d, %v; want pinned at 2", pos, ok)
	}
	commitN(t, c, 1, "new") // while disconnected
	tx := nextTxn(t, s)
	if tx.Version != 3 || tx.PrevVersion != 2 {
		t.Fatalf("first txn %+v; want version 3 after 2", tx)
	}
}

// TestSubscribeReconnects: the server closes every stream after two
// events, sometimes mid-event, and writes in 3-byte pieces; the client must
// reconnect with Last-Event-ID and deliver every version exactly once.
func TestSubscribeReconnects(t *testing.T) {
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			f := newFakeServer(t)
			c := testClient(f)
			commitN(t, c, 9, "k")
			f.set(func(f *fakeServer) {
				f.streamDropAfter, f.streamPartialDrop, f.splitWrites, f.retryMS = 2, partial, true, 1
			})
			after := uint64(0)
			s := c.Subscribe(context.Background(), SubscribeOptions{After: &after})
			defer s.Close()
			for want := uint64(1); want <= 9; want++ {
				if tx := nextTxn(t, s); tx.Version != want {
					t.Fatalf("got version %d; want %d (exactly once, in order)", tx.Version, want)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.subscribeCalls < 5 {
				t.Fatalf("%d connections; want ≥ 5 (a drop every 2 events)", f.subscribeCalls)
			}
			if got := f.lastEventIDs[1]; got != "2" {
				t.Fatalf("second connection Last-Event-ID %q; want 2", got)
			}
		})
	}
}

func TestSubscribeGap(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	commitN(t, c, 4, "k")
	f.set(func(f *fakeServer) { f.gapAt = 3 })
	after := uint64(0)
	s := c.Subscribe(context.Background(), SubscribeOptions{After: &after})
	defer s.Close()
	nextTxn(t, s)
	nextTxn(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := s.Next(ctx)
	var gap *GapError
	if !errors.As(err, &gap) || !errors.Is(err, ErrGap) || gap.Expected != 2 || gap.Got != 3 || gap.Version != 4 {
		t.Fatalf("err = %v; want GapError expected 2 got 3 at 4", err)
	}
	if _, err2 := s.Next(ctx); !errors.Is(err2, ErrGap) {
		t.Fatalf("after a gap Next = %v; want the sticky gap error", err2)
	}
}

func TestSubscribePermanentErrors(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	commitN(t, c, 2, "k")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	future := uint64(50)
	_, err := c.Subscribe(ctx, SubscribeOptions{After: &future}).Next(ctx)
	if !errors.Is(err, ErrFutureVersion) {
		t.Fatalf("after=50 on a log at 2: %v; want ErrFutureVersion", err)
	}
	f.set(func(f *fakeServer) { f.oldest = 2 })
	old := uint64(1)
	_, err = c.Subscribe(ctx, SubscribeOptions{After: &old}).Next(ctx)
	if !errors.Is(err, ErrGone) {
		t.Fatalf("after below oldest retained: %v; want ErrGone", err)
	}
}

func TestSubscribeKeyRange(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	for _, k := range []string{"a", "m", "b", "z"} {
		commitN(t, c, 1, k)
	}
	after := uint64(0)
	s := c.Subscribe(context.Background(), SubscribeOptions{After: &after, Begin: []byte("a"), End: []byte("c")})
	defer s.Close()
	t1, t2 := nextTxn(t, s), nextTxn(t, s)
	if t1.Version != 1 || t2.Version != 3 || t2.PrevVersion != 1 {
		t.Fatalf("got %d (prev %d), %d (prev %d); want 1, then 3 after 1", t1.Version, t1.PrevVersion, t2.Version, t2.PrevVersion)
	}
}

func TestSubscribeNextContextCancel(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	commitN(t, c, 1, "k")
	after := uint64(1)
	s := c.Subscribe(context.Background(), SubscribeOptions{After: &after})
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	for {
		_, err := s.Next(ctx)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v; want context.Canceled", err)
		}
	}
	// The subscription goes on with a live context.
	commitN(t, c, 1, "later")
	if tx := nextTxn(t, s); tx.Version != 2 || tx.PrevVersion != 1 {
		t.Fatalf("after cancel: %+v; want version 2", tx)
	}
}

func TestSubscribeNonDurableReset(t *testing.T) {
	f := newFakeServer(t)
	c := testClient(f)
	commitN(t, c, 3, "k")
	after := uint64(0)
	s := c.Subscribe(context.Background(), SubscribeOptions{After: &after, NonDurable: true})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var kinds []EventKind
	for len(kinds) < 4 { // 3 transactions and a checkpoint
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, ev.Kind)
	}
	if pos, _ := s.Position(); pos != 3 {
		t.Fatalf("position after checkpoint 3 = %d", pos)
	}
	// Drop the stream after one more transaction: it was delivered past the
	// checkpoint, so the reconnect must announce a reset to 3 first.
	f.set(func(f *fakeServer) { f.streamDropAfter = 1 })
	s.conn.close() // force a reconnect now, with streamDropAfter in effect
	s.conn = nil
	commitN(t, c, 2, "more")
	if tx := nextTxn(t, s); tx.Version != 4 {
		t.Fatalf("got %d; want 4", tx.Version)
	}
	ev, err := s.Next(ctx)
	if err != nil || ev.Kind != EventReset || ev.Reset != 3 {
		t.Fatalf("Next = %+v, %v; want reset to 3", ev, err)
	}
	f.set(func(f *fakeServer) { f.streamDropAfter = 0 })
	if tx := nextTxn(t, s); tx.Version != 4 || tx.PrevVersion != 3 {
		t.Fatalf("after reset got %+v; want 4 again after 3", tx)
	}
}
