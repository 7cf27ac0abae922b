package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weaseldb/weaseldb/internal/clock"
	"github.com/weaseldb/weaseldb/persist"
)

// Config tunes the engine. The zero value of every field selects its
// default (never "unlimited"); cmd/weaseldb copies config.Commit into it.
type Config struct {
	// Clock returns the current time in unix nanoseconds. The engine reads
	// time only through it (once per resolve batch and per segment), so
	// tests control time. Default: Env.Now. Kept beside Env for the tests
	// that set only a clock; when both are set Env.Now wins.
	Clock func() int64
	// Env is the engine's clock, timers and randomness (internal/clock).
	// Unset fields take clock.Real's. The engine makes no timer and reads
	// no clock but through it (internal/lint checks), so engine/sim can
	// run the whole pipeline on simulated time.
	Env clock.Env

	// BatchInterval is the longest a resolved transaction waits for its
	// segment while other segment writes are in flight. With no write in
	// flight a segment is written at once. Default 2ms.
	BatchInterval time.Duration
	// BatchMaxTransactions and BatchMaxBytes bound one segment (a target:
	// a single larger transaction gets a segment of its own). Defaults
	// 10000 and 8 MiB.
	BatchMaxTransactions int
	BatchMaxBytes        int
	// MaxInFlight is how many Log.Append calls may be outstanding. Higher
	// hides S3 latency; segments are still acknowledged in order.
	// Default 4.
	MaxInFlight int
	// MaxQueued bounds requests submitted but not answered; Submit answers
	// Unavailable beyond it. Default 100000.
	MaxQueued int

	// ConflictWindow and ConflictWindowVersions: preconditions older than
	// both are answered TooOld (the window keeps whichever is more).
	// Defaults 5s and 10M versions.
	ConflictWindow         time.Duration
	ConflictWindowVersions uint64
	// ConflictSetBytesMax bounds the conflict set's memory. Past it the
	// oldest version advances (halving the window until the set is under
	// 3/4 of the bound): reads older than the new oldest version get
	// TooOld, which is always safe. Counted in Stats.ConflictShrinksTotal
	// and logged once. Default 1 GiB.
	ConflictSetBytesMax int64
	// StatusWindow and StatusWindowVersions: how long request ids are
	// remembered for dedupe and status queries (whichever is less, as
	// API.md says). Defaults 24h and 100M versions.
	StatusWindow         time.Duration
	StatusWindowVersions uint64
	// StatusEntriesMax: request ids kept in memory (about 64 bytes each).
	// With StatusDir, older ids of the window live on disk and memory keeps
	// only the newest StatusEntriesMax; without it (tests, tools) the
	// window is cut short past it. Default 4M.
	StatusEntriesMax int
	// StatusDir: the directory of the on-disk status index (runs, see
	// persist/statusruns), beside the log; "" keeps the index in memory
	// only. StatusRunEntries: ids per run written from memory (a restart
	// reads at most about that many transactions back from the log for
	// the status index). Default 1M (32 MiB per run).
	StatusDir        string
	StatusRunEntries int

	// TailBytes bounds the in-memory tail of recent segments that
	// subscribers read. Default 64 MiB.
	TailBytes int

	// DefaultKeepVersions: with no retention policy, keep the newest N
	// versions; 0 keeps everything (default). TruncateInterval is how
	// often truncation runs. Default 10s.
	DefaultKeepVersions uint64
	TruncateInterval    time.Duration

	// LeaderID is this leader term's id, at most 64 bytes; empty picks a
	// random one (32 hex digits). A server sets it once per process and
	// passes the same id to every Open it retries, so that a claim that
	// timed out and landed later is recognised as its own (persist/s3log
	// compares leader id and versions). Two servers must never share one.
	LeaderID []byte

	// RingSlots is the capacity of each inter-stage ring. Default 8192.
	RingSlots int
	// RetryBackoffMin/Max bound the wait between retries of a failed
	// segment write. Defaults 10ms and 1s.
	RetryBackoffMin time.Duration
	RetryBackoffMax time.Duration

	// Logger receives the engine's (rare) log lines. Default slog.Default().
	Logger *slog.Logger
	// BeforeResolveBatch, when set, is called by stage 1 after it took a
	// batch from the admission queue and before it resolves it. For tests:
	// blocking in it holds the resolver with requests queued.
	BeforeResolveBatch func()

	// Observer, when set, is told about every resolve batch and segment
	// write, for histograms. It is called on the pipeline goroutines and
	// must be fast and must not block.
	Observer Observer
}

