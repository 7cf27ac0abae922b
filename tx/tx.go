// Package tx holds the domain types every layer of WeaselDB shares: versions,
// commit requests as parsed from the wire, and committed transactions as
// persisted and streamed. It has no dependencies and no behaviour beyond
// small helpers, so that jsonstream, engine, persist and the HTTP layer can
// all speak it without importing each other.
//
// Byte slices in these types are borrowed: their owner (a connection arena,
// a segment buffer) says how long they stay valid. Code that keeps one past
// that lifetime must copy it.
package tx

// Version is a position in the log. Every committed transaction gets its own
// version, strictly greater than every earlier one; an empty log is at 0 and
// its first transaction gets 1.
type Version uint64

// OpType is the kind of a write operation.
type OpType uint8

const (
	// OpWrite sets Key to Value.
	OpWrite OpType = iota + 1
	// OpDelete removes Key.
	OpDelete
	// OpRangeDelete removes every key in [Key, End).
	OpRangeDelete
)

// String returns the wire name of the operation type.
func (t OpType) String() string {
	switch t {
	case OpWrite:
		return "write"
	case OpDelete:
		return "delete"
	case OpRangeDelete:
		return "range_delete"
	}
	return "unknown"
}

// Operation is one write of a transaction. For OpRangeDelete, Key is the
// inclusive begin and End the exclusive end of the range; Value is unused.
// For OpDelete only Key is used.
type Operation struct {
	Type  OpType
	Key   []byte
	End   []byte
	Value []byte
}

// PreconditionType is the kind of a read that a commit depends on.
type PreconditionType uint8

const (
	// PointRead says the client read Key.
	PointRead PreconditionType = iota + 1
	// RangeRead says the client read every key in [Key, End).
	RangeRead
)

// String returns the wire name of the precondition type.
func (t PreconditionType) String() string {
	switch t {
	case PointRead:
		return "point_read"
	case RangeRead:
		return "range_read"
	}
	return "unknown"
}

// Precondition says "I read Key (or [Key, End)) at Version". It holds when no
// transaction committed with a version greater than Version wrote a key in
// it. HasVersion is false when the request omitted "version"; the commit's
// ReadVersion then applies.
type Precondition struct {
	Type       PreconditionType
	Key        []byte
	End        []byte
	Version    Version
	HasVersion bool
}

// Commit is a parsed POST /v1/commit request body. Its slices point into the
// parser's arena and live until the request is answered.
type Commit struct {
	RequestID      []byte // empty when the client sent none
	LeaderID       []byte // empty when the client sent none
	ReadVersion    Version
	HasReadVersion bool
	Preconditions  []Precondition
	Operations     []Operation
}

// Reset empties c, keeping the capacity of its slices for reuse.
func (c *Commit) Reset() {
	c.RequestID = c.RequestID[:0]
	c.LeaderID = c.LeaderID[:0]
	c.ReadVersion = 0
	c.HasReadVersion = false
	c.Preconditions = c.Preconditions[:0]
	c.Operations = c.Operations[:0]
}

// Transaction is a committed transaction as persisted in a segment and sent
// to subscribers. TimestampUnixNano is the commit time assigned by the
// leader. A transaction with no RequestID and no Operations that opens a
// segment is a leadership claim (see persist).
type Transaction struct {
	Version           Version
	RequestID         []byte
	TimestampUnixNano int64
	Operations        []Operation
}
