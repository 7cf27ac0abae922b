package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/engine/conflict"
	"github.com/weaseldb/weaseldb/internal/planted"
	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/memlog"
	"github.com/weaseldb/weaseldb/tx"
)

// TestSim runs seeds 0..SIM_SEEDS-1 (default: a budget fit for make test;
// fewer under -race or -short), or just SIM_SEED, and fails with the
// command that replays the first failing seed.
// TestMain silences the default logger (memlog's recovery warnings).
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

func TestSim(t *testing.T) {
	if s := os.Getenv("SIM_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SIM_SEED: %v", err)
		}
		for range repeat(t) {
			sum, err := runSeed(seed, stepsFor(t))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			t.Logf("seed %d: %s", seed, sum)
		}
		return
	}
	seeds := seedBudget(t)
	for seed := range uint64(seeds) {
		// A panic on an engine goroutine (an invariant) ends the process
		// before t.Fatalf can name the seed: this line does (go test shows
		// a package's output only when it fails, or with -v).
		fmt.Printf("sim: seed %d; replay: %s\n", seed, replayCommand(seed))
		sum, err := runSeed(seed, stepsFor(t))
		if err != nil {
			t.Fatalf("seed %d: %v\nreplay: %s", seed, err, replayCommand(seed))
		}
		if testing.Verbose() {
			t.Logf("seed %d: %s", seed, sum)
		}
	}
	t.Logf("%d seeds passed", seeds)
}

// makeTestSeeds is make test's seed budget (go test ./..., no -short).
const makeTestSeeds = 200

func seedBudget(t *testing.T) int {
	if s := os.Getenv("SIM_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SIM_SEEDS=%q: want a positive count", s)
		}
		return n
	}
	if raceEnabled || testing.Short() {
		return 40
	}
	return makeTestSeeds
}

func stepsFor(t *testing.T) int {
	if s := os.Getenv("SIM_STEPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n > 0 {
			return n
		}
		t.Fatalf("SIM_STEPS=%q: want a positive count", s)
	}
	return 400
}

func repeat(t *testing.T) int {
	if s := os.Getenv("SIM_REPEAT"); s != "" {
		n, err := strconv.Atoi(s)
		if err == nil && n > 0 {
			return n
		}
		t.Fatalf("SIM_REPEAT=%q: want a positive count", s)
	}
	return 1
}

func replayCommand(seed uint64) string {
	tags, env := "invariants", ""
	if planted.Enabled {
		tags += ",plantbugs"
		env = "WEASELDB_PLANT=" + os.Getenv("WEASELDB_PLANT") + " "
	}
	return fmt.Sprintf("%sSIM_SEED=%d go test -tags %s -count=1 -run 'TestSim$' -v ./engine/sim/", env, seed, tags)
}

// ---- the run ----

const keyCount = 16

// secondLeaders: whether runs open a second leader on the same storage
// (SIM_SECOND_LEADER=0 turns it off, to tell a fencing failure from others).
// traceAnswers (SIM_TRACE=1) adds every answer to the printed events.
var traceAnswers = os.Getenv("SIM_TRACE") == "1"

var secondLeaders = os.Getenv("SIM_SECOND_LEADER") != "0"

// record is one client transaction (one request id) and what the engine
// said about it.
type record struct {
	id     string
	client int
	commit tx.Commit // immutable after creation; copied per submission
	// committed: the version of a Committed answer (seen by the client or
	// lost on the way), 0 if none; every Committed answer must agree.
	committed tx.Version
	acked     bool // a client saw Committed
	finished  bool // the client got a final answer and moved on
}

type node struct {
	e    *engine.Engine
	log  *memlog.Log
	gen  int
	dead atomic.Bool // crashed: its later answers are lost
	// closed is set once Close returned; closeErr its error.
	closed   chan struct{}
	closeErr error
}

