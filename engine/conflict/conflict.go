package conflict

import (
	"bytes"
	"fmt"

	"github.com/weaseldb/weaseldb/internal/invariants"
	"github.com/weaseldb/weaseldb/internal/planted"
	"github.com/weaseldb/weaseldb/tx"
)

// Read is one precondition as the conflict set sees it: the keys a client
// read and the version it read them at.
type Read struct {
	// Begin and End: len(End) == 0 is a point read of Begin; otherwise the
	// half-open range [Begin, End). A range with End <= Begin reads nothing
	// and so never conflicts (the HTTP layer rejects it before it gets here).
	Begin, End []byte
	// Version is the version the client read at.
	Version tx.Version
}

// Write is one written key or range. len(End) == 0 is a point write of
// Begin; otherwise the half-open range [Begin, End). A range with
// End <= Begin writes nothing.
type Write struct {
	Begin, End []byte
}

// Result is the outcome of checking one Read.
type Result uint8

const (
	// Commit: no write newer than the read's version intersects it.
	Commit Result = iota
	// Conflict: some write newer than the read's version intersects it.
	Conflict
	// TooOld: the read's version is below the oldest version the set still
	// knows about, so the set cannot tell.
	TooOld
)

// String returns the name of the result.
func (r Result) String() string {
	switch r {
	case Commit:
		return "commit"
	case Conflict:
		return "conflict"
	case TooOld:
		return "too_old"
	}
	return "unknown"
}

// Set is the conflict set. See the package documentation for the
// representation. Not safe for concurrent use.
type Set struct {
	oldest tx.Version
	tree   tree
	// Incremental sweep of SetOldestVersion: the key after which the next
	// sweep step starts (empty: from the beginning) and the boundaries
	// inserted since the last step, which set its budget.
	sweepAfter []byte
	inserted   int
	sweepMin   int // least boundaries a sweep step visits (tests lower it)

	// Invariant checking state (-tags invariants; see checkAdd).
	lastAdded tx.Version // version of the latest AddWrites call
	addCalls  int
}

// New returns an empty conflict set whose history starts at oldest: reads
// below oldest are TooOld.
func New(oldest tx.Version) *Set {
	s := &Set{oldest: oldest, sweepMin: sweepMin}
	s.tree.init()
	return s
}

// Check appends to dst one Result per read, in order: TooOld if the read's
// version is below OldestVersion, Conflict if a write with a greater version
// intersects the read, Commit otherwise.
func (s *Set) Check(reads []Read, dst []Result) []Result {
	for i := range reads {
		dst = append(dst, s.check(&reads[i]))
	}
	return dst
}

func (s *Set) check(r *Read) Result {
	if r.Version < s.oldest {
		return TooOld
	}
	if len(r.End) != 0 && bytes.Compare(r.End, r.Begin) <= 0 {
		return Commit // an empty range reads nothing
	}
	t := &s.tree
	b := makeQuery(r.Begin)
	var leaf uint32
	var pos int
	if len(r.End) == 0 {
		// seek, not find: a write of the same key that follows reuses it.
		leaf, pos = t.floorEntry(t.seek(&b))
	} else {
		leaf, pos = t.floorEntry(t.find(&b))
	}
	nd := &t.nodes[leaf]
	// Inside the floor's gap, or on the floor itself (whose gap version is
	// at most its point version, so a range starting there needs only the
	// point version).
	v := tx.Version(nd.b[pos])
	if t.arena.cmp(&nd.keys[pos], &b) == 0 {
		v = nd.a[pos]
	}
	if v > r.Version {
		return Conflict
	}
	if len(r.End) != 0 {
		e := makeQuery(r.End)
		if t.anyAbove(t.root, 0, &b, &e, r.Version) {
			return Conflict
		}
	}
	return Commit
}

