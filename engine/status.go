package engine

import (
	"github.com/cespare/xxhash/v2"

	"github.com/weaseldb/weaseldb/persist/statusruns"
	"github.com/weaseldb/weaseldb/tx"
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
// dedupe in stage 1 and for status queries. The newest entries are kept in
// memory in commit order in a circular FIFO and found through idTable, an
// open-addressing table from the id hash to the FIFO position. With a run
// directory (Config.StatusDir) the durable entries are also written, in
// the background, to immutable on-disk runs (statusdisk.go), so the memory
// part can drop its oldest entries without shortening the window.
//
// The window is (floor, last]: an entry is evicted when it is older than
// the time window or more than windowVersions versions old ("whichever is
// less", API.md), which raises floor; for versions <= floor the index can
// no longer answer. Past entriesMax entries in memory, the oldest entries
// already on disk leave memory without moving floor. Without a run
// directory they leave anyway and floor rises (memory bound first).
//
// Not safe for concurrent use: only the engine's stage 1 goroutine uses it
// (and Open and Close, while stage 1 is not running).
type statusIndex struct {
	terms          termTable
	byHash         idTable
	fifo           []statusEntry // len is a power of two
	head, tail     uint64        // absolute positions; [head, tail) live
	floor          tx.Version
	window         int64 // nanoseconds
	windowVersions uint64
	entriesMax     int

	disk *statusDisk // nil: memory only
}

func newStatusIndex(window int64, windowVersions uint64, entriesMax int) *statusIndex {
	s := &statusIndex{
		fifo:           make([]statusEntry, 1024),
		window:         window,
		windowVersions: windowVersions,
		entriesMax:     entriesMax,
	}
	s.byHash.init(2048)
	return s
}

func (s *statusIndex) len() int { return int(s.tail - s.head) }

func (s *statusIndex) at(pos uint64) *statusEntry {
	return &s.fifo[pos&uint64(len(s.fifo)-1)]
}

// lookup returns the version at which the id hashed to h committed, from
// memory or, for an entry older than memory holds, from the runs on disk.
// An error means a run could not be read: the answer is unknown.
func (s *statusIndex) lookup(h idHash) (tx.Version, bool, error) {
	if slot := s.byHash.find(h, s); slot >= 0 {
		return s.at(s.byHash.slots[slot].pos - 1).version, true, nil
	}
	if s.disk == nil || len(s.disk.runs) == 0 {
		return 0, false, nil
	}
	return s.disk.lookup(h, s.memoryLow(), s.floor)
}

// memoryLow returns the lowest version memory answers for: every entry
// at or above it is in memory.
func (s *statusIndex) memoryLow() tx.Version {
	if s.head == s.tail {
		return ^tx.Version(0)
	}
	return s.at(s.head).version
}

// insert records that h committed at v at time now. Versions must increase.
func (s *statusIndex) insert(h idHash, v tx.Version, now int64) {
	if s.len() >= s.entriesMax && (s.disk == nil || s.head < s.disk.diskPos) {
		s.evictOldest(s.disk == nil)
	}
	if s.len() == len(s.fifo) {
		s.grow()
	}
	pos := s.tail
	*s.at(pos) = statusEntry{hash: h, version: v, time: now}
	s.tail++
	s.byHash.put(h, pos, s)
}

func (s *statusIndex) grow() {
	bigger := make([]statusEntry, 2*len(s.fifo))
	for p := s.head; p != s.tail; p++ {
		bigger[p&uint64(len(bigger)-1)] = *s.at(p)
	}
	s.fifo = bigger
}

// evictOldest drops the oldest memory entry; raiseFloor says it leaves the
// window (else it stays answerable from disk).
func (s *statusIndex) evictOldest(raiseFloor bool) {
	e := s.at(s.head)
	if slot := s.byHash.find(e.hash, s); slot >= 0 && s.byHash.slots[slot].pos-1 == s.head {
		s.byHash.remove(slot)
	}
	if raiseFloor {
		s.setFloor(e.version)
	}
	*e = statusEntry{}
	s.head++
}

// setFloor raises the floor to v and forgets the terms that ended at or
// below it.
func (s *statusIndex) setFloor(v tx.Version) {
	s.floor = max(s.floor, v)
	s.terms.forgetBefore(s.floor + 1)
}

// termTable remembers which leader term wrote which versions, so that a
// duplicate answer names the leader that committed the transaction
// (API.md), not the current one. Terms change only at a restart or a
// takeover, so a short list of term starts replaces a per-entry field.
type termTable struct {
	starts []termStart // by first version, ascending
}

type termStart struct {
	first    tx.Version // first version written by the term (its claim)
	leaderID []byte
}

// note records that leaderID wrote from version first on, unless the
// latest term is already leaderID's. Versions must not decrease.
func (t *termTable) note(first tx.Version, leaderID []byte) {
	if n := len(t.starts); n > 0 && string(t.starts[n-1].leaderID) == string(leaderID) {
		return
	}
	t.starts = append(t.starts, termStart{first: first, leaderID: append([]byte(nil), leaderID...)})
}

// leaderAt returns the leader id of the term that wrote version v (nil if
// unknown).
func (t *termTable) leaderAt(v tx.Version) []byte {
	for i := len(t.starts) - 1; i >= 0; i-- { // few terms; the newest is likeliest
		if t.starts[i].first <= v {
			return t.starts[i].leaderID
		}
	}
	return nil
}

// stored returns the term starts in persist/statusruns' form.
func (t *termTable) stored() []statusruns.Term {
	out := make([]statusruns.Term, len(t.starts))
	for i, ts := range t.starts {
		out[i] = statusruns.Term{First: uint64(ts.first), LeaderID: ts.leaderID}
	}
	return out
}

// forgetBefore drops the terms that end before version v (keeping the one
// that holds v).
func (t *termTable) forgetBefore(v tx.Version) {
	n := 0
	for n+1 < len(t.starts) && t.starts[n+1].first <= v {
		n++
	}
	if n > 0 {
		t.starts = append(t.starts[:0], t.starts[n:]...)
	}
}

// idTable maps an idHash to a FIFO position: open addressing with linear
// probing, 16-byte slots holding the first hash word and the position + 1, at most 3/4 full
// (0: empty). The first word is already a uniform xxhash, so its low bits
// pick the home slot with no rehash, and a miss (the common case: a new
// id) reads one or two slots of one cache line. The second hash word is
// checked in the FIFO entry, only when the first matches. Deletion shifts
// the following run back (no tombstones), so probe chains never degrade.
// Rejected: a Go map keyed by idHash (hashes the 16-byte key again and
// compares with memequal; a quarter of stage 1's time).
type idTable struct {
	slots []idSlot // len is a power of two
	live  int
}

type idSlot struct {
	a   uint64 // idHash.a
	pos uint64 // FIFO position + 1; 0: empty
}

func (t *idTable) init(n int) {
	t.slots = make([]idSlot, n)
	t.live = 0
}

// find returns the slot holding h, or -1.
func (t *idTable) find(h idHash, s *statusIndex) int {
	mask := uint64(len(t.slots) - 1)
	for i := h.a & mask; ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.pos == 0 {
			return -1
		}
		if sl.a == h.a && s.at(sl.pos-1).hash.b == h.b {
			return int(i)
		}
	}
}

