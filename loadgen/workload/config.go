package workload

import (
	"errors"
	"fmt"
	"time"
)

// Shape says what one commit looks like and which keys it touches. The zero
// value is not valid; start from DefaultShape.
type Shape struct {
	Keys         uint64  // key space size: keys are "k" + zero-padded index
	Distribution string  // "uniform" or "zipf"
	Theta        float64 // zipf exponent in (0, 1), YCSB style; 0.99 = hot
	KeyBytes     int     // bytes per key, at least 1 + digits of Keys
	ValueBytes   int     // bytes per written value
	PointReads   int     // point_read preconditions per commit
	RangeReads   int     // range_read preconditions per commit
	RangeKeys    int     // keys spanned by each range_read, [k, k+RangeKeys)
	Writes       int     // write operations per commit
	HotFraction  float64 // fraction of commits that instead read-modify-write one hot key
	HotKeys      int     // size of the hot set (key indexes 0..HotKeys-1)
	RequestID    bool    // send a request_id (needed for subscriber lag)
	Seed         uint64  // 0 picks one from the clock
}

// DefaultShape is scenario 1 of the bench: 1 point read + 1 write, uniform
// over a million 16-byte keys, 100-byte values.
func DefaultShape() Shape {
	return Shape{
		Keys: 1_000_000, Distribution: "uniform", Theta: 0.99,
		KeyBytes: 16, ValueBytes: 100,
		PointReads: 1, RangeKeys: 10, Writes: 1,
		HotKeys: 16, RequestID: true,
	}
}

// Validate reports every problem at once, naming the field and its value.
func (s *Shape) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if s.Keys < 2 {
		bad("keys %d: need at least 2", s.Keys)
	}
	if s.Distribution != "uniform" && s.Distribution != "zipf" {
		bad("distribution %q: want uniform or zipf", s.Distribution)
	}
	if s.Distribution == "zipf" && !(s.Theta > 0 && s.Theta < 1) {
		bad("theta %v: want 0 < theta < 1", s.Theta)
	}
	if digits := len(fmt.Sprint(s.Keys)); s.KeyBytes < 1+digits || s.KeyBytes > 8192 {
		bad("key-bytes %d: want %d..8192 for %d keys", s.KeyBytes, 1+digits, s.Keys)
	}
	if s.ValueBytes < 0 || s.ValueBytes > 128<<10 {
		bad("value-bytes %d: want 0..131072", s.ValueBytes)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"point-reads", s.PointReads}, {"range-reads", s.RangeReads}, {"writes", s.Writes}} {
		if f.v < 0 || f.v > 10_000 {
			bad("%s %d: want 0..10000", f.name, f.v)
		}
	}
	if s.RangeReads > 0 && (s.RangeKeys < 1 || uint64(s.RangeKeys) >= s.Keys) {
		bad("range-keys %d: want 1..keys-1", s.RangeKeys)
	}
	if s.HotFraction < 0 || s.HotFraction > 1 {
		bad("hot-fraction %v: want 0..1", s.HotFraction)
	}
	if s.HotFraction > 0 && (s.HotKeys < 1 || uint64(s.HotKeys) > s.Keys) {
		bad("hot-keys %d: want 1..keys", s.HotKeys)
	}
	return errors.Join(errs...)
}

// Load says how the commits are sent.
type Load struct {
	Connections int           // commit connections
	Pipeline    int           // requests in flight per connection (HTTP/1.1 pipelining); 1 = none
	Rate        float64       // open loop: total commits/s from a schedule; 0 = closed loop
	Op          string        // "commit" or "version" (GET /v1/version, the HTTP round-trip baseline)
	Duration    time.Duration // measured time, after warm-up
	Warmup      time.Duration // run but not measured
	Subscribers int           // SSE subscribers
	SubDurable  bool          // subscribers ask durable=true (default) or durable=false
	// SubscribeOn says where subscribers connect: "leader" (default: the
	// endpoint the commit connections use), "replicas" (round robin over
	// every endpoint but the first) or "all" (round robin over all).
	SubscribeOn string
	AdminRate   float64 // mixed admin load: GET /v1/status + /v1/version per second; 0 = none
	Progress    bool    // a line on stderr every second
	Token       string  // bearer token sent on every request; "" = none
	// CommitGap measures the longest time in the measured phase with no
	// commit answered 200 (across a leader's death: --kill-leader-after).
	CommitGap bool
}

// DefaultLoad is 64 connections, closed loop, 10s after 2s of warm-up.
func DefaultLoad() Load {
	return Load{Connections: 64, Pipeline: 1, Op: "commit", Duration: 10 * time.Second,
		Warmup: 2 * time.Second, SubDurable: true, SubscribeOn: "leader", Progress: true}
}

// Validate reports every problem at once.
func (l *Load) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if l.Connections < 1 || l.Connections > 10_000 {
		bad("connections %d: want 1..10000", l.Connections)
	}
	if l.Pipeline < 1 || l.Pipeline > 4096 {
		bad("pipeline %d: want 1..4096", l.Pipeline)
	}
	if l.Rate < 0 {
		bad("rate %v: want >= 0", l.Rate)
	}
	if l.Op != "commit" && l.Op != "version" {
		bad("op %q: want commit or version", l.Op)
	}
	if l.Duration <= 0 {
		bad("duration %v: want > 0", l.Duration)
	}
	if l.Warmup < 0 {
		bad("warmup %v: want >= 0", l.Warmup)
	}
	if l.Subscribers < 0 || l.Subscribers > 10_000 {
		bad("subscribers %d: want 0..10000", l.Subscribers)
	}
	if l.SubscribeOn != "" && l.SubscribeOn != "leader" && l.SubscribeOn != "replicas" && l.SubscribeOn != "all" {
		bad("subscribe-on %q: want leader, replicas or all", l.SubscribeOn)
	}
	if l.AdminRate < 0 {
		bad("admin-rate %v: want >= 0", l.AdminRate)
	}
	return errors.Join(errs...)
}
