package engine

import "github.com/weaseldb/weaseldb/tx"

// StatusState is the answer of a status query.
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
	// StatusUnavailable: the engine is closing and cannot answer (503).
	StatusUnavailable
	// StatusDeposed: another leader fenced this one; only the new leader
	// can answer (503 leader_changed).
	StatusDeposed
)

// StatusQuery asks whether a request id committed.
type StatusQuery struct {
	RequestID []byte
	// MinVersion: only commits after it count. Without HasMinVersion the
	// whole status window is searched.
	MinVersion    tx.Version
	HasMinVersion bool
}

// StatusAnswer is the result of a status query.
type StatusAnswer struct {
	State   StatusState
	Version tx.Version // for StatusCommitted
	// Floor: the status window covers versions above it; a MinVersion
	// below it is StatusGone.
	Floor tx.Version
}

// SubmitStatus answers q through the pipeline: the query joins the
// admission queue behind every commit submitted before it, and stage 1
// answers it in order. So a commit still queued when the query arrived is
// resolved first and reported committed or in flight, never
// not_committed (API.md: not_committed means none committed and none is in
// flight), and the caller never touches the resolver's state: a reactor
// calling SubmitStatus does not block. done is called exactly once with r,
// r.StatusAnswer holding the answer, on an engine goroutine (or on the
// caller's, before SubmitStatus returns, when the engine refuses at once).
// r belongs to the engine until then, as with Submit.
func (e *Engine) SubmitStatus(r *Request, q StatusQuery, done func(*Request)) {
	r.resetOutputs()
	r.isStatus = true
	r.done = done
	r.StatusQuery = q
	r.idHash = hashRequestID(q.RequestID)
	switch {
	case e.deposedFlag.Load():
		e.refuseStatus(r, StatusDeposed)
		return
	case e.closing.Load(), !e.started.Load(): // closing, or a replica (no stage 1)
		e.refuseStatus(r, StatusUnavailable)
		return
	}
	// A status query is admitted while persistence is failing (it commits
	// nothing), but counts against MaxQueued like a commit.
	if e.queued.Add(1) > int64(e.cfg.MaxQueued) {
		e.queued.Add(-1)
		e.refuseStatus(r, StatusUnavailable)
		return
	}
	if !e.admission.add(r) {
		e.queued.Add(-1)
		e.refuseStatus(r, StatusUnavailable)
	}
}

func (e *Engine) refuseStatus(r *Request, s StatusState) {
	r.StatusAnswer = StatusAnswer{State: s}
	done := r.done
	r.done = nil
	done(r)
}

// Status is SubmitStatus for callers that may wait (tests, tools): it
// blocks until stage 1 answered. A netpoll handler must use SubmitStatus.
func (e *Engine) Status(q StatusQuery) StatusAnswer {
	ch := make(chan StatusAnswer, 1)
	e.SubmitStatus(&Request{}, q, func(r *Request) { ch <- r.StatusAnswer })
	return <-ch
}

// answerStatus decides a status query in stage 1, in admission order:
// every commit admitted before it is resolved already. A commit found in
// the index but not yet durable, or a failure not yet answered, is in
// flight.
func (r *resolver) answerStatus(req *Request) {
	e := r.e
	q := &req.StatusQuery
	a := StatusAnswer{Floor: e.status.idx.floor}
	switch {
	case e.deposedFlag.Load():
		a.State = StatusDeposed // a commit of the new leader is unknown here
	case q.HasMinVersion && q.MinVersion < a.Floor:
		a.State = StatusGone
	default:
		v, ok, err := e.status.idx.lookup(req.idHash)
		if err != nil {
			e.statusReadFailed(err)
			a.State = StatusUnavailable
			break
		}
		if ok && (!q.HasMinVersion || v > q.MinVersion) {
			if v <= e.Version() {
				a.State, a.Version = StatusCommitted, v
			} else {
				a.State = StatusInFlight
			}
		} else if e.status.failed.lookup(req.idHash, e.answeredSeq.Load()) != nil {
			a.State = StatusInFlight
		}
	}
	req.StatusAnswer = a
}
