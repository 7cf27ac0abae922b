package httpapi

import (
	"errors"
	"sync"
	"time"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/netpoll"
)

// commitHandler serves POST /v1/commit. The body is pushed into a
// jsonstream.Parser chunk by chunk as it arrives; at the end the request is
// detached with DetachPipelined and the parsed commit submitted to the
// engine, whose done callback answers through the Detached token. The
// reactor meanwhile goes on parsing the connection's pipelined commits, so
// the engine sees several commits of one connection at once. Everything a
// commit needs lives in a commitSlot taken from the connection's pool and
// returned after its answer, so the steady state allocates nothing.
type commitHandler struct {
	api *API
}

// commitConn is the per-connection state of the commit route: the slot of
// the request being read, and the free slots.
type commitConn struct {
	api *API
	cur *commitSlot // the request the reactor is reading; nil between requests

	mu   sync.Mutex // free is touched by the reactor and by done callbacks
	free []*commitSlot
}

// commitSlot is one commit in flight. Ownership: the reactor from
// ServeHead to Submit, the engine from Submit until done, which answers
// and puts the slot back in its connection's pool.
type commitSlot struct {
	conn   *commitConn
	parser *jsonstream.Parser
	arena  *arena.Arena
	req    engine.Request
	det    netpoll.Detached
	answer []byte
	failed bool                  // the body was refused; the answer is sent
	done   func(*engine.Request) // finish, bound once
}

func (h *commitHandler) conn(ex *netpoll.Exchange) *commitConn {
	if c, ok := ex.ConnState().(*commitConn); ok {
		return c
	}
	c := &commitConn{api: h.api}
	ex.SetConnState(c)
	return c
}

// take returns a free slot, or a new one when every slot is in flight.
func (c *commitConn) take() *commitSlot {
	c.mu.Lock()
	if n := len(c.free); n > 0 {
		s := c.free[n-1]
		c.free[n-1] = nil
		c.free = c.free[:n-1]
		c.mu.Unlock()
		return s
	}
	c.mu.Unlock()
	s := &commitSlot{
		conn:   c,
		parser: jsonstream.NewParser(c.api.limits),
		arena:  arena.New(arena.DefaultChunkBytes),
	}
	s.done = s.finish
	return s
}

// put returns an answered slot; its memory is dead.
func (c *commitConn) put(s *commitSlot) {
	c.mu.Lock()
	if len(c.free) < c.api.commitSlotsKept {
		c.free = append(c.free, s)
	}
	c.mu.Unlock()
}

func (h *commitHandler) ServeHead(ex *netpoll.Exchange) {
	a := h.api
	c := h.conn(ex)
	if c.cur == nil {
		c.cur = c.take()
	}
	s := c.cur
	s.failed = false
	s.req.ReceivedAt = time.Now().UnixNano()
	if !a.authorized(ex, routeCommit) {
		s.failed = true
		return
	}
	if msg := checkQuery(ex.Request().RawQuery(), paramsNone); msg != "" {
		s.failed = true
		a.respondError(ex, routeCommit, 400, "bad_request", msg)
		return
	}
	if a.leaderEngine(ex, routeCommit) == nil {
		s.failed = true
		return
	}
	if !jsonContentTypeOK(ex.Request()) {
		s.failed = true
		a.respondError(ex, routeCommit, 415, "unsupported_media_type", "Content-Type: must be application/json (curl: use --json, not -d)")
		return
	}
	// The slot's previous commit is answered: its memory is dead.
	s.arena.Reset()
	s.parser.Reset(s.arena, &s.req.Commit)
}

func (h *commitHandler) ServeBody(ex *netpoll.Exchange, chunk []byte) {
	s := h.conn(ex).cur
	if s == nil || s.failed {
		return
	}
	if err := s.parser.Write(chunk); err != nil {
		s.refuse(ex, err)
	}
}

func (h *commitHandler) ServeEnd(ex *netpoll.Exchange) {
	c := h.conn(ex)
	s := c.cur
	if s == nil || s.failed {
		return
	}
	if err := s.parser.Finish(); err != nil {
		s.refuse(ex, err)
		return
	}
	eng := c.api.leaderEngine(ex, routeCommit)
	if eng == nil { // the role changed while the body arrived
		s.failed = true
		return
	}
	c.cur = nil // the slot is the engine's now; the next request takes another
	s.det = ex.DetachPipelined()
	eng.Submit(&s.req, s.done)
}