// put maps h to pos, replacing an earlier position of the same h.
func (t *idTable) put(h idHash, pos uint64, s *statusIndex) {
	if 4*(t.live+1) > 3*len(t.slots) { // keep the load at most 3/4
		t.resize(2*len(t.slots), s)
	}
	mask := uint64(len(t.slots) - 1)
	for i := h.a & mask; ; i = (i + 1) & mask {
		sl := &t.slots[i]
		if sl.pos == 0 {
			*sl = idSlot{a: h.a, pos: pos + 1}
			t.live++
			return
		}
		if sl.a == h.a && s.at(sl.pos-1).hash.b == h.b {
			sl.pos = pos + 1
			return
		}
	}
}

func (t *idTable) resize(n int, s *statusIndex) {
	old := t.slots
	t.init(n)
	mask := uint64(n - 1)
	for _, sl := range old {
		if sl.pos == 0 {
			continue
		}
		i := sl.a & mask
		for t.slots[i].pos != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = sl
		t.live++
	}
}

// remove empties slot i and shifts back the entries after it that probed
// past it, so that every entry stays reachable from its home slot.
func (t *idTable) remove(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].pos != 0; j = (j + 1) & mask {
		home := int(t.slots[j].a) & mask
		// j's entry may move to i iff i lies cyclically in [home, j).
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = idSlot{}
	t.live--
}

// expire moves the floor to the window's start, given the latest assigned
// version and the current time: an entry older than the time window or
// more than windowVersions versions old is out ("whichever is less").
// Memory entries below the floor are evicted; runs below it are deleted.
func (s *statusIndex) expire(last tx.Version, now int64) {
	cutoff := now - s.window
	floor := max(s.floor, saturatingSub(last, s.windowVersions))
	if s.disk != nil {
		floor = max(floor, s.disk.expiredThrough(s.memoryLow(), cutoff))
	}
	for s.head != s.tail {
		e := s.at(s.head)
		if e.version > floor && e.time >= cutoff {
			break
		}
		floor = max(floor, e.version)
		s.evictOldest(false)
	}
	s.setFloor(floor)
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
