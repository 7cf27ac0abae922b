// Package arena is a per-connection bump allocator for byte slices that all
// die at the same moment: the end of a request.
//
// A connection owns one Arena. While a request is parsed, its keys, values
// and ids are carved out of the arena's chunks (Alloc, Copy); when the answer
// has been written, the connection calls Reset and every slice handed out
// since the previous Reset is dead. The chunks stay with the arena, so a
// connection in steady state allocates nothing per request.
//
// How to use it:
//
//  1. a := arena.New(chunkBytes) when the connection is accepted.
//  2. b := a.Alloc(n) or b := a.Copy(src) while handling a request. b has
//     len n and cap n, so an append to b never writes into a neighbour.
//  3. a.Reset() once nothing refers to the request any more. In builds with
//     the invariants or race tag, Reset overwrites the released memory with
//     0xdb, so a slice used after Reset shows up as garbage in tests.
//  4. a.Shrink(keepBytes) or a.Release() when the connection goes idle, to
//     give memory back to the runtime; the arena stays usable.
//
// Allocations larger than a chunk get a buffer of their own ("oversize").
// After Reset, oversize buffers are kept for reuse up to a total of
// OversizeKeepFactor chunks; beyond that they are dropped, so one huge
// request does not pin its memory for the life of the connection.
//
// An Arena is not safe for concurrent use: it belongs to one connection,
// which is served by one goroutine at a time.
//
// Design notes: this follows pebble's internal/bytealloc (carve slices out
// of a chunk with a three-index slice so cap is exact) rather than
// arenaskl's fixed arena that fails when full: a request body can be up to
// 16 MiB, and failing a valid request because the arena was sized for the
// common case would be wrong. Chunks are kept in a list and reused in
// order after Reset; a sync.Pool was rejected as the backing store because
// it gives no guarantee of reuse and costs an interface conversion per Get.
package arena

import "fmt"

// OversizeKeepFactor bounds the oversize buffers kept across Reset: at most
// this many chunks' worth of bytes.
const OversizeKeepFactor = 4

// DefaultChunkBytes is the chunk size New uses when given zero or less.
const DefaultChunkBytes = 64 << 10

// poisonByte is written over released memory in test builds (as pebble's
// invariants.Mangle does); 0xdb is unlikely to look like valid data.
const poisonByte = 0xdb

// Arena hands out byte slices from reusable chunks.
//
// Invariants:
//  1. cur is nil (nothing allocated since Reset) or chunks[next], which is
//     being filled from off; chunks[:next] are in use, chunks[next+1:] are
//     free for reuse.
//  2. Every chunk has len == cap == chunkBytes.
//  3. oversizeUsed holds the oversize buffers handed out since the last
//     Reset; oversizeFree the ones kept for reuse.
type Arena struct {
	chunkBytes   int // immutable; > 0
	chunks       [][]byte
	cur          []byte // the chunk being filled, nil after Reset
	next         int    // index of cur in chunks (of the next chunk if cur is nil)
	off          int
	oversizeUsed [][]byte
	oversizeFree [][]byte
	inUseDone    int // bytes handed out since the last Reset, except cur[:off]
}

// New returns an Arena with chunks of chunkBytes (DefaultChunkBytes when
// chunkBytes <= 0). No memory is allocated until the first Alloc.
func New(chunkBytes int) *Arena {
	if chunkBytes <= 0 {
		chunkBytes = DefaultChunkBytes
	}
	return &Arena{chunkBytes: chunkBytes}
}

// ChunkBytes returns the chunk size.
func (a *Arena) ChunkBytes() int { return a.chunkBytes }

// Alloc returns a slice of len n and cap n that does not alias any other
// slice handed out since the last Reset (Alloc(0) returns an empty, maybe
// nil, slice).
// Its contents are unspecified (not zeroed): the caller overwrites them.
// Alloc panics if n is negative, which is a bug in the caller, never a
// property of input.
func (a *Arena) Alloc(n int) []byte {
	// The fast path is small enough to inline: one bounds test against
	// the current chunk.
	if off := a.off; uint(n) <= uint(len(a.cur)-off) { // negative n fails too
		a.off = off + n
		return a.cur[off:a.off:a.off]
	}
	return a.allocSlow(n)
}

