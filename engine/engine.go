package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/weaseldb/weaseldb/engine/conflict"
	"github.com/weaseldb/weaseldb/internal/planted"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/statusruns"
	"github.com/weaseldb/weaseldb/tx"
)

var (
	// ErrClosed is returned by calls on a closed engine.
	ErrClosed = errors.New("engine: closed")
	// ErrDeposed is returned once another leader fenced this one.
	ErrDeposed = errors.New("engine: deposed by another leader")
)

// Engine is the commit pipeline of one leader term. Create it with Open;
// every method is safe for concurrent use.
type Engine struct {
	cfg Config      // immutable
	log persist.Log // never nil
	// leaderID is this term's id (32 hex digits), set before the pipeline
	// starts and immutable from then on; nil on a replica.
	leaderID    []byte
	leaderIDPub atomic.Pointer[string] // what LeaderID returns
	termFirst   tx.Version             // version of this term's claim segment
	openedAt    int64                  // Config.Clock when open began, for the recovery time logged
	started     atomic.Bool            // the pipeline runs (Open, or Promote succeeded)

	// Replica mode (OpenReplica): see replica.go.
	shared  persist.Shared
	replica atomic.Bool
	follow  followState

	admission *admissionQueue
	toPersist *ring[*Request]
	toReply   *ring[*Request]

	queued          atomic.Int64  // submitted, not answered
	resolvedVersion atomic.Uint64 // latest assigned version
	durableVersion  atomic.Uint64 // latest durable version
	answeredSeq     atomic.Uint64 // every request with seq <= this was answered
	failing         atomic.Bool   // persistence is failing: Submit answers Unavailable
	// damage is the log's persist.DamageReporter (nil if it has none):
	// once it reports, Submit answers Unavailable and nothing is retried.
	damage          func() error // immutable
	closing         atomic.Bool
	deposedFlag     atomic.Bool
	deposed         chan struct{} // closed once fenced
	deposeOnce      sync.Once
	abort           chan struct{} // closed when Close's context expires
	abortOnce       sync.Once
	replyDone       chan struct{} // closed when stage 3 exits
	closeStatusOnce sync.Once

	// status is owned by the stage 1 goroutine (after Open): dedupe and
	// status queries both run there, so no lock guards it.
	status struct {
		idx    *statusIndex
		failed *inFlightFailures
	}

	res  resolver  // owned by the stage 1 goroutine
	pers persister // owned by the stage 2 goroutine
	tail *Tail

	retention retention

	bgCancel context.CancelFunc // stops appends and truncation
	bgCtx    context.Context
	bgWG     sync.WaitGroup

	stats counters
}