type answer struct {
	n         *node
	rec       *record
	outcome   engine.Outcome
	version   tx.Version
	duplicate bool
	status    *engine.StatusAnswer
}

type client struct {
	busy  bool
	retry *record // resubmit this (same request id) when next idle
	next  int
}

type run struct {
	seed    uint64
	rng     *rand.Rand // the driver's choices
	env     *simEnv
	cfg     engine.Config
	store   *memlog.Store
	cur     *node
	closing []*node
	gens    int

	faultMu  sync.Mutex
	faultRng *rand.Rand // guarded by faultMu
	faultsOn atomic.Bool
	pErr     float64
	pLat     float64

	mu      sync.Mutex
	answers []answer // guarded by mu

	recs      []*record
	outcomes  [16]int // answers by outcome, for the summary
	clients   []client
	lastKnown tx.Version
	pLose     float64
	events    []string

	sub struct {
		after tx.Version
		seen  map[tx.Version]string
	}
}

// runSeed runs one simulation and returns a one-line summary of it.
func runSeed(seed uint64, steps int) (summary string, err error) {
	r := &run{seed: seed, rng: rand.New(rand.NewPCG(seed, 1)), env: newSimEnv(seed)}
	r.faultRng = rand.New(rand.NewPCG(seed, 2))
	r.sub.seen = map[tx.Version]string{}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\nevents: %s", p, strings.Join(r.events, "; "))
		}
		for _, n := range append(r.closing, r.cur) {
			if n != nil {
				n.dead.Store(true)
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_ = n.e.Close(ctx)
			}
		}
	}()
	rng := r.rng
	r.cfg = engine.Config{
		Env:                    r.env.env(),
		Logger:                 slog.New(slog.NewTextHandler(io.Discard, nil)),
		BatchInterval:          time.Duration(1+rng.IntN(4)) * time.Millisecond,
		BatchMaxTransactions:   1 + rng.IntN(12),
		MaxInFlight:            1 + rng.IntN(4),
		ConflictWindow:         time.Duration(1+rng.IntN(4)) * time.Millisecond,
		ConflictWindowVersions: uint64(8 + rng.IntN(32)),
		TailBytes:              1024 + rng.IntN(16<<10),
		RetryBackoffMin:        time.Millisecond,
		RetryBackoffMax:        time.Duration(2+rng.IntN(20)) * time.Millisecond,
		TruncateInterval:       time.Duration(10+rng.IntN(100)) * time.Millisecond,
		RingSlots:              64,
	}
	r.pErr = []float64{0, 0.02, 0.1}[rng.IntN(3)]
	r.pLat = []float64{0, 0.3, 0.8}[rng.IntN(3)]
	r.pLose = []float64{0, 0.05, 0.2}[rng.IntN(3)]
	r.clients = make([]client, 2+rng.IntN(10))
	r.events = append(r.events, fmt.Sprintf("config: batch %v max %d inflight %d window %v/%d tail %d; faults err %.2f latency %.2f lose %.2f; %d clients",
		r.cfg.BatchInterval, r.cfg.BatchMaxTransactions, r.cfg.MaxInFlight, r.cfg.ConflictWindow, r.cfg.ConflictWindowVersions,
		r.cfg.TailBytes, r.pErr, r.pLat, r.pLose, len(r.clients)))
	r.store = memlog.NewStore()
	if err := r.open(); err != nil {
		return "", err
	}
	r.faultsOn.Store(true)
	for step := range steps {
		if err := r.step(step, true); err != nil {
			return "", fmt.Errorf("step %d: %w\nevents: %s", step, err, strings.Join(r.events, "; "))
		}
	}
	if err := r.drain(); err != nil {
		return "", fmt.Errorf("drain: %w\nevents: %s", err, strings.Join(r.events, "; "))
	}
	if err := r.check(); err != nil {
		return "", fmt.Errorf("%w\nevents: %s", err, strings.Join(r.events, "; "))
	}
	return r.summary(), nil
}

