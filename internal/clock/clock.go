// Package clock is the engine's door to time and randomness (STYLE.md:
// raft's rawnode, pebble's commitEnv). The engine calls nothing of package
// time that reads the clock or makes a timer; it gets an Env instead, so a
// simulator can run it on simulated time with seeded randomness
// (engine/sim), and a lint rule (internal/lint) keeps it so.
package clock

import (
	"math/rand/v2"
	"time"
)

// Timer is a one-shot timer, stopped when made. Its channel has room for
// one tick, like time.Timer's; Reset re-arms it (a pending tick may still
// arrive after Stop or Reset, which every select in the engine tolerates:
// a spurious wakeup only re-checks state).
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// Env is the engine's clock, timers and randomness. Every field is set
// (Real fills them); the engine copies it into its Config once at Open.
type Env struct {
	// Now returns the current time in unix nanoseconds.
	Now func() int64
	// NewTimer returns a stopped Timer.
	NewTimer func() Timer
	// Rand returns 64 random bits (request ids, leader ids). Safe for
	// concurrent use.
	Rand func() uint64
}

// Real is the production Env: the wall clock, real timers and the
// runtime's random source. Its Now is one indirect call on top of
// time.Now, which the engine already paid through Config.Clock.
func Real() Env {
	return Env{Now: now, NewTimer: newRealTimer, Rand: rand.Uint64}
}

func now() int64 { return time.Now().UnixNano() }

type realTimer struct{ t *time.Timer }

func newRealTimer() Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return realTimer{t}
}

func (r realTimer) C() <-chan time.Time   { return r.t.C }
func (r realTimer) Reset(d time.Duration) { r.t.Reset(d) }
func (r realTimer) Stop()                 { r.t.Stop() }
