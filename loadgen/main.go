// Command loadgen drives a WeaselDB server with a configurable workload and
// reports throughput, latency and subscriber lag; see usage below. The
// workload code lives in loadgen/workload (pebble's bench/ycsb.go model):
// this binary only parses flags, spawns a server if asked, and prints.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weaseldb/weaseldb/loadgen/promtext"
	"github.com/weaseldb/weaseldb/loadgen/spawn"
	"github.com/weaseldb/weaseldb/loadgen/targets"
	"github.com/weaseldb/weaseldb/loadgen/workload"
)

const usage = `NAME
    loadgen - load generator and capacity check for WeaselDB

SYNOPSIS
    loadgen [--addr HOST:PORT[,HOST:PORT...] | --spawn [--weaseldb PATH] [--backend B]
            [--server-config FILE]] [workload flags] [load flags] [--json]
    loadgen --targets bench/targets.toml --scenario NAME [flags...]

DESCRIPTION
    Sends POST /v1/commit (or GET /v1/version with --op version) over raw
    HTTP/1.1 connections, one request in flight each or --pipeline K with
    HTTP pipelining, in a closed loop (the next request when an answer
    arrives) or an open loop (--rate: requests leave on a fixed schedule and
    latency counts from the scheduled time, so a server that falls behind
    shows it: no coordinated omission). Optionally runs SSE subscribers that
    measure commit-to-delivery lag, and a mixed admin load.

    Each connection reads at the newest version it has heard (every answer
    carries one), so preconditions conflict when another connection wrote a
    key since: the conflicts are real optimistic-concurrency conflicts.

    Every second a progress line goes to stderr (ok/s, conflicts/s, errors,
    p99 of that second). At the end a table goes to stdout, or with --json a
    machine-readable summary: throughput, outcome counts, latency
    p50/p90/p99/p99.9/max (HDR-style histogram, ~0.8% precision), subscriber
    lag quantiles, and the server's /metrics series whose name contains
    batch, persist or commit, before and after, with histogram summaries.

SERVER
    --addr LIST           server to drive (default 127.0.0.1:8080); a
                          comma-separated list of HOST:PORT or http://HOST:PORT
                          (a leader and its replicas): connections go to the
                          first that answers, move to the next on a
                          connection error, and to the leader a 307 names
                          (the redirected commit is counted, not resent).
                          Commits whose answer was lost (a connection broke
                          with them in flight) are never resent: after the
                          run they are resolved with /v1/status (up to 30s)
                          and reported as committed, not committed or
                          unknown
    --token TOKEN         bearer token for a server configured with one
                          (default: $WEASELDB_AUTH_TOKEN)
    --spawn               start a server for this run: free port, temporary
                          data directory, stopped with SIGTERM at the end and
                          required to exit 0
    --weaseldb PATH       server binary for --spawn (default ./bin/weaseldb)
    --backend B           disk or fakes3, for --spawn (default disk); s3: a
                          standalone "weaseldb fakes3" and a leader with
                          --replicas replicas on it (all in --addr order)
    --replicas N          replicas for --backend s3 (default 1)
    --kill-leader-after D SIGKILL the spawned leader D after the measured
                          phase starts (--backend s3) and report the commit
                          gap: the longest time without a 200
    --server-config FILE  --config FILE for the spawned server (TOML)
    --keep-data           keep the spawned server's directory and log

WORKLOAD
    --keys N              key space size (default 1000000); keys are "k" and
                          the zero-padded index, so byte order = index order
    --dist D              uniform or zipf (default uniform)
    --theta T             zipf exponent, 0 < T < 1, YCSB style (default 0.99)
    --key-bytes N         bytes per key (default 16)
    --value-bytes N       bytes per written value (default 100)
    --point-reads N       point_read preconditions per commit (default 1)
    --range-reads N       range_read preconditions per commit (default 0)
    --range-keys N        keys spanned by each range_read (default 10)
    --writes N            write operations per commit (default 1)
    --hot-fraction F      fraction 0..1 of commits that instead read and write
                          one hot key: real conflicts (default 0)
    --hot-keys N          size of the hot set (default 16)
    --request-id=BOOL     send a request_id (default true; needed for lag)
    --seed N              workload seed (default: random)

LOAD
    --connections N       connections (default 64)
    --pipeline K          requests in flight per connection (default 1); in
                          open loop, the most in flight before sending waits
    --rate R              open loop: R requests/s in total (default 0 =
                          closed loop)
    --op OP               commit (default) or version: GET /v1/version, the
                          HTTP round trip a commit cannot beat
    --compare-version     first run the same load with --op version, then
                          the commits, and report ok/s over versions/s
    --duration D          measured time (default 10s; Go durations: 500ms, 1m)
    --warmup D            load before measuring, not counted (default 2s)
    --subscribers N       SSE subscribers on /v1/subscribe (default 0)
    --sub-durable=BOOL    durable=true (default) or false streams
    --subscribe-on S      where subscribers connect: leader (default: the
                          endpoint the commits use, the first in --addr that
                          answers, or the leader a 307 names), replicas
                          (round robin over every --addr endpoint but the
                          first; with --spawn --backend s3, the replicas) or
                          all (round robin over every endpoint); a
                          subscriber whose server fails moves to the next
    --admin-rate R        GET /v1/version and /v1/status per second, in turn,
                          on their own connection (default 0)

OUTPUT
    --json                summary as JSON on stdout (table on stderr)
    --quiet               no progress lines
    --metrics-filter S    comma-separated substrings of /metrics names to
                          report (default batch,persist,commit)

TARGETS
    --targets FILE        TOML of named scenarios (bench/targets.toml)
    --scenario NAME       run that scenario: its args are used as flags (the
                          command line overrides them), then its figures are
                          checked (throughput floor, p99 ceiling, lag ceiling,
                          ok/s over version/s, drop vs a baseline, server
                          counter rates); exit status 1 names every miss
    --baseline FILE       an earlier --json output, for max_drop_vs_baseline

EXAMPLES
    # the standard run: spawn a disk server, 64 connections, 10 s
    loadgen --spawn

    # contention: zipf 0.99 with some hot read-modify-writes
    loadgen --spawn --dist zipf --hot-fraction 0.05

    # open loop at 25,000 commits/s, 16 in flight per connection at most
    loadgen --spawn --rate 25000 --pipeline 16

    # 100 durable subscribers, JSON summary
    loadgen --spawn --subscribers 100 --json > out.json

    # failover with 8 subscribers spread over 2 replicas
    loadgen --spawn --backend s3 --replicas 2 --kill-leader-after 3s \
            --subscribers 8 --subscribe-on replicas

    # check a release against its target
    loadgen --targets bench/targets.toml --scenario disk-uniform

EXIT STATUS
    0 run done (and every target met); 1 a target missed, the run failed or
    the spawned server did not exit 0; 2 bad usage.
`

