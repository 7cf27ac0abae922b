package sim

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/weaseldb/weaseldb/internal/clock"
)

// simEnv is the engine's Env in a simulation: time moves only when the
// driver calls advance, timers fire then, and randomness is seeded.
type simEnv struct {
	mu      sync.Mutex
	now     int64
	timers  []*simTimer
	waiters []waiter
	rng     *rand.Rand // guarded by mu
}

type waiter struct {
	at int64
	ch chan struct{}
}

func newSimEnv(seed uint64) *simEnv {
	return &simEnv{
		now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano(),
		rng: rand.New(rand.NewPCG(seed, 0x51e)),
	}
}

func (s *simEnv) env() clock.Env {
	return clock.Env{Now: s.Now, NewTimer: s.NewTimer, Rand: s.Rand}
}

func (s *simEnv) Now() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *simEnv) Rand() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Uint64()
}

func (s *simEnv) NewTimer() clock.Timer {
	t := &simTimer{env: s, ch: make(chan time.Time, 1)}
	s.mu.Lock()
	s.timers = append(s.timers, t)
	s.mu.Unlock()
	return t
}

// advance moves time by d and fires what fell due.
func (s *simEnv) advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now += int64(d)
	for _, t := range s.timers {
		if t.armed && t.at <= s.now {
			t.armed = false
			select {
			case t.ch <- time.Unix(0, s.now):
			default:
			}
		}
	}
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.at <= s.now {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(s.waiters[len(kept):])
	s.waiters = kept
}

// sleep blocks until simulated time passed d, or ctx ends.
func (s *simEnv) sleep(ctx context.Context, d time.Duration) error {
	ch := make(chan struct{})
	s.mu.Lock()
	s.waiters = append(s.waiters, waiter{at: s.now + int64(d), ch: ch})
	s.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type simTimer struct {
	env   *simEnv
	ch    chan time.Time
	at    int64 // guarded by env.mu
	armed bool  // guarded by env.mu
}

func (t *simTimer) C() <-chan time.Time { return t.ch }

// Reset re-arms t; like time.Timer since Go 1.23, no stale tick is left.
func (t *simTimer) Reset(d time.Duration) {
	t.env.mu.Lock()
	defer t.env.mu.Unlock()
	t.drain()
	t.at, t.armed = t.env.now+int64(d), true
}

func (t *simTimer) Stop() {
	t.env.mu.Lock()
	defer t.env.mu.Unlock()
	t.drain()
	t.armed = false
}

func (t *simTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}
