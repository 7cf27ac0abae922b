package tests

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/client"
)

// TestSubscribe covers /v1/subscribe on five known transactions: order and
// prev_version chaining, checkpoints, the key-range filter with a clipped
// range_delete, Last-Event-ID over after, the default start, durable=false
// and every 400.
func TestSubscribe(t *testing.T) {
	s := startServer(t, spec{conf: conf{"subscribe": {`checkpoint_interval = "50ms"`}}})
	bodies := []string{
		writeBody("", "a", "1"), // v1
		writeBody("", "m", "2"), // v2
		fmt.Sprintf(`{"operations":[{"type":"range_delete","begin":%q,"end":%q}]}`, b64("a"), b64("z")), // v3
		writeBody("", "z", "4"), // v4
		fmt.Sprintf(`{"operations":[{"type":"delete","key":%q},{"type":"write","key":%q,"value":%q}]}`, b64("m"), b64("zz"), b64("5")), // v5
	}
	ids := make([]string, len(bodies))
	for i, b := range bodies {
		status, o := s.commitRaw(b)
		if v := wantCommitted(t, "commit", status, o); v != uint64(i+1) {
			t.Fatalf("commit %d got version %d", i, v)
		}
		ids[i] = o.str("request_id")
	}

	t.Run("all from after=0", func(t *testing.T) {
		st, status, o := s.subscribeRaw("after=0")
		if st == nil {
			t.Fatalf("subscribe: %d %v", status, o)
		}
		for v := uint64(1); v <= 5; v++ {
			tx := st.nextTx()
			if tx.Version != v || tx.PrevVersion != v-1 || tx.RequestID != ids[v-1] || tx.LeaderID == "" || tx.Timestamp == "" {
				t.Fatalf("event %d: %+v", v, tx)
			}
			if v == 1 && (len(tx.Operations) != 1 || tx.Operations[0].Type != "write" ||
				unb64(t, tx.Operations[0].Key) != "a" || unb64(t, tx.Operations[0].Value) != "1") {
				t.Errorf("v1 operations %+v", tx.Operations)
			}
		}
		// Idle: a checkpoint saying everything up to 5 is durable and sent.
		eventuallyCheckpoint(t, st, 5)
		// A new commit arrives live, chained to 5.
		status, o = s.commitRaw(writeBody("", "live", "6"))
		wantCommitted(t, "live commit", status, o)
		if tx := st.nextTx(); tx.Version != 6 || tx.PrevVersion != 5 {
			t.Errorf("live event %+v, want version 6 prev 5", tx)
		}
	})

	t.Run("key range", func(t *testing.T) {
		q := "after=0&begin=" + url.QueryEscape(b64("b")) + "&end=" + url.QueryEscape(b64("n"))
		st, status, o := s.subscribeRaw(q)
		if st == nil {
			t.Fatalf("subscribe %s: %d %v", q, status, o)
		}
		// v1 (a) and v4 (z) touch nothing in [b, n).
		tx := st.nextTx()
		if tx.Version != 2 || tx.PrevVersion != 0 || len(tx.Operations) != 1 || unb64(t, tx.Operations[0].Key) != "m" {
			t.Errorf("first filtered event %+v, want v2 write m with prev 0", tx)
		}
		tx = st.nextTx()
		if tx.Version != 3 || tx.PrevVersion != 2 || len(tx.Operations) != 1 || tx.Operations[0].Type != "range_delete" ||
			unb64(t, tx.Operations[0].Begin) != "b" || unb64(t, tx.Operations[0].End) != "n" {
			t.Errorf("range_delete [a,z) clipped to [b,n): got %+v", tx)
		}
		tx = st.nextTx()
		if tx.Version != 5 || tx.PrevVersion != 3 || len(tx.Operations) != 1 || tx.Operations[0].Type != "delete" || unb64(t, tx.Operations[0].Key) != "m" {
			t.Errorf("v5 filtered to its delete of m: got %+v", tx)
		}
		// Checkpoints still come although v4 and v6 were skipped.
		eventuallyCheckpoint(t, st, 6)

		// Only begin: [y, end of key space).
		st2, status, o := s.subscribeRaw("after=0&begin=" + url.QueryEscape(b64("y")))
		if st2 == nil {
			t.Fatalf("subscribe begin only: %d %v", status, o)
		}
		tx = st2.nextTx()
		if tx.Version != 3 || unb64(t, tx.Operations[0].Begin) != "y" || unb64(t, tx.Operations[0].End) != "z" {
			t.Errorf("range_delete [a,z) clipped to [y,∞): got %+v", tx)
		}
		if tx = st2.nextTx(); tx.Version != 4 || tx.PrevVersion != 3 {
			t.Errorf("begin only: got %+v, want v4", tx)
		}
		if tx = st2.nextTx(); tx.Version != 5 || len(tx.Operations) != 1 || unb64(t, tx.Operations[0].Key) != "zz" {
			t.Errorf("begin only: got %+v, want v5 with only the write of zz", tx)
		}
	})

	t.Run("Last-Event-ID over after", func(t *testing.T) {
		st, status, o := s.subscribeRaw("after=0", "Last-Event-ID", "3")
		if st == nil {
			t.Fatalf("subscribe: %d %v", status, o)
		}
		if tx := st.nextTx(); tx.Version != 4 || tx.PrevVersion != 3 {
			t.Errorf("Last-Event-ID 3 with after=0: first event %+v, want version 4 prev 3", tx)
		}
	})

	t.Run("default start is the latest version", func(t *testing.T) {
		latest := s.version()
		st, status, o := s.subscribeRaw("")
		if st == nil {
			t.Fatalf("subscribe: %d %v", status, o)
		}
		status, o = s.commitRaw(writeBody("", "next", "x"))
		v := wantCommitted(t, "commit", status, o)
		if tx := st.nextTx(); tx.Version != v || tx.PrevVersion != latest {
			t.Errorf("first event %+v, want version %d prev %d", tx, v, latest)
		}
	})

	t.Run("durable=false", func(t *testing.T) {
		st, status, o := s.subscribeRaw("after=0&durable=false")
		if st == nil {
			t.Fatalf("subscribe: %d %v", status, o)
		}
		for v := uint64(1); v <= 5; v++ {
			if tx := st.nextTx(); tx.Version != v || tx.PrevVersion != v-1 {
				t.Fatalf("durable=false event %+v, want version %d", tx, v)
			}
		}
		eventuallyCheckpoint(t, st, 5)
	})

	t.Run("errors", func(t *testing.T) {
		latest := s.version()
		for _, c := range []struct {
			query  string
			header []string
		}{
			{"after=" + itoa(latest+1000), nil},
			{"after=0", []string{"Last-Event-ID", itoa(latest + 1000)}},
		} {
			st, status, o := s.subscribeRaw(c.query, c.header...)
			if st != nil {
				t.Fatalf("subscribe %s %v in the future: stream opened", c.query, c.header)
			}
			wantError(t, "future position", status, o, 400, "bad_request")
			if o.str("reason") != "future_version" {
				t.Errorf("future position: reason %q, want future_version", o.str("reason"))
			}
		}
		for _, q := range []string{"after=x", "after=-1", "durable=maybe", "begin=!!", "begin=" + url.QueryEscape(b64("b")) + "&end=" + url.QueryEscape(b64("a")),
			"begin=" + url.QueryEscape(b64("b")) + "&end=" + url.QueryEscape(b64("b"))} {
			st, status, o := s.subscribeRaw(q)
			if st != nil {
				t.Fatalf("subscribe %s: stream opened", q)
			}
			wantError(t, "subscribe "+q, status, o, 400, "bad_request")
		}
		_, status, o := s.subscribeRaw("after=0", "Last-Event-ID", "x")
		wantError(t, "Last-Event-ID x", status, o, 400, "bad_request")
	})
}

