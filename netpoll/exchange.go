package netpoll

import (
	"errors"
	"sync"
)

// Handler serves one route. Its methods run on the connection's reactor
// goroutine, one request at a time per connection, and must not block: hand
// slow work to another goroutine with Exchange.Detach.
//
// For every request: ServeHead once, then ServeBody zero or more times with
// the (de-chunked) body bytes as they arrive, then ServeEnd once the body is
// complete. A handler may answer early (Respond in ServeHead or ServeBody,
// e.g. 413 or 415): the rest of the body is then not delivered, ServeEnd is
// not called and the connection is closed after the answer. ServeEnd is
// also skipped when the body is cut off (peer gone, malformed chunking,
// over the route's MaxBodyBytes), so per-request state belongs in
// ServeHead, not in ServeEnd.
type Handler interface {
	ServeHead(ex *Exchange)
	// ServeBody gets the next body bytes; chunk is valid only during the
	// call.
	ServeBody(ex *Exchange, chunk []byte)
	// ServeEnd must answer: Respond, Detach or StartStream. Without any of
	// them the server answers 500.
	ServeEnd(ex *Exchange)
}

// Exchange is one request/response on a connection, owned by the reactor
// goroutine that calls the Handler. It is reused for the connection's next
// request; do not keep it after the handler returns (Detach hands ownership
// to another goroutine explicitly).
type Exchange struct {
	c *conn
}

// Request returns the parsed request head.
func (ex *Exchange) Request() *Request { return &ex.c.req }

// Respond queues the complete response: the status, Content-Type (omitted
// when ""), extra header fields, Content-Length and the body (dropped for
// HEAD requests). Keep-alive and Connection: close are handled by the
// server. body is copied; a second answer to one request is ignored.
func (ex *Exchange) Respond(status int, contentType string, body []byte, headers ...Header) {
	c := ex.c
	if c.answered {
		return
	}
	c.appendResponse(status, contentType, body, headers)
}

// RespondError answers with the JSON error body of API.md:
// {"error":"<code>","message":"<message>"}.
func (ex *Exchange) RespondError(status int, code, message string) {
	c := ex.c
	if c.answered {
		return
	}
	c.appendErrorResponse(status, code, message, nil, &c.r.errBuf)
}

// Answered reports whether this request has been answered (or detached, or
// turned into a stream).
func (ex *Exchange) Answered() bool { return ex.c.answered }

// StreamBytesFree returns how many bytes the server-wide stream budget
// (MaxStreamBytesTotal) has left now: a handler about to start a stream that
// may queue up to a full MaxStreamQueueBytes can refuse instead.
func (ex *Exchange) StreamBytesFree() int64 {
	b := ex.c.r.srv.streamBytes
	return b.max - b.used.Load()
}

// Scratch returns the connection's reusable scratch buffer (length 0,
// capacity kept from earlier requests), for handlers that gather a body or
// build an answer without allocating. Store the grown slice back with
// SetScratch.
func (ex *Exchange) Scratch() []byte { return ex.c.scratch[:0] }

// SetScratch keeps b as the connection's scratch buffer for later requests.
func (ex *Exchange) SetScratch(b []byte) { ex.c.scratch = b }

// ConnState returns the value stored with SetConnState on this connection
// (nil at first). Handlers keep per-connection state here, e.g. a reusable
// push parser.
func (ex *Exchange) ConnState() any { return ex.c.userState }

// SetConnState stores a per-connection value; it lives until the connection
// closes.
func (ex *Exchange) SetConnState(v any) { ex.c.userState = v }

// Detach hands the request to the returned token: the reactor serves
// nothing more on the connection (pipelined bytes stay buffered) until the
// token answers, and the Exchange must not be used again. Call it from
// ServeEnd. The token's Request (a copy of the head) and the connection's
// scratch buffer stay valid for the token holder until it answers.
func (ex *Exchange) Detach() Detached {
	c := ex.c
	if c.state != stateBody || c.answered {
		panic("netpoll: Detach outside ServeEnd or after answering")
	}
	// One mechanism for both kinds of detach: a held entry in the
	// connection's answer order. A blocking one stops the serving of the
	// requests behind it until it answers (and queues behind earlier
	// pipelined tokens, if any).
	return c.holdDetached(true)
}

