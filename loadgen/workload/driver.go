package workload

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

const (
	dialTimeout      = 5 * time.Second
	reconnectBackoff = 100 * time.Millisecond
)

func nowNanos() int64 { return time.Now().UnixNano() }

// classify counts one answer and returns the version it carries (the commit's
// own on 200, the latest committed on 409, the current one for GET
// /v1/version), 0 when none.
func classify(out *Outcomes, status int, body []byte) uint64 {
	v, _ := jsonUint(body, "version")
	switch {
	case status == 200:
		out.OK++
		if bytes.Contains(body, []byte(`"duplicate":true`)) {
			out.Duplicate++
		}
	case status == 409:
		reason, _ := jsonString(body, "reason")
		switch string(reason) {
		case "conflict":
			out.Conflict++
		case "too_old":
			out.TooOld++
		case "leader_changed":
			out.LeaderChanged++
		default:
			out.Status4xx++
		}
	case status == 307:
		out.Redirected++
	case status == 503:
		out.Unavailable++
	case status >= 500:
		out.Status5xx++
	default:
		out.Status4xx++
	}
	return v
}

// connWorker drives one connection: its generator, its recorder and the
// newest version it has heard of (its read version).
type connWorker struct {
	ends     *Endpoints
	load     *Load // immutable
	gen      *Generator
	rec      *recorder
	gap      *gapMeter     // nil unless Load.CommitGap
	version  atomic.Uint64 // newest version heard; written by the reader, read by the sender
	slotNext uint64        // open loop: next schedule slot of this connection
	body     []byte        // scratch
	starts   []int64       // closed loop: send times of the requests in flight, a FIFO ring
	ids      []requestID   // closed loop: their request ids, the same ring
	lost     *lostSet      // commits whose answer was lost, resolved after the run
}

// appendRequest queues the next request on c, sent at start, and copies
// its request id into id (zeroed when it has none).
func (w *connWorker) appendRequest(c *wireConn, start int64, id *requestID) {
	*id = requestID{}
	if w.load.Op == "version" {
		c.appendGet("/v1/version")
		return
	}
	w.body = w.gen.AppendCommit(w.body[:0], w.version.Load(), start)
	if rid, ok := jsonString(w.body, "request_id"); ok && len(rid) == requestIDBytes {
		copy(id[:], rid)
	}
	c.appendPost("/v1/commit", w.body)
}

// lose records requests whose answers were lost: counted as transport
// errors, and their commits resolved after the run.
func (w *connWorker) lose(ids ...requestID) {
	w.countTransport(len(ids))
	if w.load.Op != "commit" || w.lost == nil {
		return
	}
	for i := range ids {
		w.lost.add(&ids[i])
	}
}

// record counts one answer; it reports whether the answer was a 307 whose
// leader is now the connection's target (the caller then reconnects).
func (w *connWorker) record(start int64, status int, body []byte) (redirected bool) {
	end := nowNanos()
	if status == 307 {
		if leader, ok := jsonString(body, "leader_url"); ok {
			redirected = w.ends.Redirected(string(leader))
		}
	}
	if w.gap != nil && status == 200 {
		w.gap.lastOK.Store(end)
	}
	w.rec.mu.Lock()
	v := classify(&w.rec.mu.out, status, body)
	w.rec.mu.lat.Record(end - start)
	w.rec.mu.Unlock()
	if v > w.version.Load() {
		w.version.Store(v)
	}
	return redirected
}

// errRedirected ends a connection to a replica: reconnect to the leader.
var errRedirected = errors.New("redirected to the leader")

func (w *connWorker) countTransport(lost int) {
	w.rec.mu.Lock()
	w.rec.mu.out.Transport += uint64(max(lost, 1))
	w.rec.mu.Unlock()
}

// run keeps the connection busy until ctx ends, reconnecting after errors.
func (w *connWorker) run(ctx context.Context, schedule *openSchedule) {
	for ctx.Err() == nil {
		addr := w.ends.Addr()
		c, err := dialWire(addr, w.load.Token, dialTimeout)
		if err != nil {
			w.ends.Failed(addr)
			w.countTransport(1)
			sleepCtx(ctx, reconnectBackoff)
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.close() })
		if schedule != nil {
			err = w.openLoop(ctx, c, schedule)
		} else {
			err = w.closedLoop(ctx, c)
		}
		stop()
		c.close()
		if err != nil && err != errRedirected && ctx.Err() == nil {
			sleepCtx(ctx, reconnectBackoff)
		}
	}
}

