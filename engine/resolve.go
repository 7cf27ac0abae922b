package engine

import (
	"bytes"
	"strconv"

	"github.com/weaseldb/weaseldb/engine/conflict"
	"github.com/weaseldb/weaseldb/internal/planted"
	"github.com/weaseldb/weaseldb/tx"
)

// resolver is the state of stage 1, owned by its goroutine.
type resolver struct {
	e       *Engine
	set     *conflict.Set
	last    tx.Version // latest assigned version
	seq     uint64     // latest pipeline sequence number
	samples timeVersionSamples

	statusReadErrors uint64
	shrinkLogged     bool // the first shrink of the conflict set was logged

	reads   []conflict.Read
	results []conflict.Result
	writes  []conflict.Write
}

func (r *resolver) init(e *Engine, last tx.Version, now int64) {
	r.e = e
	r.last = last
	r.samples.interval = max(int64(e.cfg.ConflictWindow)/32, 1)
	r.samples.record(now, last)
}

// runResolver is stage 1: take every admitted request, resolve them in
// arrival order, and pass them on to stage 2 as one batch. Status queries
// among them are answered here, in the same order, after the batch was
// handed on (so that answering never delays a commit).
func (e *Engine) runResolver() {
	var spare, queries []*Request
	for {
		batch, ok := e.admission.takeAll(spare)
		if !ok {
			e.toPersist.close()
			return
		}
		if hook := e.cfg.BeforeResolveBatch; hook != nil {
			hook()
		}
		now := e.cfg.Clock()
		e.status.failed.forgetAnswered(e.answeredSeq.Load())
		n := 0
		for _, req := range batch {
			if req.isStatus {
				e.res.answerStatus(req)
				queries = append(queries, req)
				continue
			}
			e.res.resolve(req, now)
			batch[n] = req
			n++
		}
		clear(batch[n:])
		batch = batch[:n]
		e.res.advanceWindows(now)
		e.stats.conflictKeys.Store(int64(e.res.set.Len()))
		e.stats.conflictBytes.Store(e.res.set.Bytes())
		e.stats.statusEntries.Store(int64(e.status.idx.len()))
		e.resolvedVersion.Store(uint64(e.res.last))
		e.stats.resolveBatches.Add(1)
		e.stats.resolveRequests.Add(uint64(len(batch)))
		if o := e.cfg.Observer; o != nil {
			o.ResolveBatch(len(batch))
		}
		if len(batch) > 0 {
			e.toPersist.pushBatch(batch)
		}
		clear(batch)
		spare = batch[:0]
		if len(queries) > 0 {
			e.queued.Add(-int64(len(queries)))
			for _, q := range queries {
				done := q.done
				q.done = nil
				done(q) // q belongs to the caller from here on
			}
			clear(queries)
			queries = queries[:0]
		}
	}
}

// resolve decides one request. The order of
// checks is the API's: a duplicate request id answers with the earlier
// result whatever the new body says; then leader id; then the body's own
// validity; then the preconditions.
func (r *resolver) resolve(req *Request, now int64) {
	e := r.e
	r.seq++
	req.seq = r.seq
	req.timestamp = now
	hasID := len(req.Commit.RequestID) > 0
	if hasID {
		v, ok, err := e.status.idx.lookup(req.idHash)
		if err != nil {
			// Whether the id committed is unknown: committing could
			// commit it twice. Nothing is committed by this answer.
			e.statusReadFailed(err)
			req.Outcome = Unavailable
			return
		}
		if ok {
			req.Outcome, req.Version, req.Duplicate = Committed, v, true
			req.LeaderID = e.status.idx.terms.leaderAt(v)
			return
		}
		if f := e.status.failed.lookup(req.idHash, e.answeredSeq.Load()); f != nil {
			req.Outcome, req.Err, req.Duplicate = f.outcome, f.err, true
			req.Conflicts = append(req.Conflicts[:0], f.conflicts...)
			return
		}
	}
	if r.check(req) {
		r.commit(req, now)
		return
	}
	if hasID {
		e.status.failed.add(req)
	}
}