// DetachPipelined is Detach for requests whose handler keeps nothing of
// the connection but the token: the reactor goes on serving the
// connection's pipelined requests while the token is out (up to
// Config.MaxDetachedPerConn of them), and answers still go out in request
// order — an answer (inline, detached or a stream) waits for every earlier
// one. The token's Request is a copy of the head, valid until it answers;
// the connection's Scratch and ConnState are not the token's: the next
// request uses them (a handler copies what it keeps of the body). A request with Connection: close is
// detached as with Detach.
func (ex *Exchange) DetachPipelined() Detached {
	c := ex.c
	if c.state != stateBody || c.answered {
		panic("netpoll: DetachPipelined outside ServeEnd or after answering")
	}
	if c.req.closeRequested || c.r.srv.cfg.MaxDetachedPerConn <= 1 {
		return ex.Detach()
	}
	return c.holdDetached(false)
}

// Detached is the token of a request taken off its reactor. Exactly one
// goroutine may hold it; its first Respond hands the connection back. It is
// a small value: copying it does not copy ownership, and a second answer
// (from any copy) returns ErrNotOwner.
type Detached struct {
	ticket uint64
	held   *heldAnswer // the request's place in its connection's answer order
}

// ErrNotOwner is returned when a Detached token has already answered (or the
// server closed its connection during a forced shutdown).
var ErrNotOwner = errors.New("netpoll: detached connection already answered")

// Request returns the request head; valid until Respond.
func (d Detached) Request() *Request { return &d.held.req }

// Respond answers like Exchange.Respond and hands the connection back to
// its reactor, which sends the answer and goes on with pipelined requests.
// Safe from any goroutine.
func (d Detached) Respond(status int, contentType string, body []byte, headers ...Header) error {
	return d.respondLength(status, contentType, body, headers, int64(len(body)))
}

// RespondError answers with the JSON error body and hands the connection
// back.
func (d Detached) RespondError(status int, code, message string) error {
	body := appendErrorJSON(nil, code, message) // off the reactor: its error buffer is not ours
	return d.respondLength(status, "application/json", body, nil, int64(len(body)))
}

// respondLength is Respond with an explicit Content-Length (HEAD answers
// of the http.Handler adapter).
func (d Detached) respondLength(status int, contentType string, body []byte, hdrs []Header, length int64) error {
	if d.held == nil {
		return ErrNotOwner
	}
	return d.held.respond(d.ticket, status, contentType, body, hdrs, length)
}

// Stream errors.
var (
	// ErrStreamFull: the stream's queue is at MaxStreamQueueBytes; the
	// writer should fall back (e.g. catch up from the log) and retry later.
	ErrStreamFull = errors.New("netpoll: stream queue full")
	// ErrStreamClosed: the stream ended (Close) or its connection is gone;
	// Err tells why.
	ErrStreamClosed = errors.New("netpoll: stream closed")
	// ErrPeerGone: the peer closed or reset the connection.
	ErrPeerGone = errors.New("netpoll: peer closed the connection")
	// ErrWriteStalled: the peer read nothing for WriteStallTimeout.
	ErrWriteStalled = errors.New("netpoll: peer stopped reading")
	// ErrServerClosed: the server shut down.
	ErrServerClosed = errors.New("netpoll: server shut down")
)

// StartStream sends the response head (status, Content-Type, extra headers)
// and turns the connection into a long-lived stream, e.g. Server-Sent
// Events. Call it from ServeEnd.
//
// Framing: for HTTP/1.1 the body is chunked (each Write is one chunk) and
// the connection stays usable after Close — the terminating chunk ends the
// response and the reactor goes on with the next request. For HTTP/1.0 the
// body is close-delimited and Close closes the connection. The reactor does
// not read a streaming connection; bytes the peer sends wait for the end of
// the stream. A peer that half-closes (FIN) counts as gone.
func (ex *Exchange) StartStream(status int, contentType string, headers ...Header) *Stream {
	c := ex.c
	if c.state != stateBody || c.answered {
		panic("netpoll: StartStream outside ServeEnd or after answering")
	}
	s := &Stream{
		r:        c.r,
		c:        c,
		maxQueue: c.r.srv.cfg.MaxStreamQueueBytes,
		chunked:  !c.req.http10,
		done:     make(chan struct{}),
	}
	c.appendStreamHead(status, contentType, headers, s.chunked)
	c.state = stateStream
	c.stream = s
	if c.req.head {
		s.mu.closing = true // HEAD: the head is all there is
	}
	c.r.streamsOpen.Add(1)
	return s
}

