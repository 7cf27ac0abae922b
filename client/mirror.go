package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
)

// updateAttemptsMax bounds the conflict retries of one Mirror.Update: under
// contention that heavy the caller should hear about it.
const updateAttemptsMax = 1000

// Mirror is a local copy of the keys in one range, kept current from the
// log by a durable subscription. WeaselDB serves no reads of values: a
// client builds the state it needs from the log, and a Mirror is that
// state, with the version it reflects. Update runs read-modify-write
// transactions against it and retries them on conflict, as etcd's STM
// does (go.etcd.io/etcd/client/v3/concurrency, NewSTM).
//
// A Mirror replays the log from the start (version 0), so the log must not
// have been truncated below it; it keeps every key of its range in memory.
// It is safe for concurrent use.
type Mirror struct {
	c      *Client
	begin  []byte // immutable
	end    []byte // immutable
	cancel context.CancelFunc
	done   chan struct{} // closed when the subscription goroutine returns

	mu struct {
		sync.RWMutex
		data    map[string][]byte
		version uint64        // every transaction up to it is applied
		changed chan struct{} // closed and replaced when version moves
		err     error         // the subscription ended: sticky
	}
}

// NewMirror starts mirroring the keys in [begin, end) (nil: from the empty
// key / to the end of the key space) from version 0. Close it when done.
func (c *Client) NewMirror(begin, end []byte) *Mirror {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{c: c, begin: bytes.Clone(begin), end: bytes.Clone(end), cancel: cancel, done: make(chan struct{})}
	m.mu.data = map[string][]byte{}
	m.mu.changed = make(chan struct{})
	zero := uint64(0)
	sub := c.Subscribe(ctx, SubscribeOptions{After: &zero, Begin: begin, End: end})
	go m.follow(ctx, sub)
	return m
}

func (m *Mirror) follow(ctx context.Context, sub *Subscription) {
	defer close(m.done)
	defer sub.Close()
	for {
		ev, err := sub.Next(ctx)
		if err != nil {
			m.mu.Lock()
			m.mu.err = fmt.Errorf("weaseldb mirror: %w", err)
			close(m.mu.changed)
			m.mu.changed = make(chan struct{})
			m.mu.Unlock()
			return
		}
		switch ev.Kind {
		case EventTransaction:
			m.apply(ev.Transaction)
		case EventCheckpoint:
			m.advance(ev.Checkpoint.CommittedVersion)
		}
	}
}

func (m *Mirror) apply(t Transaction) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range t.Operations {
		switch op.Type {
		case OpWrite:
			m.mu.data[string(op.Key)] = op.Value
		case OpDelete:
			delete(m.mu.data, string(op.Key))
		case OpRangeDelete:
			for k := range m.mu.data {
				if k >= string(op.Key) && k < string(op.End) {
					delete(m.mu.data, k)
				}
			}
		}
	}
	m.advanceLocked(t.Version)
}

func (m *Mirror) advance(v uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(v)
}

func (m *Mirror) advanceLocked(v uint64) {
	if v > m.mu.version {
		m.mu.version = v
		close(m.mu.changed)
		m.mu.changed = make(chan struct{})
	}
}

// Close stops the subscription. Update and WaitFor then fail.
func (m *Mirror) Close() error {
	m.cancel()
	<-m.done
	return nil
}

// Version returns the version the mirror reflects: every transaction up to
// it is applied.
func (m *Mirror) Version() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.mu.version
}

// Get returns the value of key as of Version (a copy), and whether it
// exists.
func (m *Mirror) Get(key []byte) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.mu.data[string(key)]
	return bytes.Clone(v), ok
}

// WaitFor waits until the mirror reflects version v (or more).
func (m *Mirror) WaitFor(ctx context.Context, v uint64) error {
	for {
		m.mu.RLock()
		cur, changed, err := m.mu.version, m.mu.changed, m.mu.err
		m.mu.RUnlock()
		if cur >= v {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("weaseldb mirror: waiting for version %d (at %d): %w", v, cur, ctx.Err())
		}
	}
}