// eventuallyCheckpoint reads until a checkpoint with committed_version >= v.
func eventuallyCheckpoint(t *testing.T, st *sseStream, v uint64) {
	t.Helper()
	for {
		cp := st.nextCheckpoint()
		if cp.LeaderID == "" {
			t.Fatalf("checkpoint without leader_id: %+v", cp)
		}
		if cp.CommittedVersion >= v {
			return
		}
	}
}

// collect reads transactions from a client subscription until version
// target, checking that each version comes exactly once, in order, chained.
// It returns request ids by version.
func collect(t *testing.T, sub *client.Subscription, after, target uint64) map[uint64]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(map[uint64]string)
	next := after + 1
	for next <= target {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("subscription at %d (target %d): %v", next, target, err)
		}
		if ev.Kind != client.EventTransaction {
			continue
		}
		tx := ev.Transaction
		if tx.Version != next || tx.PrevVersion != next-1 {
			t.Fatalf("got version %d prev %d, want version %d prev %d", tx.Version, tx.PrevVersion, next, next-1)
		}
		got[tx.Version] = tx.RequestID
		next++
	}
	return got
}

// TestSubscribeTailSwitch: a subscriber starting at after=0 after more than
// the in-memory tail holds (tail_bytes is at its 1 MiB minimum; 2.5 MiB are
// committed) reads the log first, then switches to the tail while commits
// keep coming, and sees every version exactly once.
func TestSubscribeTailSwitch(t *testing.T) {
	s := startServer(t, spec{conf: conf{"subscribe": {"tail_bytes = 1048576"}}})
	big := strings.Repeat("x", 100<<10)
	ctx := context.Background()
	commitBig := func(i int) {
		t.Helper()
		if _, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("big", i)), []byte(big))); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	const before, during = 25, 15
	for i := range before {
		commitBig(i)
	}
	zero := uint64(0)
	sub := s.C.Subscribe(ctx, client.SubscribeOptions{After: &zero})
	defer sub.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range during {
			if _, err := s.C.Commit(ctx, client.NewTxn().Write([]byte(fmt.Sprint("during", i)), []byte(big[:20<<10]))); err != nil {
				t.Errorf("commit during: %v", err)
				return
			}
		}
	}()
	got := collect(t, sub, 0, before+during)
	wg.Wait()
	if len(got) != before+during {
		t.Fatalf("got %d transactions, want %d", len(got), before+during)
	}
	// The same through the raw stream, whose framing we check ourselves.
	st, status, o := s.subscribeRaw("after=0")
	if st == nil {
		t.Fatalf("subscribe: %d %v", status, o)
	}
	for v := uint64(1); v <= before+during; v++ {
		if tx := st.nextTx(); tx.Version != v || tx.PrevVersion != v-1 {
			t.Fatalf("raw stream: %+v, want version %d", tx, v)
		}
	}
}
