package engine

import (
	"sync/atomic"

	"github.com/weaseldb/weaseldb/tx"
)

// counters are the engine's metrics, updated with atomics on the pipeline
// goroutines and read by Stats.
type counters struct {
	outcomes   [Deposed + 1]atomic.Uint64
	duplicates atomic.Uint64

	resolveBatches  atomic.Uint64
	resolveRequests atomic.Uint64

	segments      atomic.Uint64
	segmentTxns   atomic.Uint64
	segmentBytes  atomic.Uint64
	segmentNanos  atomic.Uint64
	segmentErrors atomic.Uint64
	inflight      atomic.Int64

	truncations       atomic.Uint64 // truncation runs that removed something
	truncatedVersions atomic.Uint64 // sum of how far oldest_retained moved up

	conflictKeys    atomic.Int64
	conflictBytes   atomic.Int64
	conflictShrinks atomic.Uint64
	statusEntries   atomic.Int64
	statusRuns      atomic.Int64
	statusDiskIDs   atomic.Int64
	statusRunMemory atomic.Int64
}

func (c *counters) countOutcome(r *Request) {
	if int(r.Outcome) < len(c.outcomes) {
		c.outcomes[r.Outcome].Add(1)
	}
	if r.Duplicate {
		c.duplicates.Add(1)
	}
}

// Stats is a snapshot of the engine's counters (monotonic, "Total") and
// gauges, for the server's /metrics. Averages are ratios of two counters
// (e.g. ResolveRequestsTotal / ResolveBatchesTotal); per-batch
// distributions come through Config.Observer.
type Stats struct {
	// OutcomesTotal counts answered requests by Outcome (index).
	OutcomesTotal   [Deposed + 1]uint64
	DuplicatesTotal uint64

	ResolveBatchesTotal  uint64
	ResolveRequestsTotal uint64

	SegmentsTotal      uint64 // segments made durable
	SegmentTxnsTotal   uint64
	SegmentBytesTotal  uint64
	SegmentNanosTotal  uint64 // time spent in successful Log.Append calls
	SegmentErrorsTotal uint64 // failed Log.Append calls (retried)
	InFlightSegments   int64
	Queued             int64 // submitted, not yet answered
	ConflictSetKeys    int64
	ConflictSetBytes   int64
	StatusIndexEntries int64 // in memory
	// The on-disk part (Config.StatusDir): runs, the ids they hold, and the
	// memory their filters and fences take.
	StatusRuns           int64
	StatusDiskEntries    int64
	StatusRunMemoryBytes int64
	TailSegments         int
	TailBytes            int
	ResolvedVersion      tx.Version
	DurableVersion       tx.Version
	OldestRetained       tx.Version
	PersistenceFailing   bool
	// PersistenceDamage says why the log is damaged (persist.ErrDamaged);
	// empty while it is sound. Commits are refused until a restart.
	PersistenceDamage string
	Deposed           bool
	// TruncationsTotal counts truncation runs that removed segments;
	// TruncatedVersionsTotal how many versions they removed in all.
	TruncationsTotal       uint64
	TruncatedVersionsTotal uint64
	// ConflictShrinksTotal counts the times the conflict set reached
	// ConflictSetBytesMax and its oldest version was advanced early.
	ConflictShrinksTotal uint64
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	c := &e.stats
	var s Stats
	for i := range c.outcomes {
		s.OutcomesTotal[i] = c.outcomes[i].Load()
	}
	s.DuplicatesTotal = c.duplicates.Load()
	s.ResolveBatchesTotal = c.resolveBatches.Load()
	s.ResolveRequestsTotal = c.resolveRequests.Load()
	s.SegmentsTotal = c.segments.Load()
	s.SegmentTxnsTotal = c.segmentTxns.Load()
	s.SegmentBytesTotal = c.segmentBytes.Load()
	s.SegmentNanosTotal = c.segmentNanos.Load()
	s.SegmentErrorsTotal = c.segmentErrors.Load()
	s.InFlightSegments = c.inflight.Load()
	s.Queued = e.queued.Load()
	s.ConflictSetKeys = c.conflictKeys.Load()
	s.ConflictSetBytes = c.conflictBytes.Load()
	s.ConflictShrinksTotal = c.conflictShrinks.Load()
	s.StatusIndexEntries = c.statusEntries.Load()
	s.StatusRuns = c.statusRuns.Load()
	s.StatusDiskEntries = c.statusDiskIDs.Load()
	s.StatusRunMemoryBytes = c.statusRunMemory.Load()
	s.TailSegments, s.TailBytes = e.tail.size()
	s.ResolvedVersion = e.ResolvedVersion()
	s.DurableVersion = e.Version()
	s.OldestRetained = e.OldestRetained()
	s.PersistenceFailing = e.failing.Load()
	if err := e.Damage(); err != nil {
		s.PersistenceDamage = err.Error()
	}
	s.Deposed = e.deposedFlag.Load()
	s.TruncationsTotal = c.truncations.Load()
	s.TruncatedVersionsTotal = c.truncatedVersions.Load()
	return s
}
