package engine

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/engine/conflict"
	"github.com/weaseldb/weaseldb/internal/benchcpu"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// resolveHarness drives stage 1 alone, on the calling goroutine, the way
// runResolver does (one lock per batch of 64), without the other stages.
type resolveHarness struct {
	e    *Engine
	reqs []Request
	keys [][]byte
	ids  [][]byte
	n    int
	now  int64
}

func newResolveHarness() *resolveHarness {
	cfg := Config{StatusEntriesMax: 1 << 15, ConflictWindowVersions: 1 << 16, Logger: quietLogger()}.withDefaults()
	e := &Engine{cfg: cfg, leaderID: []byte("0123456789abcdef0123456789abcdef")}
	e.status.idx = newStatusIndex(int64(cfg.StatusWindow), cfg.StatusWindowVersions, cfg.StatusEntriesMax)
	e.status.failed = newInFlightFailures()
	e.res.set = conflict.New(0)
	h := &resolveHarness{e: e, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
	e.res.init(e, 0, h.now)
	for i := range 1 << 14 {
		h.keys = append(h.keys, []byte("user/"+strconv.Itoa(i*7919%100003)))
	}
	for i := range 1 << 16 {
		h.ids = append(h.ids, []byte("bench-request-"+strconv.Itoa(i)+"-xxxxxxxxxx"))
	}
	h.reqs = make([]Request, 64)
	for i := range h.reqs {
		r := &h.reqs[i]
		r.Commit.Preconditions = make([]tx.Precondition, 1)
		r.Commit.Operations = make([]tx.Operation, 1)
	}
	return h
}

// batch resolves 64 transactions of 1 point read + 1 write each and
// reports how many committed.
func (h *resolveHarness) batch() int {
	e := h.e
	committed := 0
	for i := range h.reqs {
		r := &h.reqs[i]
		key := h.keys[h.n%len(h.keys)]
		id := h.ids[h.n%len(h.ids)]
		h.n++
		r.resetOutputs()
		r.Commit.RequestID = id
		r.idHash = hashRequestID(id) // done by Submit, on the caller's goroutine
		r.RequestID = id
		r.Commit.Preconditions[0] = tx.Precondition{Type: tx.PointRead, Key: key, Version: e.res.last, HasVersion: true}
		r.Commit.Operations[0] = tx.Operation{Type: tx.OpWrite, Key: key, Value: key}
		e.res.resolve(r, h.now)
		if r.Outcome == Committed {
			committed++
		}
	}
	e.res.advanceWindows(h.now)
	h.now += int64(time.Microsecond)
	return committed
}

// BenchmarkResolve measures the serial cost of stage 1 per transaction (1
// point read + 1 write, with a request id), the work bounding throughput.
// Target ≤ 250 ns/op (the C++ original: ~400 ns). The conflict set's own
// baselines are in engine/conflict.
//
//	go test -run '^$' -bench 'Resolve' -benchtime=1s ./engine/
func BenchmarkResolve(b *testing.B) {
	h := newResolveHarness()
	for range 2048 { // warm: fill the status index and the conflict set
		h.batch()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := benchcpu.Start()
	defer cpu.Stop(b)
	committed := 0
	for i := 0; i < b.N; i += 64 {
		committed += h.batch()
	}
	if committed == 0 {
		b.Fatal("nothing committed")
	}
}

func TestResolveAllocatesNothing(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("allocation counts are meaningless under -race; short mode")
	}
	h := newResolveHarness()
	for range 2048 {
		h.batch()
	}
	allocs := testing.AllocsPerRun(200, func() {
		if h.batch() != 64 {
			t.Fatal("a blind-ish transaction at the latest version did not commit")
		}
	})
	if allocs != 0 {
		t.Fatalf("resolve: %.2f allocations per batch of 64, want 0", allocs)
	}
}

// BenchmarkPipeline moves items through two hops (producer → stage →
// consumer), with the ring and with buffered Go channels of the same
// capacity. ns/op is per item end to end (two hops).
//
//	go test -run '^$' -bench 'Pipeline' -benchtime=1s ./engine/
func BenchmarkPipeline(b *testing.B) {
	const slots = 8192
	b.Run("ring", func(b *testing.B) {
		b.ReportAllocs()
		first, second := newRing[*Request](slots), newRing[*Request](slots)
		item := &Request{}
		go func() {
			for range b.N {
				first.push(item)
			}
			first.close()
		}()
		go func() {
			var buf []*Request
			for {
				var ok bool
				if buf, ok = first.popAll(buf[:0]); !ok {
					second.close()
					return
				}
				second.pushBatch(buf)
			}
		}()
		n := 0
		var buf []*Request
		for {
			var ok bool
			if buf, ok = second.popAll(buf[:0]); !ok {
				break
			}
			n += len(buf)
		}
		if n != b.N {
			b.Fatalf("got %d items, want %d", n, b.N)
		}
	})
	b.Run("channel", func(b *testing.B) {
		b.ReportAllocs()
		first, second := make(chan *Request, slots), make(chan *Request, slots)
		item := &Request{}
		go func() {
			for range b.N {
				first <- item
			}
			close(first)
		}()
		go func() {
			for r := range first {
				second <- r
			}
			close(second)
		}()
		n := 0
		for range second {
			n++
		}
		if n != b.N {
			b.Fatalf("got %d items, want %d", n, b.N)
		}
	})
}

// BenchmarkEngine commits blind single-key writes end to end through the
// whole engine with the in-memory log, from 64 concurrent submitters each
// reusing one Request. ns/op is per transaction; allocs/op includes the
// per-segment allocations (encoding buffer, memlog's copy) amortised.
//
//	go test -run '^$' -bench 'Engine' -benchtime=1s ./engine/
func BenchmarkEngine(b *testing.B) {
	store := memlog.NewStore()
	cfg := Config{Logger: quietLogger(), StatusEntriesMax: 1 << 16, TailBytes: 8 << 20}
	e, log := openTest(b, store, cfg)
	_ = log
	keys := make([][]byte, 1<<12)
	for i := range keys {
		keys[i] = []byte("key/" + strconv.Itoa(i))
	}
	b.SetParallelism(32) // × GOMAXPROCS submitters
	b.ReportAllocs()
	b.ResetTimer()
	var next sync.Mutex
	worker := 0
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		w := worker
		worker++
		next.Unlock()
		r := &Request{}
		r.Commit.Operations = make([]tx.Operation, 1)
		answered := make(chan *Request, 1)
		done := func(r *Request) { answered <- r }
		i := w
		for pb.Next() {
			r.Commit.Operations[0] = tx.Operation{Type: tx.OpWrite, Key: keys[i%len(keys)], Value: keys[i%len(keys)]}
			i += 7
			e.Submit(r, done)
			<-answered
			if r.Outcome != Committed {
				b.Errorf("outcome %v", r.Outcome)
				return
			}
		}
	})
	b.StopTimer()
	s := e.Stats()
	if s.SegmentsTotal > 0 {
		b.ReportMetric(float64(s.SegmentTxnsTotal)/float64(s.SegmentsTotal), "txns/segment")
	}
	_ = e.Close(context.Background())
}