func (r *run) summary() string {
	var committed, acked, finished int
	for _, rec := range r.recs {
		if rec.committed != 0 {
			committed++
		}
		if rec.acked {
			acked++
		}
		if rec.finished {
			finished++
		}
	}
	var outcomes []string
	for o, n := range r.outcomes {
		if n > 0 {
			outcomes = append(outcomes, fmt.Sprintf("%v %d", engine.Outcome(o), n))
		}
	}
	return fmt.Sprintf("%d transactions, %d committed (%d acknowledged), %d answered finally (%s), %d engines, log at %d; %s",
		len(r.recs), committed, acked, finished, strings.Join(outcomes, ", "), r.gens, r.sub.after, strings.Join(r.events, "; "))
}

// open opens an engine on a new Log of r.store (faults start after the
// claim: an Open that fails its claim is a separate, tested path).
func (r *run) open() error {
	r.gens++
	n := &node{gen: r.gens, closed: make(chan struct{})}
	var e *engine.Engine
	var err error
	// A claim racing the old leader's next segment may lose (ErrFenced):
	// recover again and claim after it, as a server's retry loop does.
	for attempt := 0; ; attempt++ {
		n.log = r.store.Open()
		e, err = engine.Open(context.Background(), r.cfg, n.log)
		if err == nil {
			break
		}
		if !errors.Is(err, persist.ErrFenced) || attempt == 100 {
			return fmt.Errorf("open generation %d (attempt %d): %w", n.gen, attempt+1, err)
		}
		r.events = append(r.events, fmt.Sprintf("gen %d claim fenced, retrying", n.gen))
		r.env.advance(time.Millisecond)
		runtime.Gosched()
	}
	n.e = e
	n.log.SetAppendHook(func(ctx context.Context, first tx.Version) error { return r.appendFault(ctx, n) })
	r.cur = n
	return nil
}

var errInjected = errors.New("sim: injected append error")

func (r *run) appendFault(ctx context.Context, n *node) error {
	if n.dead.Load() {
		return errors.New("sim: crashed")
	}
	if !r.faultsOn.Load() {
		return nil
	}
	r.faultMu.Lock()
	x := r.faultRng.Float64()
	lat := time.Duration(1+r.faultRng.IntN(20)) * time.Millisecond
	r.faultMu.Unlock()
	if x < r.pErr {
		return errInjected
	}
	if x < r.pErr+r.pLat {
		if err := r.env.sleep(ctx, lat); err != nil {
			return err
		}
		if n.dead.Load() {
			return errors.New("sim: crashed")
		}
	}
	return nil
}

func (r *run) step(step int, submit bool) error {
	rng := r.rng
	if submit {
		switch x := rng.Float64(); {
		case x < 0.004:
			if err := r.crash(); err != nil {
				return err
			}
		case x < 0.007:
			if err := r.restart(); err != nil {
				return err
			}
		case x < 0.010 && secondLeaders:
			if err := r.secondLeader(); err != nil {
				return err
			}
		}
	}
	select {
	case <-r.cur.e.Deposed():
		// Fenced by a leader that lost its own claim race (an orphan of
		// the older leader took its name): a supervisor starts a new one.
		if err := r.replaceDeposed(); err != nil {
			return err
		}
	default:
	}
	for i := range r.clients {
		c := &r.clients[i]
		if c.busy {
			continue
		}
		if c.retry != nil {
			if rng.IntN(3) == 0 {
				rec := c.retry
				c.retry = nil
				r.submit(c, rec)
			}
			continue
		}
		if submit && rng.IntN(3) == 0 {
			r.submit(c, r.newRecord(i))
		}
	}
	r.env.advance(time.Duration(rng.IntN(1500)) * time.Microsecond)
	for range 4 {
		runtime.Gosched()
	}
	r.readSubscriber()
	return r.processAnswers(submit)
}

func (r *run) key(i int) []byte { return fmt.Appendf(nil, "k%02d", i) }

