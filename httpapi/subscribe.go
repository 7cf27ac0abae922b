package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"weaseldb/engine"
	"weaseldb/jsonstream"
	"weaseldb/netpoll"
	"weaseldb/persist"
	"weaseldb/tx"
)

// Subscriptions: each GET /v1/subscribe becomes a netpoll Stream and one
// goroutine (a subscriber) that follows the engine's tail from its cursor,
// falls back to persist.Log.ReadFrom when the tail no longer holds its
// position, filters by key range, and writes SSE events into the stream.
//
// Memory per subscriber is bounded: the stream queue (netpoll's
// MaxStreamQueueBytes) plus one batch being encoded (flushBytes). A
// subscriber whose peer reads slowly stops taking from the tail while the
// queue is full; if the tail moves past it meanwhile, it continues from the
// log. Commits never wait for subscribers.

const (
	// flushBytes is how much encoded SSE text a subscriber gathers before
	// writing it to the stream.
	flushBytes = 256 << 10
	// catchUpBytes bounds one ReadFrom of the persisted log.
	catchUpBytes = 4 << 20
	// drainPoll is how often a subscriber whose stream queue is full checks
	// whether the peer has read; the stall timeout of netpoll ends hopeless
	// cases.
	drainPoll = 5 * time.Millisecond
)

// subscriber is one /v1/subscribe stream.
type subscriber struct {
	api     *API
	stream  *netpoll.Stream
	durable bool
	begin   []byte // key filter [begin, end); nil end = to the end of the key space
	end     []byte
	filter  bool

	cursor   tx.Version    // every version <= cursor has been sent (or skipped)
	prevSent tx.Version    // version of the last transaction sent, for prev_version
	lastCP   tx.Version    // committed_version of the last checkpoint sent
	cursorAt atomic.Uint64 // cursor once its events are in the stream queue, for /metrics
	// caughtUpAt is when (unix nanos) the subscriber last held every
	// transaction then available to it, for the lag-in-seconds metric.
	caughtUpAt atomic.Int64
	out        []byte
	ops        []tx.Operation
	segs       [][]byte
	reader     persist.SegmentReader
}

// serveSubscribe answers GET /v1/subscribe: validates the position and the
// filter, then turns the connection into an SSE stream.
func (a *API) serveSubscribe(ex *netpoll.Exchange, _ []byte) {
	r := ex.Request()
	s := &subscriber{api: a, durable: true}
	if v, ok := r.Query("durable"); ok {
		switch string(v) {
		case "true", "1":
		case "false", "0":
			s.durable = false
		default:
			a.respondError(ex, routeSubscribe, 400, "bad_request", "durable: must be true or false")
			return
		}
	}
	for _, f := range [...]struct {
		name string
		dst  *[]byte
	}{{"begin", &s.begin}, {"end", &s.end}} {
		raw, ok := r.Query(f.name)
		if !ok {
			continue
		}
		key, err := decodeQueryKey(raw)
		if err != nil {
			a.respondError(ex, routeSubscribe, 400, "bad_request", f.name+": "+err.Error())
			return
		}
		*f.dst = key
		s.filter = true
	}
	if s.filter && s.end != nil && bytes.Compare(s.begin, s.end) >= 0 {
		a.respondError(ex, routeSubscribe, 400, "bad_request", "begin: must be less than end")
		return
	}

	// Position: Last-Event-ID, else after, else the latest committed version.
	after := a.eng.Version()
	if !s.durable {
		after = a.eng.ResolvedVersion()
	}
	field := ""
	if raw, ok := r.Header("Last-Event-ID"); ok && len(raw) > 0 {
		field = "Last-Event-ID"
		v, err := parseVersion(raw)
		if err != nil {
			a.respondError(ex, routeSubscribe, 400, "bad_request", "Last-Event-ID: "+err.Error())
			return
		}
		after = v
	} else if raw, ok := r.Query("after"); ok {
		field = "after"
		v, err := parseVersion(raw)
		if err != nil {
			a.respondError(ex, routeSubscribe, 400, "bad_request", "after: "+err.Error())
			return
		}
		after = v
	}
	if field != "" {
		if resolved := a.eng.ResolvedVersion(); after > resolved {
			b := appendErrorReason(ex.Scratch(), "bad_request", field+": "+strconv.FormatUint(uint64(after), 10)+
				" is greater than any version this server has assigned ("+strconv.FormatUint(uint64(resolved), 10)+")", "future_version", nil)
			a.respond(ex, routeSubscribe, 400, b)
			return
		}
		if oldest := a.eng.OldestRetained(); after < oldest {
			a.respondError(ex, routeSubscribe, 410, "gone", field+": "+strconv.FormatUint(uint64(after), 10)+
				" is below oldest_retained_version "+strconv.FormatUint(uint64(oldest), 10))
			return
		}
	}
	if !a.addSubscriber(s) {
		a.respondError(ex, routeSubscribe, 429, "too_many_requests", "too many subscribers (subscribe.max_subscribers)")
		return
	}
	s.cursor, s.prevSent, s.lastCP = after, after, 0
	s.cursorAt.Store(uint64(after))
	s.caughtUpAt.Store(time.Now().UnixNano())
	a.met.countResponse(routeSubscribe, 200)
	s.stream = ex.StartStream(200, "text/event-stream",
		netpoll.Header{Name: "Cache-Control", Value: []byte("no-cache")},
		netpoll.Header{Name: "X-Accel-Buffering", Value: []byte("no")})
	go s.run()
}

