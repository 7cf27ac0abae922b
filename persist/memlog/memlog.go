// Package memlog is a complete persist.Log held in memory, for tests and for
// development mode (`weaseldb --persist memory`): it follows the same
// contract as the disk and S3 backends — fencing on an existing First,
// recovery of the longest contiguous run, ReadFrom paging, Truncate keeping
// the newest segment, policies — and passes the same conformance suite
// (persist/logtest). It is not durable across processes.
//
// The storage (a Store) is separate from the Log that drives it, so that
//
//  1. a restart is modelled by closing a Log and opening another one on the
//     same Store;
//  2. two leaders are modelled by two Logs open on one Store at once (the
//     second Append of a First gets persist.ErrFenced);
//  3. a machine crash is modelled by Store.CrashClone, which copies only the
//     segments whose Append completed (like pebble's vfs.MemFS CrashClone
//     keeps only synced data): a segment still in flight — for example held
//     up by an Append hook — is lost.
//
// Test hooks: Log.SetAppendHook injects latency or errors into Append;
// Store.Segment, Store.SetSegment and Store.DeleteSegment give raw access to
// the stored bytes to damage them.
package memlog

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// errClosed is returned by a Log after Close.
var errClosed = errors.New("memlog: log is closed")

// Store is the storage shared by the Logs opened on it. The zero value is
// not usable; call NewStore.
type Store struct {
	mu struct {
		sync.Mutex
		segs     map[tx.Version]*segment // by First
		policies map[string]tx.Version
	}
}

type segment struct {
	data []byte // immutable once stored
	// durable is false while the Append that stores it has not completed:
	// CrashClone drops such segments.
	durable bool
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{}
	s.mu.segs = make(map[tx.Version]*segment)
	s.mu.policies = make(map[string]tx.Version)
	return s
}

// Open returns a new Log on s. Call Recover before anything else.
func (s *Store) Open() *Log {
	return &Log{store: s}
}

// CrashClone returns a copy of s holding what a crash would leave: the
// policies and the segments whose Append completed.
func (s *Store) CrashClone() *Store {
	c := NewStore()
	s.mu.Lock()
	defer s.mu.Unlock()
	for first, seg := range s.mu.segs {
		if seg.durable {
			c.mu.segs[first] = seg
		}
	}
	maps.Copy(c.mu.policies, s.mu.policies)
	return c
}

// Segment returns a copy of the stored bytes of the segment named first.
func (s *Store) Segment(first tx.Version) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, ok := s.mu.segs[first]
	if !ok {
		return nil, false
	}
	return slices.Clone(seg.data), true
}

// SetSegment stores data under the name first, durable, replacing whatever
// was there. It bypasses validation and fencing: it is for tests that damage
// or forge stored segments.
func (s *Store) SetSegment(first tx.Version, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.segs[first] = &segment{data: slices.Clone(data), durable: true}
}

// DeleteSegment removes the segment named first, if any.
func (s *Store) DeleteSegment(first tx.Version) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.segs, first)
}

// Firsts returns the names of the stored segments, sorted.
func (s *Store) Firsts() []tx.Version {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.mu.segs))
}

// AppendHook runs inside Append after the segment's name was claimed and
// before it is reported durable. It may sleep (latency) or return an error
// (the Append fails and the claim is withdrawn, as if the write never
// happened).
type AppendHook func(ctx context.Context, first tx.Version) error

// Log is a persist.Log on a Store.
type Log struct {
	store *Store // immutable; never nil
	hook  sync.Mutex
	// appendHook is guarded by hook.
	appendHook AppendHook

	mu struct {
		sync.Mutex
		// index is this Log's view of the contiguous run: the recovered
		// segments plus those appended since, sorted by First. Appends
		// completing out of order may leave temporary gaps.
		index []persist.SegmentInfo
		// discarded holds the segments the last Recover discarded, by
		// First, as found (pointer identity says "still the same").
		discarded map[tx.Version]*segment
		claimed   bool // an Append succeeded since Recover
		recovered bool
		closed    bool
	}
}

var _ persist.Log = (*Log)(nil)

// SetAppendHook installs h (nil removes it) for the following Appends.
func (l *Log) SetAppendHook(h AppendHook) {
	l.hook.Lock()
	defer l.hook.Unlock()
	l.appendHook = h
}

func (l *Log) check() error {
	if l.mu.closed {
		return errClosed
	}
	if !l.mu.recovered {
		return errors.New("memlog: Recover must be called first")
	}
	return nil
}

// Recover implements persist.Log.
func (l *Log) Recover(ctx context.Context) (persist.Recovery, error) {
	if err := ctx.Err(); err != nil {
		return persist.Recovery{}, fmt.Errorf("memlog: recover: %w", err)
	}
	s := l.store
	s.mu.Lock()
	// A segment whose Append is still in flight is not listed, as an S3
	// PUT is not until it completes: it may yet fail and be withdrawn, and
	// a claim built on it would then follow a hole that deletes everything
	// the new leader acknowledges (found by engine/sim). Its name stays
	// taken: a claim of it is fenced until it completes or is withdrawn.
	var stored []persist.StoredSegment
	for _, first := range slices.Sorted(maps.Keys(s.mu.segs)) {
		seg := s.mu.segs[first]
		if !seg.durable {
			continue
		}
		h, err := persist.DecodeSegmentHeader(seg.data)
		stored = append(stored, persist.StoredSegment{First: first, Bytes: int64(len(seg.data)), Header: h, Err: err})
	}
	rec, err := persist.PlanRecovery(stored)
	if err != nil {
		s.mu.Unlock()
		return persist.Recovery{}, fmt.Errorf("memlog: recover: %w", err)
	}
	// Nothing is deleted before this Log's claim: see persist's package doc.
	discarded := make(map[tx.Version]*segment, len(rec.Discarded))
	for _, d := range rec.Discarded {
		discarded[d.First] = s.mu.segs[d.First]
	}
	s.mu.Unlock()
	for _, d := range rec.Discarded {
		slog.Warn("memlog: recovery discards a segment that was never acknowledged; deleted once this Log's claim is stored", "first", d.First, "last", d.Last, "bytes", d.Bytes)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return persist.Recovery{}, errClosed
	}
	l.mu.index = slices.Clone(rec.Segments)
	l.mu.discarded = discarded
	l.mu.claimed = false
	l.mu.recovered = true
	return rec, nil
}