func (r *run) newRecord(ci int) *record {
	rng := r.rng
	c := &r.clients[ci]
	c.next++
	rec := &record{id: fmt.Sprintf("sim%d-c%d-%d", r.seed, ci, c.next), client: ci}
	cm := &rec.commit
	cm.RequestID = []byte(rec.id)
	rv := r.lastKnown
	lag := tx.Version(rng.IntN(8))
	if rng.IntN(4) == 0 {
		lag = tx.Version(rng.IntN(250)) // a stale reader, maybe past the window
	}
	if lag < rv {
		rv -= lag
	}
	// Some read right at the edge of the conflict window (its versions
	// part, which the short time part leaves in charge): where a window
	// that forgets too much shows.
	w := tx.Version(r.cfg.ConflictWindowVersions)
	if last := r.cur.e.ResolvedVersion(); rng.IntN(4) == 0 && last > w {
		rv = min(r.lastKnown, last-w+tx.Version(rng.IntN(8)))
	}
	cm.ReadVersion, cm.HasReadVersion = rv, true
	for range rng.IntN(4) {
		a, b := rng.IntN(keyCount), rng.IntN(keyCount)
		p := tx.Precondition{Type: tx.PointRead, Key: r.key(a)}
		if a != b && rng.IntN(3) == 0 {
			p = tx.Precondition{Type: tx.RangeRead, Key: r.key(min(a, b)), End: r.key(max(a, b))}
		}
		if rng.IntN(4) == 0 && rv > 0 {
			p.Version, p.HasVersion = rv-tx.Version(rng.IntN(int(min(rv, 4)))), true
		}
		cm.Preconditions = append(cm.Preconditions, p)
	}
	for range 1 + rng.IntN(3) {
		a, b := rng.IntN(keyCount), rng.IntN(keyCount)
		switch x := rng.IntN(10); {
		case x < 7:
			cm.Operations = append(cm.Operations, tx.Operation{Type: tx.OpWrite, Key: r.key(a), Value: fmt.Appendf(nil, "%s", rec.id)})
		case x < 9 || a == b:
			cm.Operations = append(cm.Operations, tx.Operation{Type: tx.OpDelete, Key: r.key(a)})
		default:
			cm.Operations = append(cm.Operations, tx.Operation{Type: tx.OpRangeDelete, Key: r.key(min(a, b)), End: r.key(max(a, b))})
		}
	}
	r.recs = append(r.recs, rec)
	return rec
}

func cloneCommit(c *tx.Commit) tx.Commit {
	out := tx.Commit{RequestID: slices.Clone(c.RequestID), ReadVersion: c.ReadVersion, HasReadVersion: c.HasReadVersion}
	for _, p := range c.Preconditions {
		p.Key, p.End = slices.Clone(p.Key), slices.Clone(p.End)
		out.Preconditions = append(out.Preconditions, p)
	}
	for _, o := range c.Operations {
		o.Key, o.End, o.Value = slices.Clone(o.Key), slices.Clone(o.End), slices.Clone(o.Value)
		out.Operations = append(out.Operations, o)
	}
	return out
}

func (r *run) submit(c *client, rec *record) {
	c.busy = true
	n := r.cur
	req := &engine.Request{Commit: cloneCommit(&rec.commit)}
	n.e.Submit(req, func(q *engine.Request) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.answers = append(r.answers, answer{n: n, rec: rec, outcome: q.Outcome, version: q.Version, duplicate: q.Duplicate})
	})
}

