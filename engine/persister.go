package engine

import (
	"errors"
	"time"

	"github.com/weaseldb/weaseldb/internal/clock"
	"github.com/weaseldb/weaseldb/internal/invariants"
	"github.com/weaseldb/weaseldb/internal/planted"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/tx"
)

// group is a run of requests in pipeline order together with the segment
// holding those of them that committed (data is nil when none did). Groups
// are released strictly in order.
type group struct {
	reqs        []*Request
	data        []byte
	first, last tx.Version
	txns        int
	state       groupState
	attempts    int
	started     int64 // Clock at the latest Append start
}

type groupState uint8

const (
	groupSealed    groupState = iota // waiting for an Append slot
	groupWriting                     // Append outstanding
	groupFailed                      // Append failed; retried after backoff
	groupDurable                     // durable (or nothing to write)
	groupAbandoned                   // answered while its Append was outstanding; never reused
)

type appendResult struct {
	g   *group
	err error
}

// appendJob carries the segment bytes separately from the group, which
// stage 2 may answer (and clear) while the write is outstanding.
type appendJob struct {
	g    *group
	data []byte
}

// persister is the state of stage 2, owned by its goroutine.
type persister struct {
	e *Engine

	// The group being gathered.
	cur        *group
	curTxns    []tx.Transaction
	curBytes   int
	curStarted int64 // Clock when cur got its first request

	queue    []*group // sealed, not released, in order
	free     []*group
	inflight int
	failed   int // groups in groupFailed

	appendCh   chan appendJob
	appendDone chan appendResult

	nextVersion tx.Version // first version of the next segment
	backoff     time.Duration
	retryTimer  clock.Timer
	retryArmed  bool
	batchTimer  clock.Timer
	batchArmed  bool

	intake  []*Request
	release []*Request
	aborted bool

	inv releaseChecks // -tags invariants (engine/invariants.go)
}

func (p *persister) init(e *Engine, last tx.Version) {
	p.e = e
	p.nextVersion = last + 1
	p.inv.through = last
	p.appendCh = make(chan appendJob, e.cfg.MaxInFlight)
	p.appendDone = make(chan appendResult, e.cfg.MaxInFlight)
	p.retryTimer = e.cfg.Env.NewTimer()
	p.batchTimer = e.cfg.Env.NewTimer()
	p.cur = p.newGroup()
	for range e.cfg.MaxInFlight {
		go p.appendWorker()
	}
}

func (p *persister) newGroup() *group {
	if n := len(p.free); n > 0 {
		g := p.free[n-1]
		p.free = p.free[:n-1]
		return g
	}
	return &group{}
}

// appendWorker performs Log.Append calls; MaxInFlight of them run.
func (p *persister) appendWorker() {
	for job := range p.appendCh {
		err := p.e.log.Append(p.e.bgCtx, job.data)
		p.appendDone <- appendResult{job.g, err}
	}
}

func (p *persister) full() bool {
	return p.cur.txns >= p.e.cfg.BatchMaxTransactions || p.curBytes >= p.e.cfg.BatchMaxBytes
}

func (p *persister) canWrite() bool {
	return p.inflight < p.e.cfg.MaxInFlight && p.failed == 0 && !p.e.deposedFlag.Load()
}

// run is stage 2. Each turn: take what arrived, seal and start writes as
// the group-commit rule allows, release durable groups in order, then wait
// for the next event (input, a finished write, the batch timer, a retry).
func (p *persister) run() {
	e := p.e
	defer close(p.appendCh)
	for {
		if !p.full() || e.deposedFlag.Load() {
			p.intake = e.toPersist.tryPopAll(p.intake[:0])
			for _, r := range p.intake {
				p.add(r)
			}
			clear(p.intake)
		}
		p.maybeSeal()
		p.releaseDurable()
		if e.toPersist.isClosedAndEmpty() && len(p.cur.reqs) == 0 && len(p.queue) == 0 {
			e.toReply.close()
			return
		}
		p.wait()
	}
}

// add appends one resolved request to the group being gathered.
func (p *persister) add(r *Request) {
	if len(p.cur.reqs) == 0 {
		p.curStarted = p.e.cfg.Clock()
	}
	p.cur.reqs = append(p.cur.reqs, r)
	if r.Outcome != Committed || r.Duplicate {
		return
	}
	if r.Version != p.nextVersion+tx.Version(p.cur.txns) {
		// Stage 1 assigns versions in order; anything else is a bug.
		panic("engine: stage 2 got version " + uitoa(uint64(r.Version)) + ", want " + uitoa(uint64(p.nextVersion)+uint64(p.cur.txns)))
	}
	p.curTxns = append(p.curTxns, tx.Transaction{
		Version: r.Version, RequestID: r.RequestID, TimestampUnixNano: r.timestamp, Operations: r.Commit.Operations,
	})
	p.cur.txns++
	p.curBytes += 24 + len(r.RequestID)
	for i := range r.Commit.Operations {
		op := &r.Commit.Operations[i]
		p.curBytes += 8 + len(op.Key) + len(op.End) + len(op.Value)
	}
}

