package engine

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// follower builds the bank's state from the committed stream the way a
// client would: from the engine's Tail, falling back to the log when
// behind. It checks the stream has no gap and no duplicate.
type follower struct {
	mu       sync.Mutex
	applied  tx.Version
	balances map[string]int
	changed  *sync.Cond
	err      error
}

func (f *follower) run(ctx context.Context, e *Engine, log persist.Log) {
	var after tx.Version
	var segs [][]byte
	for ctx.Err() == nil {
		var wait <-chan struct{}
		var err error
		segs, wait, err = e.Tail().Read(after, true, segs[:0])
		if errors.Is(err, ErrBehindTail) {
			segs, err = log.ReadFrom(ctx, after, 1<<20)
		}
		if err != nil {
			f.fail(err)
			return
		}
		for _, seg := range segs {
			_, txns, err := persist.DecodeSegment(seg, nil)
			if err != nil {
				f.fail(err)
				return
			}
			for _, t := range txns {
				if t.Version <= after {
					continue
				}
				if t.Version != after+1 {
					f.fail(errors.New("gap in stream at " + strconv.FormatUint(uint64(after), 10)))
					return
				}
				f.apply(t)
				after = t.Version
			}
		}
		if len(segs) == 0 && wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
			}
		}
	}
}

func (f *follower) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.changed.Broadcast()
	f.mu.Unlock()
}

func (f *follower) apply(t tx.Transaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range t.Operations {
		n, _ := strconv.Atoi(string(op.Value))
		f.balances[string(op.Key)] = n
	}
	f.applied = t.Version
	f.changed.Broadcast()
}

// snapshot returns two balances as of the follower's applied version.
func (f *follower) snapshot(a, b string) (tx.Version, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.balances[a], f.balances[b]
}

type committedTransfer struct {
	version     tx.Version
	readVersion tx.Version
	keys        [2]string
}

// TestSerializability: concurrent clients move money between accounts with
// read-modify-write transactions guarded by preconditions. Replaying the
// committed log must keep the total constant and no balance negative, and
// every committed transaction's preconditions must hold against the log.
func TestSerializability(t *testing.T) {
	const accounts, initial = 8, 1000
	clients, transfers := 6, 300
	if testing.Short() {
		transfers = 100
	}
	store := memlog.NewStore()
	cfg := testConfig(newTestClock())
	cfg.MaxInFlight = 3
	e, log := openTest(t, store, cfg)
	name := func(i int) string { return "acct/" + strconv.Itoa(i) }

	var ops []tx.Operation
	for i := range accounts {
		ops = append(ops, write(name(i), strconv.Itoa(initial)))
	}
	expectOutcome(t, submitWait(t, e, commitOf("", nil, ops...)), Committed)

	f := &follower{balances: map[string]int{}}
	f.changed = sync.NewCond(&f.mu)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followerDone := make(chan struct{})
	go func() { defer close(followerDone); f.run(ctx, e, log) }()

	var mu sync.Mutex
	var committed []committedTransfer
	conflicts := 0
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			req := &Request{}
			for done := 0; done < transfers; {
				a, b := rng.IntN(accounts), rng.IntN(accounts-1)
				if b >= a {
					b++
				}
				v, balA, balB := f.snapshot(name(a), name(b))
				amount := 0
				if balA > 0 {
					amount = rng.IntN(balA + 1)
				}
				req.Commit.Reset()
				req.Commit.RequestID = append(req.Commit.RequestID, "transfer-"+strconv.Itoa(c)+"-"+strconv.Itoa(done)+"-padding"...)
				req.Commit.ReadVersion, req.Commit.HasReadVersion = v, true
				req.Commit.Preconditions = append(req.Commit.Preconditions,
					tx.Precondition{Type: tx.PointRead, Key: []byte(name(a))},
					tx.Precondition{Type: tx.PointRead, Key: []byte(name(b))})
				req.Commit.Operations = append(req.Commit.Operations,
					write(name(a), strconv.Itoa(balA-amount)), write(name(b), strconv.Itoa(balB+amount)))
				r := submitWait(t, e, req)
				switch r.Outcome {
				case Committed:
					mu.Lock()
					committed = append(committed, committedTransfer{r.Version, v, [2]string{name(a), name(b)}})
					mu.Unlock()
					done++
				case Conflict:
					mu.Lock()
					conflicts++
					mu.Unlock()
					// Wait until the follower saw the answer's version, then retry.
					f.mu.Lock()
					for f.applied < r.Version && f.err == nil {
						f.changed.Wait()
					}
					f.mu.Unlock()
				default:
					t.Errorf("transfer: outcome %v (%s)", r.Outcome, r.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	<-followerDone
	if f.err != nil && !errors.Is(f.err, context.Canceled) {
		t.Fatalf("follower: %v", f.err)
	}
	t.Logf("%d transfers committed, %d conflicts", len(committed), conflicts)

	// Replay the log.
	txns := readLog(t, log, 0)
	balances := map[string]int{}
	lastWrite := map[string][]tx.Version{} // versions that wrote each key
	for _, txn := range txns {
		for _, op := range txn.Operations {
			n, err := strconv.Atoi(string(op.Value))
			if err != nil || n < 0 {
				t.Fatalf("version %d: balance %q", txn.Version, op.Value)
			}
			balances[string(op.Key)] = n
			lastWrite[string(op.Key)] = append(lastWrite[string(op.Key)], txn.Version)
		}
		total := 0
		for _, n := range balances {
			total += n
		}
		if total != accounts*initial {
			t.Fatalf("after version %d the total is %d, want %d", txn.Version, total, accounts*initial)
		}
	}
	if len(txns) != len(committed)+1 {
		t.Fatalf("log holds %d transactions, clients saw %d commits", len(txns), len(committed)+1)
	}
	for _, c := range committed {
		for _, k := range c.keys {
			for _, w := range lastWrite[k] {
				if w > c.readVersion && w < c.version {
					t.Fatalf("transfer at %d read %s at %d, but %d wrote it in between", c.version, k, c.readVersion, w)
				}
			}
		}
	}
}