// STM is the view fn gets in Mirror.Update: reads come from the mirror at
// one version and are recorded as preconditions; writes are buffered and
// sent as the transaction's operations. Reads see the transaction's own
// earlier writes.
type STM struct {
	m       *Mirror
	version uint64
	reads   [][]byte
	read    map[string]bool
	writes  map[string]*[]byte // nil pointer: deleted
	ops     []Operation
	invalid error
}

// Get returns the value of key (nil if absent) as of the transaction's read
// version, and records a point read of it.
func (s *STM) Get(key []byte) []byte {
	if !s.m.inRange(key) {
		s.invalid = errors.Join(s.invalid, fmt.Errorf("weaseldb stm: key %q outside the mirrored range", key))
		return nil
	}
	if w, ok := s.writes[string(key)]; ok {
		if w == nil {
			return nil
		}
		return bytes.Clone(*w)
	}
	if !s.read[string(key)] {
		s.read[string(key)] = true
		s.reads = append(s.reads, bytes.Clone(key))
	}
	return bytes.Clone(s.m.mu.data[string(key)])
}

// Put writes value at key when the transaction commits.
func (s *STM) Put(key, value []byte) {
	v := bytes.Clone(value)
	s.writes[string(key)] = &v
	s.ops = append(s.ops, Operation{Type: OpWrite, Key: bytes.Clone(key), Value: v})
}

// Delete deletes key when the transaction commits.
func (s *STM) Delete(key []byte) {
	s.writes[string(key)] = nil
	s.ops = append(s.ops, Operation{Type: OpDelete, Key: bytes.Clone(key)})
}

// Version is the version the transaction reads at.
func (s *STM) Version() uint64 { return s.version }

func (m *Mirror) inRange(key []byte) bool {
	return bytes.Compare(key, m.begin) >= 0 && (m.end == nil || bytes.Compare(key, m.end) < 0)
}

// Update runs fn as a read-modify-write transaction and commits it: fn reads
// with stm.Get (each read becomes a point_read precondition at the version
// fn saw) and writes with stm.Put/Delete. When another commit wrote a key fn
// read, the commit conflicts; Update then waits until the mirror has that
// commit and runs fn again, so no update is ever lost. fn may run several
// times: it must have no side effects besides stm, must not block (the
// mirror does not advance while it runs) and must not call the Mirror's
// methods. An error from fn stops Update and is returned as is.
//
// The first attempt reads at least at the server's current version (asked
// with /v1/version), so fn never starts from a state older than what the
// caller could have seen committed.
func (m *Mirror) Update(ctx context.Context, fn func(stm *STM) error) (CommitResult, error) {
	latest, err := m.c.Version(ctx)
	if err != nil {
		return CommitResult{}, fmt.Errorf("weaseldb update: %w", err)
	}
	target := latest.Version
	for attempt := 0; attempt < updateAttemptsMax; attempt++ {
		if err := m.WaitFor(ctx, target); err != nil {
			return CommitResult{}, fmt.Errorf("weaseldb update: %w", err)
		}
		txn, err := m.run(fn)
		if err != nil {
			return CommitResult{}, err
		}
		res, err := m.c.Commit(ctx, txn)
		var ae *APIError
		if errors.As(err, &ae) && (errors.Is(err, ErrConflict) || errors.Is(err, ErrTooOld)) {
			target = max(ae.Version, target) // the conflicting commit is at or below it
			continue
		}
		return res, err
	}
	return CommitResult{}, fmt.Errorf("weaseldb update: still conflicting after %d attempts", updateAttemptsMax)
}

// run calls fn on a snapshot and turns what it did into a transaction.
func (m *Mirror) run(fn func(stm *STM) error) (*Txn, error) {
	m.mu.RLock()
	stm := &STM{m: m, version: m.mu.version, read: map[string]bool{}, writes: map[string]*[]byte{}}
	err := fn(stm)
	m.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	if stm.invalid != nil {
		return nil, stm.invalid
	}
	txn := NewTxn().ReadVersion(stm.version)
	for _, k := range stm.reads {
		txn.PointRead(k)
	}
	for _, op := range stm.ops {
		switch op.Type {
		case OpWrite:
			txn.Write(op.Key, op.Value)
		case OpDelete:
			txn.Delete(op.Key)
		}
	}
	return txn, nil
}