type options struct {
	addr, weaseldb, backend, serverConfig string
	spawn, keepData                       bool
	replicas                              int
	killLeaderAfter                       time.Duration
	shape                                 workload.Shape
	load                                  workload.Load
	quiet, asJSON, compareVersion         bool
	metricsFilter                         string
	targetsFile, scenario, baseline       string
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.Usage = func() {}
	o.shape, o.load = workload.DefaultShape(), workload.DefaultLoad()
	s, l := &o.shape, &o.load
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "")
	fs.StringVar(&l.Token, "token", strings.TrimSpace(os.Getenv("WEASELDB_AUTH_TOKEN")), "")
	fs.BoolVar(&o.spawn, "spawn", false, "")
	fs.StringVar(&o.weaseldb, "weaseldb", "./bin/weaseldb", "")
	fs.StringVar(&o.backend, "backend", "disk", "")
	fs.StringVar(&o.serverConfig, "server-config", "", "")
	fs.BoolVar(&o.keepData, "keep-data", false, "")
	fs.IntVar(&o.replicas, "replicas", 1, "")
	fs.DurationVar(&o.killLeaderAfter, "kill-leader-after", 0, "")
	fs.Uint64Var(&s.Keys, "keys", s.Keys, "")
	fs.StringVar(&s.Distribution, "dist", s.Distribution, "")
	fs.Float64Var(&s.Theta, "theta", s.Theta, "")
	fs.IntVar(&s.KeyBytes, "key-bytes", s.KeyBytes, "")
	fs.IntVar(&s.ValueBytes, "value-bytes", s.ValueBytes, "")
	fs.IntVar(&s.PointReads, "point-reads", s.PointReads, "")
	fs.IntVar(&s.RangeReads, "range-reads", s.RangeReads, "")
	fs.IntVar(&s.RangeKeys, "range-keys", s.RangeKeys, "")
	fs.IntVar(&s.Writes, "writes", s.Writes, "")
	fs.Float64Var(&s.HotFraction, "hot-fraction", s.HotFraction, "")
	fs.IntVar(&s.HotKeys, "hot-keys", s.HotKeys, "")
	fs.BoolVar(&s.RequestID, "request-id", s.RequestID, "")
	fs.Uint64Var(&s.Seed, "seed", 0, "")
	fs.IntVar(&l.Connections, "connections", l.Connections, "")
	fs.IntVar(&l.Pipeline, "pipeline", l.Pipeline, "")
	fs.Float64Var(&l.Rate, "rate", 0, "")
	fs.StringVar(&l.Op, "op", l.Op, "")
	fs.BoolVar(&o.compareVersion, "compare-version", false, "")
	fs.DurationVar(&l.Duration, "duration", l.Duration, "")
	fs.DurationVar(&l.Warmup, "warmup", l.Warmup, "")
	fs.IntVar(&l.Subscribers, "subscribers", 0, "")
	fs.BoolVar(&l.SubDurable, "sub-durable", true, "")
	fs.StringVar(&l.SubscribeOn, "subscribe-on", l.SubscribeOn, "")
	fs.Float64Var(&l.AdminRate, "admin-rate", 0, "")
	fs.BoolVar(&o.asJSON, "json", false, "")
	fs.BoolVar(&o.quiet, "quiet", false, "")
	fs.StringVar(&o.metricsFilter, "metrics-filter", "batch,persist,commit", "")
	fs.StringVar(&o.targetsFile, "targets", "", "")
	fs.StringVar(&o.scenario, "scenario", "", "")
	fs.StringVar(&o.baseline, "baseline", "", "")
	return fs
}

