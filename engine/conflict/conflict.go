package conflict

import (
	"bytes"
	"fmt"
	"sort"

	"weaseldb/tx"
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
	bounds []bound // sorted by key; bounds[0] is the sentinel ""
	bytes  int64
}

type bound struct {
	key    []byte
	pv, gv tx.Version
}

// New returns an empty conflict set whose history starts at oldest: reads
// below oldest are TooOld.
func New(oldest tx.Version) *Set {
	return &Set{oldest: oldest, bounds: []bound{{key: []byte{}}}}
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
	isRange := len(r.End) != 0
	if isRange && bytes.Compare(r.End, r.Begin) <= 0 {
		return Commit
	}
	i := s.floor(r.Begin)
	b := &s.bounds[i]
	v := b.gv
	if bytes.Equal(b.key, r.Begin) {
		v = b.pv
	}
	if v > r.Version {
		return Conflict
	}
	if isRange {
		for j := i + 1; j < len(s.bounds) && bytes.Compare(s.bounds[j].key, r.End) < 0; j++ {
			if s.bounds[j].pv > r.Version {
				return Conflict
			}
		}
	}
	return Commit
}

// floor returns the index of the greatest boundary <= key.
func (s *Set) floor(key []byte) int {
	i := sort.Search(len(s.bounds), func(i int) bool { return bytes.Compare(s.bounds[i].key, key) > 0 })
	return i - 1
}

// AddWrites records writes at version v. v must be greater than the version
// of every earlier AddWrites call. The keys are copied.
func (s *Set) AddWrites(writes []Write, v tx.Version) {
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
}

func (s *Set) addPoint(k []byte, v tx.Version) {
	i := s.floor(k)
	if bytes.Equal(s.bounds[i].key, k) {
		s.bounds[i].pv = max(s.bounds[i].pv, v)
		return
	}
	s.insert(i+1, bound{key: bytes.Clone(k), pv: v, gv: s.bounds[i].gv})
}

func (s *Set) addRange(begin, end []byte, v tx.Version) {
	i := s.floor(end)
	if !bytes.Equal(s.bounds[i].key, end) {
		s.insert(i+1, bound{key: bytes.Clone(end), pv: s.bounds[i].gv, gv: s.bounds[i].gv})
	}
	lo := s.floor(begin)
	if bytes.Equal(s.bounds[lo].key, begin) {
		s.bounds[lo].pv, s.bounds[lo].gv = v, v
	} else {
		lo++
		s.insert(lo, bound{key: bytes.Clone(begin), pv: v, gv: v})
	}
	s.remove(lo+1, s.floor(end))
}

func (s *Set) insert(i int, b bound) {
	s.bounds = append(s.bounds, bound{})
	copy(s.bounds[i+1:], s.bounds[i:])
	s.bounds[i] = b
	s.bytes += int64(len(b.key)) + 32
}

// remove deletes bounds[i:j].
func (s *Set) remove(i, j int) {
	for _, b := range s.bounds[i:j] {
		s.bytes -= int64(len(b.key)) + 32
	}
	n := copy(s.bounds[i:], s.bounds[j:])
	clear(s.bounds[i+n:])
	s.bounds = s.bounds[:i+n]
}

// SetOldestVersion forgets the history at or below v and frees its memory.
// A v not above the current oldest version is ignored.
func (s *Set) SetOldestVersion(v tx.Version) {
	if v <= s.oldest {
		return
	}
	s.oldest = v
	kept := s.bounds[:1]
	for _, b := range s.bounds[1:] {
		if b.pv <= v && kept[len(kept)-1].gv <= v {
			s.bytes -= int64(len(b.key)) + 32
			continue
		}
		kept = append(kept, b)
	}
	clear(s.bounds[len(kept):])
	s.bounds = kept
}

// OldestVersion returns the oldest version the set can answer for.
func (s *Set) OldestVersion() tx.Version { return s.oldest }

// Bytes returns the memory the set holds.
func (s *Set) Bytes() int64 { return s.bytes }

// Len returns the number of boundary keys stored, not counting the
// sentinel for the empty key.
func (s *Set) Len() int { return len(s.bounds) - 1 }

// verify checks the representation invariants (see the package doc) and
// returns the first one broken. Tests call it after every operation.
func (s *Set) verify() error {
	if len(s.bounds) == 0 || len(s.bounds[0].key) != 0 {
		return fmt.Errorf("conflict: sentinel missing")
	}
	for i, b := range s.bounds {
		if b.gv > b.pv {
			return fmt.Errorf("conflict: boundary %q: gap version %d > point version %d", b.key, b.gv, b.pv)
		}
		if i > 0 && bytes.Compare(s.bounds[i-1].key, b.key) >= 0 {
			return fmt.Errorf("conflict: boundaries %q, %q out of order", s.bounds[i-1].key, b.key)
		}
	}
	return nil
}