// processAnswers applies the answers that arrived, in arrival order.
func (r *run) processAnswers(faults bool) error {
	r.mu.Lock()
	got := r.answers
	r.answers = nil
	r.mu.Unlock()
	for _, a := range got {
		rec := a.rec
		if traceAnswers {
			r.events = append(r.events, fmt.Sprintf("gen %d (dead %v) answers %s: %v at %d dup %v", a.n.gen, a.n.dead.Load(), rec.id, a.outcome, a.version, a.duplicate))
		}
		c := &r.clients[rec.client]
		c.busy = false
		if a.n.dead.Load() {
			c.retry = rec // the process died: the client never heard
			continue
		}
		r.outcomes[a.outcome%16]++
		switch a.outcome {
		case engine.Committed:
			if rec.committed != 0 && rec.committed != a.version {
				return fmt.Errorf("request %s committed at %d and at %d (duplicate %v)", rec.id, rec.committed, a.version, a.duplicate)
			}
			rec.committed = a.version
			if faults && r.rng.Float64() < r.pLose {
				c.retry = rec // the answer was lost on the way: retry the same id
				continue
			}
			rec.acked, rec.finished = true, true
			r.lastKnown = max(r.lastKnown, a.version)
		case engine.Conflict, engine.TooOld:
			rec.finished = true
			r.lastKnown = max(r.lastKnown, a.version)
		case engine.Unavailable, engine.Deposed:
			c.retry = rec
		default:
			return fmt.Errorf("request %s: unexpected outcome %v at %d", rec.id, a.outcome, a.version)
		}
	}
	return nil
}

// crash: the machine dies. Only completed appends survive (CrashClone);
// answers not yet delivered are lost.
func (r *run) crash() error {
	old := r.cur
	r.mu.Lock()
	old.dead.Store(true) // from here on its answers are lost
	r.mu.Unlock()
	r.store = r.store.CrashClone()
	r.events = append(r.events, fmt.Sprintf("crash gen %d at durable %d", old.gen, old.e.Version()))
	go func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		old.closeErr = old.e.Close(ctx)
		close(old.closed)
	}()
	r.closing = append(r.closing, old)
	return r.open()
}

// restart: a clean shutdown (everything in flight is answered) and a new
// process on the same storage.
func (r *run) restart() error {
	old := r.cur
	r.events = append(r.events, fmt.Sprintf("restart gen %d at durable %d", old.gen, old.e.Version()))
	go func() {
		old.closeErr = old.e.Close(context.Background())
		close(old.closed)
	}()
	if err := r.waitClosed(old); err != nil {
		return err
	}
	return r.open()
}

// secondLeader: another server opens the same storage and claims the log;
// the old leader must be fenced (Deposed) and acknowledge nothing after.
func (r *run) secondLeader() error {
	old := r.cur
	r.events = append(r.events, fmt.Sprintf("second leader over gen %d at durable %d", old.gen, old.e.Version()))
	if err := r.open(); err != nil {
		return err
	}
	go func() {
		old.closeErr = old.e.Close(context.Background())
		close(old.closed)
	}()
	r.closing = append(r.closing, old)
	return nil
}

// replaceDeposed opens a new leader after the current one was deposed.
func (r *run) replaceDeposed() error {
	old := r.cur
	r.events = append(r.events, fmt.Sprintf("gen %d deposed at durable %d; new leader", old.gen, old.e.Version()))
	if err := r.open(); err != nil {
		return err
	}
	go func() {
		old.closeErr = old.e.Close(context.Background())
		close(old.closed)
	}()
	r.closing = append(r.closing, old)
	return nil
}

// waitClosed advances time until n's Close returns.
func (r *run) waitClosed(n *node) error {
	deadline := time.Now().Add(stuckAfter)
	for {
		select {
		case <-n.closed:
			if n.closeErr != nil && !errors.Is(n.closeErr, engine.ErrDeposed) {
				return fmt.Errorf("close gen %d: %w", n.gen, n.closeErr)
			}
			return r.processAnswers(false)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("close of gen %d did not return within %v of wall time", n.gen, stuckAfter)
		}
		r.env.advance(time.Millisecond)
		time.Sleep(50 * time.Microsecond)
		if err := r.processAnswers(false); err != nil {
			return err
		}
	}
}

