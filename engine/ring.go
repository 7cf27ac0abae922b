package engine

import (
	"sync"
	"sync/atomic"
)

// ring is the "thread pipeline" hop between two stages: a bounded,
// single-producer/single-consumer queue of items in which the consumer takes
// everything available at once.
//
// Invariants:
//  1. Only one goroutine calls push/pushBatch/close (the producer) and only
//     one calls popAll/tryPopAll/arm (the consumer).
//  2. head <= tail <= head+len(slots); slots[head..tail) (mod len) are
//     filled, owned by the consumer once tail is published.
//
// Parking: a side that finds nothing to do (consumer: empty; producer:
// full) sets its waiting flag, re-checks, and then blocks on a one-token
// channel. The other side, after publishing progress, loads the flag and
// sends the token if set. Go's atomics are sequentially consistent, so of
// "store flag; load index" and "store index; load flag" at least one side
// sees the other: no lost wakeup, and no spinning while idle.
//
// Rejected: a Go channel per hop (BenchmarkPipeline/channel) costs one
// synchronisation per item where the ring costs one per batch.
type ring[T any] struct {
	slots []T
	mask  uint64

	head atomic.Uint64 // next slot to read; written by the consumer only
	tail atomic.Uint64 // next slot to write; written by the producer only

	consumerWaiting atomic.Bool
	producerWaiting atomic.Bool
	consumerWake    chan struct{} // capacity 1
	producerWake    chan struct{} // capacity 1
	closed          atomic.Bool
}

// newRing returns a ring with room for size items, rounded up to a power of
// two.
func newRing[T any](size int) *ring[T] {
	n := 1
	for n < size {
		n <<= 1
	}
	return &ring[T]{
		slots:        make([]T, n),
		mask:         uint64(n - 1),
		consumerWake: make(chan struct{}, 1),
		producerWake: make(chan struct{}, 1),
	}
}

func wake(waiting *atomic.Bool, ch chan struct{}) {
	if waiting.Load() {
		select {
		case ch <- struct{}{}:
		default: // a token is already pending
		}
	}
}

// push appends v, blocking (parked, not spinning) while the ring is full.
func (r *ring[T]) push(v T) {
	t := r.tail.Load()
	for t-r.head.Load() == uint64(len(r.slots)) {
		r.producerWaiting.Store(true)
		if t-r.head.Load() == uint64(len(r.slots)) {
			<-r.producerWake
		}
		r.producerWaiting.Store(false)
	}
	r.slots[t&r.mask] = v
	r.tail.Store(t + 1)
	wake(&r.consumerWaiting, r.consumerWake)
}

// pushBatch appends every item of vs in order, publishing as many as fit at
// a time, so the consumer sees them in batches.
func (r *ring[T]) pushBatch(vs []T) {
	for len(vs) > 0 {
		t := r.tail.Load()
		free := uint64(len(r.slots)) - (t - r.head.Load())
		if free == 0 {
			r.producerWaiting.Store(true)
			if t-r.head.Load() == uint64(len(r.slots)) {
				<-r.producerWake
			}
			r.producerWaiting.Store(false)
			continue
		}
		n := min(uint64(len(vs)), free)
		for i := range n {
			r.slots[(t+i)&r.mask] = vs[i]
		}
		r.tail.Store(t + n)
		vs = vs[n:]
		wake(&r.consumerWaiting, r.consumerWake)
	}
}

// close tells the consumer that nothing more will be pushed. Items pushed
// before close are still delivered.
func (r *ring[T]) close() {
	r.closed.Store(true)
	r.consumerWaiting.Store(true) // force the token below
	wake(&r.consumerWaiting, r.consumerWake)
}

// tryPopAll appends every available item to dst without blocking.
func (r *ring[T]) tryPopAll(dst []T) []T {
	h := r.head.Load()
	t := r.tail.Load()
	if h == t {
		return dst
	}
	var zero T
	for i := h; i != t; i++ {
		dst = append(dst, r.slots[i&r.mask])
		r.slots[i&r.mask] = zero // let the GC have it
	}
	r.head.Store(t)
	wake(&r.producerWaiting, r.producerWake)
	return dst
}

// popAll appends every available item to dst, parking until at least one
// is available. ok is false once the ring is closed and drained.
func (r *ring[T]) popAll(dst []T) (out []T, ok bool) {
	for {
		n := len(dst)
		dst = r.tryPopAll(dst)
		if len(dst) > n {
			return dst, true
		}
		if r.closed.Load() {
			// Re-check: items pushed just before close.
			dst = r.tryPopAll(dst)
			return dst, len(dst) > n
		}
		r.consumerWaiting.Store(true)
		if r.head.Load() == r.tail.Load() && !r.closed.Load() {
			<-r.consumerWake
		}
		r.consumerWaiting.Store(false)
	}
}

// arm prepares the consumer to wait in a select together with other
// events: it returns the wake channel, or nil when items are already
// available (or the ring is closed) and the consumer should not wait. Call
// disarm after the select.
func (r *ring[T]) arm() <-chan struct{} {
	r.consumerWaiting.Store(true)
	if r.head.Load() != r.tail.Load() || r.closed.Load() {
		r.consumerWaiting.Store(false)
		return nil
	}
	return r.consumerWake
}

func (r *ring[T]) disarm() { r.consumerWaiting.Store(false) }

// isClosedAndEmpty reports whether the producer closed the ring and every
// item was taken.
func (r *ring[T]) isClosedAndEmpty() bool {
	return r.closed.Load() && r.head.Load() == r.tail.Load()
}

// admissionQueue is the many-producer entry of stage 1: HTTP goroutines
// append under a mutex, the resolver swaps the whole batch out. A mutex
// suffices here because each producer holds it for one append; the
// consumer takes everything at once (double buffering, so no allocation in
// steady state).
type admissionQueue struct {
	mu struct {
		sync.Mutex
		items  []*Request
		closed bool
	}
	waiting atomic.Bool
	wake    chan struct{}
}

func newAdmissionQueue() *admissionQueue {
	return &admissionQueue{wake: make(chan struct{}, 1)}
}

// add appends r; false when the queue was closed.
func (q *admissionQueue) add(r *Request) bool {
	q.mu.Lock()
	if q.mu.closed {
		q.mu.Unlock()
		return false
	}
	q.mu.items = append(q.mu.items, r)
	q.mu.Unlock()
	wake(&q.waiting, q.wake)
	return true
}

func (q *admissionQueue) close() {
	q.mu.Lock()
	q.mu.closed = true
	q.mu.Unlock()
	q.waiting.Store(true)
	wake(&q.waiting, q.wake)
}

// takeAll swaps the queued batch with spare (emptied) and returns it,
// parking while nothing is queued. ok is false once closed and drained.
func (q *admissionQueue) takeAll(spare []*Request) (batch []*Request, ok bool) {
	for {
		q.mu.Lock()
		if len(q.mu.items) > 0 {
			batch = q.mu.items
			q.mu.items = spare[:0]
			q.mu.Unlock()
			return batch, true
		}
		closed := q.mu.closed
		q.waiting.Store(true)
		q.mu.Unlock()
		if closed {
			return spare[:0], false
		}
		<-q.wake
		q.waiting.Store(false)
	}
}
