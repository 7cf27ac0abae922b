package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// Replica mode. Several servers may share one log (S3); one leads, the
// others are replicas: an engine opened with OpenReplica follows the log
// (Follow), applying each segment the leader stored to the same state a
// leader keeps — the conflict window, the status index and the tail that
// subscribers read — so that Promote can take over with read versions and
// request ids intact and subscribers see one unbroken stream.
//
// Follow and Promote must be called from one goroutine (the one that owns
// the replica's role): they own the conflict set until the pipeline starts.

// followBytes bounds the segments one Follow reads.
const followBytes = 8 << 20

// policyRefreshEvery is how often a replica reloads the retention policies
// the leader may have changed.
const policyRefreshEvery = 5 * time.Second

// followState is owned by the goroutine that calls Follow/Promote (and by
// open's rebuild before that).
type followState struct {
	leader    []byte          // leader id of the last followed segment
	succeeded map[string]bool // leader ids another leader followed: their later segments are orphans
	reader    persist.SegmentReader
	policyAt  int64 // Config.Clock of the last reload of the retention policies
}

// noteLeader records the leader id of the next segment of the run.
func (f *followState) noteLeader(id []byte) {
	if bytes.Equal(id, f.leader) {
		return
	}
	if f.leader != nil {
		if f.succeeded == nil {
			f.succeeded = map[string]bool{}
		}
		f.succeeded[string(f.leader)] = true
	}
	f.leader = bytes.Clone(id)
}

// accept is persist.PlanRecovery's rule 3 applied while following: a leader
// term never returns, so a segment of a leader that another one already
// followed is an orphan of its pipelined writes, not part of the log.
func (f *followState) accept(h persist.SegmentHeader) bool {
	if f.succeeded[string(h.LeaderID)] && !bytes.Equal(h.LeaderID, f.leader) {
		return false
	}
	f.noteLeader(h.LeaderID)
	return true
}

// OpenReplica observes log without writing to it (persist.Shared.Observe),
// rebuilds the windows like Open, and returns an engine that follows the
// log: it answers no commits (Submit answers Deposed) until Promote.
func OpenReplica(ctx context.Context, cfg Config, log persist.Shared) (*Engine, error) {
	e, rec, err := open(ctx, cfg, log, log.Observe)
	if err != nil {
		return nil, err
	}
	e.shared = log
	e.replica.Store(true)
	last := rec.Last()
	e.tail.reset(last)
	e.resolvedVersion.Store(uint64(last))
	e.durableVersion.Store(uint64(last))
	e.setLeaderID(e.follow.leader)
	e.follow.policyAt = e.cfg.Clock()
	e.cfg.Logger.Info("engine: replica", "version", uint64(last), "following_leader_id", e.LeaderID(),
		"segments", len(rec.Segments), "status_entries", e.status.idx.len())
	return e, nil
}

// IsReplica reports whether the engine follows another leader (OpenReplica,
// not yet promoted).
func (e *Engine) IsReplica() bool { return e.replica.Load() }

// TermFirstVersion returns the version of this leader term's claim segment
// (0 on a replica).
func (e *Engine) TermFirstVersion() tx.Version { return e.termFirst }

// Follow applies the segments the leader stored since the last call and
// returns how many versions it advanced.
func (e *Engine) Follow(ctx context.Context) (int, error) {
	if !e.replica.Load() {
		return 0, errors.New("engine: Follow on a leader")
	}
	if e.cfg.Clock()-e.follow.policyAt >= int64(policyRefreshEvery) {
		e.refreshPolicies(ctx)
	}
	before := e.Version()
	segs, err := e.shared.Poll(ctx, followBytes, e.follow.accept)
	if err != nil {
		return 0, fmt.Errorf("engine: follow after %d: %w", before, err)
	}
	for _, seg := range segs {
		if err := e.applyFollowed(seg); err != nil {
			return int(e.Version() - before), err
		}
	}
	if len(segs) > 0 {
		e.setLeaderID(e.follow.leader)
	}
	return int(e.Version() - before), nil
}

// refreshPolicies reloads the retention policies (a replica serves them).
func (e *Engine) refreshPolicies(ctx context.Context) {
	e.follow.policyAt = e.cfg.Clock()
	policies, err := e.log.LoadPolicies(ctx)
	if err != nil {
		e.cfg.Logger.Warn("engine: replica could not reload retention policies", "err", err)
		return
	}
	r := &e.retention
	r.mu.Lock()
	r.mu.policies = maps.Clone(policies)
	r.mu.Unlock()
	if oldest := e.shared.OldestRetained(); uint64(oldest) > r.oldest.Load() {
		r.oldest.Store(uint64(oldest))
	}
}

