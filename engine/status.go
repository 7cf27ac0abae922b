package engine

import (
	"github.com/cespare/xxhash/v2"

	"weaseldb/tx"
)

// idHash identifies a request id by two independent 64-bit xxhash values,
// so that the index stores 16 bytes per id instead of the id itself; two
// different ids collide with probability about 2^-128 per pair.
type idHash struct{ a, b uint64 }

const idHashSeed = 0x9e3779b97f4a7c15

func hashRequestID(id []byte) idHash {
	var d xxhash.Digest
	d.ResetWithSeed(idHashSeed)
	_, _ = d.Write(id) // Digest.Write never fails
	return idHash{a: xxhash.Sum64(id), b: d.Sum64()}
}

// statusEntry is one committed request id.
type statusEntry struct {
	hash    idHash
	version tx.Version
	time    int64 // commit time, unix nanos
}

// statusIndex remembers which request ids committed at which version, for
// dedupe in stage 1 and for Status. Entries are kept in commit order in a
// circular FIFO and found through a map from idHash to FIFO position.
//
// An entry is evicted only when it is both older than the time window and
// more than windowVersions versions old ("whichever keeps more"), or when
// the index holds entriesMax entries (memory bound). floor is the highest
// version evicted: for versions <= floor the index can no longer answer.
//
// Not safe for concurrent use; the engine guards it with Engine.status.mu.
type statusIndex struct {
	byHash         map[idHash]uint64 // → absolute FIFO position
	fifo           []statusEntry     // len is a power of two
	head, tail     uint64            // absolute positions; [head, tail) live
	floor          tx.Version
	window         int64 // nanoseconds
	windowVersions uint64
	entriesMax     int
}

func newStatusIndex(window int64, windowVersions uint64, entriesMax int) *statusIndex {
	return &statusIndex{
		byHash:         make(map[idHash]uint64),
		fifo:           make([]statusEntry, 1024),
		window:         window,
		windowVersions: windowVersions,
		entriesMax:     entriesMax,
	}
}

func (s *statusIndex) len() int { return int(s.tail - s.head) }

// lookup returns the version at which the id hashed to h committed.
func (s *statusIndex) lookup(h idHash) (tx.Version, bool) {
	pos, ok := s.byHash[h]
	if !ok {
		return 0, false
	}
	return s.fifo[pos&uint64(len(s.fifo)-1)].version, true
}

// insert records that h committed at v at time now. Versions must increase.
func (s *statusIndex) insert(h idHash, v tx.Version, now int64) {
	if s.len() >= s.entriesMax {
		s.evictOldest()
	}
	if s.len() == len(s.fifo) {
		s.grow()
	}
	pos := s.tail
	s.fifo[pos&uint64(len(s.fifo)-1)] = statusEntry{hash: h, version: v, time: now}
	s.tail++
	s.byHash[h] = pos
}

func (s *statusIndex) grow() {
	bigger := make([]statusEntry, 2*len(s.fifo))
	for p := s.head; p != s.tail; p++ {
		bigger[p&uint64(len(bigger)-1)] = s.fifo[p&uint64(len(s.fifo)-1)]
	}
	s.fifo = bigger
}

func (s *statusIndex) evictOldest() {
	e := &s.fifo[s.head&uint64(len(s.fifo)-1)]
	if pos, ok := s.byHash[e.hash]; ok && pos == s.head {
		delete(s.byHash, e.hash)
	}
	s.floor = max(s.floor, e.version)
	*e = statusEntry{}
	s.head++
}

// expire evicts the entries that fell out of both windows, given the
// latest assigned version and the current time.
func (s *statusIndex) expire(last tx.Version, now int64) {
	for s.head != s.tail {
		e := &s.fifo[s.head&uint64(len(s.fifo)-1)]
		oldByTime := now-e.time > s.window
		oldByVersions := uint64(last-e.version) > s.windowVersions
		if !oldByTime || !oldByVersions {
			return
		}
		s.evictOldest()
	}
}

// failedEntry remembers a request that was resolved without committing and
// is not answered yet, so that a duplicate arriving meanwhile gets the same
// answer instead of being resolved a second time.
type failedEntry struct {
	hash      idHash
	seq       uint64
	outcome   Outcome
	err       string
	conflicts []int
}

// inFlightFailures holds failedEntry values until stage 3 answered them.
// Bounded by the number of requests in the pipeline. Entries are recycled.
type inFlightFailures struct {
	byHash map[idHash]*failedEntry
	queue  []*failedEntry // in seq order
	free   []*failedEntry
}

func newInFlightFailures() *inFlightFailures {
	return &inFlightFailures{byHash: make(map[idHash]*failedEntry)}
}

func (f *inFlightFailures) add(r *Request) {
	var e *failedEntry
	if n := len(f.free); n > 0 {
		e = f.free[n-1]
		f.free = f.free[:n-1]
	} else {
		e = new(failedEntry)
	}
	e.hash, e.seq, e.outcome, e.err = r.idHash, r.seq, r.Outcome, r.Err
	e.conflicts = append(e.conflicts[:0], r.Conflicts...)
	f.byHash[r.idHash] = e
	f.queue = append(f.queue, e)
}

// forgetAnswered drops the entries whose request was answered (seq <=
// answered).
func (f *inFlightFailures) forgetAnswered(answered uint64) {
	n := 0
	for n < len(f.queue) && f.queue[n].seq <= answered {
		e := f.queue[n]
		if f.byHash[e.hash] == e {
			delete(f.byHash, e.hash)
		}
		f.free = append(f.free, e)
		n++
	}
	if n > 0 {
		m := copy(f.queue, f.queue[n:])
		clear(f.queue[m:])
		f.queue = f.queue[:m]
	}
}

// lookup returns the in-flight failure for h, if it is still unanswered.
func (f *inFlightFailures) lookup(h idHash, answered uint64) *failedEntry {
	if len(f.byHash) == 0 { // the common case: skip hashing the key
		return nil
	}
	e, ok := f.byHash[h]
	if !ok || e.seq <= answered {
		return nil
	}
	return e
}