// Stream is a long-lived response any goroutine may write to. Writes never
// block: they queue at most MaxStreamQueueBytes and the reactor sends them
// as the peer reads (EPOLLOUT). Done is closed when the stream is over, by
// Close, by the peer, by a stall or by shutdown; Err says which.
type Stream struct {
	r        *reactor // immutable
	c        *conn    // immutable; only the reactor touches the connection
	maxQueue int      // immutable
	chunked  bool     // immutable
	done     chan struct{}

	mu struct {
		sync.Mutex
		queue       []byte        // framed bytes not yet handed to the reactor
		closing     bool          // Close called: the reactor ends the body when the queue drains
		finished    bool          // done is closed
		err         error         // why it finished (nil after a clean Close)
		wakePending bool          // a cmdStream for this stream is in the reactor's inbox
		room        chan struct{} // closed when the reactor takes the queue; nil when nobody waits
	}
}

// streamQueueKeepBytes is the largest queue capacity a stream keeps once its
// bytes are written; a bigger one (a burst, a stalled peer) is let go, so an
// idle stream holds little and a closed one nothing.
const streamQueueKeepBytes = 64 << 10

// Room returns a channel that is closed when a Write refused with
// ErrStreamFull may succeed: the reactor took the queue, the server-wide
// stream budget has room for half a queue, or the stream is over. Writers
// wait on it instead of polling; a peer that reads nothing never closes it
// (WriteStallTimeout then ends the stream, which does).
func (s *Stream) Room() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.finished || s.mu.closing {
		return closedChan
	}
	if len(s.mu.queue) > 0 {
		if s.mu.room == nil {
			s.mu.room = make(chan struct{})
		}
		return s.mu.room
	}
	return s.r.srv.streamBytes.wait(int64(chunkFrameBytes(s.maxQueue / 2)))
}

// wakeRoomLocked closes the Room channel. Caller holds s.mu.
func (s *Stream) wakeRoomLocked() {
	if s.mu.room != nil {
		close(s.mu.room)
		s.mu.room = nil
	}
}

// Write queues p as the next piece of the stream (one chunk). It returns
// ErrStreamFull when the queue cannot take p (nothing is queued then) and
// ErrStreamClosed once the stream is over. An empty p is a no-op.
func (s *Stream) Write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	s.mu.Lock()
	if s.mu.finished || s.mu.closing {
		s.mu.Unlock()
		return ErrStreamClosed
	}
	need := len(p)
	if s.chunked {
		need = chunkFrameBytes(len(p))
	}
	if len(s.mu.queue)+need > s.maxQueue || !s.r.srv.streamBytes.take(int64(need)) {
		s.mu.Unlock()
		return ErrStreamFull
	}
	if len(s.mu.queue)+need > cap(s.mu.queue) {
		// Grown in at most two steps, to streamQueueKeepBytes and then to
		// the bound, not by doubling: a stalled stream's queue is one
		// allocation of maxQueue, with no trail of garbage, and its heap
		// is what the budget counts.
		size := streamQueueKeepBytes
		if len(s.mu.queue)+need > size {
			size = s.maxQueue + chunkFrameBytes(0)
		}
		q := make([]byte, len(s.mu.queue), size)
		copy(q, s.mu.queue)
		s.mu.queue = q
	}
	if s.chunked {
		s.mu.queue = appendChunk(s.mu.queue, p)
	} else {
		s.mu.queue = append(s.mu.queue, p...)
	}
	wake := !s.mu.wakePending
	s.mu.wakePending = true
	s.mu.Unlock()
	if wake {
		s.r.post(command{kind: cmdStream, c: s.c, stream: s})
	}
	return nil
}

// Close ends the stream after the queued bytes are sent. Safe to call more
// than once and after the peer went away.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.mu.finished || s.mu.closing {
		s.mu.Unlock()
		return
	}
	s.mu.closing = true
	wake := !s.mu.wakePending
	s.mu.wakePending = true
	s.mu.Unlock()
	if wake {
		s.r.post(command{kind: cmdStream, c: s.c, stream: s})
	}
}

// Done is closed when the stream is over.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Err returns why the stream ended: nil while it runs or after a clean
// Close, else ErrPeerGone, ErrWriteStalled or ErrServerClosed.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.err
}

// Queued returns the bytes waiting in the queue (for metrics and for
// writers that pace themselves).
func (s *Stream) Queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.queue)
}

// finish ends the stream with err (reactor side).
func (s *Stream) finish(err error) {
	s.mu.Lock()
	if s.mu.finished {
		s.mu.Unlock()
		return
	}
	s.mu.finished = true
	s.mu.err = err
	queued := len(s.mu.queue)
	s.mu.queue = nil
	s.wakeRoomLocked()
	s.mu.Unlock()
	s.r.srv.streamBytes.release(int64(queued))
	close(s.done)
	s.r.streamsOpen.Add(-1)
}
