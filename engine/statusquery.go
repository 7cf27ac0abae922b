package engine

import "weaseldb/tx"

// StatusState is the answer of Status.
type StatusState uint8

const (
	// StatusNotCommitted: no transaction with the id committed after
	// MinVersion, and none is in flight.
	StatusNotCommitted StatusState = iota
	// StatusCommitted: committed (durable) at StatusAnswer.Version.
	StatusCommitted
	// StatusInFlight: in the pipeline; ask again.
	StatusInFlight
	// StatusGone: MinVersion is older than the status window (410).
	StatusGone
)

// StatusQuery asks whether a request id committed.
type StatusQuery struct {
	RequestID []byte
	// MinVersion: only commits after it count. Without HasMinVersion the
	// whole status window is searched.
	MinVersion    tx.Version
	HasMinVersion bool
}

// StatusAnswer is the result of Status.
type StatusAnswer struct {
	State   StatusState
	Version tx.Version // for StatusCommitted
	// Floor: the status window covers versions above it; a MinVersion
	// below it is StatusGone.
	Floor tx.Version
}

// Status answers GET /v1/status. A request still in the admission queue
// (not yet resolved) is reported StatusNotCommitted: it was not resolved
// when asked.
func (e *Engine) Status(q StatusQuery) StatusAnswer {
	h := hashRequestID(q.RequestID)
	durable := e.Version()
	e.status.RLock()
	defer e.status.RUnlock()
	a := StatusAnswer{Floor: e.status.idx.floor}
	if q.HasMinVersion && q.MinVersion < a.Floor {
		a.State = StatusGone
		return a
	}
	if v, ok := e.status.idx.lookup(h); ok && (!q.HasMinVersion || v > q.MinVersion) {
		if v <= durable {
			a.State, a.Version = StatusCommitted, v
		} else {
			a.State = StatusInFlight
		}
		return a
	}
	if e.status.failed.lookup(h, e.answeredSeq.Load()) != nil {
		a.State = StatusInFlight
	}
	return a
}
