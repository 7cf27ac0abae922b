package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/statusruns"
	"github.com/weaseldb/weaseldb/tx"
)

// statusDisk is the on-disk part of the status index: the runs of
// persist/statusruns in a directory beside the log, written and merged by
// one background goroutine (the spiller) so that stage 1 never waits on
// the disk except to read a run when its filter says an id may be there.
//
// Stage 1 owns the run list. It cuts the memory FIFO's durable entries
// into a run every runEntries entries (only versions already durable in
// the log: a run never names a version a crash could take back), installs
// finished runs, merges mergeFanIn runs of one size class into one
// (so a 100M-version window is a few dozen runs, not hundreds: a lookup
// that misses costs one filter probe per run), and deletes runs that fell
// below the floor. Runs cover contiguous versions [first, last], oldest
// first, so after a restart the log is read only after the last run.
type statusDisk struct {
	dir        *statusruns.Dir
	logger     *slog.Logger
	runEntries int

	runs      []*statusruns.Run // installed, oldest first, contiguous
	covered   tx.Version        // last version covered by runs installed or being written
	sentPos   uint64            // FIFO positions below were handed to the spiller
	diskPos   uint64            // FIFO positions below are in installed runs
	writing   bool              // a write job is outstanding
	mergeOff  bool              // a merge failed: none until the next run is installed
	cutLogged bool              // the window was cut for memory (logged once per episode)
	retryAt   int64             // after a failed write, the next is not tried before it (Clock)
	mergeIn   []*statusruns.Run // inputs of the outstanding merge (still in runs)
	failures  int

	jobs    chan spillJob
	results chan spillResult
	stopped chan struct{}
}

const (
	mergeFanIn = 8
	spillQueue = 1024 // more than runs ever exist: stage 1 never waits to hand out a job
)

type spillKind uint8

const (
	spillWrite spillKind = iota
	spillMerge
	spillRemove
)

type spillJob struct {
	kind        spillKind
	first, last tx.Version
	entries     []statusruns.Entry
	endPos      uint64            // write: FIFO position after the chunk
	runs        []*statusruns.Run // merge inputs, or runs to remove
}

type spillResult struct {
	job spillJob
	run *statusruns.Run
	err error
}

func newStatusDisk(dir *statusruns.Dir, runEntries int, logger *slog.Logger) *statusDisk {
	d := &statusDisk{
		dir: dir, logger: logger, runEntries: runEntries,
		jobs: make(chan spillJob, spillQueue), results: make(chan spillResult, spillQueue),
		stopped: make(chan struct{}),
	}
	go d.spiller()
	return d
}

// spiller runs the disk work, one job at a time, in order.
func (d *statusDisk) spiller() {
	defer close(d.stopped)
	for job := range d.jobs {
		res := spillResult{job: job}
		switch job.kind {
		case spillWrite:
			res.run, res.err = d.dir.Write(uint64(job.first), uint64(job.last), job.entries)
		case spillMerge:
			res.run, res.err = d.dir.Merge(job.runs)
		case spillRemove:
			if err := d.dir.Remove(job.runs...); err != nil {
				d.logger.Warn("status index: remove expired run failed", "err", err)
			}
			continue
		}
		d.results <- res
	}
}

// lookup searches the runs holding versions below memLow (newest first)
// for h; a hit at or below floor is out of the window.
func (d *statusDisk) lookup(h idHash, memLow, floor tx.Version) (tx.Version, bool, error) {
	for i := len(d.runs) - 1; i >= 0; i-- {
		r := d.runs[i]
		if tx.Version(r.First) >= memLow {
			continue
		}
		if tx.Version(r.Last) <= floor {
			break
		}
		e, ok, err := r.Lookup(h.a, h.b)
		if err != nil {
			return 0, false, err
		}
		if ok && tx.Version(e.Version) > floor {
			return tx.Version(e.Version), true, nil
		}
	}
	return 0, false, nil
}

// expiredThrough returns the newest version of the runs below memory whose
// entries are all older than cutoff (the time window's start), oldest
// first; 0 if none.
func (d *statusDisk) expiredThrough(memLow tx.Version, cutoff int64) tx.Version {
	var v tx.Version
	for _, r := range d.runs {
		if tx.Version(r.Last) >= memLow || r.MaxTime >= cutoff {
			break
		}
		v = tx.Version(r.Last)
	}
	return v
}

