package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/jsonstream"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// Subscriptions: each GET /v1/subscribe becomes a netpoll Stream and one
// goroutine (a subscriber) that follows the engine's tail from its cursor,
// falls back to persist.Log.ReadFrom when the tail no longer holds its
// position, filters by key range, and writes SSE events into the stream.
//
// A slow subscriber never slows commits (API.md). So:
//   - Writes never block. When the stream is full the subscriber records
//     how far it got (cursor plus evOff into the next event), lets go of
//     every segment it holds and sleeps on Stream.Room, which the reactor
//     closes when the peer has taken the queue. A peer that reads nothing
//     costs no CPU (no polling) until netpoll's stall timeout ends it.
//   - Memory per subscriber is its stream queue plus what the reactor is
//     writing (netpoll's MaxStreamQueueBytes each), plus s.out (at most
//     flushBytes and one event); all streams together are bounded by
//     subscribe.total_buffer_bytes, past which new subscribers get 503.
//   - Work is done in server-wide slots: encoding and copying into streams
//     under one of subscribeWorkSlots, reads of the persisted log under one
//     of catchUpSlots. Three hundred subscribers starting together are then
//     two goroutines working and the rest parked, not three hundred in the
//     scheduler's run queue ahead of the commit pipeline's goroutines
//     (which is what made commits wait seconds, more than the CPU work
//     itself), and many subscribers behind the tail cannot flood the disk
//     or S3 or hold catch-up buffers side by side.
// Tried first and rejected: polling a full stream every 5 ms — 300 stalled
// subscribers were 60,000 wakeups a second and, each holding its segments,
// 14–18 MiB of heap apiece; one committer waited 12.7 s.

const (
	// flushBytes is how much encoded SSE text a subscriber gathers before
	// writing it to the stream.
	flushBytes = 256 << 10
	// catchUpBytes bounds one ReadFrom of the persisted log.
	catchUpBytes = 2 << 20
	// notStoredPoll is how long a subscriber waits when the log has nothing
	// after its cursor yet (the tail will have it shortly).
	notStoredPoll = 5 * time.Millisecond
)

// progress is the outcome of a step that writes to the stream.
type progress uint8

const (
	progressed progress = iota // everything was written
	blocked                    // the stream is full: wait for Room
	over                       // the stream ended (or the log is broken)
)