// AddWrites records writes at version v. v must be greater than the version
// of every earlier AddWrites call, and every range must have Begin < End
// (both asserted under -tags invariants; a release build skips an inverted
// range); writes at or below OldestVersion are ignored. The keys are copied.
func (s *Set) AddWrites(writes []Write, v tx.Version) {
	if invariants.Enabled {
		s.checkAdd(writes, v)
		defer s.checkTree()
	}
	if v <= s.oldest {
		return // forgotten at once: no read at or above oldest can see it
	}
	for i := range writes {
		w := &writes[i]
		if len(w.End) == 0 {
			s.addPoint(w.Begin, v)
			continue
		}
		switch c := bytes.Compare(w.Begin, w.End); {
		case c >= 0:
		case len(w.End) == len(w.Begin)+1 && w.End[len(w.Begin)] == 0 && bytes.HasPrefix(w.End, w.Begin):
			s.addPoint(w.Begin, v)
		default:
			s.addRange(w.Begin, w.End, v)
		}
	}
	if s.tree.needsRebuild() {
		s.tree.rebuild()
	}
}

// addPoint: the boundary k gets point version v; a new boundary inherits
// the gap version of the gap it splits.
func (s *Set) addPoint(k []byte, v tx.Version) {
	t := &s.tree
	q := makeQuery(k)
	leaf, pos := t.seek(&q)
	if pos >= 0 && t.arena.cmp(&t.nodes[leaf].keys[pos], &q) == 0 {
		nd := &t.nodes[leaf]
		nd.a[pos] = max(nd.a[pos], v)
		t.raise(v)
		return
	}
	fl, fp := t.floorEntry(leaf, pos)
	gv := tx.Version(t.nodes[fl].b[fp])
	t.insertAt(leaf, pos+1, t.arena.store(k), v, gv)
	s.inserted++
}

// addRange: [begin, end) collapses into the boundary begin with point and
// gap version v; end becomes a boundary keeping what followed the range.
func (s *Set) addRange(begin, end []byte, v tx.Version) {
	t := &s.tree
	e := makeQuery(end)
	leaf, pos := t.seek(&e)
	if pos < 0 || t.arena.cmp(&t.nodes[leaf].keys[pos], &e) != 0 {
		fl, fp := t.floorEntry(leaf, pos)
		gv := tx.Version(t.nodes[fl].b[fp])
		t.insertAt(leaf, pos+1, t.arena.store(end), gv, gv)
		s.inserted++
	}
	b := makeQuery(begin)
	leaf, pos = t.seek(&b)
	if pos >= 0 && t.arena.cmp(&t.nodes[leaf].keys[pos], &b) == 0 {
		nd := &t.nodes[leaf]
		nd.a[pos], nd.b[pos] = v, uint64(v)
		t.raise(v)
	} else {
		t.insertAt(leaf, pos+1, t.arena.store(begin), v, v)
		s.inserted++
	}
	s.removeBetween(&b, &e)
}

// removeBetween deletes every boundary strictly between b and e, one leaf
// run at a time.
func (s *Set) removeBetween(b, e *query) {
	t := &s.tree
	for {
		leaf, pos := t.find(b)
		pos++
		if pos == int(t.nodes[leaf].n) {
			leaf, pos = t.nodes[leaf].next, 0
			if leaf == nilNode {
				return
			}
		}
		first := t.nodes[leaf].keys[pos]
		if t.arena.cmp(&first, e) >= 0 {
			return
		}
		q := t.arena.queryOf(first)
		leaf, pos = t.seek(&q)
		hi := t.lowerIn(&t.nodes[leaf], pos, e)
		t.removeRun(leaf, pos, hi)
	}
}

// SetOldestVersion forgets the history at or below v: reads below v become
// TooOld, and boundaries that only record versions <= v are removed, a
// bounded number per call (see the package doc). A v not above the current
// oldest version is ignored.
func (s *Set) SetOldestVersion(v tx.Version) {
	if v <= s.oldest {
		return
	}
	s.oldest = v
	s.sweep(max(s.sweepMin, 2*s.inserted))
	s.inserted = 0
	if s.tree.needsRebuild() {
		s.tree.rebuild()
	}
}

// ForgetThrough is SetOldestVersion done at once: it forgets the history at
// or below v (if v is above the oldest version), removes every boundary
// that only records such versions in one full pass, and compacts the
// storage so that the memory is given back. O(n): it serves the memory
// bound (the engine calls it when Bytes passes its limit), not the steady
// state, where SetOldestVersion's incremental sweep keeps latency flat.
func (s *Set) ForgetThrough(v tx.Version) {
	if v > s.oldest {
		s.oldest = v
	}
	s.sweepAfter = s.sweepAfter[:0]
	s.sweep(s.tree.count + 1)
	s.sweepAfter = nil
	s.inserted = 0
	s.tree.rebuild()
}