// maintain is stage 1's turn of the disk work, once per batch: install
// finished jobs, delete runs below the floor, hand out the next write and
// merge, and let memory drop entries that are on disk.
func (s *statusIndex) maintain(durable tx.Version, now int64) {
	d := s.disk
	failures := d.failures
	for {
		select {
		case res := <-d.results:
			s.installResult(res)
			continue
		default:
		}
		break
	}
	if d.failures > failures { // back off: a failing disk is not hammered
		d.retryAt = now + int64(min(100*time.Millisecond<<min(d.failures, 10), 30*time.Second))
	}
	s.removeExpiredRuns()
	if !d.writing && (d.failures == 0 || now >= d.retryAt) && s.tail-max(d.sentPos, s.head) >= uint64(d.runEntries) {
		s.startWrite(durable, d.runEntries)
	}
	if len(d.mergeIn) == 0 && !d.mergeOff {
		s.startMerge()
	}
	for s.len() > s.entriesMax && s.head < d.diskPos {
		s.evictOldest(false)
	}
	// Runs cannot be written (a full or failing disk) and memory holds far
	// more than its cap: cut the window (raise the floor, answered 410
	// below it) rather than grow without bound. Logged once per episode.
	if d.failures > 0 && s.len() > s.entriesMax+4*d.runEntries {
		if !d.cutLogged {
			d.cutLogged = true
			d.logger.Error("status index: runs cannot be written; the status window is cut to what memory holds",
				"memory_ids", s.len(), "cap", s.entriesMax, "failures", d.failures)
		}
		for s.len() > s.entriesMax {
			s.evictOldest(true)
		}
		d.sentPos = max(d.sentPos, s.head)
		d.diskPos = max(d.diskPos, s.head)
	}
}

func (s *statusIndex) installResult(res spillResult) {
	d := s.disk
	switch res.job.kind {
	case spillWrite:
		d.writing = false
		if res.err != nil {
			d.failures++
			if d.failures == 1 || d.failures%100 == 0 {
				d.logger.Warn("status index: writing a run failed; its ids stay in memory, retried",
					"first", uint64(res.job.first), "last", uint64(res.job.last), "failures", d.failures, "err", res.err)
			}
			// Retry from the same place: nothing after it was sent.
			d.sentPos = min(d.sentPos, d.diskPos)
			d.covered = res.job.first - 1
			return
		}
		d.failures = 0
		d.cutLogged = false
		d.mergeOff = false
		d.runs = append(d.runs, res.run)
		d.diskPos = max(d.diskPos, res.job.endPos)
	case spillMerge:
		inputs := d.mergeIn
		d.mergeIn = nil
		if res.err != nil {
			d.mergeOff = true
			if !errors.Is(res.err, statusruns.ErrStopped) {
				d.logger.Warn("status index: merging runs failed; they stay as they are", "first", res.job.runs[0].First, "err", res.err)
			}
			return
		}
		i := slices.Index(d.runs, inputs[0])
		d.runs = slices.Replace(d.runs, i, i+len(inputs), res.run)
		d.jobs <- spillJob{kind: spillRemove, runs: inputs}
	}
}

func (s *statusIndex) removeExpiredRuns() {
	d := s.disk
	n := 0
	for n < len(d.runs) && tx.Version(d.runs[n].Last) <= s.floor && !slices.Contains(d.mergeIn, d.runs[n]) {
		n++
	}
	if n == 0 {
		return
	}
	gone := slices.Clone(d.runs[:n])
	d.runs = slices.Delete(d.runs, 0, n)
	d.jobs <- spillJob{kind: spillRemove, runs: gone}
}

// startWrite hands the memory entries with versions in (covered, durable]
// to the spiller as the next run, if at least min of them are there.
func (s *statusIndex) startWrite(durable tx.Version, min int) {
	d := s.disk
	from := max(d.sentPos, s.head)
	end := s.tail
	for end > from && s.at(end-1).version > durable {
		end--
	}
	if end-from < uint64(min) || durable <= max(d.covered, s.floor) {
		return
	}
	entries := make([]statusruns.Entry, 0, end-from)
	for p := from; p < end; p++ {
		e := s.at(p)
		if e.version <= s.floor {
			continue // out of the window
		}
		entries = append(entries, statusruns.Entry{A: e.hash.a, B: e.hash.b, Version: uint64(e.version), Time: e.time})
	}
	// A run starts above the floor: what lies below it is out of the window
	// (and after a cut for memory, not held), so a restart, which takes the
	// floor from the first run, does not answer for it.
	job := spillJob{kind: spillWrite, first: max(d.covered, s.floor) + 1, last: durable, entries: entries, endPos: end}
	d.covered = durable
	d.sentPos = end
	d.writing = true
	d.jobs <- job
}