// stuckAfter bounds, in wall time, how long the driver waits for the
// engine to make progress. Generous: it only turns a hang into a failure
// with a seed, and is never a timing assertion.
const stuckAfter = 2 * time.Minute

// drain stops new transactions and faults and runs until every client got
// a final answer and every old engine closed.
func (r *run) drain() error {
	r.faultsOn.Store(false)
	deadline := time.Now().Add(stuckAfter)
	for step := 0; ; step++ {
		idle := true
		for i := range r.clients {
			if r.clients[i].busy || r.clients[i].retry != nil {
				idle = false
			}
		}
		closing := r.closing[:0]
		for _, n := range r.closing {
			select {
			case <-n.closed:
			default:
				closing = append(closing, n)
			}
		}
		r.closing = closing
		if idle && len(closing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not quiet after %v of wall time: clients %+v, %d engines closing", stuckAfter, r.clients, len(closing))
		}
		if err := r.step(step, false); err != nil {
			return err
		}
		time.Sleep(20 * time.Microsecond)
	}
	// Let the subscriber catch up with the durable version.
	for r.sub.after < r.cur.e.Version() {
		if time.Now().After(deadline) {
			return fmt.Errorf("subscriber stuck at %d, durable %d", r.sub.after, r.cur.e.Version())
		}
		r.readSubscriber()
	}
	return nil
}

// readSubscriber reads what became durable since the subscriber's
// position, from the tail or (behind it) the log, checking the stream is
// gap-free.
func (r *run) readSubscriber() {
	n := r.cur
	segs, _, err := n.e.Tail().Read(r.sub.after, true, nil)
	if errors.Is(err, engine.ErrBehindTail) {
		segs, err = n.log.ReadFrom(context.Background(), r.sub.after, 64<<10)
	}
	if err != nil {
		return // deposed or closed: read the next engine
	}
	for _, seg := range segs {
		_, txns, err := persist.DecodeSegment(seg, nil)
		if err != nil {
			panic(fmt.Sprintf("subscriber: decode segment after %d: %v", r.sub.after, err))
		}
		for _, t := range txns {
			if t.Version <= r.sub.after {
				continue
			}
			if t.Version != r.sub.after+1 {
				panic(fmt.Sprintf("subscriber: gap: version %d after %d", t.Version, r.sub.after))
			}
			r.sub.seen[t.Version] = string(t.RequestID)
			r.sub.after = t.Version
		}
	}
}

// ---- the checks after a run ----

func (r *run) readLog() ([]tx.Transaction, error) {
	var out []tx.Transaction
	var after tx.Version
	for {
		segs, err := r.cur.log.ReadFrom(context.Background(), after, 1<<20)
		if err != nil {
			return nil, fmt.Errorf("read log after %d: %w", after, err)
		}
		if len(segs) == 0 {
			return out, nil
		}
		for _, seg := range segs {
			h, txns, err := persist.DecodeSegment(seg, nil)
			if err != nil {
				return nil, fmt.Errorf("decode segment after %d: %w", after, err)
			}
			for _, t := range txns {
				if t.Version > after {
					out = append(out, t)
				}
			}
			after = max(after, h.Last)
		}
	}
}

