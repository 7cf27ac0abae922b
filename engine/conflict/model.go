package conflict

import (
	"bytes"

	"github.com/weaseldb/weaseldb/tx"
)

// Model is the brute-force oracle for Set: it keeps every write newer than
// the oldest version as a plain [begin, end) interval and answers a read by
// comparing it with every one of them. It is slow on purpose (O(writes) per
// read) and simple enough to be obviously right, so that randomized and fuzz
// tests — in this package and in others, e.g. the engine's — can check Set
// or anything built on it against it. It has the same methods and the same
// contract as Set.
type Model struct {
	oldest tx.Version
	writes []modelWrite
}

// modelWrite is one stored write; point writes are stored as [k, k\x00).
type modelWrite struct {
	begin, end []byte
	version    tx.Version
}

// NewModel returns an empty model whose history starts at oldest.
func NewModel(oldest tx.Version) *Model {
	return &Model{oldest: oldest}
}

// Check appends one Result per read to dst, with the semantics of Set.Check.
func (m *Model) Check(reads []Read, dst []Result) []Result {
	for _, r := range reads {
		dst = append(dst, m.check(r))
	}
	return dst
}

func (m *Model) check(r Read) Result {
	if r.Version < m.oldest {
		return TooOld
	}
	begin, end := interval(r.Begin, r.End)
	if bytes.Compare(begin, end) >= 0 {
		return Commit // an empty range reads nothing
	}
	for _, w := range m.writes {
		if w.version > r.Version && bytes.Compare(begin, w.end) < 0 && bytes.Compare(w.begin, end) < 0 {
			return Conflict
		}
	}
	return Commit
}

// AddWrites records writes at version v, with the semantics of Set.AddWrites.
func (m *Model) AddWrites(writes []Write, v tx.Version) {
	if v <= m.oldest {
		return // forgotten at once: no read at or above oldest can see it
	}
	for _, w := range writes {
		begin, end := interval(w.Begin, w.End)
		if bytes.Compare(begin, end) >= 0 {
			continue // an empty range writes nothing
		}
		m.writes = append(m.writes, modelWrite{
			begin:   bytes.Clone(begin),
			end:     bytes.Clone(end),
			version: v,
		})
	}
}

// SetOldestVersion forgets every write at or below v; a smaller v than the
// current oldest version is ignored.
func (m *Model) SetOldestVersion(v tx.Version) {
	if v <= m.oldest {
		return
	}
	m.oldest = v
	kept := m.writes[:0]
	for _, w := range m.writes {
		if w.version > v {
			kept = append(kept, w)
		}
	}
	clear(m.writes[len(kept):])
	m.writes = kept
}

// OldestVersion returns the oldest version the model can still answer for.
func (m *Model) OldestVersion() tx.Version { return m.oldest }

// Len returns the number of writes the model keeps.
func (m *Model) Len() int { return len(m.writes) }

// Bytes returns the key bytes the model keeps plus a fixed cost per write.
func (m *Model) Bytes() int64 {
	var n int64
	for _, w := range m.writes {
		n += int64(len(w.begin)+len(w.end)) + 56
	}
	return n
}

// interval returns the half-open interval a Read or Write covers: [begin,
// end) for a range, [k, k\x00) for a point (the smallest key after k is
// k\x00). The returned end of a point is a fresh slice.
func interval(begin, end []byte) ([]byte, []byte) {
	if len(end) == 0 {
		return begin, keyAfter(begin)
	}
	return begin, end
}

// keyAfter returns k\x00, the immediate successor of k in bytewise order.
func keyAfter(k []byte) []byte {
	next := make([]byte, len(k)+1)
	copy(next, k)
	return next
}
