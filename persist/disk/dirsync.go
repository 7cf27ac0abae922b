package disk

import "sync"

// dirSyncer shares directory fsyncs between concurrent callers (group
// commit). A caller's changes are durable once a sync that *started* after
// they were made completes. Callers arriving while a sync runs join the
// pending batch; when the running sync ends, one of them runs the next sync
// for the whole batch. So with k Appends in flight the directory is synced
// at most about twice per "round", not k times.
//
// Invariant: a batch that is not done and not running is s.pending; so a
// waiter that finds nothing running while its batch is not done may start
// it.
type dirSyncer struct {
	sync func() error // immutable; the actual fsync

	mu      sync.Mutex
	cond    sync.Cond // on mu; signalled when a batch completes
	running bool
	pending *syncBatch // the batch the next sync will cover; nil if none
}

type syncBatch struct {
	done bool
	err  error
}

// Sync returns once a directory fsync that started after the call
// completed, with that fsync's error.
func (s *dirSyncer) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cond.L == nil {
		s.cond.L = &s.mu
	}
	if s.pending == nil {
		s.pending = &syncBatch{}
	}
	b := s.pending
	for !b.done {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.pending = nil
		s.mu.Unlock()
		err := s.sync()
		s.mu.Lock()
		b.err, b.done = err, true
		s.running = false
		s.cond.Broadcast()
	}
	return b.err
}
