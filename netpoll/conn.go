package netpoll

import (
	"errors"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

type connState uint8

const (
	stateIdle     connState = iota // between requests: reading and parsing heads
	stateBody                      // a request is in progress: handler active, body streaming in
	stateStream                    // a Stream owns the response side
	stateDraining                  // final answer queued: flush, shut down writes, discard input until EOF
	stateClosed
)

// conn is one client connection. Ownership: the reactor goroutine owns
// every field; a Detached token owns only its held entry's answer fields
// (held.go) until it answers, and hands them back through the reactor's
// locked inbox.
type conn struct {
	r     *reactor // immutable while open
	fd    int
	index int // in r.active
	local bool
	state connState

	rbuf         []byte // len = ReadBufferBytes
	rstart, rend int    // unconsumed input is rbuf[rstart:rend]
	scanFrom     int    // findHeadEnd resume point, relative to rstart
	headStart    int    // current request head is rbuf[headStart : headStart+headLen]
	headLen      int

	wbuf         []byte // pending output wbuf[wpos:]
	wpos         int
	writeBlocked bool // the last write hit EAGAIN; waiting for EPOLLOUT
	shutWrite    bool

	req      Request
	ex       Exchange
	route    *routeEntry
	bodyLeft int64 // Content-Length bytes still to come
	bodySeen int64 // chunked body bytes delivered so far
	dechunk  chunkedDecoder

	answered   bool // the current request has its answer (or was detached/streamed)
	closeAfter bool // close the connection once the current answer is sent
	eof        bool // a read returned 0: the peer shut down its write side
	peerClosed bool // epoll reported RDHUP, HUP or ERR (used where the reactor does not read)
	// drained: the last read emptied the socket and no epoll event came
	// since, so a read now would only return EAGAIN. Edge-triggered epoll
	// reports every later arrival (bytes, FIN, errors) as a new event,
	// which clears it. It saves one read(2) per request: the one after a
	// short read, and the one when a detached request's answer comes back.
	drained bool

	headSince  int64 // when the first byte of a pending head arrived (0: none pending)
	emptyBytes int   // CR/LF bytes skipped before the pending head
	bodyStart  int64 // when the current request's head ended (body deadline base)
	bodyRead   int64 // body bytes (with chunk framing) consumed so far
	// bodyReserved: bytes of the server's body budget this request holds
	// (see reserveBody).
	bodyReserved int64
	lastActive   int64 // last read, completed response or accept
	lastWrite    int64 // last write progress
	lingerEnd    int64

	ticketSeq uint64 // the last Detached token's ticket

	stream *Stream
	// streamHeld: bytes taken from the stream's queue into wbuf and not yet
	// all written; they count against the server's stream budget until
	// they are.
	streamHeld int
	userState  any
	scratch    []byte
	inReady    bool

	// held: answers that must wait for an earlier pipelined Detached
	// token, in request order (see held.go). Reactor-owned, except each
	// detached entry's answer fields, which its token fills.
	held         []*heldAnswer
	heldFree     []*heldAnswer
	heldDetached int // detached entries in held not yet answered
}

var errConnReset = errors.New("netpoll: connection reset")

// appendResponse appends a complete response. Caller owns the connection.
func (c *conn) appendResponse(status int, contentType string, body []byte, hdrs []Header) {
	c.appendResponseLength(status, contentType, body, hdrs, int64(len(body)))
}

// appendResponseLength is appendResponse with the Content-Length given: it
// differs from len(body) only for HEAD answers that declare the length of
// the body a GET would get.
func (c *conn) appendResponseLength(status int, contentType string, body []byte, hdrs []Header, length int64) {
	c.answered = true
	if c.bodyPending() {
		c.closeAfter = true // the unread body cannot be framed any more
	}
	if c.r.srv.shuttingDown.Load() || c.req.closeRequested {
		c.closeAfter = true
	}
	out := c.out()
	*out = appendAnswer(*out, c.r.srv, status, contentType, hdrs, body, length, c.closeAfter, c.req.http10, c.req.head)
	c.r.countStatus(status)
}

// appendAnswer appends a complete answer with a Content-Length: head,
// framing and body (none for HEAD). The one framing of every answer, on
// the reactor and off it (detached tokens).
func appendAnswer(b []byte, srv *Server, status int, contentType string, hdrs []Header, body []byte, length int64, closeAfter, http10, head bool) []byte {
	b = appendHeadFor(b, srv, status, contentType, hdrs, closeAfter, http10)
	if !bodyAllowed(status) {
		return append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, length, 10)
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, body...)
	}
	return b
}