// Open recovers log, rebuilds the conflict window and the status index from
// its tail, claims leadership by writing the next segment, deletes what
// recovery discarded, and starts the pipeline. The caller keeps ownership
// of log (Close does not close it). An ErrFenced from the claim means
// another leader won the race: the returned error wraps persist.ErrFenced.
//
// # Why deleting what recovery discarded loses nothing
//
// Recovery keeps the contiguous run from the oldest segment and discards
// what follows its first gap (and a torn tail, and orphans of deposed
// leaders; see persist.PlanRecovery). Recover deletes none of it: until
// this server's claim is stored, a live leader may be writing the very
// segment that fills the gap (its PUTs land out of order), and would then
// acknowledge everything after it. So the order is:
//
//  1. Recover: plan, delete nothing.
//  2. Claim: write the segment at last+1 by conditional write (create the
//     name if absent; or replace, atomically with the check, the exact
//     discarded segment that holds that name: a torn tail or a returned
//     term's orphan). Of all servers writing that name exactly one wins.
//  3. Only the winner calls DeleteDiscarded.
//
// After step 2 the discarded segments are provably unacknowledged. A
// leader releases in order: it acknowledges version v only once every one
// of its segments up to v is durable, and its segments are contiguous from
// its own claim, which followed the run it recovered. Any leader L that
// acknowledged a version past last therefore had a stored segment holding
// last+1, reached from its claim by a chain of contiguous names. Names are
// unique and never overwritten (the one conditional replace aside), so
// each of L's names at or below last is either a segment of the run this
// recovery saw (the same object, ending at or below last) or a segment
// overlapping it, which only an already fenced leader writes (the orphan
// of PlanRecovery's rule 2); following L's chain upward, its segment
// holding last+1 is the one after a run segment, so it is named last+1:
// our claim's name, which we hold. L's write of it failed (ErrFenced) and
// L acknowledged nothing from last+1 on. What
// follows the gap was written by leaders that never got past it, or (the
// orphan rules) by leaders already fenced lower down. Deleting is safe for
// the same reason, and only the winner may do it: a server that lost the
// claim has no such guarantee (the leader that beat it fills the gap and
// acknowledges what follows), which is the data loss of issue 12 item 1.
//
// The deletes themselves are conditional where the store allows it
// (persist/s3log: If-Match on the ETag recovery read), so a slow delete
// cannot remove a segment some later winner wrote under a discarded name.
// Residual risk, documented in persist/s3log: a store that does not
// implement conditional deletes gets plain deletes; then a delete that the
// store holds back for longer than another server needs to recover, win a
// claim after ours and write that name could remove its segment.
func Open(ctx context.Context, cfg Config, log persist.Log) (*Engine, error) {
	e, rec, err := open(ctx, cfg, log, log.Recover)
	if err != nil {
		return nil, err
	}
	if err := e.lead(ctx, rec); err != nil {
		e.abandonStatus()
		return nil, err
	}
	e.cfg.Logger.Info("engine: leader",
		"leader_id", e.LeaderID(), "version", uint64(e.Version()),
		"oldest_retained", uint64(rec.OldestRetained()), "segments", len(rec.Segments),
		"discarded", len(rec.Discarded), "conflict_oldest", uint64(e.res.set.OldestVersion()),
		"status_entries", e.status.idx.len(), "recovery_seconds", float64(e.cfg.Clock()-e.openedAt)/1e9)
	return e, nil
}

// open builds an engine over what recover found: retention policies, the
// conflict window and the status index. It starts nothing.
func open(ctx context.Context, cfg Config, log persist.Log, recover func(context.Context) (persist.Recovery, error)) (*Engine, persist.Recovery, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, persist.Recovery{}, err
	}
	start := cfg.Clock()
	rec, err := recover(ctx)
	if err != nil {
		return nil, persist.Recovery{}, fmt.Errorf("engine open: recover: %w", err)
	}
	policies, err := log.LoadPolicies(ctx)
	if err != nil {
		return nil, persist.Recovery{}, fmt.Errorf("engine open: load retention policies: %w", err)
	}
	e := &Engine{
		cfg:       cfg,
		log:       log,
		admission: newAdmissionQueue(),
		toPersist: newRing[*Request](cfg.RingSlots),
		toReply:   newRing[*Request](cfg.RingSlots),
		deposed:   make(chan struct{}),
		abort:     make(chan struct{}),
		replyDone: make(chan struct{}),
		tail:      newTail(cfg.TailBytes),
	}
	e.setLeaderID(nil)
	if d, ok := log.(persist.DamageReporter); ok {
		e.damage = d.Damage
	}
	e.status.failed = newInFlightFailures()
	e.retention.init(policies, rec.OldestRetained())
	now := cfg.Clock()
	opened := false
	defer func() {
		if !opened && e.status.idx != nil && e.status.idx.disk != nil {
			e.status.idx.disk.abandon() // releases the directory's lock
		}
	}()
	if err := e.rebuild(ctx, rec, now); err != nil {
		return nil, persist.Recovery{}, err
	}
	e.res.init(e, rec.Last(), now)
	e.openedAt = start
	opened = true
	return e, rec, nil
}

// abandonStatus releases the status directory of an engine that will not
// be used (its claim failed).
func (e *Engine) abandonStatus() {
	e.closeStatusOnce.Do(func() {
		if d := e.status.idx.disk; d != nil {
			d.abandon()
		}
	})
}

