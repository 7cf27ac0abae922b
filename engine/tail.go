package engine

import (
	"errors"
	"sync"

	"github.com/weaseldb/weaseldb/tx"
)

// ErrBehindTail is returned by Tail.Read when the tail no longer holds
// version after+1: read older segments from persist.Log.ReadFrom instead.
var ErrBehindTail = errors.New("engine: position is behind the in-memory tail")

// Tail is the in-memory ring of recent encoded segments that subscribers
// read, bounded by bytes. Stage 2 publishes each segment when it is sealed
// (before it is durable, for durable=false readers) and marks the durable
// watermark when its write succeeds.
//
// Contract of Read(after, durable, dst):
//  1. It appends to dst every held segment with Last > after, oldest first,
//     stopping at the watermark: segments with Last <= Durable() when
//     durable, else every published segment. Segments are whole: the first
//     one may start at or below after; the reader skips those versions.
//  2. Versions are contiguous across the returned segments, and contiguous
//     with after: the first returned segment's First <= after+1.
//  3. ErrBehindTail: the tail no longer (or never) held after+1; the caller
//     reads the log from after and comes back when it has caught up.
//  4. ErrDeposed / ErrClosed: the stream ends. On ErrDeposed a durable=false
//     reader must discard what it got after the last durable watermark.
//  5. wait is closed when something is published, becomes durable, or the
//     tail ends; call Read again then. Nothing new: (dst, wait, nil).
//  6. The returned byte slices are shared and immutable: never modify them.
//     They stay valid as long as the caller keeps them.
type Tail struct {
	mu struct {
		sync.Mutex
		segs    []tailSegment // oldest first; segs[i].last+1 == segs[i+1].first
		bytes   int
		sealed  tx.Version // last version published
		durable tx.Version // last version durable
		wait    chan struct{}
		err     error
	}
	bytesMax int // immutable
}

type tailSegment struct {
	first, last tx.Version
	data        []byte
}

func newTail(bytesMax int) *Tail {
	t := &Tail{bytesMax: bytesMax}
	t.mu.wait = make(chan struct{})
	return t
}

// reset empties the tail and positions it after v.
func (t *Tail) reset(v tx.Version) {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.mu.segs)
	t.mu.segs = t.mu.segs[:0]
	t.mu.bytes = 0
	t.mu.sealed, t.mu.durable = v, v
}

func (t *Tail) notifyLocked() {
	close(t.mu.wait)
	t.mu.wait = make(chan struct{})
}

// publish appends a sealed segment [first, last]; data is now shared.
func (t *Tail) publish(first, last tx.Version, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.err != nil {
		return
	}
	t.mu.segs = append(t.mu.segs, tailSegment{first: first, last: last, data: data})
	t.mu.bytes += len(data)
	t.mu.sealed = last
	// Evict the oldest, but never the newest, and never a segment that is
	// not durable yet (durable readers could find it nowhere).
	for t.mu.bytes > t.bytesMax && len(t.mu.segs) > 1 && t.mu.segs[0].last <= t.mu.durable {
		t.mu.bytes -= len(t.mu.segs[0].data)
		t.mu.segs[0] = tailSegment{}
		t.mu.segs = t.mu.segs[1:]
	}
	t.notifyLocked()
}

// markDurable moves the durable watermark to v.
func (t *Tail) markDurable(v tx.Version) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v > t.mu.durable {
		t.mu.durable = v
		t.notifyLocked()
	}
}

// fail ends the tail: every Read returns err from now on.
func (t *Tail) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.err == nil {
		t.mu.err = err
		t.notifyLocked()
	}
}

// Sealed returns the last version published.
func (t *Tail) Sealed() tx.Version {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.sealed
}

// Durable returns the durable watermark (the engine's Version).
func (t *Tail) Durable() tx.Version {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.durable
}

// Read returns the held segments after the given version; see Tail.
func (t *Tail) Read(after tx.Version, durable bool, dst [][]byte) ([][]byte, <-chan struct{}, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.err != nil {
		return dst, t.mu.wait, t.mu.err
	}
	limit := t.mu.sealed
	if durable {
		limit = t.mu.durable
	}
	if after >= limit {
		return dst, t.mu.wait, nil
	}
	segs := t.mu.segs
	// Binary search the first segment with last > after.
	lo, hi := 0, len(segs)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if segs[mid].last <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(segs) || segs[lo].first > after+1 {
		return dst, t.mu.wait, ErrBehindTail
	}
	for _, s := range segs[lo:] {
		if s.last > limit {
			break
		}
		dst = append(dst, s.data)
	}
	return dst, t.mu.wait, nil
}

// size returns the number of held segments and their bytes.
func (t *Tail) size() (int, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.mu.segs), t.mu.bytes
}