// Summary is the --json output.
type Summary struct {
	Scenario     string           `json:"scenario,omitempty"`
	Date         string           `json:"date"`
	Addr         string           `json:"addr"`
	Spawned      string           `json:"spawned_backend,omitempty"`
	Run          *workload.Result `json:"run"`
	Version      *workload.Result `json:"version_baseline,omitempty"`
	VersionRatio float64          `json:"version_ratio,omitempty"`
	Server       *promtext.Report `json:"server,omitempty"`
	ServerError  string           `json:"server_error,omitempty"`
	Targets      []targets.Check  `json:"targets,omitempty"`
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := newFlagSet(&o)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "loadgen: %v (see --help)\n", err)
		return 2
	}
	var target *targets.Target
	if o.scenario != "" {
		if o.targetsFile == "" {
			o.targetsFile = "bench/targets.toml"
		}
		t, err := targets.Load(o.targetsFile, o.scenario)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 2
		}
		target = &t
		// The scenario's flags first, the command line after: it overrides.
		fs = newFlagSet(&o)
		fs.SetOutput(io.Discard)
		if err := fs.Parse(append(append([]string{}, t.Args...), args...)); err != nil {
			fmt.Fprintf(stderr, "loadgen: scenario %s args: %v\n", o.scenario, err)
			return 2
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if err := errors.Join(o.shape.Validate(), o.load.Validate()); err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 2
	}
	o.load.Progress = !o.quiet
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	sum := &Summary{Scenario: o.scenario, Date: time.Now().UTC().Format(time.RFC3339), Addr: o.addr}
	status := 0
	if o.killLeaderAfter > 0 && (!o.spawn || o.backend != "s3") {
		fmt.Fprintln(stderr, "loadgen: --kill-leader-after needs --spawn --backend s3")
		return 2
	}
	if o.spawn && o.backend == "s3" {
		cl, err := spawn.StartCluster(spawn.Options{Binary: o.weaseldb, ConfigFile: o.serverConfig, Keep: o.keepData}, o.replicas)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		sum.Addr, sum.Spawned = cl.Addrs(), o.backend
		fmt.Fprintf(stderr, "loadgen: spawned a leader and %d replica(s) on a fake S3: %s\n", o.replicas, sum.Addr)
		if o.killLeaderAfter > 0 {
			o.load.CommitGap = true
			killAt := time.AfterFunc(o.load.Warmup+o.killLeaderAfter, func() {
				fmt.Fprintf(stderr, "loadgen: SIGKILL the leader %s\n", cl.Servers[0].Addr)
				cl.KillLeader()
			})
			defer killAt.Stop()
		}
		status = drive(ctx, &o, sum, target, stdout, stderr)
		if err := cl.Stop(); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			status = 1
		}
	} else if o.spawn {
		srv, err := spawn.Start(spawn.Options{Binary: o.weaseldb, Backend: o.backend, ConfigFile: o.serverConfig, Keep: o.keepData})
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		sum.Addr, sum.Spawned = srv.Addr, o.backend
		fmt.Fprintf(stderr, "loadgen: spawned %s --persist %s on %s (log %s)\n", o.weaseldb, o.backend, srv.Addr, srv.LogPath)
		status = drive(ctx, &o, sum, target, stdout, stderr)
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			status = 1
		}
	} else {
		status = drive(ctx, &o, sum, target, stdout, stderr)
	}
	return status
}

