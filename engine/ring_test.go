package engine

import (
	"sync"
	"testing"
)

func TestRingDeliversEverythingInOrder(t *testing.T) {
	const n = 200000
	first := newRing[int](64)
	second := newRing[int](16)
	go func() {
		for i := range n {
			if i%3 == 0 {
				first.pushBatch([]int{i})
			} else {
				first.push(i)
			}
		}
		first.close()
	}()
	go func() { // the middle stage: batch through
		var buf []int
		for {
			var ok bool
			buf, ok = first.popAll(buf[:0])
			if !ok {
				second.close()
				return
			}
			second.pushBatch(buf)
		}
	}()
	next := 0
	var buf []int
	for {
		var ok bool
		buf, ok = second.popAll(buf[:0])
		if !ok {
			break
		}
		if len(buf) > 16 {
			t.Fatalf("batch of %d from a ring of 16", len(buf))
		}
		for _, v := range buf {
			if v != next {
				t.Fatalf("got %d, want %d", v, next)
			}
			next++
		}
	}
	if next != n {
		t.Fatalf("received %d items, want %d", next, n)
	}
}

func TestAdmissionQueueManyProducers(t *testing.T) {
	q := newAdmissionQueue()
	const producers, each = 8, 5000
	var wg sync.WaitGroup
	reqs := make([]Request, producers*each)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r := &reqs[p*each+i]
				r.seq = uint64(i) // per-producer order
				r.ReceivedAt = int64(p)
				if !q.add(r) {
					t.Error("add refused before close")
				}
			}
		}()
	}
	go func() { wg.Wait(); q.close() }()
	next := make([]uint64, producers)
	total := 0
	var spare []*Request
	for {
		batch, ok := q.takeAll(spare)
		if !ok {
			break
		}
		for _, r := range batch {
			if r.seq != next[r.ReceivedAt] {
				t.Fatalf("producer %d: got %d, want %d", r.ReceivedAt, r.seq, next[r.ReceivedAt])
			}
			next[r.ReceivedAt]++
			total++
		}
		spare = batch[:0]
	}
	if total != producers*each {
		t.Fatalf("took %d, want %d", total, producers*each)
	}
	if q.add(&Request{}) {
		t.Fatal("add accepted after close")
	}
}