// lead takes a new leader id, claims the log after rec (the next segment,
// a conditional write) and starts the pipeline.
func (e *Engine) lead(ctx context.Context, rec persist.Recovery) error {
	// Config.LeaderID keeps one id across the start-up's retries (a claim
	// that timed out may land later); a replica's takeover takes a new one.
	id := slices.Clone(e.cfg.LeaderID)
	if len(id) == 0 || e.replica.Load() {
		id = newLeaderID(e.cfg.Env.Rand)
	}
	e.leaderID = id
	now := e.cfg.Clock()
	claimed, err := e.claimLeadership(ctx, rec, now)
	if err != nil {
		return err
	}
	// Only now, as the winner of the log, delete what recovery discarded
	// (see "Why deleting what recovery discarded loses nothing" above).
	// It must happen before the pipeline writes past the claim: a
	// discarded segment holds a name the pipeline may need.
	if err := e.log.DeleteDiscarded(ctx); err != nil {
		return fmt.Errorf("engine open: delete the %d segments recovery discarded, after the claim at %d: %w", len(rec.Discarded), claimed, err)
	}
	e.termFirst = claimed
	e.setLeaderID(e.leaderID)
	e.status.idx.terms.note(claimed, e.leaderID)
	if d := e.status.idx.disk; d != nil {
		if err := d.dir.StoreTerms(e.status.idx.terms.stored()); err != nil {
			return fmt.Errorf("engine open: %w", err)
		}
	}
	e.resolvedVersion.Store(uint64(claimed))
	e.durableVersion.Store(uint64(claimed))
	e.res.init(e, claimed, now)

	e.bgCtx, e.bgCancel = context.WithCancel(context.Background())
	e.pers.init(e, claimed)
	e.started.Store(true)
	go e.runResolver()
	go e.pers.run()
	go e.runReplier()
	e.bgWG.Add(1)
	go e.runTruncator()
	return nil
}

// setLeaderID publishes the id LeaderID returns: this term's, or on a
// replica the id of the leader whose segments it follows.
func (e *Engine) setLeaderID(id []byte) {
	s := string(id)
	e.leaderIDPub.Store(&s)
}

// rebuild reads the tail of the log into a fresh conflict set and status
// index, so that read versions and request ids handed out before a restart
// stay usable. It reads the last ConflictWindowVersions versions into the
// conflict set (the time part of that window is not reconstructed: see
// doc.go). The status index takes its runs from StatusDir and reads from
// the log only what they lack: after the last run, normally the few
// versions written since the last run was cut (all of the status window
// only when the directory is new or was lost). Without StatusDir it reads
// the last StatusWindowVersions versions.
func (e *Engine) rebuild(ctx context.Context, rec persist.Recovery, now int64) error {
	last := rec.Last()
	oldest := rec.OldestRetained()
	conflictStart := max(oldest, saturatingSub(last, e.cfg.ConflictWindowVersions))
	statusStart := max(oldest, saturatingSub(last, e.cfg.StatusWindowVersions))
	e.res.set = conflict.New(conflictStart)
	idx := newStatusIndex(int64(e.cfg.StatusWindow), e.cfg.StatusWindowVersions, e.cfg.StatusEntriesMax)
	idx.setFloor(statusStart)
	e.status.idx = idx
	statusFrom := statusStart // the status index reads versions after it
	if e.cfg.StatusDir != "" {
		from, err := e.openStatusRuns(rec, statusStart)
		if err != nil {
			return err
		}
		statusFrom = from
	}

	after := min(conflictStart, statusFrom)
	var reader persist.SegmentReader
	var writes []conflict.Write
	for after < last {
		segs, err := e.log.ReadFrom(ctx, after, 8<<20)
		if err != nil {
			return fmt.Errorf("engine open: rebuild windows: read after %d: %w", after, err)
		}
		if len(segs) == 0 {
			return fmt.Errorf("engine open: rebuild windows: log ends at %d, recovered last %d", after, last)
		}
		for _, seg := range segs {
			h, err := reader.Reset(seg)
			if err != nil {
				return fmt.Errorf("engine open: rebuild windows: segment after %d: %w", after, err)
			}
			idx.readSegment(h, statusFrom)
			for t, ok := reader.Next(); ok; t, ok = reader.Next() {
				if t.Version <= after {
					continue
				}
				if t.Version > conflictStart && len(t.Operations) > 0 {
					writes = appendWrites(writes[:0], t.Operations)
					e.res.set.AddWrites(writes, t.Version)
				}
				if t.Version > statusFrom && !(planted.Enabled && planted.Is(planted.ForgetIDOnRecovery) && t.Version%2 == 1) {
					idx.readTransaction(t)
				}
			}
			if err := reader.Err(); err != nil {
				return fmt.Errorf("engine open: rebuild windows: segment %d..%d: %w", h.First, h.Last, err)
			}
			if h.Last > after {
				e.follow.noteLeader(h.LeaderID)
			}
			after = max(after, h.Last)
			if h.Last > statusFrom {
				if err := idx.readSegmentDone(h.Last); err != nil {
					return fmt.Errorf("engine open: rebuild status index: %w", err)
				}
			}
		}
	}
	idx.expire(last, now)
	return nil
}