// sweepMin is the least number of boundaries a sweep step visits.
const sweepMin = 4096

// sweep visits up to budget boundaries from where the last step stopped,
// wrapping around, and removes those that are redundant now: a boundary
// whose point version is <= oldest (so its gap version is too) after a
// boundary whose gap version is <= oldest says nothing a read at or above
// oldest could see.
func (s *Set) sweep(budget int) {
	t := &s.tree
	oldest := s.oldest
	if planted.Enabled && planted.Is(planted.WindowTooFar) {
		oldest += 16
	}
	budget = min(budget, t.count)
	for budget > 0 {
		after := makeQuery(s.sweepAfter)
		fl, fp := t.floorEntry(t.find(&after))
		prevGv := tx.Version(t.nodes[fl].b[fp])
		leaf, pos := fl, fp+1
		if pos == int(t.nodes[leaf].n) {
			leaf, pos = t.nodes[leaf].next, 0
			if leaf == nilNode {
				s.sweepAfter = s.sweepAfter[:0] // wrap around
				budget--
				continue
			}
		}
		nd := &t.nodes[leaf]
		n := int(nd.n)
		lo := pos
		for ; lo < n; lo++ {
			if nd.a[lo] <= oldest && prevGv <= oldest {
				break
			}
			prevGv = tx.Version(nd.b[lo])
		}
		hi := lo
		for hi < n && nd.a[hi] <= oldest {
			hi++
		}
		budget -= max(hi-pos, 1)
		// Resume after the last boundary kept before the run.
		kept := nd.keys[max(lo, 1)-1]
		if lo == 0 {
			kept = t.nodes[fl].keys[fp]
		}
		s.sweepAfter = appendKey(s.sweepAfter[:0], &t.arena, kept)
		if hi > lo {
			q := t.arena.queryOf(nd.keys[lo])
			leaf, p := t.seek(&q)
			t.removeRun(leaf, p, p+hi-lo)
		}
	}
}

// OldestVersion returns the oldest version the set can answer for.
func (s *Set) OldestVersion() tx.Version { return s.oldest }

// Bytes returns the memory the set holds: node slices, arena, free list.
func (s *Set) Bytes() int64 { return s.tree.bytes() + int64(cap(s.sweepAfter)) }

// Len returns the number of boundary keys stored, not counting the
// sentinel for the empty key. A point write adds at most one boundary, a
// range write at most two (and removes those inside it); SetOldestVersion
// removes them gradually.
func (s *Set) Len() int { return s.tree.count - 1 }

// verify checks the representation invariants (see the package doc) and
// returns the first one broken. Tests call it after every operation.
func (s *Set) verify() error {
	if err := s.tree.verify(); err != nil {
		return fmt.Errorf("conflict: %w", err)
	}
	return nil
}

// checkAdd asserts AddWrites' contract: versions strictly increase from
// call to call, and every range has begin < end (the engine rejects an
// inverted range before it gets here; AddWrites would skip it silently).
func (s *Set) checkAdd(writes []Write, v tx.Version) {
	if s.addCalls > 0 && v <= s.lastAdded {
		panic(fmt.Sprintf("conflict: AddWrites at version %d <= previous %d", v, s.lastAdded))
	}
	s.lastAdded = v
	s.addCalls++
	for i := range writes {
		w := &writes[i]
		if len(w.End) != 0 && bytes.Compare(w.Begin, w.End) >= 0 {
			panic(fmt.Sprintf("conflict: AddWrites at version %d: write %d range [%q, %q) has begin >= end", v, i, w.Begin, w.End))
		}
	}
}

// checkTree runs the full representation check (ordered keys, gap version
// <= point version, every aggregate equal to its subtree's maximum) after
// a batch. It is O(n), so past small sizes it runs on every k-th call with
// k growing with the set: about 16 boundaries visited per call amortized,
// which keeps the race run's large conflict tests in budget.
func (s *Set) checkTree() {
	if every := 1 + s.tree.count/16; s.addCalls%every != 0 {
		return
	}
	if err := s.verify(); err != nil {
		panic(fmt.Sprintf("conflict: after AddWrites at version %d (oldest %d): %v", s.lastAdded, s.oldest, err))
	}
}