// allocSlow handles everything but a fit in the current chunk: zero and
// negative sizes, oversize allocations, and moving to the next chunk
// (reusing a kept one when there is one).
func (a *Arena) allocSlow(n int) []byte {
	switch {
	case n < 0:
		panic(fmt.Sprintf("arena: Alloc(%d)", n))
	case n == 0:
		return []byte{}
	case n > a.chunkBytes:
		a.inUseDone += n
		return a.allocOversize(n)
	}
	if a.cur != nil {
		a.inUseDone += a.off
		a.next++ // the rest of the current chunk is wasted until Reset
	}
	if a.next == len(a.chunks) {
		a.chunks = append(a.chunks, make([]byte, a.chunkBytes))
	}
	a.cur = a.chunks[a.next]
	a.off = n
	return a.cur[0:n:n]
}

func (a *Arena) allocOversize(n int) []byte {
	for i, b := range a.oversizeFree {
		if cap(b) >= n {
			last := len(a.oversizeFree) - 1
			a.oversizeFree[i] = a.oversizeFree[last]
			a.oversizeFree[last] = nil
			a.oversizeFree = a.oversizeFree[:last]
			a.oversizeUsed = append(a.oversizeUsed, b)
			return b[:n:n]
		}
	}
	b := make([]byte, n)
	a.oversizeUsed = append(a.oversizeUsed, b)
	return b
}

// Copy returns a copy of b in the arena (len and cap len(b)).
func (a *Arena) Copy(b []byte) []byte {
	dst := a.Alloc(len(b))
	copy(dst, b)
	return dst
}

// Reset declares every slice handed out since the previous Reset dead and
// makes the memory available again. Chunks are kept; oversize buffers are
// kept up to OversizeKeepFactor chunks' worth of bytes.
func (a *Arena) Reset() {
	if poisonEnabled {
		a.poison()
	}
	a.cur, a.next, a.off, a.inUseDone = nil, 0, 0, 0
	keep := OversizeKeepFactor * a.chunkBytes
	for _, b := range a.oversizeFree {
		keep -= cap(b)
	}
	for i, b := range a.oversizeUsed {
		if cap(b) <= keep {
			keep -= cap(b)
			a.oversizeFree = append(a.oversizeFree, b[:cap(b)])
		}
		a.oversizeUsed[i] = nil
	}
	a.oversizeUsed = a.oversizeUsed[:0]
}

// poison overwrites everything handed out since the last Reset.
func (a *Arena) poison() {
	if a.cur != nil {
		for _, c := range a.chunks[:a.next] {
			fill(c)
		}
		fill(a.cur[:a.off])
	}
	for _, b := range a.oversizeUsed {
		fill(b[:cap(b)])
	}
}

func fill(b []byte) {
	for i := range b {
		b[i] = poisonByte
	}
}

// Shrink resets the arena and drops memory until it holds at most keepBytes
// (rounded down to whole chunks; all oversize buffers are dropped). Call it
// when a connection goes idle.
func (a *Arena) Shrink(keepBytes int) {
	a.Reset()
	keepChunks := keepBytes / a.chunkBytes
	if keepChunks < len(a.chunks) {
		clear(a.chunks[keepChunks:])
		a.chunks = a.chunks[:keepChunks]
	}
	clear(a.oversizeFree)
	a.oversizeFree = a.oversizeFree[:0]
}

// Release resets the arena and gives all its memory back to the runtime.
// The arena stays usable and allocates again on the next Alloc.
func (a *Arena) Release() {
	a.Reset()
	a.chunks = nil
	a.oversizeFree = nil
	a.oversizeUsed = nil
}

// Bytes returns the bytes the arena holds (chunks and oversize buffers, in
// use or kept for reuse), for accounting.
func (a *Arena) Bytes() int {
	n := len(a.chunks) * a.chunkBytes
	for _, b := range a.oversizeUsed {
		n += cap(b)
	}
	for _, b := range a.oversizeFree {
		n += cap(b)
	}
	return n
}

// InUse returns the bytes handed out since the last Reset.
func (a *Arena) InUse() int { return a.inUseDone + a.off }