func (r *run) check() error {
	txns, err := r.readLog()
	if err != nil {
		return err
	}
	// The log: contiguous versions; each of our request ids at most once.
	where := map[string]tx.Version{}
	byVersion := map[tx.Version]tx.Transaction{}
	for i, t := range txns {
		if i > 0 && t.Version != txns[i-1].Version+1 {
			return fmt.Errorf("log: version %d follows %d", t.Version, txns[i-1].Version)
		}
		byVersion[t.Version] = t
		id := string(t.RequestID)
		if !strings.HasPrefix(id, "sim") {
			continue // a leader's claim
		}
		if v, ok := where[id]; ok {
			return fmt.Errorf("log: request id %s committed twice, at %d and %d", id, v, t.Version)
		}
		where[id] = t.Version
	}
	byID := map[string]*record{}
	for _, rec := range r.recs {
		byID[rec.id] = rec
		v, inLog := where[rec.id]
		if rec.committed != 0 && (!inLog || v != rec.committed) {
			return fmt.Errorf("request %s answered committed at %d (acknowledged %v) but the log has it at %d (present %v)", rec.id, rec.committed, rec.acked, v, inLog)
		}
	}
	// Serializable in version order: every logged transaction's
	// preconditions hold against the brute-force model of all earlier ones.
	model := conflict.NewModel(0)
	var reads []conflict.Read
	var results []conflict.Result
	var writes []conflict.Write
	for _, t := range txns {
		rec := byID[string(t.RequestID)]
		if rec != nil {
			if !sameOps(rec.commit.Operations, t.Operations) {
				return fmt.Errorf("version %d: logged operations differ from request %s's", t.Version, rec.id)
			}
			reads = reads[:0]
			for _, p := range rec.commit.Preconditions {
				v := rec.commit.ReadVersion
				if p.HasVersion {
					v = p.Version
				}
				reads = append(reads, conflict.Read{Begin: p.Key, End: p.End, Version: v})
			}
			results = model.Check(reads, results[:0])
			for i, res := range results {
				if res != conflict.Commit {
					p := rec.commit.Preconditions[i]
					return fmt.Errorf("not serializable: version %d (request %s) precondition %d (%v [%s, %s) at %d): model says %v",
						t.Version, rec.id, i, p.Type, p.Key, p.End, reads[i].Version, res)
				}
			}
		}
		writes = writes[:0]
		for _, op := range t.Operations {
			if op.Type == tx.OpRangeDelete {
				writes = append(writes, conflict.Write{Begin: op.Key, End: op.End})
			} else {
				writes = append(writes, conflict.Write{Begin: op.Key})
			}
		}
		model.AddWrites(writes, t.Version)
	}
	// Every subscriber stream: what it saw is what the log holds.
	for v, id := range r.sub.seen {
		t, ok := byVersion[v]
		if !ok || string(t.RequestID) != id {
			return fmt.Errorf("subscriber saw %s at %d; the log has %q (present %v)", id, v, t.RequestID, ok)
		}
	}
	if len(txns) > 0 && r.sub.after != txns[len(txns)-1].Version {
		return fmt.Errorf("subscriber ended at %d, log at %d", r.sub.after, txns[len(txns)-1].Version)
	}
	return r.checkStatus(where)
}

func sameOps(a, b []tx.Operation) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].End, b[i].End) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

// checkStatus asks the final engine about every request id: the answer
// must match the log.
func (r *run) checkStatus(where map[string]tx.Version) error {
	type q struct {
		rec *record
		ans engine.StatusAnswer
	}
	ch := make(chan q, len(r.recs))
	for _, rec := range r.recs {
		req := &engine.Request{}
		rec := rec
		r.cur.e.SubmitStatus(req, engine.StatusQuery{RequestID: []byte(rec.id)}, func(got *engine.Request) {
			ch <- q{rec, got.StatusAnswer}
		})
	}
	deadline := time.Now().Add(stuckAfter)
	for range r.recs {
		var a q
		select {
		case a = <-ch:
		case <-time.After(time.Until(deadline)):
			return fmt.Errorf("status queries unanswered after %v", stuckAfter)
		}
		v, inLog := where[a.rec.id]
		switch {
		case inLog && (a.ans.State != engine.StatusCommitted || a.ans.Version != v):
			return fmt.Errorf("status of %s: state %d version %d; the log has it at %d", a.rec.id, a.ans.State, a.ans.Version, v)
		case !inLog && a.ans.State != engine.StatusNotCommitted:
			return fmt.Errorf("status of %s: state %d version %d; not in the log", a.rec.id, a.ans.State, a.ans.Version)
		}
	}
	return nil
}