// Observer receives per-batch measurements (see Config.Observer).
type Observer interface {
	// ResolveBatch: stage 1 resolved n requests in one batch.
	ResolveBatch(n int)
	// SegmentWritten: one segment of txns transactions and bytes bytes
	// became durable after nanos nanoseconds in Log.Append.
	SegmentWritten(txns, bytes int, nanos int64)
}

func (c Config) withDefaults() Config {
	real := clock.Real()
	if c.Env.Now == nil {
		c.Env.Now = c.Clock
	}
	if c.Env.Now == nil {
		c.Env.Now = real.Now
	}
	c.Clock = c.Env.Now
	if c.Env.NewTimer == nil {
		c.Env.NewTimer = real.NewTimer
	}
	if c.Env.Rand == nil {
		c.Env.Rand = real.Rand
	}
	setDefault(&c.BatchInterval, 2*time.Millisecond)
	setDefault(&c.BatchMaxTransactions, 10000)
	setDefault(&c.BatchMaxBytes, 8<<20)
	setDefault(&c.MaxInFlight, 4)
	setDefault(&c.MaxQueued, 100000)
	setDefault(&c.ConflictWindow, 5*time.Second)
	setDefault(&c.ConflictWindowVersions, 10_000_000)
	setDefault(&c.ConflictSetBytesMax, 1<<30)
	setDefault(&c.StatusWindow, 24*time.Hour)
	setDefault(&c.StatusWindowVersions, 100_000_000)
	setDefault(&c.StatusEntriesMax, 4<<20)
	setDefault(&c.StatusRunEntries, 1<<20)
	setDefault(&c.TailBytes, 64<<20)
	setDefault(&c.TruncateInterval, 10*time.Second)
	setDefault(&c.RingSlots, 8192)
	setDefault(&c.RetryBackoffMin, 10*time.Millisecond)
	setDefault(&c.RetryBackoffMax, time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// validate reports every problem at once.
func (c Config) validate() error {
	var errs []error
	positive := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("engine config: %s = %d, must be > 0", name, v))
		}
	}
	positive("BatchInterval", int64(c.BatchInterval))
	positive("BatchMaxTransactions", int64(c.BatchMaxTransactions))
	positive("BatchMaxBytes", int64(c.BatchMaxBytes))
	positive("MaxInFlight", int64(c.MaxInFlight))
	positive("MaxQueued", int64(c.MaxQueued))
	positive("ConflictWindow", int64(c.ConflictWindow))
	positive("StatusWindow", int64(c.StatusWindow))
	positive("StatusEntriesMax", int64(c.StatusEntriesMax))
	positive("StatusRunEntries", int64(c.StatusRunEntries))
	positive("TailBytes", int64(c.TailBytes))
	positive("TruncateInterval", int64(c.TruncateInterval))
	positive("RingSlots", int64(c.RingSlots))
	if len(c.LeaderID) > persist.LeaderIDBytesMax {
		errs = append(errs, fmt.Errorf("engine config: LeaderID of %d bytes, at most %d", len(c.LeaderID), persist.LeaderIDBytesMax))
	}
	if c.RetryBackoffMin > c.RetryBackoffMax {
		errs = append(errs, fmt.Errorf("engine config: RetryBackoffMin %v > RetryBackoffMax %v", c.RetryBackoffMin, c.RetryBackoffMax))
	}
	return errors.Join(errs...)
}