// subscriber is one /v1/subscribe stream.
type subscriber struct {
	api     *API
	eng     *engine.Engine // the engine whose tail the stream follows
	stream  *netpoll.Stream
	durable bool
	begin   []byte // key filter [begin, end); nil end = to the end of the key space
	end     []byte
	filter  bool

	// cursor: every version <= cursor has been written to the stream (or
	// skipped by the filter), or sits in out. evOff: bytes of the event of
	// cursor+1 already written (unfiltered streams, which write the shared
	// encoding directly); out is empty while evOff > 0.
	cursor   tx.Version
	evOff    int
	prevSent tx.Version    // version of the last transaction sent, for prev_version
	lastCP   tx.Version    // committed_version of the last checkpoint sent
	cursorAt atomic.Uint64 // the highest version whose event the subscriber has taken up for sending (noteSending), for /metrics
	// caughtUpAt is when (unix nanos) the subscriber last held every
	// transaction then available to it, for the lag-in-seconds metric.
	caughtUpAt atomic.Int64
	out        []byte // own encodings (filtered events, checkpoints) not yet written
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

	eng := a.engine()
	if eng == nil {
		a.respondError(ex, routeSubscribe, 503, "unavailable", "starting: the log is being recovered")
		return
	}
	if !s.durable && eng.IsReplica() {
		a.respondError(ex, routeSubscribe, 400, "bad_request", "durable: a replica serves durable transactions only; subscribe with durable=false on the leader")
		return
	}
	s.eng = eng
	// Position: Last-Event-ID, else after, else the latest committed version.
	after := eng.Version()
	if !s.durable {
		after = eng.ResolvedVersion()
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
		if resolved := eng.ResolvedVersion(); after > resolved {
			b := appendErrorReason(ex.Scratch(), "bad_request", field+": "+strconv.FormatUint(uint64(after), 10)+
				" is greater than any version this server has assigned ("+strconv.FormatUint(uint64(resolved), 10)+")", "future_version", nil)
			a.respond(ex, routeSubscribe, 400, b)
			return
		}
		if oldest := eng.OldestRetained(); after < oldest {
			a.respondError(ex, routeSubscribe, 410, "gone", field+": "+strconv.FormatUint(uint64(after), 10)+
				" is below oldest_retained_version "+strconv.FormatUint(uint64(oldest), 10))
			return
		}
	}
	if ex.StreamBytesFree() < int64(StreamQueueBytes(a.cfg)) {
		a.respondError(ex, routeSubscribe, 503, "unavailable",
			"subscriber buffers are at their server-wide bound (subscribe.total_buffer_bytes); retry later")
		return
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

// run is the subscriber's goroutine. Its work (encoding, copying into the
// stream) happens while it holds a work slot, its waiting while it holds
// none: see subscribeWorkSlots.
func (s *subscriber) run() {
	a := s.api
	defer a.removeSubscriber(s)
	defer func() {
		if errors.Is(s.stream.Err(), netpoll.ErrWriteStalled) {
			a.met.subscribersDropped.Add(1) // its peer stopped reading
		}
	}()
	defer s.stream.Close()
	tail := s.eng.Tail()
	cpEvery := a.cfg.Subscribe.CheckpointInterval.Duration
	ticker := time.NewTicker(cpEvery)
	defer ticker.Stop()
	idleSince := time.Now()
	for {
		if !s.takeSlot(a.workSlots) {
			return
		}
		step, wait, sent := s.work(tail)
		<-a.workSlots
		if sent {
			idleSince = time.Now()
		}
		switch step {
		case blocked:
			if !s.waitRoom() {
				return
			}
			continue
		case over:
			return
		case behindTail:
			if !s.catchUp() {
				return
			}
			continue
		case moreNow:
			continue
		}
		select {
		case <-wait:
		case <-ticker.C:
			if time.Since(idleSince) >= cpEvery && s.evOff == 0 {
				// At least one checkpoint a second while idle; it doubles
				// as the keep-alive. Written by the next work step.
				s.appendCheckpoint(min(s.cursor, tail.Durable()))
				idleSince = time.Now()
			}
		case <-s.stream.Done():
			return
		}
	}
}

// Outcomes of work besides progressed (nothing more to do now), blocked
// and over.
const (
	behindTail progress = over + 1 + iota // the tail lost the cursor: read the log
	moreNow                               // progress was made: look again at once
)

// work writes what is pending and what the tail holds after the cursor,
// without waiting for anything. wait is the tail's channel for new data.
func (s *subscriber) work(tail *engine.Tail) (step progress, wait <-chan struct{}, sent bool) {
	if step := s.writeOut(); step != progressed {
		return step, nil, false
	}
	readAt := time.Now().UnixNano()
	segs, wait, err := tail.Read(s.cursor, s.durable, s.segs[:0])
	switch {
	case errors.Is(err, engine.ErrBehindTail):
		return behindTail, nil, false
	case err != nil: // deposed or closed: the stream ends
		return over, nil, false
	}
	before := s.cursor
	step = progressed
	for _, seg := range segs {
		if step = s.sendSegment(seg); step != progressed {
			break
		}
	}
	clear(segs) // hold no segment while waiting
	s.segs = segs[:0]
	sent = s.cursor != before
	if step != progressed {
		return step, nil, sent
	}
	// durable=false readers learn promptly what became durable.
	if !s.durable && s.checkpointDue(tail.Durable()) {
		s.appendCheckpoint(tail.Durable())
	}
	if step := s.writeOut(); step != progressed {
		return step, nil, sent
	}
	s.caughtUpAt.Store(readAt) // it has everything the tail held at readAt
	if sent {
		return moreNow, nil, true
	}
	return progressed, wait, false
}

// takeSlot waits for a slot of the given pool; false when the stream ended.
func (s *subscriber) takeSlot(pool chan struct{}) bool {
	select {
	case pool <- struct{}{}:
		return true
	case <-s.stream.Done():
		return false
	}
}

// waitRoom sleeps until the stream may take more; false when it is over.
func (s *subscriber) waitRoom() bool {
	select {
	case <-s.stream.Room():
		return true
	case <-s.stream.Done():
		return false
	}
}

func (s *subscriber) checkpointDue(durable tx.Version) bool {
	return s.evOff == 0 && min(s.cursor, durable) > s.lastCP
}

// catchUp sends transactions from the persisted log: the read under a
// catch-up slot, the sending under a work slot. It returns false when the
// stream is over.
func (s *subscriber) catchUp() bool {
	a := s.api
	if !s.takeSlot(a.catchUpSlots) {
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.stream.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	segs, err := s.eng.Log().ReadFrom(ctx, s.cursor, catchUpBytes)
	cancel()
	<-a.catchUpSlots
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			a.logger.Warn("subscriber catch-up read failed; closing stream", "after", uint64(s.cursor), "err", err)
		}
		return false
	}
	if len(segs) == 0 {
		// after+1 is not stored yet: the tail will have it shortly.
		select {
		case <-time.After(notStoredPoll):
			return true
		case <-s.stream.Done():
			return false
		}
	}
	if !s.takeSlot(a.workSlots) {
		return false
	}
	step := progressed
	for _, seg := range segs {
		if step = s.sendSegment(seg); step != progressed {
			break
		}
	}
	if step == progressed {
		step = s.writeOut()
	}
	<-a.workSlots
	switch step {
	case blocked:
		return s.waitRoom()
	case over:
		return false
	}
	return true
}

// sendSegment sends the segment's transactions above the cursor: the shared
// encoding for unfiltered streams, its own encoding for filtered ones.
func (s *subscriber) sendSegment(seg []byte) progress {
	if !s.filter {
		return s.sendShared(seg)
	}
	hdr, err := s.reader.Reset(seg)
	if err != nil {
		s.api.logger.Error("subscriber: corrupt segment", "err", err)
		return over
	}
	for t, ok := s.reader.Next(); ok; t, ok = s.reader.Next() {
		if t.Version <= s.cursor {
			continue
		}
		if t.Version != s.cursor+1 {
			s.api.logger.Error("subscriber: gap in the log", "cursor", uint64(s.cursor), "next", uint64(t.Version))
			return over
		}
		s.cursor = t.Version
		s.appendFiltered(t, hdr.LeaderID)
		if len(s.out) >= flushBytes {
			if step := s.writeOut(); step != progressed {
				return step
			}
		}
	}
	if err := s.reader.Err(); err != nil {
		s.api.logger.Error("subscriber: corrupt segment", "err", err)
		return over
	}
	return progressed
}

// sendShared writes the shared encoding of seg's events above the cursor
// straight into the stream, in pieces, recording partial progress.
func (s *subscriber) sendShared(seg []byte) progress {
	e, err := s.api.events.get(seg)
	if err != nil {
		s.api.logger.Error("subscriber: corrupt segment", "err", err)
		return over
	}
	if e.last <= s.cursor {
		return progressed
	}
	if e.first > s.cursor+1 {
		s.api.logger.Error("subscriber: gap in the log", "cursor", uint64(s.cursor), "next", uint64(e.first))
		return over
	}
	s.noteSending(e.last)
	text := e.after(s.cursor)
	pos := len(e.text) - len(text) + s.evOff // where the unwritten text starts
	for pos < len(e.text) {
		piece := e.text[pos:min(len(e.text), pos+s.api.streamPieceBytes)]
		if err := s.stream.Write(piece); err != nil {
			s.advance(e, pos)
			if errors.Is(err, netpoll.ErrStreamFull) {
				return blocked
			}
			return over
		}
		pos += len(piece)
	}
	s.advance(e, pos)
	return progressed
}

// advance sets cursor and evOff from pos, the end of what was written of
// e.text.
func (s *subscriber) advance(e *encodedSegment, pos int) {
	// i: the first event not completely written.
	i := sort.Search(len(e.offsets), func(i int) bool { return e.offsets[i] > pos }) - 1
	if i == len(e.offsets)-1 {
		s.cursor, s.evOff = e.last, 0
	} else {
		s.cursor, s.evOff = e.first+tx.Version(i)-1, pos-e.offsets[i]
	}
	s.prevSent = s.cursor
}

// noteSending records for /metrics (lag) that the events up to v are taken
// up for sending: like the cursor, but never back (a stream that blocks
// mid-segment has taken the segment; its lag shows once newer versions
// wait behind it).
func (s *subscriber) noteSending(v tx.Version) {
	if uint64(v) > s.cursorAt.Load() {
		s.cursorAt.Store(uint64(v))
	}
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
	s.out = jsonstream.AppendCheckpointEvent(s.out, v, []byte(s.eng.LeaderID()))
	s.out = append(s.out, "\n\n"...)
	if v > s.lastCP {
		s.lastCP = v
	}
}

// writeOut writes out without waiting: blocked (out keeps what is left)
// when the stream is full.
func (s *subscriber) writeOut() progress {
	s.noteSending(s.cursor)
	if len(s.out) == 0 {
		return progressed
	}
	pending := s.out
	for len(pending) > 0 {
		// A piece never exceeds half the stream queue, so even an event
		// larger than the queue (a 16 MiB transaction) gets through.
		piece := pending[:min(len(pending), s.api.streamPieceBytes)]
		if err := s.stream.Write(piece); err != nil {
			s.out = s.out[:copy(s.out, pending)]
			if errors.Is(err, netpoll.ErrStreamFull) {
				return blocked
			}
			return over
		}
		pending = pending[len(piece):]
	}
	s.out = s.out[:0]
	if cap(s.out) > 2*flushBytes {
		s.out = nil // one huge event must not pin its buffer for the stream's life
	}
	return progressed
}

// clipOperations is the key filter (shared with weaseldb log dump).
func clipOperations(dst, ops []tx.Operation, begin, end []byte) []tx.Operation {
	return tx.ClipOperations(dst, ops, begin, end)
}
