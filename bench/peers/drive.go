package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// txn is one optimistic transaction, the same for every peer: "key read is
// unchanged since readVersion" as the precondition, then write value to key
// write. It is what loadgen's default shape sends WeaselDB (1 point read +
// 1 write, the two keys drawn independently).
type txn struct {
	read, write []byte
	readVersion uint64
	value       []byte
}

// outcome is one transaction's answer: committed (at version), or refused
// because the read key changed (conflict). version is the newest version
// the peer reported, which the worker reads at next, as loadgen does.
type outcome struct {
	committed bool
	version   uint64
}

// conn is one client connection of a peer; a worker owns it.
type conn interface {
	commit(ctx context.Context, t *txn) (outcome, error)
	close() error
}

// peer is a durable store under test.
type peer interface {
	name() string
	dial(ctx context.Context) (conn, error)
}

// workload is the shape and load of one measured run.
type workload struct {
	dist        string
	theta       float64
	keys        uint64
	keyBytes    int
	valueBytes  int
	connections int
	warmup      time.Duration
	duration    time.Duration
	seed        uint64
}

// result is the summary of one run; WeaselDB's comes from loadgen's JSON.
type result struct {
	Peer        string  `json:"peer"`
	Dist        string  `json:"dist"`
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Commits     uint64  `json:"commits"`
	Conflicts   uint64  `json:"conflicts"`
	Errors      uint64  `json:"errors"`
	CommitsPerS float64 `json:"commits_per_sec"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

// worker state: its own samples, counts and rng, merged at the end.
type workerStats struct {
	samples   []int64 // latency in ns of every answered request while measuring
	commits   uint64
	conflicts uint64
	errors    uint64
	firstErr  error
}

// drive runs a closed loop: each of w.connections workers sends the next
// transaction when the last is answered. Latency counts from send to answer
// of every answered request (commits and conflicts), after the warm-up.
func drive(ctx context.Context, p peer, w workload) (*result, error) {
	chooser, err := newChooser(w.dist, w.keys, w.theta)
	if err != nil {
		return nil, err
	}
	conns := make([]conn, 0, w.connections)
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	for i := 0; i < w.connections; i++ {
		c, err := p.dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: connection %d: %w", p.name(), i, err)
		}
		conns = append(conns, c)
	}
	value := make([]byte, w.valueBytes)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}

	var measuring atomic.Bool
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stats := make([]workerStats, w.connections)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[i]
			st.samples = make([]int64, 0, 1<<14)
			rng := rand.New(rand.NewPCG(w.seed, uint64(i)))
			t := txn{value: value}
			for runCtx.Err() == nil {
				t.read = appendKey(t.read[:0], chooser.next(rng), w.keyBytes)
				t.write = appendKey(t.write[:0], chooser.next(rng), w.keyBytes)
				start := time.Now()
				out, err := c.commit(runCtx, &t)
				elapsed := time.Since(start)
				if err != nil {
					if runCtx.Err() != nil {
						return // the run ended mid-request: not an error
					}
					if measuring.Load() {
						st.errors++
						if st.firstErr == nil {
							st.firstErr = err
						}
					}
					if errors.Is(err, errBroken) {
						return
					}
					continue
				}
				t.readVersion = max(t.readVersion, out.version)
				if !measuring.Load() {
					continue
				}
				st.samples = append(st.samples, int64(elapsed))
				if out.committed {
					st.commits++
				} else {
					st.conflicts++
				}
			}
		}()
	}
	select {
	case <-time.After(w.warmup):
	case <-ctx.Done():
	}
	measuring.Store(true)
	begin := time.Now()
	select {
	case <-time.After(w.duration):
	case <-ctx.Done():
	}
	measuring.Store(false)
	seconds := time.Since(begin).Seconds()
	cancel()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	r := &result{Peer: p.name(), Dist: w.dist, Connections: w.connections, Seconds: seconds}
	var all []int64
	for i := range stats {
		st := &stats[i]
		r.Commits += st.commits
		r.Conflicts += st.conflicts
		r.Errors += st.errors
		if st.firstErr != nil && r.FirstError == "" {
			r.FirstError = st.firstErr.Error()
		}
		all = append(all, st.samples...)
	}
	r.CommitsPerS = float64(r.Commits) / seconds
	slices.Sort(all)
	r.P50Ms = quantileMs(all, 0.50)
	r.P99Ms = quantileMs(all, 0.99)
	r.MaxMs = quantileMs(all, 1)
	return r, nil
}

// errBroken marks a connection that cannot be used again (its framing is
// lost); the worker stops rather than spin on it.
var errBroken = errors.New("connection broken")

// quantileMs is the sample of rank ceil(q·n) in sorted, in milliseconds
// (the nearest-rank definition loadgen's histogram also reports).
func quantileMs(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return float64(sorted[rank-1]) / 1e6
}
