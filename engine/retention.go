package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/weaseldb/weaseldb/tx"
)

var (
	// ErrBelowOldest: a policy version below the oldest retained version
	// (409).
	ErrBelowOldest = errors.New("engine: version is below the oldest retained version")
	// ErrNoPolicy: no policy with that id (404).
	ErrNoPolicy = errors.New("engine: no such retention policy")
	// ErrFutureVersion: a policy version above every version the server
	// has assigned (400 future_version). Nobody can have read that far,
	// and storing it would let truncation drop what is not written yet.
	ErrFutureVersion = errors.New("engine: version is greater than any assigned version")
)

// Policy is one retention policy: keep every transaction with version >
// Version.
type Policy struct {
	ID      string
	Version tx.Version
}

type retention struct {
	mu struct {
		sync.Mutex // held across Log.StorePolicies and Log.Truncate
		policies   map[string]tx.Version
		// warnedFuture: the policy ids already logged as holding
		// truncation back because their version is above the durable one.
		warnedFuture map[string]bool
	}
	oldest atomic.Uint64 // OldestRetained
	kick   chan struct{} // capacity 1: run truncation now
}

func (r *retention) init(policies map[string]tx.Version, oldest tx.Version) {
	r.mu.policies = maps.Clone(policies)
	if r.mu.policies == nil {
		r.mu.policies = map[string]tx.Version{}
	}
	r.mu.warnedFuture = map[string]bool{}
	r.oldest.Store(uint64(oldest))
	r.kick = make(chan struct{}, 1)
}

// OldestRetained returns N: every version > N is still stored.
func (e *Engine) OldestRetained() tx.Version { return tx.Version(e.retention.oldest.Load()) }

// SetPolicy durably creates or replaces policy id (validated by the
// caller). A version below OldestRetained is ErrBelowOldest; one above
// every assigned version is ErrFutureVersion and is not stored.
func (e *Engine) SetPolicy(ctx context.Context, id string, v tx.Version) error {
	r := &e.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	if assigned := e.ResolvedVersion(); v > assigned {
		return fmt.Errorf("retention policy %q at %d (latest assigned %d): %w", id, v, assigned, ErrFutureVersion)
	}
	if v < e.OldestRetained() {
		return fmt.Errorf("retention policy %q at %d (oldest retained %d): %w", id, v, e.OldestRetained(), ErrBelowOldest)
	}
	next := maps.Clone(r.mu.policies)
	next[id] = v
	if err := e.log.StorePolicies(ctx, next); err != nil {
		return fmt.Errorf("retention policy %q: store: %w", id, err)
	}
	r.mu.policies = next
	e.kickTruncation()
	return nil
}

// GetPolicy returns policy id's version, or ErrNoPolicy.
func (e *Engine) GetPolicy(id string) (tx.Version, error) {
	r := &e.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.mu.policies[id]
	if !ok {
		return 0, fmt.Errorf("retention policy %q: %w", id, ErrNoPolicy)
	}
	return v, nil
}

// DeletePolicy durably removes policy id, or returns ErrNoPolicy.
func (e *Engine) DeletePolicy(ctx context.Context, id string) error {
	r := &e.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.mu.policies[id]; !ok {
		return fmt.Errorf("retention policy %q: %w", id, ErrNoPolicy)
	}
	next := maps.Clone(r.mu.policies)
	delete(next, id)
	if err := e.log.StorePolicies(ctx, next); err != nil {
		return fmt.Errorf("retention policy %q: store: %w", id, err)
	}
	r.mu.policies = next
	e.kickTruncation()
	return nil
}

// Policies returns every policy, sorted by id.
func (e *Engine) Policies() []Policy {
	r := &e.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Policy, 0, len(r.mu.policies))
	for id, v := range r.mu.policies {
		out = append(out, Policy{ID: id, Version: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (e *Engine) kickTruncation() {
	select {
	case e.retention.kick <- struct{}{}:
	default:
	}
}

// runTruncator truncates the log every TruncateInterval and whenever a
// policy changes.
func (e *Engine) runTruncator() {
	defer e.bgWG.Done()
	timer := e.cfg.Env.NewTimer()
	defer timer.Stop()
	for {
		timer.Reset(e.cfg.TruncateInterval)
		select {
		case <-e.bgCtx.Done():
			return
		case <-timer.C():
		case <-e.retention.kick:
		}
		if err := e.truncateOnce(e.bgCtx); err != nil && e.bgCtx.Err() == nil {
			e.cfg.Logger.Warn("engine: truncation failed; will retry", "err", err)
		}
	}
}

// truncateOnce truncates up to the smallest policy version (or, with no
// policy, to keep DefaultKeepVersions versions; 0 keeps everything), never
// past the durable version.
//
// A stored policy above the durable version (SetPolicy refuses those, but a
// policy file written by an older server, or copied beside another log, may
// hold one) keeps everything while it stays in the future: clamping it to
// the durable version instead would delete the whole log but its newest
// segment, which is exactly what such a policy must never cause.
func (e *Engine) truncateOnce(ctx context.Context) error {
	if e.deposedFlag.Load() {
		// Another server holds the log now; only it may delete from it
		// (its policies may differ from the ones this server knows).
		return nil
	}
	r := &e.retention
	r.mu.Lock()
	defer r.mu.Unlock()
	durable := e.Version()
	var upTo tx.Version
	switch {
	case len(r.mu.policies) > 0:
		upTo = ^tx.Version(0)
		for id, v := range r.mu.policies {
			if v > durable {
				if !r.mu.warnedFuture[id] {
					r.mu.warnedFuture[id] = true
					e.cfg.Logger.Warn("engine: retention policy above the durable version holds truncation back; delete or lower it",
						"policy_id", id, "policy_version", uint64(v), "durable_version", uint64(durable))
				}
				return nil
			}
			upTo = min(upTo, v)
		}
	case e.cfg.DefaultKeepVersions > 0:
		upTo = saturatingSub(durable, e.cfg.DefaultKeepVersions)
	default:
		return nil
	}
	upTo = min(upTo, durable)
	if upTo <= e.OldestRetained() {
		return nil
	}
	oldest, err := e.log.Truncate(ctx, upTo)
	if err != nil {
		return fmt.Errorf("truncate up to %d: %w", upTo, err)
	}
	if prev := r.oldest.Load(); uint64(oldest) > prev {
		r.oldest.Store(uint64(oldest))
		e.stats.truncations.Add(1)
		e.stats.truncatedVersions.Add(uint64(oldest) - prev)
	}
	return nil
}