// refuse answers a body the parser rejected: 413 over a limit, else 400.
// The slot stays the connection's current one, reused by the next request.
func (s *commitSlot) refuse(ex *netpoll.Exchange, err error) {
	s.failed = true
	var perr *jsonstream.Error
	if errors.As(err, &perr) && perr.Kind == jsonstream.KindTooLarge {
		s.conn.api.respondError(ex, routeCommit, 413, "payload_too_large", err.Error())
		return
	}
	s.conn.api.respondError(ex, routeCommit, 400, "bad_request", err.Error())
}

// finish is the engine's done callback: encode the answer, hand it to the
// token (Respond copies it) and give the slot back to the connection.
func (s *commitSlot) finish(r *engine.Request) {
	a := s.conn.api
	status, body := a.commitAnswer(s.answer[:0], r)
	s.answer = body
	a.met.observeCommit(r, status)
	// Respond fails only if the connection was closed meanwhile: the
	// answer has nowhere to go, and the slot is free either way.
	_ = s.det.Respond(status, contentTypeJSON, body)
	s.det = netpoll.Detached{}
	s.conn.put(s)
}

// commitAnswer encodes the HTTP answer for an engine outcome.
func (a *API) commitAnswer(dst []byte, r *engine.Request) (int, []byte) {
	ans := jsonstream.CommitAnswer{
		RequestID: r.RequestID,
		Version:   r.Version,
		LeaderID:  a.leaderIDOf(),
		Conflicts: r.Conflicts,
		Duplicate: r.Duplicate,
	}
	if r.LeaderID != nil { // a duplicate: the term that committed it
		ans.LeaderID = r.LeaderID
	}
	switch r.Outcome {
	case engine.Committed:
		ans.Status = jsonstream.StatusCommitted
		return 200, jsonstream.AppendCommitAnswer(dst, ans)
	case engine.Conflict:
		ans.Status, ans.Reason = jsonstream.StatusNotCommitted, jsonstream.ReasonConflict
		return 409, jsonstream.AppendCommitAnswer(dst, ans)
	case engine.TooOld:
		ans.Status, ans.Reason = jsonstream.StatusNotCommitted, jsonstream.ReasonTooOld
		return 409, jsonstream.AppendCommitAnswer(dst, ans)
	case engine.LeaderChanged:
		ans.Status, ans.Reason = jsonstream.StatusNotCommitted, jsonstream.ReasonLeaderChanged
		return 409, jsonstream.AppendCommitAnswer(dst, ans)
	case engine.FutureVersion:
		return 400, appendErrorReason(dst, "bad_request", r.Err, "future_version", r.RequestID)
	case engine.Invalid:
		return 400, appendErrorReason(dst, "bad_request", r.Err, "", r.RequestID)
	case engine.Deposed:
		return 503, appendErrorReason(dst, "unavailable", "this server was deposed by another leader; the commit's fate is unknown here: ask the new leader's /v1/status", "leader_changed", r.RequestID)
	default: // Unavailable
		return 503, appendErrorReason(dst, "unavailable", "the server cannot persist commits right now; nothing was committed by this answer's knowledge: retry after checking /v1/status", "", r.RequestID)
	}
}

// appendErrorReason appends an error body with an optional "reason" and the
// echoed request_id (so a client can look the commit up).
func appendErrorReason(dst []byte, code, message, reason string, requestID []byte) []byte {
	dst = jsonstream.AppendError(dst, code, []byte(message))
	dst = dst[:len(dst)-1] // reopen the object
	if reason != "" {
		dst = append(dst, `,"reason":"`...)
		dst = append(dst, reason...)
		dst = append(dst, '"')
	}
	if len(requestID) > 0 {
		dst = appendField(dst, "request_id")
		dst = jsonstream.AppendString(dst, requestID)
	}
	return append(dst, '}')
}

// leaderIDOf returns the current engine's leader id (for answers).
func (a *API) leaderIDOf() []byte {
	if eng := a.engine(); eng != nil {
		return []byte(eng.LeaderID())
	}
	return nil
}