// openStatusRuns opens StatusDir and its runs, keeps the contiguous ones
// that the log can continue (deleting the rest), loads the stored term
// starts, and returns the version after which the log must be read.
func (e *Engine) openStatusRuns(rec persist.Recovery, statusStart tx.Version) (tx.Version, error) {
	dir, err := statusruns.Open(e.cfg.StatusDir)
	if err != nil {
		return 0, fmt.Errorf("engine open: %w", err)
	}
	idx := e.status.idx
	idx.disk = newStatusDisk(dir, e.cfg.StatusRunEntries, e.cfg.Logger)
	runs, damaged, err := dir.Load()
	if err != nil {
		return 0, fmt.Errorf("engine open: %w", err)
	}
	if len(damaged) > 0 {
		e.cfg.Logger.Warn("engine: status index: damaged runs deleted; their ids are read from the log again", "runs", damaged)
	}
	last, oldest := rec.Last(), rec.OldestRetained()
	var chain []*statusruns.Run
	for _, r := range runs {
		if tx.Version(r.Last) > last || (len(chain) > 0 && r.First != chain[len(chain)-1].Last+1) {
			break
		}
		chain = append(chain, r)
	}
	// The log must hold every version after the chain (else there is a hole
	// the runs cannot bridge: start over from the log), and runs wholly
	// below the window are expired.
	if n := len(chain); n > 0 && tx.Version(chain[n-1].Last) < oldest {
		chain = nil
	}
	start := 0
	for start < len(chain) && tx.Version(chain[start].Last) <= statusStart {
		start++
	}
	keep := chain[start:]
	var drop []*statusruns.Run
	for _, r := range runs {
		if !slices.Contains(keep, r) {
			drop = append(drop, r)
		}
	}
	if err := dir.Remove(drop...); err != nil {
		return 0, fmt.Errorf("engine open: %w", err)
	}
	from := statusStart
	if len(keep) > 0 {
		idx.setFloor(max(statusStart, tx.Version(keep[0].First)-1))
		from = tx.Version(keep[len(keep)-1].Last)
	}
	idx.disk.runs = keep
	idx.disk.covered = from
	terms, err := dir.LoadTerms()
	if err != nil {
		return 0, fmt.Errorf("engine open: %w", err)
	}
	for _, t := range terms {
		if tx.Version(t.First) <= from {
			idx.terms.note(tx.Version(t.First), t.LeaderID)
		}
	}
	idx.terms.forgetBefore(idx.floor + 1)
	return from, nil
}