// maybeSeal closes the gathered group when the group-commit rule says so:
// at once when no write is in flight (a lone client pays one write), when
// full, or when BatchInterval passed; never while a write slot is missing
// (the group keeps gathering) or a failed write is being retried (later
// segments are held back).
func (p *persister) maybeSeal() {
	if len(p.cur.reqs) == 0 {
		return
	}
	if p.e.deposedFlag.Load() || p.aborted {
		p.seal() // answered by releaseDurable
		return
	}
	if p.cur.txns == 0 {
		p.seal() // nothing to write: released in order, no Append
		return
	}
	if !p.canWrite() {
		return
	}
	if p.inflight == 0 || p.full() || time.Duration(p.e.cfg.Clock()-p.curStarted) >= p.e.cfg.BatchInterval {
		p.seal()
	}
}

// seal encodes the gathered group, publishes it to the tail (visible to
// durable=false subscribers) and starts its write.
func (p *persister) seal() {
	g := p.cur
	p.cur = p.newGroup()
	p.queue = append(p.queue, g)
	if p.e.deposedFlag.Load() || p.aborted {
		g.state = groupSealed // never written: answered Deposed/Unavailable
		g.data = nil
		// Its versions were assigned by stage 1 and are burnt: the next
		// group's start after them (add checks each version is the next).
		p.nextVersion += tx.Version(g.txns)
		p.dropTxns()
		return
	}
	if g.txns == 0 {
		g.state = groupDurable // nothing to write: released in order
		g.data = nil
		p.dropTxns()
		return
	}
	g.first = p.nextVersion
	g.last = p.nextVersion + tx.Version(g.txns) - 1
	g.data = persist.EncodeSegment(make([]byte, 0, p.curBytes+128), p.e.leaderID, p.curTxns)
	p.nextVersion = g.last + 1
	p.dropTxns()
	p.e.tail.publish(g.first, g.last, g.data)
	p.start(g)
}

func (p *persister) dropTxns() {
	clear(p.curTxns) // do not keep request memory alive
	p.curTxns = p.curTxns[:0]
	p.curBytes = 0
}

func (p *persister) start(g *group) {
	g.state = groupWriting
	g.attempts++
	g.started = p.e.cfg.Clock()
	p.inflight++
	p.e.stats.inflight.Store(int64(p.inflight))
	p.appendCh <- appendJob{g, g.data}
	if planted.Enabled && planted.Is(planted.AckBeforeAppend) {
		g.state = groupDurable
	}
}

// finished handles a completed Append.
func (p *persister) finished(res appendResult) {
	g := res.g
	p.inflight--
	p.e.stats.inflight.Store(int64(p.inflight))
	if g.state != groupWriting { // answered already (deposed or aborted)
		return
	}
	switch {
	case res.err == nil:
		g.state = groupDurable
		elapsed := p.e.cfg.Clock() - g.started
		p.e.stats.segments.Add(1)
		p.e.stats.segmentTxns.Add(uint64(g.txns))
		p.e.stats.segmentBytes.Add(uint64(len(g.data)))
		p.e.stats.segmentNanos.Add(uint64(max(elapsed, 0)))
		if o := p.e.cfg.Observer; o != nil {
			o.SegmentWritten(g.txns, len(g.data), elapsed)
		}
		if g.attempts > 1 {
			p.e.cfg.Logger.Info("engine: segment write recovered", "first", uint64(g.first), "attempts", g.attempts)
		}
	case errors.Is(res.err, persist.ErrFenced):
		p.e.depose(res.err)
	case errors.Is(res.err, persist.ErrDamaged):
		// Not retried: the log lost data behind our back. Answer what is
		// in flight Unavailable (as on an aborted drain); Submit refuses
		// the rest while the log reports its damage.
		g.state = groupFailed
		p.failed++
		p.e.failing.Store(true)
		p.e.stats.segmentErrors.Add(1)
		if !p.aborted {
			p.e.cfg.Logger.Error("engine: the log is damaged; commits refused until an operator restores it and restarts",
				"first", uint64(g.first), "last", uint64(g.last), "err", res.err)
		}
		p.aborted = true
	default:
		g.state = groupFailed
		p.failed++
		p.e.failing.Store(true)
		p.e.stats.segmentErrors.Add(1)
		if g.attempts == 1 || g.attempts%100 == 0 {
			p.e.cfg.Logger.Warn("engine: segment write failed; retrying, commits paused",
				"first", uint64(g.first), "last", uint64(g.last), "attempts", g.attempts, "err", res.err)
		}
		if !p.retryArmed {
			p.backoff = min(max(p.backoff*2, p.e.cfg.RetryBackoffMin), p.e.cfg.RetryBackoffMax)
			p.retryTimer.Reset(p.backoff)
			p.retryArmed = true
		}
	}
}

