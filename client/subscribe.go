package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

const defaultIdleTimeout = 45 * time.Second // the server is never silent for more than 15s

// SubscribeOptions says where a subscription starts and what it carries.
type SubscribeOptions struct {
	// After: stream transactions with version > *After. Nil: from the
	// version current when the subscription first connects (pinned with
	// /v1/version so that reconnects cannot skip anything).
	After *uint64
	// NonDurable asks for durable=false: transactions as soon as they are
	// resolved, before they are durable, with checkpoints marking what is.
	// The zero value is the server's default, durable=true.
	NonDurable bool
	// Begin and End restrict the stream to the key range [Begin, End); nil
	// means from the empty key / to the end of the key space.
	Begin, End []byte
	// IdleTimeout: a connection silent this long is dropped and reconnected
	// (default 45s; the server sends something at least every 15s).
	IdleTimeout time.Duration
}

// EventKind says which field of an Event is set.
type EventKind uint8

const (
	// EventTransaction: a committed (or, NonDurable, resolved) transaction.
	EventTransaction EventKind = iota + 1
	// EventCheckpoint: everything up to Checkpoint.CommittedVersion is durable.
	EventCheckpoint
	// EventReset (NonDurable only): after a reconnect, discard every
	// transaction delivered with version > Reset; the stream resumes from
	// there.
	EventReset
)

// Event is one item of a subscription.
type Event struct {
	Kind        EventKind
	Transaction Transaction // Kind == EventTransaction
	Checkpoint  Checkpoint  // Kind == EventCheckpoint
	Reset       uint64      // Kind == EventReset
}

// Transaction is a transaction event with its keys and values decoded.
type Transaction struct {
	Version     uint64
	PrevVersion uint64
	RequestID   string
	Timestamp   time.Time
	LeaderID    string
	Operations  []Operation
}

// Checkpoint is a checkpoint event.
type Checkpoint struct {
	CommittedVersion uint64 `json:"committed_version"`
	LeaderID         string `json:"leader_id"`
}

type wireOp struct {
	Type  OpType `json:"type"`
	Key   []byte `json:"key"` // encoding/json decodes standard base64 into []byte
	Value []byte `json:"value"`
	Begin []byte `json:"begin"`
	End   []byte `json:"end"`
}

type wireTxn struct {
	Version     uint64    `json:"version"`
	PrevVersion uint64    `json:"prev_version"`
	RequestID   string    `json:"request_id"`
	Timestamp   time.Time `json:"timestamp"`
	LeaderID    string    `json:"leader_id"`
	Operations  []wireOp  `json:"operations"`
}

// Subscription is an iterator over the log that reconnects by itself. Call
// Next in a loop, Close when done. It is not safe for concurrent use.
type Subscription struct {
	c      *Client
	opts   SubscribeOptions
	ctx    context.Context // parent of every connection; Close cancels it
	cancel context.CancelFunc

	pinned   bool   // position is known (After given or pinned by /v1/version)
	position uint64 // resume point: last transaction delivered (durable) or last checkpoint (NonDurable)
	// delivered is the highest transaction version handed to the caller;
	// NonDurable uses it to decide whether a reconnect needs a Reset.
	delivered uint64
	failures  int           // consecutive failed connections, for backoff
	retryHint time.Duration // the server's SSE retry field
	err       error         // sticky: the subscription is over

	conn *subConn // nil when disconnected
}

// subConn is one open /v1/subscribe response.
type subConn struct {
	body     io.ReadCloser
	cancel   context.CancelFunc
	parser   *sseReader
	prev     uint64 // prev_version the next transaction must carry
	watchdog *time.Timer
	mu       sync.Mutex // guards closed
	closed   bool
}

func (sc *subConn) close() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if !sc.closed {
		sc.closed = true
		sc.watchdog.Stop()
		sc.cancel()
		sc.body.Close()
	}
}

// Subscribe returns a subscription; it connects lazily on the first Next.
// ctx bounds the whole subscription.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) *Subscription {
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Subscription{c: c, opts: opts, ctx: ctx, cancel: cancel}
	if opts.After != nil {
		s.pinned, s.position, s.delivered = true, *opts.After, *opts.After
	}
	return s
}

// Position returns the point the subscription would resume after, and
// whether it is known yet.
func (s *Subscription) Position() (uint64, bool) { return s.position, s.pinned }

// Close ends the subscription and its connection.
func (s *Subscription) Close() error {
	s.cancel()
	if s.conn != nil {
		s.conn.close()
		s.conn = nil
	}
	if s.err == nil {
		s.err = errors.New("weaseldb subscription: closed")
	}
	return nil
}

// Next returns the next event, reconnecting as needed. It returns an error
// only when the subscription cannot go on: ctx ended (Next may be called
// again with a live context), a *GapError, or a permanent server answer
// (ErrGone: the position was truncated away; ErrBadRequest, e.g.
// ErrFutureVersion: the position is from another log).
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		if s.err != nil {
			return Event{}, s.err
		}
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		if s.conn == nil {
			reset, err := s.connect(ctx)
			if err != nil {
				if s.err != nil || ctx.Err() != nil {
					return Event{}, err
				}
				continue // transient: connect again after backoff
			}
			if reset {
				return Event{Kind: EventReset, Reset: s.position}, nil
			}
		}
		ev, ok, err := s.read(ctx)
		if err != nil {
			return Event{}, err
		}
		if ok {
			return ev, nil
		}
	}
}

