package client

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// OpType is the wire name of a write operation.
type OpType string

// Operation types, as on the wire.
const (
	OpWrite       OpType = "write"
	OpDelete      OpType = "delete"
	OpRangeDelete OpType = "range_delete"
)

// Operation is one write of a transaction. For OpRangeDelete, Key is the
// inclusive begin and End the exclusive end of the range; Value is unused.
// For OpDelete only Key is used.
type Operation struct {
	Type  OpType
	Key   []byte
	End   []byte
	Value []byte
}

// PreconditionType is the wire name of a read a commit depends on.
type PreconditionType string

// Precondition types, as on the wire.
const (
	PointRead PreconditionType = "point_read"
	RangeRead PreconditionType = "range_read"
)

// Precondition says "I read Key (or [Key, End)) at Version". When
// HasVersion is false the transaction's read version applies.
type Precondition struct {
	Type       PreconditionType
	Key        []byte
	End        []byte
	Version    uint64
	HasVersion bool
}

// Txn is a commit request under construction. Build it with NewTxn and the
// chaining methods, then pass it to Client.Commit.
//
// A Txn keeps the byte slices it is given, without copying: do not modify
// them until Commit returns. A Txn may be committed more than once (each
// Commit without an explicit RequestID generates a fresh id) but must not be
// modified while a Commit using it runs.
type Txn struct {
	requestID      string
	leaderID       string
	readVersion    uint64
	hasReadVersion bool
	preconditions  []Precondition
	operations     []Operation
}

// NewTxn returns an empty transaction. Committed as is, it is a barrier: it
// gets a version and appears in the stream.
func NewTxn() *Txn { return &Txn{} }

// Reset empties t, keeping its capacity, so one Txn can be reused per
// goroutine without allocating.
func (t *Txn) Reset() *Txn {
	t.requestID, t.leaderID = "", ""
	t.readVersion, t.hasReadVersion = 0, false
	clear(t.preconditions) // drop references to the caller's slices
	clear(t.operations)
	t.preconditions = t.preconditions[:0]
	t.operations = t.operations[:0]
	return t
}

// RequestID sets the idempotency key (20–256 bytes). Without one, Commit
// generates a random 32-hex id per call.
func (t *Txn) RequestID(id string) *Txn { t.requestID = id; return t }

// LeaderID makes the commit conditional on the leader term: the server
// refuses it (ErrLeaderChanged) if the current leader id differs.
func (t *Txn) LeaderID(id string) *Txn { t.leaderID = id; return t }

// ReadVersion sets the default version of preconditions that have none.
func (t *Txn) ReadVersion(v uint64) *Txn { t.readVersion, t.hasReadVersion = v, true; return t }

// PointRead adds a precondition on key at the transaction's read version.
func (t *Txn) PointRead(key []byte) *Txn {
	t.preconditions = append(t.preconditions, Precondition{Type: PointRead, Key: key})
	return t
}

// PointReadAt adds a precondition on key read at version v.
func (t *Txn) PointReadAt(key []byte, v uint64) *Txn {
	t.preconditions = append(t.preconditions, Precondition{Type: PointRead, Key: key, Version: v, HasVersion: true})
	return t
}

// RangeRead adds a precondition on [begin, end) at the read version.
func (t *Txn) RangeRead(begin, end []byte) *Txn {
	t.preconditions = append(t.preconditions, Precondition{Type: RangeRead, Key: begin, End: end})
	return t
}

// RangeReadAt adds a precondition on [begin, end) read at version v.
func (t *Txn) RangeReadAt(begin, end []byte, v uint64) *Txn {
	t.preconditions = append(t.preconditions, Precondition{Type: RangeRead, Key: begin, End: end, Version: v, HasVersion: true})
	return t
}

// Write sets key to value.
func (t *Txn) Write(key, value []byte) *Txn {
	t.operations = append(t.operations, Operation{Type: OpWrite, Key: key, Value: value})
	return t
}

// Delete removes key.
func (t *Txn) Delete(key []byte) *Txn {
	t.operations = append(t.operations, Operation{Type: OpDelete, Key: key})
	return t
}

// RangeDelete removes every key in [begin, end).
func (t *Txn) RangeDelete(begin, end []byte) *Txn {
	t.operations = append(t.operations, Operation{Type: OpRangeDelete, Key: begin, End: end})
	return t
}

// Preconditions returns the preconditions added so far, in order: the
// indexes in APIError.Conflicts refer to this slice.
func (t *Txn) Preconditions() []Precondition { return t.preconditions }

// Operations returns the operations added so far, in order.
func (t *Txn) Operations() []Operation { return t.operations }

// AppendJSON appends the POST /v1/commit body of t to dst with the given
// request id (empty: none) and returns the extended slice.
//
// It is hand-written rather than encoding/json because loadgen commits
// through it: it does not allocate beyond growing dst (see
// BenchmarkAppendJSON against json.Marshal).
func (t *Txn) AppendJSON(dst []byte, requestID string) []byte {
	dst = append(dst, '{')
	sep := false
	field := func(name string) {
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	if requestID != "" {
		field("request_id")
		dst = appendJSONString(dst, requestID)
	}
	if t.leaderID != "" {
		field("leader_id")
		dst = appendJSONString(dst, t.leaderID)
	}
	if t.hasReadVersion {
		field("read_version")
		dst = strconv.AppendUint(dst, t.readVersion, 10)
	}
	if len(t.preconditions) > 0 {
		field("preconditions")
		dst = append(dst, '[')
		for i := range t.preconditions {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendPrecondition(dst, &t.preconditions[i])
		}
		dst = append(dst, ']')
	}
	if len(t.operations) > 0 {
		field("operations")
		dst = append(dst, '[')
		for i := range t.operations {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendOperation(dst, &t.operations[i])
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

func appendPrecondition(dst []byte, p *Precondition) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, p.Type...)
	if p.Type == RangeRead {
		dst = append(dst, `","begin":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p.Key)
		dst = append(dst, `","end":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p.End)
	} else {
		dst = append(dst, `","key":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, p.Key)
	}
	dst = append(dst, '"')
	if p.HasVersion {
		dst = append(dst, `,"version":`...)
		dst = strconv.AppendUint(dst, p.Version, 10)
	}
	return append(dst, '}')
}

func appendOperation(dst []byte, o *Operation) []byte {
	dst = append(dst, `{"type":"`...)
	dst = append(dst, o.Type...)
	switch o.Type {
	case OpRangeDelete:
		dst = append(dst, `","begin":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, o.Key)
		dst = append(dst, `","end":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, o.End)
	case OpWrite:
		dst = append(dst, `","key":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, o.Key)
		dst = append(dst, `","value":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, o.Value)
	default:
		dst = append(dst, `","key":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, o.Key)
	}
	return append(dst, '"', '}')
}

// appendJSONString appends s as a JSON string. Ids are ASCII in practice;
// anything else goes through encoding/json so that invalid UTF-8 is
// replaced exactly as the standard library does.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, err := json.Marshal(s)
			if err != nil { // cannot happen for a string
				return append(dst, `""`...)
			}
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
