package engine

import (
	"github.com/weaseldb/weaseldb/tx"
)

// Outcome is the engine's answer to a commit request.
type Outcome uint8

const (
	// Pending: not answered yet. Never seen by a done callback.
	Pending Outcome = iota
	// Committed: durable at Request.Version (HTTP 200).
	Committed
	// Conflict: a precondition failed; Request.Conflicts lists them and
	// Request.Version is the latest committed version (409 conflict).
	Conflict
	// TooOld: a precondition's version is older than the conflict window;
	// Request.Conflicts lists them (409 too_old).
	TooOld
	// LeaderChanged: the request's leader_id is not this leader's (409
	// leader_changed).
	LeaderChanged
	// FutureVersion: a precondition version is above every assigned
	// version; Request.Err names the field (400 future_version).
	FutureVersion
	// Invalid: the request breaks a rule the parser should have enforced
	// (a precondition without any version, begin >= end); Request.Err names
	// the field (400).
	Invalid
	// Unavailable: the engine cannot take or persist the request now: queue
	// full, persistence failing, or shutting down. Nothing was committed by
	// this answer's knowledge; the client may retry or ask /v1/status (503).
	Unavailable
	// Deposed: another leader fenced this one; the request's fate is
	// unknown to this server (503 leader_changed).
	Deposed
)

var outcomeNames = [...]string{
	Pending: "pending", Committed: "committed", Conflict: "conflict", TooOld: "too_old",
	LeaderChanged: "leader_changed", FutureVersion: "future_version", Invalid: "invalid",
	Unavailable: "unavailable", Deposed: "deposed",
}

// String returns the outcome's name (the API's "reason" where one exists).
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Request is one commit travelling through the pipeline. The caller owns it
// and reuses it (one per connection), so that a commit costs no allocation
// in steady state.
//
// The caller fills Commit and ReceivedAt and calls Engine.Submit. From then
// until the done callback returns, the engine owns the Request and every
// slice Commit points to; the caller must not touch them. In the callback
// (and after it) the outputs are valid until the caller reuses the Request.
type Request struct {
	// Inputs.
	Commit     tx.Commit
	ReceivedAt int64 // unix nanos; for latency metrics only

	// Outputs.
	Outcome Outcome
	// Version: the committed version (Committed), or the latest committed
	// version (every other outcome except Invalid/FutureVersion).
	Version tx.Version
	// RequestID echoes Commit.RequestID, or holds an id generated into the
	// Request's own storage when the client sent none.
	RequestID []byte
	// Duplicate: this answer is an earlier transaction's with the same
	// request id; nothing new was committed.
	Duplicate bool
	// Conflicts: 0-based indexes of the preconditions that failed with
	// Outcome (Conflict or TooOld).
	Conflicts []int
	// Err names the offending field for FutureVersion and Invalid.
	Err string
	// LeaderID: for a Duplicate Committed answer, the leader id of the term
	// that committed the transaction (maybe an earlier term's); nil for
	// every other answer, which is this engine's (LeaderID()).
	LeaderID []byte

	// StatusQuery and StatusAnswer: the query and answer of a request
	// submitted with SubmitStatus (Commit and the outputs above unused).
	StatusQuery  StatusQuery
	StatusAnswer StatusAnswer
	isStatus     bool

	done func(*Request)

	// Set by stage 1.
	seq       uint64 // pipeline sequence, for in-flight duplicate tracking
	timestamp int64  // commit time (unix nanos) for the segment
	idHash    idHash

	idStorage [36]byte
}

func (r *Request) resetOutputs() {
	r.Outcome = Pending
	r.Version = 0
	r.RequestID = r.RequestID[:0]
	r.Duplicate = false
	r.Conflicts = r.Conflicts[:0]
	r.Err = ""
	r.LeaderID = nil
	r.isStatus = false
	r.StatusAnswer = StatusAnswer{}
}

// ensureRequestID points r.RequestID at the client's id, or generates a
// random UUID (version 4 form) into r's own storage.
func (r *Request) ensureRequestID(rand func() uint64) {
	if len(r.Commit.RequestID) > 0 {
		r.RequestID = r.Commit.RequestID
		return
	}
	appendUUID(r.idStorage[:0], rand(), rand())
	r.RequestID = r.idStorage[:]
}

// newRequestID returns a fresh generated request id (a random UUID), for
// transactions the server writes itself.
func newRequestID(rand func() uint64) []byte {
	return appendUUID(make([]byte, 0, 36), rand(), rand())
}

const hexDigits = "0123456789abcdef"

// appendUUID appends the 36-character textual form of a version 4 UUID made
// of the random bits hi and lo.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	hi = hi&^(0xf<<12) | 4<<12 // version 4
	lo = lo&^(0x3<<62) | 2<<62 // variant 10
	for i := range 16 {
		var b byte
		if i < 8 {
			b = byte(hi >> (56 - 8*i))
		} else {
			b = byte(lo >> (56 - 8*(i-8)))
		}
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xf])
	}
	return dst
}