// claimLeadership writes the genesis segment on an empty log, or a segment
// of one empty transaction at last+1, and publishes it to the tail. It
// returns the version the pipeline continues from.
func (e *Engine) claimLeadership(ctx context.Context, rec persist.Recovery, now int64) (tx.Version, error) {
	if len(rec.Segments) == 0 {
		data := persist.EncodeSegment(nil, e.leaderID, nil)
		if err := e.log.Append(ctx, data); err != nil {
			return 0, fmt.Errorf("engine open: write genesis segment: %w", err)
		}
		e.tail.reset(0)
		return 0, nil
	}
	v := rec.Last() + 1
	// The claim gets a generated request id like any commit sent without
	// one (API.md: every streamed transaction carries a non-empty id).
	claim := []tx.Transaction{{Version: v, RequestID: newRequestID(e.cfg.Env.Rand), TimestampUnixNano: now}}
	data := persist.EncodeSegment(nil, e.leaderID, claim)
	if err := e.log.Append(ctx, data); err != nil {
		return 0, fmt.Errorf("engine open: claim leadership at version %d: %w", v, err)
	}
	// The stored claim may be an earlier attempt's, of this same process
	// (a start-up retried after a claim that timed out and landed later:
	// same leader id, another timestamp). Publish what is stored, so that
	// subscribers and the log agree byte for byte.
	stored, err := e.log.ReadFrom(ctx, v-1, 1)
	if err != nil || len(stored) == 0 {
		return 0, fmt.Errorf("engine open: read back the claim at version %d: %w (%d segments)", v, err, len(stored))
	}
	if h, err := persist.DecodeSegmentHeader(stored[0]); err != nil || h.First != v || h.Last != v || !bytes.Equal(h.LeaderID, e.leaderID) {
		return 0, fmt.Errorf("engine open: the claim at version %d read back as another segment (%d..%d, leader %q): %w", v, h.First, h.Last, h.LeaderID, persist.ErrFenced)
	}
	data = stored[0]
	if e.tail.Durable() != v-1 || e.tail.Sealed() != v-1 { // a promoted replica's tail goes on
		e.tail.reset(v - 1)
	}
	e.tail.publish(v, v, data)
	e.tail.markDurable(v)
	// Its id is in the status window like any commit's (a restart would
	// read it back from the log anyway).
	// The id is the stored claim's (maybe an earlier attempt's).
	if _, txns, err := persist.DecodeSegment(data, nil); err == nil && len(txns) == 1 && len(txns[0].RequestID) > 0 {
		e.status.idx.insert(hashRequestID(txns[0].RequestID), v, txns[0].TimestampUnixNano)
	}
	return v, nil
}

// NewLeaderID returns a fresh random leader id (32 hex digits).
func NewLeaderID() ([]byte, error) {
	var idBytes [16]byte
	if _, err := rand.Read(idBytes[:]); err != nil {
		return nil, fmt.Errorf("leader id: %w", err)
	}
	return hex.AppendEncode(nil, idBytes[:]), nil
}

func saturatingSub(v tx.Version, n uint64) tx.Version {
	if uint64(v) < n {
		return 0
	}
	return v - tx.Version(n)
}

// appendWrites appends the conflict-set writes of ops to dst: write and
// delete as points, range_delete as ranges.
func appendWrites(dst []conflict.Write, ops []tx.Operation) []conflict.Write {
	for i := range ops {
		op := &ops[i]
		if op.Type == tx.OpRangeDelete {
			dst = append(dst, conflict.Write{Begin: op.Key, End: op.End})
		} else {
			dst = append(dst, conflict.Write{Begin: op.Key})
		}
	}
	return dst
}

// Submit hands r to the pipeline; done is called exactly once with r when
// it is answered, on an engine goroutine (or on the caller's goroutine,
// before Submit returns, when r is refused at once: Unavailable or Deposed).
// Submit never blocks. See Request for ownership.
func (e *Engine) Submit(r *Request, done func(*Request)) {
	r.resetOutputs()
	r.done = done
	r.ensureRequestID(e.cfg.Env.Rand)
	if len(r.Commit.RequestID) > 0 {
		r.idHash = hashRequestID(r.Commit.RequestID)
	} else {
		r.idHash = idHash{}
	}
	switch {
	case e.deposedFlag.Load(), !e.started.Load():
		e.refuse(r, Deposed)
		return
	case e.closing.Load() || e.failing.Load() || e.Damage() != nil:
		e.refuse(r, Unavailable)
		return
	}
	if e.queued.Add(1) > int64(e.cfg.MaxQueued) {
		e.queued.Add(-1)
		e.refuse(r, Unavailable)
		return
	}
	if !e.admission.add(r) {
		e.queued.Add(-1)
		e.refuse(r, Unavailable)
	}
}