// applyFollowed applies one segment that continues the followed run:
// writes into the conflict set, request ids into the status index, the
// segment into the tail (durable at once: it is stored).
func (e *Engine) applyFollowed(seg []byte) error {
	rd := &e.follow.reader
	h, err := rd.Reset(seg)
	if err != nil {
		return fmt.Errorf("engine: follow: %w", err)
	}
	last := e.Version()
	if h.IsGenesis() {
		return nil
	}
	if h.First > last+1 || h.Last <= last {
		return fmt.Errorf("engine: follow: segment %d..%d does not continue version %d", h.First, h.Last, last)
	}
	now := e.cfg.Clock()
	// The status index and the conflict set are the caller's (Follow's
	// goroutine): stage 1 does not run on a replica.
	idx := e.status.idx
	idx.terms.note(max(h.First, last+1), h.LeaderID)
	for t, ok := rd.Next(); ok; t, ok = rd.Next() {
		if t.Version <= last {
			continue
		}
		if len(t.Operations) > 0 {
			e.res.writes = appendWrites(e.res.writes[:0], t.Operations)
			e.res.set.AddWrites(e.res.writes, t.Version)
			clear(e.res.writes)
		}
		if len(t.RequestID) > 0 {
			idx.insert(hashRequestID(t.RequestID), t.Version, t.TimestampUnixNano)
		}
	}
	e.res.last = h.Last
	// The versions followed are durable (stored): advanceWindows's disk
	// maintenance may spill them.
	e.durableVersion.Store(uint64(h.Last))
	e.res.advanceWindows(now)
	e.stats.conflictKeys.Store(int64(e.res.set.Len()))
	e.stats.conflictBytes.Store(e.res.set.Bytes())
	e.stats.statusEntries.Store(int64(idx.len()))
	if err := rd.Err(); err != nil {
		return fmt.Errorf("engine: follow: segment %d..%d: %w", h.First, h.Last, err)
	}
	if h.First == last+1 {
		e.tail.publish(h.First, h.Last, seg)
	} else { // recovery's run started mid-way through what we hold: re-anchor
		e.tail.reset(h.Last)
	}
	e.tail.markDurable(h.Last)
	e.resolvedVersion.Store(uint64(h.Last))
	return nil
}

// Promote makes a replica the leader. It runs the leader's recovery
// (Recover: the same plan a restarted leader makes of the stored log,
// segments after a gap included), applies what it had not followed yet,
// claims the log by writing the next segment (the conditional write that
// fences any other leader) and starts the pipeline. The conflict window,
// status index and tail carry over. If the claim loses (an error wrapping
// persist.ErrFenced) the engine stays a replica and may Follow on.
func (e *Engine) Promote(ctx context.Context) error {
	if !e.replica.Load() {
		return errors.New("engine: Promote on a leader")
	}
	start := e.cfg.Clock()
	rec, err := e.log.Recover(ctx)
	if err != nil {
		return fmt.Errorf("engine: promote: recover: %w", err)
	}
	if rec.Last() < e.Version() {
		return fmt.Errorf("engine: promote: %w: the log ends at %d, but this replica followed it to %d", persist.ErrCorruption, rec.Last(), e.Version())
	}
	for after := e.Version(); after < rec.Last(); after = e.Version() {
		segs, err := e.log.ReadFrom(ctx, after, followBytes)
		if err != nil {
			return fmt.Errorf("engine: promote: read after %d: %w", after, err)
		}
		if len(segs) == 0 {
			return fmt.Errorf("engine: promote: log ends at %d, recovered last %d", after, rec.Last())
		}
		for _, seg := range segs {
			h, err := persist.DecodeSegmentHeader(seg)
			if err != nil {
				return fmt.Errorf("engine: promote: %w", err)
			}
			e.follow.noteLeader(h.LeaderID)
			if err := e.applyFollowed(seg); err != nil {
				return fmt.Errorf("engine: promote: %w", err)
			}
		}
	}
	e.refreshPolicies(ctx)
	e.retention.oldest.Store(uint64(rec.OldestRetained()))
	followed := e.follow.leader
	if err := e.lead(ctx, rec); err != nil {
		e.leaderID = nil
		e.setLeaderID(followed)
		return fmt.Errorf("engine: promote: %w", err)
	}
	e.replica.Store(false)
	e.cfg.Logger.Info("engine: promoted to leader", "leader_id", e.LeaderID(), "version", uint64(e.Version()),
		"previous_leader_id", string(followed), "takeover_seconds", float64(e.cfg.Clock()-start)/1e9)
	return nil
}

// Depose stops acknowledging commits at once, as if another leader had
// fenced this one (the server learned it from the lease). Everything not
// yet answered is answered Deposed.
func (e *Engine) Depose(reason error) { e.depose(reason) }