func (c *conn) appendHead(b []byte, status int, contentType string, hdrs []Header) []byte {
	return appendHeadFor(b, c.r.srv, status, contentType, hdrs, c.closeAfter, c.req.http10)
}

// appendHeadFor is appendHead with the connection's state given, for
// answers built off the reactor (pipelined Detached tokens).
func appendHeadFor(b []byte, srv *Server, status int, contentType string, hdrs []Header, closeAfter, http10 bool) []byte {
	b = appendStatusLine(b, status)
	b = append(b, srv.dateLine()...)
	if contentType != "" && validHeaderBytes(contentType) {
		b = append(b, "Content-Type: "...)
		b = append(b, contentType...)
		b = append(b, "\r\n"...)
	}
	b = appendHeaders(b, hdrs)
	if closeAfter {
		b = append(b, "Connection: close\r\n"...)
	} else if http10 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return b
}

// appendErrorResponse answers with the JSON error body, built in *scratch
// (the reactor's, or a fresh one for a Detached token) so that the reactor
// path allocates nothing.
func (c *conn) appendErrorResponse(status int, code, message string, allow []byte, scratch *[]byte) {
	var hdrs []Header
	var allowHdr [1]Header
	if len(allow) > 0 {
		allowHdr[0] = Header{Name: "Allow", Value: allow}
		hdrs = allowHdr[:]
	}
	*scratch = appendErrorJSON((*scratch)[:0], code, message)
	c.appendResponse(status, "application/json", *scratch, hdrs)
}