// statusReadFailed logs a failed read of the on-disk status index (the
// first one and every 1000th).
func (e *Engine) statusReadFailed(err error) {
	e.res.statusReadErrors++
	if n := e.res.statusReadErrors; n == 1 || n%1000 == 0 {
		e.cfg.Logger.Error("engine: reading the status index failed; commits with a request id are answered 503 until it reads again",
			"failures", n, "err", err)
	}
}

// check runs every check but the dedupe; false when req must not commit
// (its outcome is set).
func (r *resolver) check(req *Request) bool {
	c := &req.Commit
	if len(c.LeaderID) > 0 && !bytes.Equal(c.LeaderID, r.e.leaderID) {
		req.Outcome = LeaderChanged
		return false
	}
	reads := r.reads[:0]
	for i := range c.Preconditions {
		p := &c.Preconditions[i]
		v := p.Version
		if !p.HasVersion {
			if !c.HasReadVersion {
				return r.fail(req, Invalid, "preconditions", i, "version: missing and no read_version")
			}
			v = c.ReadVersion
		}
		if v > r.last {
			return r.fail(req, FutureVersion, "preconditions", i, "version: greater than any assigned version")
		}
		if planted.Enabled && planted.Is(planted.SkipPrecondition) && i == 0 && len(c.Preconditions) > 1 {
			continue
		}
		switch p.Type {
		case tx.PointRead:
			reads = append(reads, conflict.Read{Begin: p.Key, Version: v})
		case tx.RangeRead:
			if bytes.Compare(p.Key, p.End) >= 0 {
				return r.fail(req, Invalid, "preconditions", i, "begin: not below end")
			}
			reads = append(reads, conflict.Read{Begin: p.Key, End: p.End, Version: v})
		default:
			return r.fail(req, Invalid, "preconditions", i, "type: unknown")
		}
	}
	r.reads = reads
	for i := range c.Operations {
		op := &c.Operations[i]
		switch op.Type {
		case tx.OpWrite, tx.OpDelete:
		case tx.OpRangeDelete:
			if bytes.Compare(op.Key, op.End) >= 0 {
				return r.fail(req, Invalid, "operations", i, "begin: not below end")
			}
		default:
			return r.fail(req, Invalid, "operations", i, "type: unknown")
		}
	}
	if len(reads) == 0 {
		return true
	}
	r.results = r.e.res.set.Check(reads, r.results[:0])
	worst := conflict.Commit
	for _, res := range r.results {
		if res == conflict.TooOld {
			worst = conflict.TooOld
		} else if res == conflict.Conflict && worst == conflict.Commit {
			worst = conflict.Conflict
		}
	}
	if worst == conflict.Commit {
		return true
	}
	// too_old wins: the client must re-read anyway. Conflicts lists the
	// preconditions that failed for the reason given.
	req.Outcome = Conflict
	if worst == conflict.TooOld {
		req.Outcome = TooOld
	}
	for i, res := range r.results {
		if res == worst {
			req.Conflicts = append(req.Conflicts, i)
		}
	}
	return false
}

// fail sets an error outcome naming field[i].what (allocates: error path).
func (r *resolver) fail(req *Request, o Outcome, field string, i int, what string) bool {
	req.Outcome = o
	req.Err = field + "[" + strconv.Itoa(i) + "]." + what
	return false
}

// commit assigns the next version to req and records its writes and id.
func (r *resolver) commit(req *Request, now int64) {
	r.last++
	req.Outcome, req.Version = Committed, r.last
	if ops := req.Commit.Operations; len(ops) > 0 {
		r.writes = appendWrites(r.writes[:0], ops)
		r.set.AddWrites(r.writes, r.last)
		clear(r.writes) // do not keep the request's keys alive
	}
	r.e.status.idx.insert(req.idHashOrGenerated(), r.last, now)
}