var base64Std = base64.StdEncoding.Strict()

// decodeQueryKey decodes a percent-encoded base64 key from the query.
func decodeQueryKey(raw []byte) ([]byte, error) {
	unescaped, err := netpoll.AppendUnescapeQuery(nil, raw)
	if err != nil {
		return nil, errors.New("invalid percent-encoding")
	}
	key := make([]byte, base64Std.DecodedLen(len(unescaped)))
	n, err := base64Std.Decode(key, unescaped)
	if err != nil {
		return nil, errors.New("invalid base64 (standard alphabet, padded; percent-encode '+' and '/')")
	}
	return key[:n], nil
}

func (a *API) addSubscriber(s *subscriber) bool {
	a.subs.Lock()
	defer a.subs.Unlock()
	if a.subs.closed || len(a.subs.set) >= a.cfg.Subscribe.MaxSubscribers {
		return false
	}
	a.subs.set[s] = struct{}{}
	a.subsWG.Add(1)
	return true
}

func (a *API) removeSubscriber(s *subscriber) {
	a.subs.Lock()
	delete(a.subs.set, s)
	a.subs.Unlock()
	a.subsWG.Done()
}

// CloseSubscribers ends every stream (at shutdown or when deposed) and
// waits for the subscriber goroutines, bounded by ctx.
func (a *API) CloseSubscribers(ctx context.Context) {
	a.subs.Lock()
	a.subs.closed = true
	for s := range a.subs.set {
		s.stream.Close()
	}
	a.subs.Unlock()
	done := make(chan struct{})
	go func() { a.subsWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// run is the subscriber's goroutine.
func (s *subscriber) run() {
	a := s.api
	defer a.removeSubscriber(s)
	defer func() {
		if errors.Is(s.stream.Err(), netpoll.ErrWriteStalled) {
			a.met.subscribersDropped.Add(1) // its peer stopped reading
		}
	}()
	defer s.stream.Close()
	tail := a.eng.Tail()
	cpEvery := a.cfg.Subscribe.CheckpointInterval.Duration
	ticker := time.NewTicker(cpEvery)
	defer ticker.Stop()
	idleSince := time.Now()
	for {
		readAt := time.Now().UnixNano()
		segs, wait, err := tail.Read(s.cursor, s.durable, s.segs[:0])
		s.segs = segs[:0]
		switch {
		case errors.Is(err, engine.ErrBehindTail):
			if !s.catchUp() {
				return
			}
			continue
		case err != nil: // deposed or closed: the stream ends
			return
		}
		sent := false
		for _, seg := range segs {
			if !s.sendSegment(seg) {
				return
			}
			sent = true
		}
		// durable=false readers learn promptly what became durable.
		if !s.durable && s.checkpointDue(tail.Durable()) {
			s.appendCheckpoint(tail.Durable())
		}
		if !s.flush() {
			return
		}
		s.caughtUpAt.Store(readAt) // it has everything the tail held at readAt
		if sent {
			idleSince = time.Now()
			continue
		}
		select {
		case <-wait:
		case <-ticker.C:
			if time.Since(idleSince) >= cpEvery {
				// At least one checkpoint a second while idle; it doubles
				// as the keep-alive.
				s.appendCheckpoint(min(s.cursor, tail.Durable()))
				if !s.flush() {
					return
				}
				idleSince = time.Now()
			}
		case <-s.stream.Done():
			return
		}
	}
}

func (s *subscriber) checkpointDue(durable tx.Version) bool {
	return min(s.cursor, durable) > s.lastCP
}

// catchUp sends transactions from the persisted log until the cursor is
// back within reach of the tail. It returns false when the stream is over.
func (s *subscriber) catchUp() bool {
	a := s.api
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stream.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	segs, err := a.log.ReadFrom(ctx, s.cursor, catchUpBytes)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			a.logger.Warn("subscriber catch-up read failed; closing stream", "after", uint64(s.cursor), "err", err)
		}
		return false
	}
	if len(segs) == 0 {
		// after+1 is not stored yet: the tail will have it shortly.
		select {
		case <-time.After(drainPoll):
			return true
		case <-s.stream.Done():
			return false
		}
	}
	for _, seg := range segs {
		if !s.sendSegment(seg) {
			return false
		}
	}
	return s.flush()
}