// DeleteDiscarded implements persist.Log: it deletes each segment the last
// Recover discarded that is still the very segment Recover found.
func (l *Log) DeleteDiscarded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memlog: delete discarded: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(); err != nil {
		return err
	}
	if !l.mu.claimed {
		return errors.New("memlog: DeleteDiscarded before a claim was stored: only the winner of the log may delete")
	}
	s := l.store
	s.mu.Lock()
	defer s.mu.Unlock()
	for first, seg := range l.mu.discarded {
		if s.mu.segs[first] == seg {
			delete(s.mu.segs, first)
		}
	}
	clear(l.mu.discarded)
	return nil
}

// Append implements persist.Log.
func (l *Log) Append(ctx context.Context, data []byte) error {
	h, err := persist.DecodeSegmentHeader(data)
	if err != nil {
		return fmt.Errorf("memlog: append: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memlog: append segment %d: %w", h.First, err)
	}
	l.mu.Lock()
	err = l.check()
	replace := l.mu.discarded[h.First]
	l.mu.Unlock()
	if err != nil {
		return err
	}

	s := l.store
	seg := &segment{data: slices.Clone(data)}
	s.mu.Lock()
	prev, exists := s.mu.segs[h.First]
	if exists && (replace == nil || prev != replace) {
		s.mu.Unlock()
		return fmt.Errorf("memlog: append segment %d: %w", h.First, persist.ErrFenced)
	}
	s.mu.segs[h.First] = seg // replacing, at most, the discarded segment of this name
	s.mu.Unlock()

	l.hook.Lock()
	hook := l.appendHook
	l.hook.Unlock()
	if hook != nil {
		err = hook(ctx, h.First)
	}
	if err == nil {
		err = ctx.Err()
	}
	s.mu.Lock()
	if err != nil {
		if s.mu.segs[h.First] == seg {
			if prev != nil {
				s.mu.segs[h.First] = prev
			} else {
				delete(s.mu.segs, h.First)
			}
		}
		s.mu.Unlock()
		return fmt.Errorf("memlog: append segment %d: %w", h.First, err)
	}
	seg.durable = true
	s.mu.Unlock()

	info := h.Info()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.claimed = true
	delete(l.mu.discarded, info.First)
	i, _ := slices.BinarySearchFunc(l.mu.index, info.First, func(s persist.SegmentInfo, first tx.Version) int {
		return cmp.Compare(s.First, first)
	})
	l.mu.index = slices.Insert(l.mu.index, i, info)
	return nil
}

// ReadFrom implements persist.Log. The returned slices are copies.
func (l *Log) ReadFrom(ctx context.Context, after tx.Version, maxBytes int) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memlog: read from %d: %w", after, err)
	}
	l.mu.Lock()
	if err := l.check(); err != nil {
		l.mu.Unlock()
		return nil, err
	}
	picked, err := persist.SelectReadFrom(l.mu.index, after, maxBytes)
	picked = slices.Clone(picked)
	l.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("memlog: %w", err)
	}
	out := make([][]byte, 0, len(picked))
	s := l.store
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range picked {
		seg, ok := s.mu.segs[p.First]
		if !ok {
			return nil, fmt.Errorf("memlog: read segment %d: %w (truncated meanwhile)", p.First, persist.ErrNotFound)
		}
		out = append(out, slices.Clone(seg.data))
	}
	return out, nil
}

// Truncate implements persist.Log.
func (l *Log) Truncate(ctx context.Context, upTo tx.Version) (tx.Version, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memlog: truncate to %d: %w", upTo, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(l.mu.index)-1 && l.mu.index[n].Last <= upTo {
		n++
	}
	s := l.store
	s.mu.Lock()
	for _, seg := range l.mu.index[:n] {
		delete(s.mu.segs, seg.First)
	}
	s.mu.Unlock()
	l.mu.index = slices.Delete(l.mu.index, 0, n)
	return persist.Recovery{Segments: l.mu.index}.OldestRetained(), nil
}

// LoadPolicies implements persist.Log.
func (l *Log) LoadPolicies(ctx context.Context) (map[string]tx.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memlog: load policies: %w", err)
	}
	l.mu.Lock()
	err := l.check()
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	s := l.store
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.mu.policies), nil
}

// StorePolicies implements persist.Log.
func (l *Log) StorePolicies(ctx context.Context, policies map[string]tx.Version) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memlog: store policies: %w", err)
	}
	l.mu.Lock()
	err := l.check()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	s := l.store
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.policies = maps.Clone(policies)
	if s.mu.policies == nil {
		s.mu.policies = make(map[string]tx.Version)
	}
	return nil
}

// Close implements persist.Log. It is idempotent.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.closed = true
	return nil
}