// idHashOrGenerated returns the id hash, computing it for an id the engine
// generated (Submit hashes client ids only, to keep dedupe off generated
// ones).
func (req *Request) idHashOrGenerated() idHash {
	if len(req.Commit.RequestID) == 0 {
		req.idHash = hashRequestID(req.RequestID)
	}
	return req.idHash
}

// advanceWindows moves the conflict set's oldest version and expires status
// entries. The conflict window keeps whichever of ConflictWindow and
// ConflictWindowVersions reaches further back.
func (r *resolver) advanceWindows(now int64) {
	e := r.e
	r.samples.record(now, r.last)
	byVersions := saturatingSub(r.last, e.cfg.ConflictWindowVersions)
	byTime, ok := r.samples.versionAt(now - int64(e.cfg.ConflictWindow))
	if ok {
		if oldest := min(byVersions, byTime); oldest > r.set.OldestVersion() {
			r.set.SetOldestVersion(oldest)
		}
	}
	if r.set.Bytes() > e.cfg.ConflictSetBytesMax {
		r.shrinkConflictSet()
	}
	e.status.idx.expire(r.last, now)
	if d := e.status.idx.disk; d != nil {
		e.status.idx.maintain(e.Version(), now)
		var ids, mem int64
		for _, r := range d.runs {
			ids += int64(r.Count)
			mem += int64(r.MemoryBytes())
		}
		e.stats.statusRuns.Store(int64(len(d.runs)))
		e.stats.statusDiskIDs.Store(ids)
		e.stats.statusRunMemory.Store(mem)
	}
}

// shrinkConflictSet brings the conflict set under 3/4 of its byte bound by
// halving the window of versions it remembers, oldest half first. Reads
// older than the new oldest version are answered too_old: the client
// re-reads and retries, nothing wrong commits.
func (r *resolver) shrinkConflictSet() {
	e := r.e
	limit := e.cfg.ConflictSetBytesMax
	before, oldestBefore := r.set.Bytes(), r.set.OldestVersion()
	for r.set.Bytes() > limit/4*3 && r.set.OldestVersion() < r.last {
		oldest := r.set.OldestVersion()
		r.set.ForgetThrough(oldest + (r.last-oldest+1)/2)
	}
	e.stats.conflictShrinks.Add(1)
	if !r.shrinkLogged {
		r.shrinkLogged = true
		e.cfg.Logger.Warn("engine: the conflict set reached its memory bound; its oldest version advanced early (older reads get too_old; logged once, counted in weaseldb_conflict_set_shrinks_total)",
			"bytes_before", before, "bytes_after", r.set.Bytes(), "bound", limit,
			"oldest_before", uint64(oldestBefore), "oldest_after", uint64(r.set.OldestVersion()), "latest", uint64(r.last))
	}
}

// timeVersionSamples remembers which version was the latest at a few
// points in time (one sample per interval, at most len(buf)), to map "5
// seconds ago" to a version.
type timeVersionSamples struct {
	buf [64]struct {
		time    int64
		version tx.Version
	}
	head, n  int
	interval int64
}

func (s *timeVersionSamples) record(now int64, v tx.Version) {
	if s.n > 0 && now-s.buf[(s.head+s.n-1)%len(s.buf)].time < s.interval {
		return
	}
	if s.n == len(s.buf) {
		s.head = (s.head + 1) % len(s.buf)
		s.n--
	}
	s.buf[(s.head+s.n)%len(s.buf)] = struct {
		time    int64
		version tx.Version
	}{now, v}
	s.n++
}

// versionAt returns the version recorded by the newest sample taken at or
// before cutoff (a lower bound of the version latest at cutoff: keeping
// from there keeps at least the window). Older samples are dropped.
func (s *timeVersionSamples) versionAt(cutoff int64) (tx.Version, bool) {
	found := -1
	for i := 0; i < s.n; i++ {
		if s.buf[(s.head+i)%len(s.buf)].time > cutoff {
			break
		}
		found = i
	}
	if found < 0 {
		return 0, false
	}
	s.head = (s.head + found) % len(s.buf)
	s.n -= found
	return s.buf[s.head].version, true
}