// Damage returns the log's report of damage behind the server's back (see
// persist.DamageReporter), nil while it is sound or cannot tell.
func (e *Engine) Damage() error {
	if e.damage == nil {
		return nil
	}
	return e.damage()
}

func (e *Engine) refuse(r *Request, o Outcome) {
	r.Outcome = o
	r.Version = e.Version()
	e.stats.countOutcome(r)
	done := r.done
	r.done = nil
	done(r)
}

// Version returns the latest durable version: every acknowledged commit is
// at or below it.
func (e *Engine) Version() tx.Version { return tx.Version(e.durableVersion.Load()) }

// ResolvedVersion returns the latest assigned version, durable or not (what
// a durable=false reader may have seen).
func (e *Engine) ResolvedVersion() tx.Version { return tx.Version(e.resolvedVersion.Load()) }

// Role is what a server is for the log it serves, as /v1/version and
// /readyz report it ("role"). Every report of the role comes from
// Engine.Role, so a server that can follow the log as a replica changes it
// in one place.
type Role string

const (
	// RoleLeader: this server claimed the log and accepts commits.
	RoleLeader Role = "leader"
	// RoleReplica: this server follows a log another server leads
	// (OpenReplica), until Promote.
	RoleReplica Role = "replica"
)

// Role returns this server's role.
func (e *Engine) Role() Role {
	if e.replica.Load() {
		return RoleReplica
	}
	return RoleLeader
}

// LeaderID returns this leader term's id (32 hex digits).
// On a replica it is the id of the leader whose segments it follows ("" if
// none yet).
func (e *Engine) LeaderID() string { return *e.leaderIDPub.Load() }

// Deposed returns a channel closed when another leader fenced this one.
// From then on every commit is answered Deposed; the server should stop
// and exit non-zero.
func (e *Engine) Deposed() <-chan struct{} { return e.deposed }

// Log returns the log the engine reads and writes.
func (e *Engine) Log() persist.Log { return e.log }

// Tail returns the in-memory tail of recent segments for subscribers.
func (e *Engine) Tail() *Tail { return e.tail }

func (e *Engine) depose(err error) {
	e.deposeOnce.Do(func() {
		e.deposedFlag.Store(true)
		e.cfg.Logger.Error("engine: deposed: no more commits are acknowledged",
			"leader_id", e.LeaderID(), "durable_version", e.Version(), "err", err)
		e.tail.fail(ErrDeposed)
		close(e.deposed)
	})
}

// Close stops admitting (Submit answers Unavailable), lets everything in
// the pipeline become durable and answered, and stops the background work.
// If ctx expires first, whatever is not durable yet is answered Unavailable
// and Close returns ctx's error. Close does not close the Log.
func (e *Engine) Close(ctx context.Context) error {
	e.closing.Store(true)
	if !e.started.Load() { // a replica: no pipeline to drain
		e.tail.fail(ErrClosed)
		var err error
		e.closeStatusOnce.Do(func() {
			if d := e.status.idx.disk; d != nil {
				if derr := e.status.idx.closeDisk(e.Version()); derr != nil {
					err = fmt.Errorf("engine close: %w", derr)
				}
			}
		})
		return err
	}
	e.admission.close()
	var err error
	select {
	case <-e.replyDone:
	case <-ctx.Done():
		err = fmt.Errorf("engine close: %w", ctx.Err())
		e.abortOnce.Do(func() { close(e.abort) })
		e.bgCancel()
		<-e.replyDone
	}
	e.bgCancel()
	e.bgWG.Wait()
	e.tail.fail(ErrClosed)
	// Stage 1 has exited: the status index is Close's now. Write what is
	// durable to a last run, so that a restart reads (almost) no log.
	e.closeStatusOnce.Do(func() {
		if d := e.status.idx.disk; d != nil {
			if derr := e.status.idx.closeDisk(e.Version()); derr != nil && err == nil {
				err = fmt.Errorf("engine close: %w", derr)
			}
		}
	})
	return err
}