// retry restarts every failed write, oldest first.
func (p *persister) retry() {
	p.retryArmed = false
	if p.aborted || p.e.deposedFlag.Load() {
		return
	}
	for _, g := range p.queue {
		if g.state == groupFailed {
			p.failed--
			p.start(g)
		}
	}
}

// releaseDurable hands the leading durable groups to stage 3. Once
// deposed or aborted, the first group that is not durable and every group
// after it (even one whose write succeeded: it follows a hole) are answered
// at once with Deposed or Unavailable.
func (p *persister) releaseDurable() {
	e := p.e
	if planted.Enabled && planted.Is(planted.ReleaseOutOfOrder) && len(p.queue) > 1 &&
		p.queue[0].state == groupWriting && p.queue[1].state == groupDurable {
		p.queue[0], p.queue[1] = p.queue[1], p.queue[0]
	}
	deposed := e.deposedFlag.Load()
	forcing := false
	n := 0
	for ; n < len(p.queue); n++ {
		g := p.queue[n]
		forced := Pending
		if forcing || g.state != groupDurable {
			switch {
			case deposed:
				forced = Deposed
			case p.aborted:
				forced = Unavailable
			}
			if forced == Pending {
				break
			}
			forcing = true
		}
		if forced == Pending && g.data != nil {
			if invariants.Enabled {
				p.inv.released(e, g)
			}
			e.durableVersion.Store(uint64(g.last))
			e.tail.markDurable(g.last)
		}
		switch g.state {
		case groupFailed:
			p.failed--
		case groupWriting:
			g.state = groupAbandoned // its late completion is ignored
		}
		p.answer(g, forced)
	}
	if n == 0 {
		return
	}
	m := copy(p.queue, p.queue[n:])
	clear(p.queue[m:])
	p.queue = p.queue[:m]
	if p.failed == 0 && e.failing.Load() && !deposed {
		p.backoff = 0
		e.failing.Store(false)
	}
}

// answer sets the final outcome of g's requests and passes them to stage 3.
func (p *persister) answer(g *group, forced Outcome) {
	durable := p.e.Version()
	for _, r := range g.reqs {
		switch {
		case forced != Pending:
			r.Outcome = forced
			r.Version = durable
			r.Duplicate = false
		case r.Outcome != Committed:
			r.Version = durable // a good next read version for a 409
		}
	}
	p.release = append(p.release[:0], g.reqs...)
	p.e.toReply.pushBatch(p.release)
	clear(p.release)
	clear(g.reqs)
	g.reqs = g.reqs[:0]
	g.data = nil
	g.txns, g.attempts = 0, 0
	if g.state != groupAbandoned {
		g.state = groupSealed
		p.free = append(p.free, g)
	}
}

// wait blocks until something can make progress.
func (p *persister) wait() {
	e := p.e
	var input <-chan struct{}
	if !p.full() || e.deposedFlag.Load() {
		input = e.toPersist.arm()
		if input == nil && !e.toPersist.isClosedAndEmpty() {
			return // items arrived meanwhile
		}
	}
	defer e.toPersist.disarm()
	var batch <-chan time.Time
	if len(p.cur.reqs) > 0 && p.canWrite() && !p.full() {
		// inflight > 0 here, or maybeSeal would have sealed.
		remaining := e.cfg.BatchInterval - time.Duration(e.cfg.Clock()-p.curStarted)
		if remaining <= 0 {
			return
		}
		p.batchTimer.Reset(remaining)
		p.batchArmed = true
		batch = p.batchTimer.C()
	}
	var abort <-chan struct{}
	if !p.aborted {
		abort = e.abort
	}
	select {
	case <-input:
	case res := <-p.appendDone:
		p.finished(res)
	case <-batch:
		p.batchArmed = false
	case <-p.retryTimer.C():
		p.retry()
	case <-abort:
		p.aborted = true
	}
	if p.batchArmed {
		p.batchTimer.Stop()
		p.batchArmed = false
	}
}

func uitoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
