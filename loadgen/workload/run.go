package workload

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weaseldb/weaseldb/loadgen/hist"
)

// Result is the machine-readable summary of one run (--json).
type Result struct {
	Op          string     `json:"op"`   // commit or version
	Mode        string     `json:"mode"` // closed or open
	Connections int        `json:"connections"`
	Pipeline    int        `json:"pipeline"`
	RatePerSec  float64    `json:"rate_per_sec,omitempty"` // open loop target
	Shape       Shape      `json:"shape"`
	Seconds     float64    `json:"seconds"`      // measured (after warm-up)
	Throughput  float64    `json:"ok_per_sec"`   // 200 answers per second
	Attempts    float64    `json:"sent_per_sec"` // every answered request per second
	Outcomes    Outcomes   `json:"outcomes"`
	Latency     Quantiles  `json:"latency"`
	Subscribers *SubResult `json:"subscribers,omitempty"`
	// CommitGapMs is the longest time in the measured phase with no commit
	// answered 200 (Load.CommitGap), sampled every millisecond.
	CommitGapMs float64    `json:"commit_gap_ms,omitempty"`
	Admin       *AdminLoad `json:"admin,omitempty"`
	// Lost: commits whose answer was lost (the connection broke with them
	// in flight), resolved with /v1/status after the run; nil when none.
	Lost *LostAnswers `json:"lost_answers,omitempty"`
}

// SubResult summarises the subscribers.
type SubResult struct {
	Count        int     `json:"count"`
	Durable      bool    `json:"durable"`
	Events       uint64  `json:"events"`         // transaction events, all subscribers
	EventsPerSec float64 `json:"events_per_sec"` // all subscribers
	Gaps         uint64  `json:"gaps"`           // prev_version did not chain: a server bug
	Resubscribes uint64  `json:"resubscribes"`
	// EventsByServer: transaction events per server (host:port) the
	// streams were read from, the whole run including warm-up.
	EventsByServer map[string]uint64 `json:"events_by_server,omitempty"`
	Lag            Quantiles         `json:"lag"` // send of the commit to arrival of its event
}

// AdminLoad summarises the mixed admin requests.
type AdminLoad struct {
	RatePerSec float64   `json:"rate_per_sec"`
	Outcomes   Outcomes  `json:"outcomes"`
	Latency    Quantiles `json:"latency"`
}

// lostResolveTimeout bounds the status queries about lost answers after a
// run: long enough for a takeover to end.
const lostResolveTimeout = 30 * time.Second

// Run drives the server at addr (host:port, or a comma-separated list of a
// leader and its replicas: see Endpoints) with shape and load and returns
// the measured summary. Progress lines go to progress once a second (nil: none).
func Run(ctx context.Context, addr string, shape Shape, load Load, progress io.Writer) (*Result, error) {
	if err := load.Validate(); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var seed [8]byte
	crand.Read(seed[:])
	runID := binary.LittleEndian.Uint64(seed[:])
	if shape.Seed == 0 {
		shape.Seed = runID
	}
	src, err := NewSource(shape, runID)
	if err != nil {
		return nil, err
	}
	ends, err := ParseEndpoints(addr)
	if err != nil {
		return nil, err
	}
	if err := probe(ctx, ends, load.Token); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup

	var subs []*recorder
	var subscribers []*subscriber
	var gaps, resubs atomic.Uint64
	if load.Subscribers > 0 {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: load.Subscribers, DisableCompression: true}}
		for i := 0; i < load.Subscribers; i++ {
			subEnds, err := ends.Spread(load.SubscribeOn, i)
			if err != nil {
				return nil, err
			}
			s := &subscriber{ends: subEnds, token: load.Token, durable: load.SubDurable, runID: src.RunID(), rec: newRecorder(),
				gaps: &gaps, resubs: &resubs, client: hc, byServer: map[string]uint64{}}
			subs = append(subs, s.rec)
			subscribers = append(subscribers, s)
			wg.Go(func() { s.run(ctx) })
		}
	}
	var admin *recorder
	if load.AdminRate > 0 {
		a := &adminWorker{ends: ends, token: load.Token, rate: load.AdminRate, runID: src.RunID(), rec: newRecorder()}
		admin = a.rec
		wg.Go(func() { a.run(ctx) })
	}
	var schedule *openSchedule
	if load.Rate > 0 {
		schedule = &openSchedule{start: nowNanos() + int64(50*time.Millisecond), interval: 1e9 / load.Rate, conns: load.Connections}
	}
	var gap *gapMeter
	if load.CommitGap {
		gap = &gapMeter{}
	}
	lost := &lostSet{}
	workers := make([]*recorder, load.Connections)
	for i := range workers {
		w := &connWorker{ends: ends, lost: lost, load: &load, gen: src.Generator(uint32(i)), rec: newRecorder(), gap: gap}
		workers[i] = w.rec
		wg.Go(func() { w.run(ctx, schedule) })
	}

	c := newCollector(workers, subs, admin)
	c.phase(ctx, load.Warmup, progress, "warmup")
	c.reset()
	measureStart := time.Now()
	gapDone := make(chan struct{})
	if gap != nil {
		go gap.sample(ctx, gapDone)
	} else {
		close(gapDone)
	}
	c.phase(ctx, load.Duration, progress, "run")
	seconds := time.Since(measureStart).Seconds()
	cancel()
	wg.Wait()
	<-gapDone
	if err := context.Cause(ctx); err != nil && err != context.Canceled {
		return nil, err
	}

	res := &Result{
		Op: load.Op, Mode: "closed", Connections: load.Connections, Pipeline: load.Pipeline,
		Shape: shape, Seconds: seconds, Outcomes: c.total.out, Latency: quantilesOf(c.total.lat),
	}
	if load.Rate > 0 {
		res.Mode, res.RatePerSec = "open", load.Rate
	}
	res.Throughput = float64(c.total.out.OK) / seconds
	if gap != nil {
		res.CommitGapMs = float64(gap.max) / 1e6
	}
	res.Attempts = float64(c.total.lat.Count()) / seconds
	if load.Subscribers > 0 {
		res.Subscribers = &SubResult{
			Count: load.Subscribers, Durable: load.SubDurable, Events: c.subTotal.n,
			EventsPerSec: float64(c.subTotal.n) / seconds, Gaps: gaps.Load(), Resubscribes: resubs.Load(),
			Lag: quantilesOf(c.subTotal.lat), EventsByServer: map[string]uint64{},
		}
		for _, s := range subscribers { // every subscriber goroutine has ended
			for addr, n := range s.byServer {
				res.Subscribers.EventsByServer[addr] += n
			}
		}
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), lostResolveTimeout)
	res.Lost = lost.resolve(rctx, ends, load.Token)
	rcancel()
	if admin != nil {
		res.Admin = &AdminLoad{RatePerSec: load.AdminRate, Outcomes: c.adminTotal.out, Latency: quantilesOf(c.adminTotal.lat)}
	}
	return res, nil
}

