package netpoll

import (
	"sync"
	"sync/atomic"
)

// byteBudget is a server-wide bound on bytes held for some purpose, taken
// and released by many goroutines.
//
// Streams (MaxStreamBytesTotal): the queue of each Stream plus the part of
// it the reactor took and has not written yet. Without it every stalled
// stream may hold its own two queues, and ten thousand stalled subscribers
// hold a hundred gigabytes. A Write that would pass the budget is refused
// with ErrStreamFull like a full queue; Stream.Room waits for bytes to be
// released.
//
// Request bodies (MaxBodyBytesTotal): see conn.reserveBody.
type byteBudget struct {
	max  int64 // immutable
	used atomic.Int64

	// waiting is set (under mu) by a writer about to wait for room;
	// release closes room then, once need bytes are free (a release of a
	// few bytes does not wake every waiter to fail again). Ordering: a waiter sets waiting before it
	// checks used, a releaser lowers used before it checks waiting, so one
	// of them sees the other.
	waiting atomic.Bool
	need    atomic.Int64 // what waiters need free before they are woken
	mu      sync.Mutex
	room    chan struct{} // guarded by mu
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, room: make(chan struct{})}
}

// take reserves n bytes; false (nothing reserved) when that would pass the
// budget.
func (b *byteBudget) take(n int64) bool { return b.takeBelow(n, b.max) }

// takeBelow reserves n bytes if the bytes in use stay at or below limit.
func (b *byteBudget) takeBelow(n, limit int64) bool {
	if b.used.Add(n) <= limit {
		return true
	}
	// Undone without waking waiters: waking them here, each failed
	// attempt of theirs would wake the others in turn, forever.
	b.used.Add(-n)
	return false
}

// release returns n bytes and wakes writers waiting for room.
func (b *byteBudget) release(n int64) {
	if n == 0 {
		return
	}
	used := b.used.Add(-n)
	if b.waiting.Load() && used+b.need.Load() <= b.max {
		b.mu.Lock()
		if b.waiting.Load() {
			b.waiting.Store(false)
			close(b.room)
			b.room = make(chan struct{})
		}
		b.mu.Unlock()
	}
}

// wait returns a channel that is closed once n more bytes may fit (at
// once, if they fit now).
func (b *byteBudget) wait(n int64) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.need.Store(n)
	b.waiting.Store(true)
	if b.used.Load()+n <= b.max {
		return closedChan
	}
	return b.room
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()
