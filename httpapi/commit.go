package httpapi

import (
	"errors"
	"time"

	"weaseldb/arena"
	"weaseldb/engine"
	"weaseldb/jsonstream"
	"weaseldb/netpoll"
)

// commitHandler serves POST /v1/commit. The body is pushed into the
// connection's jsonstream.Parser chunk by chunk as it arrives; at the end
// the connection is detached and the parsed commit submitted to the engine,
// whose done callback answers through the Detached token. Everything a
// commit needs lives in the connection's commitConn, reused request after
// request, so the steady state allocates nothing.
type commitHandler struct {
	api *API
}

// commitConn is the per-connection state of the commit route. Ownership
// follows the connection: the reactor between ServeHead and Detach, the
// engine from Submit until done, the reactor again after Respond.
type commitConn struct {
	api    *API
	parser *jsonstream.Parser
	arena  *arena.Arena
	req    engine.Request
	det    netpoll.Detached
	answer []byte
	failed bool                  // the body was refused; the answer is sent
	done   func(*engine.Request) // c.finish, bound once
}

func (h *commitHandler) conn(ex *netpoll.Exchange) *commitConn {
	if c, ok := ex.ConnState().(*commitConn); ok {
		return c
	}
	c := &commitConn{
		api:    h.api,
		parser: jsonstream.NewParser(h.api.limits),
		arena:  arena.New(arena.DefaultChunkBytes),
	}
	c.done = c.finish
	ex.SetConnState(c)
	return c
}

func (h *commitHandler) ServeHead(ex *netpoll.Exchange) {
	a := h.api
	c := h.conn(ex)
	c.failed = false
	c.req.ReceivedAt = time.Now().UnixNano()
	if !a.authorized(ex, routeCommit, true) {
		c.failed = true
		return
	}
	if !jsonContentTypeOK(ex.Request()) {
		c.failed = true
		a.respondError(ex, routeCommit, 415, "unsupported_media_type", "Content-Type: must be application/json (curl: use --json, not -d)")
		return
	}
	// The previous request on this connection is answered: its memory is dead.
	c.arena.Reset()
	c.parser.Reset(c.arena, &c.req.Commit)
}

func (h *commitHandler) ServeBody(ex *netpoll.Exchange, chunk []byte) {
	c := h.conn(ex)
	if c.failed {
		return
	}
	if err := c.parser.Write(chunk); err != nil {
		c.refuse(ex, err)
	}
}

func (h *commitHandler) ServeEnd(ex *netpoll.Exchange) {
	c := h.conn(ex)
	if c.failed {
		return
	}
	if err := c.parser.Finish(); err != nil {
		c.refuse(ex, err)
		return
	}
	c.det = ex.Detach()
	c.api.eng.Submit(&c.req, c.done)
}

// refuse answers a body the parser rejected: 413 over a limit, else 400.
func (c *commitConn) refuse(ex *netpoll.Exchange, err error) {
	c.failed = true
	var perr *jsonstream.Error
	if errors.As(err, &perr) && perr.Kind == jsonstream.KindTooLarge {
		c.api.respondError(ex, routeCommit, 413, "payload_too_large", err.Error())
		return
	}
	c.api.respondError(ex, routeCommit, 400, "bad_request", err.Error())
}

// finish is the engine's done callback: encode the answer and hand the
// connection back to its reactor.
func (c *commitConn) finish(r *engine.Request) {
	a := c.api
	status, body := a.commitAnswer(c.answer[:0], r)
	c.answer = body
	a.met.observeCommit(r, status)
	// Respond fails only if the connection was already answered, which
	// cannot happen: the token is used once per detached request.
	_ = c.det.Respond(status, contentTypeJSON, body)
}

// commitAnswer encodes the HTTP answer for an engine outcome.
func (a *API) commitAnswer(dst []byte, r *engine.Request) (int, []byte) {
	ans := jsonstream.CommitAnswer{
		RequestID: r.RequestID,
		Version:   r.Version,
		LeaderID:  a.leaderID,
		Conflicts: r.Conflicts,
		Duplicate: r.Duplicate,
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
