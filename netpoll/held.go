package netpoll

import (
	"sync/atomic"
)

// heldAnswer is one place in a connection's answer order that cannot go
// out yet because an earlier pipelined Detached token has not answered.
// Two kinds:
//
//   - detached: the answer of one request detached with Detach
//     (blocking: nothing behind it is served until it answers) or
//     DetachPipelined. Its token owns buf, req,
//     headBuf and closeAfter from the detach until its Respond; the
//     reactor owns it again when the cmdHeld command arrives (the inbox
//     lock orders the two).
//   - inline: answers of later requests answered on the reactor (Respond,
//     errors, a stream head, 100 Continue), gathered while an earlier
//     detached entry is pending. Reactor-owned throughout.
//
// Entries leave the front of conn.held in order once done, their bytes
// appended to the write buffer, and are reused. When the connection
// closes, entries still held are dropped (never reused), so a late token
// writes into memory nobody else will touch.
type heldAnswer struct {
	c        *conn
	ticket   atomic.Uint64 // nonzero while its token may answer
	detached bool
	blocking bool // Detach, not DetachPipelined: nothing after it was served
	done     bool // reactor-only: the answer is complete

	buf        []byte
	closeAfter bool // set by the token: the connection closes after this answer

	// Snapshot of the request for the token: the reactor goes on parsing
	// the connection's next requests into conn.req and the read buffer.
	req          Request
	headBuf      []byte
	http10, head bool
	closeReq     bool
}

// heldFreeMax bounds the reusable entries a connection keeps.
const heldFreeMax = 64

func (c *conn) newHeld() *heldAnswer {
	var h *heldAnswer
	if n := len(c.heldFree); n > 0 {
		h = c.heldFree[n-1]
		c.heldFree = c.heldFree[:n-1]
	} else {
		h = &heldAnswer{c: c}
	}
	h.detached, h.blocking, h.done, h.closeAfter = false, false, false, false
	h.buf = h.buf[:0]
	return h
}

// out is where the reactor appends the current request's answer: the
// write buffer, or behind the last held entry when one is pending.
func (c *conn) out() *[]byte {
	n := len(c.held)
	if n == 0 {
		return &c.wbuf
	}
	last := c.held[n-1]
	if last.detached {
		last = c.newHeld()
		last.done = true
		c.held = append(c.held, last)
	}
	return &last.buf
}

// heldBlocks reports whether the reactor must stop serving new requests on
// the connection: too many pipelined tokens out, a blocking token out, or
// too many inline answers waiting behind them.
func (c *conn) heldBlocks() bool {
	n := len(c.held)
	if n == 0 {
		return false
	}
	if c.heldDetached >= c.r.srv.cfg.MaxDetachedPerConn {
		return true
	}
	last := c.held[n-1]
	if last.detached {
		return last.blocking && !last.done
	}
	return len(last.buf) > c.r.srv.cfg.MaxWriteBufferBytes
}

// holdDetached detaches the current request into a new held entry. The
// request head is copied: the read buffer moves on.
func (c *conn) holdDetached(blocking bool) Detached {
	h := c.newHeld()
	h.detached, h.blocking = true, blocking
	h.http10, h.head, h.closeReq = c.req.http10, c.req.head, c.req.closeRequested
	h.headBuf = append(h.headBuf[:0], c.req.buf...)
	h.req = c.req
	h.req.buf = h.headBuf
	c.ticketSeq++
	t := c.ticketSeq
	h.ticket.Store(t)
	c.held = append(c.held, h)
	c.heldDetached++
	c.answered = true
	return Detached{ticket: t, held: h}
}

// respond builds a detached entry's answer off the reactor and hands it
// back. A pipelined answer never closes the connection on its own (the
// requests behind it are already being served); a blocking one closes it
// as an inline answer would.
func (h *heldAnswer) respond(ticket uint64, status int, contentType string, body []byte, hdrs []Header, length int64) error {
	if !h.ticket.CompareAndSwap(ticket, 0) {
		return ErrNotOwner
	}
	c := h.c
	srv := c.r.srv
	h.closeAfter = h.blocking && (h.closeReq || srv.shuttingDown.Load())
	h.buf = appendAnswer(h.buf[:0], srv, status, contentType, hdrs, body, length, h.closeAfter, h.http10, h.head)
	c.r.countStatus(status)
	c.r.post(command{kind: cmdHeld, c: c, held: h})
	return nil
}

// completeHeld takes in a detached entry's answer, sends every answer now
// in order and goes on serving. Reactor goroutine only.
func (c *conn) completeHeld(h *heldAnswer) {
	if c.state == stateClosed {
		return
	}
	found := false
	for _, e := range c.held {
		if e == h {
			found = true
			break
		}
	}
	if !found || h.done {
		return // dropped with an earlier incarnation of this connection
	}
	h.done = true
	c.heldDetached--
	i := 0
	for ; i < len(c.held) && c.held[i].done; i++ {
		e := c.held[i]
		c.wbuf = append(c.wbuf, e.buf...)
		if e.closeAfter {
			c.closeAfter = true
			c.state = stateDraining
		}
		c.held[i] = nil
		if len(c.heldFree) < heldFreeMax {
			c.heldFree = append(c.heldFree, e)
		}
	}
	n := copy(c.held, c.held[i:])
	clear(c.held[n:])
	c.held = c.held[:n]
	c.lastActive = c.r.now
	c.run()
}

// dropHeld forgets the held answers of a closing connection; tokens still
// out get ErrNotOwner, and their entries are never reused.
func (c *conn) dropHeld() {
	for i, h := range c.held {
		h.ticket.Store(0)
		c.held[i] = nil
	}
	c.held = c.held[:0]
	c.heldDetached = 0
}