func (c *conn) appendStreamHead(status int, contentType string, hdrs []Header, chunked bool) {
	c.answered = true
	if !chunked {
		c.closeAfter = true
	}
	out := c.out()
	b := c.appendHead(*out, status, contentType, hdrs)
	if chunked && !c.req.head {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	*out = append(b, "\r\n"...)
	c.r.countStatus(status)
}

func (c *conn) bodyPending() bool {
	if c.req.chunked {
		return !c.dechunk.done()
	}
	return c.bodyLeft > 0
}

func (c *conn) pendingOutput() int { return len(c.wbuf) - c.wpos }

// bodyTooSlow reports whether the body of the current request is late: it
// has had BodyTimeout plus a second per MinBodyRate bytes received.
func (c *conn) bodyTooSlow(now int64) bool {
	cfg := &c.r.srv.cfg
	if !c.bodyPending() {
		return false
	}
	allowed := int64(cfg.BodyTimeout) + c.bodyRead*int64(time.Second)/int64(cfg.MinBodyRate)
	return now-c.bodyStart > allowed
}

// run does all the work the connection can do now: write what is pending,
// read and serve requests, move stream bytes. Reactor goroutine only.
func (c *conn) run() {
	if c.state == stateClosed {
		return
	}
	if c.pendingOutput() > 0 && !c.flush() {
		return
	}
	switch c.state {
	case stateIdle, stateBody:
		c.readAndServe()
	}
	if c.state == stateStream { // also right after a handler started one
		c.pumpStream()
		return
	}
	if c.state == stateClosed {
		return
	}
	if c.pendingOutput() > 0 && !c.flush() {
		return
	}
	if c.state == stateDraining && len(c.held) == 0 { // held answers go out first
		c.drain()
	}
}

// readBudget bounds reads per connection per wakeup: in edge-triggered mode
// a connection with more input goes on the ready list instead of starving
// the others.
const readBudget = 8

func (c *conn) readAndServe() {
	for range readBudget {
		c.serveBuffered()
		if c.state != stateIdle && c.state != stateBody || c.heldBlocks() {
			return // a held answer lets us go on (completeHeld runs us)
		}
		if c.pendingOutput() > c.r.srv.cfg.MaxWriteBufferBytes {
			if !c.flush() || c.state == stateClosed {
				return // EPOLLOUT brings us back
			}
			continue
		}
		if c.eof {
			c.closeAtEOF()
			return
		}
		if c.drained {
			return // nothing new arrived since the socket was emptied
		}
		c.makeRoom()
		space := len(c.rbuf) - c.rend
		n, err := unix.Read(c.fd, c.rbuf[c.rend:])
		if err != nil {
			if err == unix.EAGAIN {
				c.drained = true
				return
			}
			if err == unix.EINTR {
				continue
			}
			c.close(errConnReset)
			return
		}
		if n == 0 {
			c.eof = true
			continue
		}
		c.rend += n
		c.lastActive = c.r.now
		// A short read from a TCP socket took everything queued (the
		// kernel copies up to the buffer size), so the socket is empty,
		// as nginx also assumes. Not when epoll already reported the
		// peer's FIN, which the next read must see as EOF, and not on
		// local (socketpair) connections: there the usual EAGAIN read.
		if n < space && !c.peerClosed && !c.local {
			c.drained = true
		}
	}
	c.r.markReady(c)
}

// closeAtEOF handles a peer that stopped sending: answers already queued
// still go out, then the connection closes.
func (c *conn) closeAtEOF() {
	c.closeAfter = true
	if c.state == stateBody || c.rend > c.rstart {
		// A request or head cut short: nothing more will complete it.
		c.state = stateDraining
	}
	if c.pendingOutput() == 0 && len(c.held) == 0 {
		c.close(nil)
		return
	}
	c.state = stateDraining
}

// minReadBytes is the least free space a read gets before the buffer is
// compacted (headRoomBytes guarantees compaction can provide it).
const minReadBytes = 4 << 10

// makeRoom frees space at the end of rbuf, keeping the unconsumed input
// and, while a request is in progress, its head (which Request points into).
func (c *conn) makeRoom() {
	if c.state == stateIdle {
		if c.rstart == c.rend {
			c.rstart, c.rend = 0, 0
		} else if len(c.rbuf)-c.rend < minReadBytes {
			c.rend = copy(c.rbuf, c.rbuf[c.rstart:c.rend])
			c.rstart = 0
		}
		return
	}
	if len(c.rbuf)-c.rend >= minReadBytes && c.rstart != c.rend {
		return
	}
	if c.headStart != 0 {
		copy(c.rbuf, c.rbuf[c.headStart:c.headStart+c.headLen])
		c.headStart = 0
		c.req.buf = c.rbuf[:c.headLen]
	}
	n := copy(c.rbuf[c.headLen:], c.rbuf[c.rstart:c.rend])
	c.rstart, c.rend = c.headLen, c.headLen+n
}

// serveBuffered serves every request already in rbuf, stopping when input
// runs out, a request is detached or streamed, or output backs up.
func (c *conn) serveBuffered() {
	for {
		switch c.state {
		case stateIdle:
			if c.pendingOutput() > c.r.srv.cfg.MaxWriteBufferBytes || c.heldBlocks() || !c.nextHead() {
				return
			}
		case stateBody:
			if !c.feedBody() {
				return
			}
		default:
			return
		}
	}
}

// nextHead parses the next request head if it is complete and starts the
// request. It reports whether it made progress.
func (c *conn) nextHead() bool {
	if c.scanFrom == 0 {
		n := skipEmptyLines(c.rbuf[c.rstart:c.rend])
		c.rstart += n
		c.emptyBytes += n
	}
	data := c.rbuf[c.rstart:c.rend]
	// One stray CRLF after a body is allowed for free (RFC 9112 §2.2);
	// more empty lines are part of the head and run its timer, or a peer
	// sending "\r\n" every few seconds would hold the connection forever.
	if c.headSince == 0 && (len(data) > 0 || c.emptyBytes > 2) {
		c.headSince = c.r.now
	}
	if len(data) == 0 {
		c.rstart, c.rend = 0, 0
		return false
	}
	maxHead := c.r.srv.cfg.MaxHeaderBytes
	end, next := findHeadEnd(data, c.scanFrom)
	if end < 0 {
		c.scanFrom = next
		if len(data) > maxHead {
			c.failHead(errHeadTooLarge)
		}
		return false
	}
	c.scanFrom, c.headSince, c.emptyBytes = 0, 0, 0
	if end > maxHead {
		c.failHead(errHeadTooLarge)
		return false
	}
	c.headStart, c.headLen = c.rstart, end
	c.rstart += end
	c.r.requests.Add(1)
	if err := parseHead(c.rbuf[c.headStart:c.headStart+end], &c.req); err != nil {
		c.failHead(err)
		return false
	}
	c.startRequest()
	return true
}

// failHead answers a head the server refuses and closes the connection:
// after a bad head the byte stream cannot be trusted to frame more requests.
func (c *conn) failHead(err *headError) {
	c.state = stateBody
	c.closeAfter = true
	c.req.head = false
	c.req.closeRequested = true
	c.appendErrorResponse(err.status, err.code, err.message, nil, &c.r.errBuf)
	c.state = stateDraining
}

func (c *conn) startRequest() {
	c.state = stateBody
	c.answered = false
	c.bodySeen = 0
	c.bodyLeft = max(c.req.contentLength, 0)
	c.bodyStart, c.bodyRead = c.r.now, 0
	c.dechunk.reset()
	res := c.r.srv.router.lookup(&c.req)
	if res.route == nil {
		c.appendErrorResponse(res.status, errorCode(res.status), lookupMessage(res.status), res.allow, &c.r.errBuf)
		c.endRequest()
		return
	}
	c.route = res.route
	if c.req.contentLength > c.route.maxBody {
		c.appendErrorResponse(413, "payload_too_large", c.route.tooLarge, nil, &c.r.errBuf)
		c.endRequest()
		return
	}
	if c.req.contentLength > 0 && !c.reserveBody(c.req.contentLength) {
		c.appendErrorResponse(503, "unavailable", errBodyBudget, nil, &c.r.errBuf)
		c.endRequest()
		return
	}
	c.route.handler.ServeHead(&c.ex)
	if c.answered {
		c.endRequest()
		return
	}
	if !c.req.HasBody() {
		c.finishBody()
		return
	}
	if c.req.expectContinue {
		out := c.out()
		*out = append(*out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	}
}

func lookupMessage(status int) string {
	switch status {
	case 404:
		return "no such path"
	case 405:
		return "method not allowed on this path"
	}
	return "method not implemented"
}

// feedBody hands buffered body bytes to the handler; it reports whether it
// made progress.
func (c *conn) feedBody() bool {
	data := c.rbuf[c.rstart:c.rend]
	if len(data) == 0 {
		return false
	}
	if !c.req.chunked {
		n := int(min(int64(len(data)), c.bodyLeft))
		c.rstart += n
		c.bodyRead += int64(n)
		c.bodyLeft -= int64(n)
		c.route.handler.ServeBody(&c.ex, data[:n])
		if c.answered {
			c.endRequest()
		} else if c.bodyLeft == 0 {
			c.finishBody()
		}
		return true
	}
	consumed, chunk, err := c.dechunk.decode(data)
	c.rstart += consumed
	c.bodyRead += int64(consumed)
	if err != nil {
		c.failBody(err.status, err.code, err.message)
		return false
	}
	if c.bodyRead > c.bodyReserved && !c.reserveBody(max(bodyReserveStep, c.bodyRead-c.bodyReserved)) {
		c.failBody(503, "unavailable", errBodyBudget)
		return false
	}
	if len(chunk) > 0 {
		c.bodySeen += int64(len(chunk))
		if c.bodySeen > c.route.maxBody {
			c.failBody(413, "payload_too_large", c.route.tooLarge)
			return false
		}
		c.route.handler.ServeBody(&c.ex, chunk)
		if c.answered {
			c.endRequest()
			return true
		}
	}
	if c.dechunk.done() {
		c.finishBody()
	}
	return consumed > 0
}

func (c *conn) failBody(status int, code, message string) {
	c.releaseBody()
	c.closeAfter = true
	if !c.answered {
		c.appendErrorResponse(status, code, message, nil, &c.r.errBuf)
	}
	c.state = stateDraining
}

func (c *conn) finishBody() {
	c.releaseBody() // read in full: no longer a body being read
	c.route.handler.ServeEnd(&c.ex)
	if c.state == stateStream {
		return
	}
	if !c.answered {
		c.appendErrorResponse(500, "internal", "handler did not answer", nil, &c.r.errBuf)
	}
	c.endRequest()
}

// endRequest moves on after an answer: to the next request, or to closing.
func (c *conn) endRequest() {
	c.lastActive = c.r.now
	c.releaseBody()
	if c.closeAfter || c.bodyPending() {
		c.closeAfter = true
		c.state = stateDraining
		return
	}
	c.state = stateIdle
	c.route = nil
	if cap(c.scratch) > scratchKeepBytes {
		c.scratch = nil // one huge body must not pin its memory for the connection's life
	}
}

// scratchKeepBytes is the largest scratch buffer a connection keeps between
// requests.
const scratchKeepBytes = 1 << 20

// flush writes pending output; it reports false when the connection is
// closed or the socket is full (EPOLLOUT will call run again).
func (c *conn) flush() bool {
	for c.wpos < len(c.wbuf) {
		n, err := unix.Write(c.fd, c.wbuf[c.wpos:])
		if n > 0 {
			c.wpos += n
			c.lastWrite = c.r.now
		}
		if err != nil {
			if err == unix.EAGAIN {
				if !c.writeBlocked {
					c.writeBlocked = true
					c.lastWrite = c.r.now // the stall clock starts now
				}
				return false
			}
			if err == unix.EINTR {
				continue
			}
			c.close(ErrPeerGone)
			return false
		}
	}
	c.writeBlocked = false
	c.wbuf, c.wpos = c.wbuf[:0], 0
	if cap(c.wbuf) > 4*c.r.srv.cfg.MaxWriteBufferBytes {
		c.wbuf = nil // a huge answer went out; do not pin its memory
	}
	return true
}

// drain runs after the final answer is sent: shut down our side, discard
// what the peer still sends (closing with unread input would reset the
// connection and could destroy the answer in flight), close on EOF or at
// the linger deadline.
func (c *conn) drain() {
	if !c.shutWrite {
		c.shutWrite = true
		c.lingerEnd = c.r.now + int64(c.r.lingerTimeout)
		if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
			c.close(nil)
			return
		}
	}
	if c.eof {
		c.close(nil)
		return
	}
	for range readBudget {
		n, err := unix.Read(c.fd, c.rbuf)
		if err == unix.EAGAIN {
			return
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			c.close(nil)
			return
		}
	}
	c.r.markReady(c)
}

// pumpStream moves queued stream bytes into the output and writes them;
// it ends the stream when Close was called and everything is sent.
func (c *conn) pumpStream() {
	s := c.stream
	if c.peerClosed {
		c.close(ErrPeerGone)
		return
	}
	if len(c.held) > 0 {
		return // the stream's head waits behind a held answer; completeHeld runs us
	}
	for {
		if c.pendingOutput() > 0 && !c.flush() {
			return
		}
		c.releaseStreamHeld() // written: the bytes no longer count
		s.mu.Lock()
		s.mu.wakePending = false
		if len(s.mu.queue) > 0 {
			spare := c.wbuf[:0]
			if cap(spare) > streamQueueKeepBytes {
				spare = nil // do not keep a burst's buffer for the stream's life
			}
			c.wbuf, s.mu.queue = s.mu.queue, spare
			c.wpos = 0
			c.streamHeld = len(c.wbuf)
			s.wakeRoomLocked()
			s.mu.Unlock()
			continue
		}
		ending := s.mu.closing
		s.mu.Unlock()
		if !ending {
			return
		}
		if cap(c.wbuf) > streamQueueKeepBytes {
			c.wbuf = nil // the connection lives on; the stream's big buffer need not
		}
		if s.chunked && !c.req.head {
			c.wbuf = append(c.wbuf, "0\r\n\r\n"...)
		}
		s.finish(nil)
		c.stream = nil
		c.state = stateBody
		c.endRequest()
		c.run()
		return
	}
}

// Request bodies count against the server's MaxBodyBytesTotal from their
// head to their last byte: bytes a client sends are bytes the server holds
// (a commit body is decoded into its commit slot's arena as it arrives), and
// 200 connections each holding an unfinished 15 MiB body took 2.3 GB. A
// Content-Length body reserves its length before a byte of it is read; a
// chunked one reserves bodyReserveStep at a time as it arrives. A body
// above bigBodyBytes may only take the budget up to 7/8, so that small
// requests (most commits) still pass while big ones fill it.
//
// Refused with 503, not paused: paused bodies would hold their reservations
// while waiting for each other's, and the budget would deadlock until the
// idle timeout; a refusal is immediate and the client may retry.
const (
	bigBodyBytes    = 64 << 10
	bodyReserveStep = 64 << 10
	errBodyBudget   = "request bodies being read are at their server-wide bound (server.total_body_bytes); retry later"
)

// reserveBody takes n more bytes of the body budget for this request.
func (c *conn) reserveBody(n int64) bool {
	b := c.r.srv.bodyBytes
	limit := b.max
	if c.bodyReserved+n > bigBodyBytes {
		limit = b.max - b.max/8
	}
	if !b.takeBelow(n, limit) {
		return false
	}
	c.bodyReserved += n
	return true
}

// releaseBody gives the request's body reservation back.
func (c *conn) releaseBody() {
	if c.bodyReserved > 0 {
		c.r.srv.bodyBytes.release(c.bodyReserved)
		c.bodyReserved = 0
	}
}

// releaseStreamHeld returns the stream bytes in wbuf to the server's budget
// (they were written, or will never be).
func (c *conn) releaseStreamHeld() {
	if c.streamHeld > 0 {
		c.r.srv.streamBytes.release(int64(c.streamHeld))
		c.streamHeld = 0
	}
}

// close releases the connection; err tells a stream why.
func (c *conn) close(err error) {
	if c.state == stateClosed {
		return
	}
	if c.stream != nil {
		c.stream.finish(err)
		c.stream = nil
	}
	c.releaseStreamHeld()
	c.releaseBody()
	c.state = stateClosed
	c.dropHeld()
	c.r.release(c)
}