// sizeClass groups runs for merging: runEntries × 8^class entries or less.
func (d *statusDisk) sizeClass(r *statusruns.Run) int {
	c, limit := 0, d.runEntries
	for r.Count > limit && c < 16 {
		c++
		limit *= mergeFanIn
	}
	return c
}

// startMerge merges the oldest mergeFanIn consecutive runs of one size
// class, if there are that many; else, past 2*mergeFanIn runs (sizes mixed
// so that no such group forms), the mergeFanIn consecutive runs with the
// fewest entries. So the number of runs stays near 2*mergeFanIn per size
// class and a lookup's filter probes stay few.
func (s *statusIndex) startMerge() {
	d := s.disk
	start := -1
	for i := 0; i+mergeFanIn <= len(d.runs) && start < 0; i++ {
		c := d.sizeClass(d.runs[i])
		j := i + 1
		for j < len(d.runs) && j-i < mergeFanIn && d.sizeClass(d.runs[j]) == c {
			j++
		}
		if j-i == mergeFanIn {
			start = i
		}
	}
	if start < 0 && len(d.runs) >= 2*mergeFanIn {
		best := -1
		for i := 0; i+mergeFanIn <= len(d.runs); i++ {
			total := 0
			for _, r := range d.runs[i : i+mergeFanIn] {
				total += r.Count
			}
			if start < 0 || total < best {
				start, best = i, total
			}
		}
	}
	if start < 0 {
		return
	}
	d.mergeIn = slices.Clone(d.runs[start : start+mergeFanIn])
	d.jobs <- spillJob{kind: spillMerge, runs: d.mergeIn}
}

// flush writes every memory entry up to durable into a run and waits for
// the spiller to finish everything; then closes the runs and the
// directory. Called by Close once the pipeline is drained (stage 1 has
// exited), so that a restart reads almost nothing from the log.
func (s *statusIndex) closeDisk(durable tx.Version) error {
	d := s.disk
	var errs []error
	d.dir.StopMerges() // a merge can wait for the next start
	for d.writing || len(d.mergeIn) > 0 {
		s.installResult(<-d.results)
	}
	s.removeExpiredRuns()
	s.startWrite(durable, 1)
	if d.writing {
		res := <-d.results
		s.installResult(res)
		if res.err != nil {
			errs = append(errs, res.err)
		}
	}
	close(d.jobs)
	<-d.stopped
	for _, r := range d.runs {
		r.Close()
	}
	d.runs = nil
	if err := d.dir.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("status index: close: %w", err)
	}
	return nil
}

// spillNow writes the memory entries up to durable as a run if there are
// runEntries of them, and waits for it (Open, reading a long log tail).
func (s *statusIndex) spillNow(durable tx.Version) error {
	d := s.disk
	if s.tail-max(d.sentPos, s.head) < uint64(d.runEntries) {
		return nil
	}
	s.startWrite(durable, d.runEntries)
	if !d.writing {
		return nil
	}
	res := <-d.results
	s.installResult(res)
	if res.err != nil {
		return res.err
	}
	for s.len() > s.entriesMax && s.head < d.diskPos {
		s.evictOldest(false)
	}
	return nil
}

// abandon stops the spiller and closes the runs and the directory without
// writing anything more (Open failed).
func (d *statusDisk) abandon() {
	close(d.jobs)
	<-d.stopped // results is buffered beyond what can be outstanding
	for _, r := range d.runs {
		r.Close()
	}
	d.runs = nil
	d.dir.Close()
}

// Feeding the index from segments read back from the log: Open's rebuild
// does this for the log's tail, and a replica that follows the log can do
// the same to keep its index warm. For each durable segment in version
// order: readSegment, readTransaction for each transaction after from,
// then readSegmentDone; expire as the window moves.

// readSegment notes the leader term of a durable segment read back from
// the log (versions after from count).
func (s *statusIndex) readSegment(h persist.SegmentHeader, from tx.Version) {
	if h.Last > from {
		s.terms.note(max(h.First, from+1), h.LeaderID)
	}
}

// readTransaction records the request id of one durable transaction read
// back from the log.
func (s *statusIndex) readTransaction(t *tx.Transaction) {
	if len(t.RequestID) > 0 {
		s.insert(hashRequestID(t.RequestID), t.Version, t.TimestampUnixNano)
	}
}

// readSegmentDone ends a segment read back from the log, durable through
// last: with a run directory, a full run is cut and written at once, so
// that memory stays bounded while a long stretch is read.
func (s *statusIndex) readSegmentDone(last tx.Version) error {
	if s.disk == nil {
		return nil
	}
	return s.spillNow(last)
}
