package client_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/weaseldb/weaseldb/client"
)

// Several goroutines, each with its own client and mirror (as separate
// processes would have), increment one counter with Mirror.Update against
// the real server. Every increment must survive: the final value is the
// number of increments, and the log holds exactly that many writes of the
// counter, each reading the previous value.
func TestMirrorUpdateNoLostUpdateUnderContention(t *testing.T) {
	s := realServer(t)
	ctx := ctxT(t)
	workers, each := 8, 25
	if testing.Short() {
		workers, each = 4, 10
	}
	key := []byte("counter")
	var runs atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(s.URL)
			m := c.NewMirror([]byte("counter"), []byte("counter\x00"))
			defer m.Close()
			for i := 0; i < each; i++ {
				_, err := m.Update(ctx, func(stm *client.STM) error {
					runs.Add(1)
					n := 0
					if v := stm.Get(key); v != nil {
						var err error
						if n, err = strconv.Atoi(string(v)); err != nil {
							return err
						}
					}
					stm.Put(key, []byte(strconv.Itoa(n+1)))
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Update: %v", err)
	}
	total := workers * each
	t.Logf("%d increments took %d runs of fn (%d conflict retries)", total, runs.Load(), runs.Load()-int64(total))

	c := client.New(s.URL)
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := c.NewMirror(nil, nil)
	defer m.Close()
	if err := m.WaitFor(ctx, v.Version); err != nil {
		t.Fatal(err)
	}
	got, _ := m.Get(key)
	if string(got) != strconv.Itoa(total) {
		t.Fatalf("counter = %q after %d increments: updates were lost", got, total)
	}
	// The log: exactly total writes of the counter, the i-th writing i.
	zero := uint64(0)
	sub := c.Subscribe(ctx, client.SubscribeOptions{After: &zero})
	defer sub.Close()
	for i := 1; i <= total; {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind != client.EventTransaction {
			continue
		}
		for _, op := range ev.Transaction.Operations {
			if string(op.Key) == "counter" {
				if string(op.Value) != strconv.Itoa(i) {
					t.Fatalf("write %d of the counter at version %d is %q", i, ev.Transaction.Version, op.Value)
				}
				i++
			}
		}
	}
}

// An error from fn, or a read outside the mirrored range, stops Update
// without committing.
func TestMirrorUpdateErrors(t *testing.T) {
	s := realServer(t)
	ctx := ctxT(t)
	c := client.New(s.URL)
	m := c.NewMirror([]byte("a"), []byte("b"))
	defer m.Close()
	if _, err := m.Update(ctx, func(stm *client.STM) error {
		stm.Put([]byte("a1"), []byte("x"))
		return context.Canceled
	}); err != context.Canceled {
		t.Fatalf("fn's error: %v", err)
	}
	if _, err := m.Update(ctx, func(stm *client.STM) error {
		stm.Get([]byte("zzz"))
		return nil
	}); err == nil {
		t.Fatalf("a read outside the range committed")
	}
	if v, err := c.Version(ctx); err != nil || v.Version != 0 {
		t.Fatalf("version %d, %v: want nothing committed", v.Version, err)
	}
}
