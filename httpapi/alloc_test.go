package httpapi

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/engine"
)

// segmentAllocsMax is what one persisted segment may allocate outside the
// HTTP path: today 5 (the engine's tail clones the sealed segment and makes
// a new wait channel on publish and on durable; persist/memlog copies the
// segment into its store twice). A commit's own path — netpoll parsing and
// routing, the streamed jsonstream decode, resolve, the answer encoding and
// write — must allocate nothing beyond it.
const segmentAllocsMax = 5

// commitPathAllocsMax bounds the average allocations per commit left after
// the per-segment allowance: background work (GC, timers, the runtime's own
// bookkeeping) only, never one per request.
const commitPathAllocsMax = 0.25

// TestCommitAllocsSteadyState drives commits through the whole server (a
// real netpoll server, local connections, an engine on persist/memlog) and
// counts every allocation of the process with runtime.MemStats: the
// request passes through several goroutines, which testing.AllocsPerRun
// does not isolate any better. The clients allocate nothing themselves
// (pre-encoded requests, one read buffer each).
//
// One connection puts each commit in a segment of its own, so it checks
// the worst case; many connections let segments batch commits, as in
// production, and the per-commit figure drops below one.
func TestCommitAllocsSteadyState(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, conns := range []int{1, 16} {
		t.Run(fmt.Sprint("conns=", conns), func(t *testing.T) {
			ts := startTestServer(t, config.Default())
			const warm, measured = 1000, 2000 // per connection
			clients := make([]*allocClient, conns)
			for c := range clients {
				clients[c] = &allocClient{rc: ts.dial(t)}
				for i := range warm + measured {
					// A handful of keys: the conflict set reaches its steady
					// size during the warm-up instead of growing.
					clients[c].reqs = append(clients[c].reqs, commitRequest(c*(warm+measured)+i, []string{"a2V5MQ==", "a2V5Mg==", "a2V5Mw=="}[i%3]))
				}
			}
			runAll(t, clients, 0, warm)
			var before, after runtime.MemStats
			runtime.GC()
			segsBefore := ts.eng.Stats().SegmentsTotal
			runtime.ReadMemStats(&before)
			runAll(t, clients, warm, warm+measured)
			runtime.ReadMemStats(&after)
			segs := ts.eng.Stats().SegmentsTotal - segsBefore
			requests := float64(conns * measured)
			mallocs := float64(after.Mallocs - before.Mallocs)
			excess := (mallocs - float64(segs)*segmentAllocsMax) / requests
			t.Logf("%.3f allocations and %.0f bytes per commit; %.1f commits per segment; %.3f per commit beyond %d per segment",
				mallocs/requests, float64(after.TotalAlloc-before.TotalAlloc)/requests, requests/float64(segs), excess, segmentAllocsMax)
			if excess >= commitPathAllocsMax {
				t.Errorf("%.3f allocations per commit beyond the per-segment allowance, want < %v", excess, commitPathAllocsMax)
			}
		})
	}
}

type allocClient struct {
	rc   *rawConn
	reqs [][]byte
	err  error
}

// runAll sends requests [from, to) on every client concurrently.
func runAll(t *testing.T, clients []*allocClient, from, to int) {
	t.Helper()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from; i < to; i++ {
				status, body, err := c.rc.roundTrip(c.reqs[i])
				if err != nil {
					c.err = err
					return
				}
				if status != 200 || !bytes.Contains(body, []byte(`"status":"committed"`)) {
					c.err = fmt.Errorf("request %d: %d %s", i, status, body)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range clients {
		if c.err != nil {
			t.Fatal(c.err)
		}
	}
}

// TestPipelinedCommitAllocsAtDetachLimit: one connection pipelines more
// commits than the old fixed pool bound (17 slots) and fewer than its
// server.max_pipelined_commits, all of them in flight at once (the
// resolver is held until every one is submitted). The connection must keep
// a slot for each, so that later rounds allocate nothing: with the pool
// bound fixed below the setting, every round rebuilt the missing slots
// (parser, arena, 64 KiB chunk).
func TestPipelinedCommitAllocsAtDetachLimit(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	const depth, warm, measured = 40, 3, 10 // commits per round; rounds
	cfg := config.Default()
	cfg.Server.MaxPipelinedCommits = 48
	var eng atomic.Pointer[engine.Engine]
	ts := startTestServerEngine(t, cfg, engine.Config{BeforeResolveBatch: func() {
		// Hold the resolver until the whole round is submitted (a hang
		// guard, not a timing: a round that never fills fails below).
		for i := 0; i < 1_000_000 && eng.Load().Stats().Queued < depth; i++ {
			time.Sleep(20 * time.Microsecond)
		}
	}})
	eng.Store(ts.eng)
	rc := ts.dial(t)
	rounds := make([][]byte, warm+measured)
	for r := range rounds {
		for i := range depth {
			rounds[r] = append(rounds[r], commitRequest(r*depth+i, []string{"a2V5MQ==", "a2V5Mg==", "a2V5Mw=="}[i%3])...)
		}
	}
	buf := make([]byte, 1<<20)
	run := func(from, to int) {
		for r := from; r < to; r++ {
			if _, err := rc.c.Write(rounds[r]); err != nil {
				t.Fatal(err)
			}
			// The answers arrive pipelined: parse them off one buffer.
			n, got := 0, 0
			for got < depth {
				if n == len(buf) {
					t.Fatalf("round %d: answers larger than %d bytes", r, len(buf))
				}
				m, err := rc.c.Read(buf[n:])
				if err != nil {
					t.Fatal(err)
				}
				n += m
				for {
					l := answerLen(buf[:n])
					if l < 0 || l > n {
						break
					}
					if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200")) || !bytes.Contains(buf[:l], []byte(`"status":"committed"`)) {
						t.Fatalf("round %d commit %d: %s", r, got, buf[:l])
					}
					got++
					n = copy(buf, buf[l:n])
				}
			}
			if n != 0 {
				t.Fatalf("round %d: %d bytes beyond %d answers", r, n, depth)
			}
		}
	}
	run(0, warm)
	var before, after runtime.MemStats
	runtime.GC()
	segsBefore := ts.eng.Stats().SegmentsTotal
	runtime.ReadMemStats(&before)
	run(warm, warm+measured)
	runtime.ReadMemStats(&after)
	segs := ts.eng.Stats().SegmentsTotal - segsBefore
	requests := float64(depth * measured)
	mallocs := float64(after.Mallocs - before.Mallocs)
	excess := (mallocs - float64(segs)*segmentAllocsMax) / requests
	t.Logf("%.3f allocations per commit; %.1f commits per segment; %.3f per commit beyond %d per segment",
		mallocs/requests, requests/float64(segs), excess, segmentAllocsMax)
	if excess >= commitPathAllocsMax {
		t.Errorf("%.3f allocations per commit beyond the per-segment allowance, want < %v", excess, commitPathAllocsMax)
	}
}