// connect opens a stream after backing off for earlier failures. reset is
// true when NonDurable transactions beyond the resume point were delivered.
func (s *Subscription) connect(ctx context.Context) (reset bool, err error) {
	if s.failures > 0 {
		if err := sleepCtx(ctx, s.c.backoff(s.failures, s.retryHint)); err != nil {
			return false, err
		}
	}
	if !s.pinned {
		v, err := s.c.Version(ctx)
		if err != nil {
			s.failures++
			return false, s.transient(err)
		}
		s.pinned, s.position, s.delivered = true, v.Version, v.Version
	}
	conn, err := s.open()
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && !retryable(err) {
			s.err = fmt.Errorf("weaseldb subscribe after %d: %w", s.position, err)
			return false, s.err
		}
		s.failures++
		return false, s.transient(err)
	}
	s.conn = conn
	if s.opts.NonDurable && s.delivered > s.position {
		s.delivered = s.position
		return true, nil
	}
	return false, nil
}

func (s *Subscription) transient(err error) error {
	if s.ctx.Err() != nil {
		s.err = fmt.Errorf("weaseldb subscription: %w", s.ctx.Err())
		return s.err
	}
	s.c.log.Debug("weaseldb client: subscribe reconnecting", "after", s.position, "failures", s.failures, "err", err)
	return err
}

func (s *Subscription) open() (*subConn, error) {
	q := url.Values{}
	pos := strconv.FormatUint(s.position, 10)
	q.Set("after", pos)
	if s.opts.NonDurable {
		q.Set("durable", "false")
	}
	if s.opts.Begin != nil {
		q.Set("begin", base64.StdEncoding.EncodeToString(s.opts.Begin))
	}
	if s.opts.End != nil {
		q.Set("end", base64.StdEncoding.EncodeToString(s.opts.End))
	}
	ctx, cancel := context.WithCancel(s.ctx)
	watchdog := time.AfterFunc(s.c.timeout, cancel) // covers connecting and the headers
	resp, err := s.c.send(ctx, s.c.stream, http.MethodGet, "/v1/subscribe?"+q.Encode(), nil,
		http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {pos}})
	if err != nil {
		watchdog.Stop()
		cancel()
		return nil, fmt.Errorf("weaseldb subscribe after %s: %w", pos, err)
	}
	if resp.StatusCode != http.StatusOK {
		watchdog.Stop()
		err := readAPIError(resp)
		resp.Body.Close()
		cancel()
		return nil, err
	}
	watchdog.Reset(s.opts.IdleTimeout)
	conn := &subConn{cancel: cancel, prev: s.position, watchdog: watchdog}
	conn.body = resp.Body
	conn.parser = newSSEReader(&watchedReader{r: resp.Body, timer: watchdog, idle: s.opts.IdleTimeout})
	return conn, nil
}

// watchedReader re-arms the idle watchdog whenever bytes arrive.
type watchedReader struct {
	r     io.Reader
	timer *time.Timer
	idle  time.Duration
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.timer.Reset(w.idle)
	}
	return n, err
}

// read returns the next event of the open connection; ok is false when the
// connection ended (it is then closed, to be reopened) or the event was not
// one for the caller.
func (s *Subscription) read(ctx context.Context) (Event, bool, error) {
	conn := s.conn
	stop := context.AfterFunc(ctx, conn.close) // a cancelled Next unblocks the read
	raw, err := conn.parser.next()
	stop()
	if err != nil {
		conn.close()
		s.conn = nil
		if ctx.Err() != nil {
			return Event{}, false, ctx.Err()
		}
		if s.ctx.Err() != nil {
			s.err = fmt.Errorf("weaseldb subscription: %w", s.ctx.Err())
			return Event{}, false, s.err
		}
		s.failures++
		s.c.log.Debug("weaseldb client: subscription dropped", "after", s.position, "err", err)
		return Event{}, false, nil
	}
	if r := conn.parser.retry; r > 0 {
		s.retryHint = r
	}
	switch raw.Type {
	case "transaction":
		return s.transaction(conn, raw.Data)
	case "checkpoint":
		var cp Checkpoint
		if err := json.Unmarshal(raw.Data, &cp); err != nil {
			s.err = fmt.Errorf("weaseldb subscription: bad checkpoint %q: %w", raw.Data, err)
			return Event{}, false, s.err
		}
		s.failures = 0
		if cp.CommittedVersion > s.position && (s.opts.NonDurable || cp.CommittedVersion >= s.delivered) {
			// Durable: everything up to it was sent; resuming from it skips
			// transactions filtered out by a key range. NonDurable: the
			// rollback point.
			s.position = cp.CommittedVersion
		}
		return Event{Kind: EventCheckpoint, Checkpoint: cp}, true, nil
	}
	return Event{}, false, nil // unknown event types are for newer clients
}

func (s *Subscription) transaction(conn *subConn, data []byte) (Event, bool, error) {
	var w wireTxn
	if err := json.Unmarshal(data, &w); err != nil {
		s.err = fmt.Errorf("weaseldb subscription: bad transaction event: %w", err)
		return Event{}, false, s.err
	}
	if w.PrevVersion != conn.prev || w.Version <= w.PrevVersion {
		s.err = &GapError{Expected: conn.prev, Got: w.PrevVersion, Version: w.Version}
		conn.close()
		s.conn = nil
		return Event{}, false, s.err
	}
	conn.prev = w.Version
	s.failures = 0
	if !s.opts.NonDurable {
		s.position = w.Version
	}
	s.delivered = w.Version
	t := Transaction{Version: w.Version, PrevVersion: w.PrevVersion, RequestID: w.RequestID,
		Timestamp: w.Timestamp, LeaderID: w.LeaderID, Operations: make([]Operation, len(w.Operations))}
	for i, o := range w.Operations {
		op := Operation{Type: o.Type, Key: o.Key, Value: o.Value}
		if o.Type == OpRangeDelete {
			op.Key, op.End = o.Begin, o.End
		}
		t.Operations[i] = op
	}
	return Event{Kind: EventTransaction, Transaction: t}, true, nil
}