// closedLoop keeps Pipeline requests in flight: it writes them in one
// syscall, then for every answer read queues the next request, and flushes
// when the reader has no further answer buffered (one write per read).
func (w *connWorker) closedLoop(ctx context.Context, c *wireConn) error {
	k := w.load.Pipeline
	if cap(w.starts) < k {
		w.starts = make([]int64, k)
	}
	if cap(w.ids) < k {
		w.ids = make([]requestID, k)
	}
	ring, ids := w.starts[:k], w.ids[:k]
	head, inFlight := 0, 0
	inFlightIDs := func() []requestID {
		out := make([]requestID, inFlight)
		for i := range out {
			out[i] = ids[(head+i)%k]
		}
		return out
	}
	redirected := false // stop sending, read what is in flight, reconnect
	for ctx.Err() == nil {
		for inFlight < k && !redirected {
			start := nowNanos()
			ring[(head+inFlight)%k] = start
			w.appendRequest(c, start, &ids[(head+inFlight)%k])
			inFlight++
		}
		if err := c.flush(); err != nil {
			w.lose(inFlightIDs()...)
			return err
		}
		for {
			status, body, err := c.readResponse()
			if err != nil {
				if ctx.Err() == nil {
					w.lose(inFlightIDs()...)
				}
				return err
			}
			if w.record(ring[head], status, body) {
				redirected = true
			}
			head = (head + 1) % k
			inFlight--
			if redirected && inFlight == 0 {
				return errRedirected
			}
			if c.closing {
				return fmt.Errorf("server closed the connection")
			}
			if inFlight == 0 || c.r.Buffered() == 0 {
				break
			}
		}
	}
	return ctx.Err()
}

// openSchedule hands out intended send times: a total rate shared by all
// connections, each connection taking every Connections-th slot.
type openSchedule struct {
	start    int64 // unix ns of slot 0
	interval float64
	conns    int
}

func (s *openSchedule) slot(conn int, i uint64) int64 {
	return s.start + int64(float64(i*uint64(s.conns)+uint64(conn))*s.interval)
}

// openLoop sends on the schedule whatever the answers do; a reader goroutine
// measures each answer from its request's intended send time, so a server
// that falls behind shows as latency (no coordinated omission). At most
// Pipeline requests are in flight; beyond, sending waits — and the wait
// counts in the latency because it is measured from the intended time.
func (w *connWorker) openLoop(ctx context.Context, c *wireConn, s *openSchedule) error {
	type sent struct {
		start int64
		id    requestID
	}
	pending := make(chan sent, w.load.Pipeline)
	readErr := make(chan error, 1)
	drain := func() []requestID { // the reader's: what is still pending
		var ids []requestID
		for {
			select {
			case p := <-pending:
				ids = append(ids, p.id)
			default:
				return ids
			}
		}
	}
	go func() {
		for {
			var p sent
			select {
			case p = <-pending:
			case <-ctx.Done():
				readErr <- ctx.Err()
				return
			}
			status, body, err := c.readResponse()
			if err != nil {
				if ctx.Err() == nil {
					w.lose(append([]requestID{p.id}, drain()...)...)
				}
				c.close()
				readErr <- err
				return
			}
			if w.record(p.start, status, body) {
				// The rest went to the replica too: answered 307, not committed.
				n := len(drain())
				w.rec.mu.Lock()
				w.rec.mu.out.Redirected += uint64(n)
				w.rec.mu.Unlock()
				c.close()
				readErr <- errRedirected
				return
			}
		}
	}()
	conn := int(w.gen.conn)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ; ; w.slotNext++ {
		intended := s.slot(conn, w.slotNext)
		if d := time.Duration(intended - nowNanos()); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case err := <-readErr:
				return err
			}
		}
		var p sent
		p.start = intended
		w.appendRequest(c, intended, &p.id) // queued only: flushed below, after the reader knows
		select {
		case pending <- p:
		case err := <-readErr:
			return err
		}
		if err := c.flush(); err != nil {
			c.close()
			return errors.Join(err, <-readErr)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