// drive runs the load (after the version baseline if asked), scrapes
// /metrics around it, prints, and checks the targets.
func drive(ctx context.Context, o *options, sum *Summary, target *targets.Target, stdout, stderr io.Writer) int {
	var progress io.Writer
	if o.load.Progress {
		progress = stderr
	}
	if o.compareVersion && o.load.Op == "commit" {
		vl := o.load
		vl.Op, vl.Subscribers, vl.AdminRate = "version", 0, 0
		fmt.Fprintln(stderr, "loadgen: version baseline (GET /v1/version, same connections)")
		res, err := workload.Run(ctx, sum.Addr, o.shape, vl, progress)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		sum.Version = res
	}
	before, scrapeErr := scrape(sum.Addr, o.load.Token)
	res, err := workload.Run(ctx, sum.Addr, o.shape, o.load, progress)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return 1
	}
	sum.Run = res
	after, err := scrape(sum.Addr, o.load.Token)
	if err = errors.Join(scrapeErr, err); err != nil {
		sum.ServerError = err.Error()
	} else {
		r := promtext.Compare(before, after, strings.Split(o.metricsFilter, ",")...)
		sum.Server = &r
	}
	if sum.Version != nil && sum.Version.Throughput > 0 {
		sum.VersionRatio = res.Throughput / sum.Version.Throughput
	}
	status := 0
	if target != nil {
		m, err := measured(o, sum)
		if err != nil {
			fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return 1
		}
		sum.Targets = targets.Evaluate(*target, m)
		if misses := targets.Misses(sum.Targets); len(misses) > 0 {
			status = 1
		}
	}
	table := stdout
	if o.asJSON {
		table = stderr
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sum)
	}
	printTable(table, sum)
	if status != 0 {
		for _, m := range targets.Misses(sum.Targets) {
			fmt.Fprintf(stderr, "loadgen: scenario %s missed %s: got %.4g, want %s %s\n", o.scenario, m.Name, m.Got, m.Want, m.Note)
		}
	}
	return status
}

func measured(o *options, sum *Summary) (targets.Measured, error) {
	r := sum.Run
	m := targets.Measured{OKPerSec: r.Throughput, P99Ms: r.Latency.P99Ms, VersionRatio: sum.VersionRatio, MetricRates: map[string]float64{}}
	if r.Subscribers != nil && r.Subscribers.Lag.Count > 0 {
		m.HasLag, m.LagP99Ms = true, r.Subscribers.Lag.P99Ms
	}
	if sum.Server != nil {
		for name, s := range sum.Server.Series {
			m.MetricRates[name] = s.Delta / r.Seconds
		}
	}
	if o.baseline != "" {
		raw, err := os.ReadFile(o.baseline)
		if err != nil {
			return m, fmt.Errorf("baseline: %w", err)
		}
		var b Summary
		if err := json.Unmarshal(raw, &b); err != nil || b.Run == nil {
			return m, fmt.Errorf("baseline %s: not a loadgen --json output (%v)", o.baseline, err)
		}
		m.BaselineOKPerSec = b.Run.Throughput
	}
	return m, nil
}

// scrape fetches /metrics from the first endpoint of addrs that answers; a
// server without it is reported, not fatal.
func scrape(addrs, token string) (promtext.Scrape, error) {
	ends, err := workload.ParseEndpoints(addrs)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range ends.Addrs() {
		s, err := scrapeOne(addr, token)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func scrapeOne(addr, token string) (promtext.Scrape, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", addr, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape /metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != 200 {
		return nil, fmt.Errorf("scrape http://%s/metrics: status %d: %v", addr, resp.StatusCode, err)
	}
	return promtext.Parse(body)
}