// probe checks that a server answers GET /v1/version before the load
// starts, trying each endpoint in turn (a dead one moves the run to the
// next).
func probe(ctx context.Context, ends *Endpoints, token string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	for range ends.Addrs() {
		addr := ends.Addr()
		err := probeOne(ctx, addr, token)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		ends.Failed(addr)
	}
	return errors.Join(errs...)
}

func probeOne(ctx context.Context, addr, token string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/v1/version", nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", addr, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe http://%s/v1/version: %w", addr, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("probe http://%s/v1/version: status %d", addr, resp.StatusCode)
	}
	return nil
}

// tally is a histogram and counters being summed.
type tally struct {
	lat *hist.Histogram
	out Outcomes
	n   uint64
}

func newTally() tally { return tally{lat: hist.New()} }

func (t *tally) reset() { t.lat.Reset(); t.out = Outcomes{}; t.n = 0 }

func (t *tally) add(o *tally) { t.lat.Merge(o.lat); t.out.add(o.out); t.n += o.n }

// collector drains every recorder once a second into the interval tallies,
// prints the progress line, and adds the intervals to the run totals.
type collector struct {
	workers, subs                     []*recorder
	admin                             *recorder
	interval, subInterval, adminIntvl tally
	total, subTotal, adminTotal       tally
	started                           time.Time
}

func newCollector(workers, subs []*recorder, admin *recorder) *collector {
	return &collector{
		workers: workers, subs: subs, admin: admin,
		interval: newTally(), subInterval: newTally(), adminIntvl: newTally(),
		total: newTally(), subTotal: newTally(), adminTotal: newTally(),
		started: time.Now(),
	}
}

func (c *collector) drain() {
	for _, r := range c.workers {
		r.drainInto(c.interval.lat, &c.interval.out, &c.interval.n)
	}
	for _, r := range c.subs {
		r.drainInto(c.subInterval.lat, &c.subInterval.out, &c.subInterval.n)
	}
	if c.admin != nil {
		c.admin.drainInto(c.adminIntvl.lat, &c.adminIntvl.out, &c.adminIntvl.n)
	}
	c.total.add(&c.interval)
	c.subTotal.add(&c.subInterval)
	c.adminTotal.add(&c.adminIntvl)
}

// reset forgets everything recorded so far (the warm-up).
func (c *collector) reset() {
	c.drain()
	c.total.reset()
	c.subTotal.reset()
	c.adminTotal.reset()
}

// phase runs for d, draining once a second, and drains at its end.
func (c *collector) phase(ctx context.Context, d time.Duration, progress io.Writer, name string) {
	if d <= 0 {
		return
	}
	end := time.Now().Add(d)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		remaining := time.Until(end)
		if remaining <= 0 {
			break
		}
		timer := time.NewTimer(remaining)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-tick.C:
			timer.Stop()
		}
		now := time.Now()
		c.interval.reset()
		c.subInterval.reset()
		c.adminIntvl.reset()
		c.drain()
		if progress != nil {
			c.printProgress(progress, name, now.Sub(last))
		}
		last = now
	}
}

func (c *collector) printProgress(w io.Writer, phase string, elapsed time.Duration) {
	s := elapsed.Seconds()
	if s <= 0 {
		return
	}
	iv := &c.interval
	line := fmt.Sprintf("%6.1fs %-6s ok/s %8.0f  conflicts/s %7.0f  errors %6d  p99 %7.2fms",
		time.Since(c.started).Seconds(), phase, float64(iv.out.OK)/s, float64(iv.out.Conflict+iv.out.TooOld)/s,
		c.total.out.Errors(), float64(iv.lat.Quantile(0.99))/1e6)
	if len(c.subs) > 0 {
		line += fmt.Sprintf("  events/s %8.0f  lag p99 %7.2fms", float64(c.subInterval.n)/s, float64(c.subInterval.lat.Quantile(0.99))/1e6)
	}
	fmt.Fprintln(w, line)
}

// gapMeter finds the longest stretch without a 200: workers store the time
// of each 200; a sampler compares it with the clock every millisecond.
type gapMeter struct {
	lastOK atomic.Int64
	max    int64 // owned by sample until it returns
}

func (g *gapMeter) sample(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	g.lastOK.Store(nowNanos()) // the gap counts from the measured start
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if d := nowNanos() - g.lastOK.Load(); d > g.max {
			g.max = d
		}
	}
}