// sendSegment sends the segment's transactions above the cursor: the shared
// encoding for unfiltered streams, its own encoding for filtered ones.
func (s *subscriber) sendSegment(seg []byte) bool {
	if !s.filter {
		e, err := s.api.events.get(seg)
		if err != nil {
			s.api.logger.Error("subscriber: corrupt segment", "err", err)
			return false
		}
		if e.last <= s.cursor {
			return true
		}
		if e.first > s.cursor+1 {
			s.api.logger.Error("subscriber: gap in the log", "cursor", uint64(s.cursor), "next", uint64(e.first))
			return false
		}
		s.out = append(s.out, e.after(s.cursor)...)
		s.cursor, s.prevSent = e.last, e.last
		if len(s.out) >= flushBytes {
			return s.flush()
		}
		return true
	}
	hdr, err := s.reader.Reset(seg)
	if err != nil {
		s.api.logger.Error("subscriber: corrupt segment", "err", err)
		return false
	}
	for t, ok := s.reader.Next(); ok; t, ok = s.reader.Next() {
		if t.Version <= s.cursor {
			continue
		}
		if t.Version != s.cursor+1 {
			s.api.logger.Error("subscriber: gap in the log", "cursor", uint64(s.cursor), "next", uint64(t.Version))
			return false
		}
		s.cursor = t.Version
		s.appendFiltered(t, hdr.LeaderID)
		if len(s.out) >= flushBytes && !s.flush() {
			return false
		}
	}
	if err := s.reader.Err(); err != nil {
		s.api.logger.Error("subscriber: corrupt segment", "err", err)
		return false
	}
	return true
}

// appendFiltered encodes the part of t inside the key filter, or nothing
// when the filter skips it.
func (s *subscriber) appendFiltered(t *tx.Transaction, leaderID []byte) {
	s.ops = clipOperations(s.ops[:0], t.Operations, s.begin, s.end)
	if len(s.ops) == 0 {
		return
	}
	clipped := *t
	clipped.Operations = s.ops
	s.out = appendEvent(s.out, &clipped, s.prevSent, leaderID)
	s.prevSent = t.Version
}

func (s *subscriber) appendCheckpoint(v tx.Version) {
	s.out = append(s.out, "event: checkpoint\ndata: "...)
	s.out = jsonstream.AppendCheckpointEvent(s.out, v, s.api.leaderID)
	s.out = append(s.out, "\n\n"...)
	if v > s.lastCP {
		s.lastCP = v
	}
}

// flush writes the gathered events, waiting (bounded by netpoll's stall
// timeout) while the stream queue is full. It returns false when the stream
// is over.
func (s *subscriber) flush() bool {
	pending := s.out
	for len(pending) > 0 {
		// A piece never exceeds half the stream queue, so even an event
		// larger than the queue (a 16 MiB transaction) gets through.
		piece := pending[:min(len(pending), s.api.streamPieceBytes)]
		err := s.stream.Write(piece)
		if err == nil {
			pending = pending[len(piece):]
			continue
		}
		if !errors.Is(err, netpoll.ErrStreamFull) {
			return false
		}
		select {
		case <-time.After(drainPoll):
		case <-s.stream.Done():
			return false
		}
	}
	s.out = s.out[:0]
	s.cursorAt.Store(uint64(s.cursor))
	return true
}

// clipOperations is the key filter (shared with weaseldb log dump).
func clipOperations(dst, ops []tx.Operation, begin, end []byte) []tx.Operation {
	return tx.ClipOperations(dst, ops, begin, end)
}
