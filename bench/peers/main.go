// Command benchpeers measures WeaselDB against two durable peers, etcd and
// Redis, with the same optimistic transaction, the same connection counts
// and the same key streams, back to back on the same disk, and prints
// commits/s, p50/p99 and WeaselDB's ratios to each peer. It is the
// headline table of the README (issue 8, "peer comparison").
//
// It is its own Go module (weaseldb-bench-peers) so that the server's
// module never depends on etcd.
//
// The transaction: "key R is unchanged since version V, then write 100 bytes
// to key W", R and W drawn independently from the key distribution, V the
// newest version this connection has heard (so conflicts are real):
//
//   - WeaselDB: POST /v1/commit with one point_read and one write, sent by
//     bin/loadgen (--point-reads 1 --writes 1 --pipeline 1) against
//     bin/weaseldb --persist disk, which fsyncs before it answers.
//   - etcd (embedded, go.etcd.io/etcd/server/v3/embed, in this process):
//     Txn(If(ModRevision(R) < V+1)).Then(Put(W)) through clientv3, one
//     client (gRPC connection) per worker. etcd fsyncs its WAL before it
//     answers. Written as "<" V+1 rather than "==" a remembered revision so
//     that the precondition is WeaselDB's point_read exactly: the worker
//     has not read R itself, only heard of version V.
//   - Redis (Debian's redis-server, a child process): one EVALSHA of a Lua
//     compare-and-set on a per-key version plus a global version counter,
//     appendonly yes + appendfsync always (fsync before answering), no RDB.
//
// Every measured run takes flock(--lock) so that it never overlaps another
// benchmark on a shared machine; the lock is released between runs.
//
// Usage: see -h, or bench/peers/run.sh, which builds what it needs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	peers    []string
	conns    []int
	dists    []string
	w        workload
	weaseldb string
	loadgen  string
	redis    string
	dir      string
	keepDir  bool
	lockPath string
	jsonPath string
	merge    []string
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("benchpeers", flag.ContinueOnError)
	o := &options{}
	peers := fs.String("peers", "weaseldb,etcd,redis", "peers to run, in order")
	conns := fs.String("connections", "1,16,64", "connection counts")
	dists := fs.String("dists", "uniform,zipf", "key distributions (uniform, zipf)")
	fs.Float64Var(&o.w.theta, "theta", 0.99, "zipf exponent")
	fs.Uint64Var(&o.w.keys, "keys", 1_000_000, "key space size")
	fs.IntVar(&o.w.keyBytes, "key-bytes", 16, "bytes per key")
	fs.IntVar(&o.w.valueBytes, "value-bytes", 100, "bytes per value")
	fs.DurationVar(&o.w.duration, "duration", 10*time.Second, "measured time per run")
	fs.DurationVar(&o.w.warmup, "warmup", 2*time.Second, "unmeasured load before each run")
	fs.Uint64Var(&o.w.seed, "seed", 1, "workload seed (the same for every peer)")
	fs.StringVar(&o.weaseldb, "weaseldb", "bin/weaseldb", "weaseldb server binary")
	fs.StringVar(&o.loadgen, "loadgen", "bin/loadgen", "loadgen binary")
	fs.StringVar(&o.redis, "redis-server", "redis-server", "redis-server binary")
	fs.StringVar(&o.dir, "dir", "", "parent of the peers' data directories (default: a new temp dir)")
	fs.BoolVar(&o.keepDir, "keep", false, "keep the data directories")
	fs.StringVar(&o.lockPath, "lock", "/tmp/weaseldb-bench.lock", "flock held during each run ('' = none)")
	fs.StringVar(&o.jsonPath, "json", "", "also write every result as JSON to this file")
	merge := fs.String("merge", "", "run nothing: print the per-cell medians of these comma-separated -json files")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.merge = splitList(*merge)
	o.peers = splitList(*peers)
	o.dists = splitList(*dists)
	for _, c := range splitList(*conns) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-connections: %q is not a positive count", c)
		}
		o.conns = append(o.conns, n)
	}
	var errs []error
	for _, p := range o.peers {
		if p != "weaseldb" && p != "etcd" && p != "redis" {
			errs = append(errs, fmt.Errorf("-peers: unknown peer %q (weaseldb, etcd, redis)", p))
		}
	}
	for _, d := range o.dists {
		if _, err := newChooser(d, 2, o.w.theta); err != nil {
			errs = append(errs, fmt.Errorf("-dists: %w", err))
		}
	}
	if o.w.keyBytes < 1+len(strconv.FormatUint(o.w.keys-1, 10)) {
		errs = append(errs, fmt.Errorf("-key-bytes %d too short for %d keys", o.w.keyBytes, o.w.keys))
	}
	return o, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "benchpeers:", err)
		os.Exit(2)
	}
	if len(o.merge) > 0 {
		results, err := mergeFiles(o.merge)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchpeers:", err)
			os.Exit(1)
		}
		printTable(os.Stdout, o, results)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := runAll(ctx, o, os.Stderr)
	printTable(os.Stdout, o, results)
	if o.jsonPath != "" {
		if b, jerr := json.MarshalIndent(results, "", "  "); jerr == nil {
			if werr := os.WriteFile(o.jsonPath, b, 0o644); werr != nil {
				slog.Error("write json", "err", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchpeers:", err)
		os.Exit(1)
	}
}

// runAll starts each peer in turn on a fresh directory, runs every
// distribution × connection count against it, and stops it. A peer that
// cannot start is reported and skipped; the others still run.
func runAll(ctx context.Context, o *options, log io.Writer) ([]*result, error) {
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "weaseldb-peers-")
		if err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		dir = d
	}
	if !o.keepDir {
		defer os.RemoveAll(dir)
	}
	var results []*result
	var errs []error
	for _, name := range o.peers {
		pdir := filepath.Join(dir, name)
		rs, err := runPeer(ctx, o, name, pdir, log)
		results = append(results, rs...)
		if err != nil {
			fmt.Fprintf(log, "%s: %v\n", name, err)
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return results, errors.Join(errs...)
}

func runPeer(ctx context.Context, o *options, name, dir string, log io.Writer) ([]*result, error) {
	var (
		runOne func(workload) (*result, error)
		stop   func() error
	)
	switch name {
	case "weaseldb":
		p, err := startWeaselDB(ctx, o.weaseldb, o.loadgen, dir)
		if err != nil {
			return nil, err
		}
		runOne = func(w workload) (*result, error) { return p.run(ctx, w) }
		stop = p.stop
	case "etcd":
		p, err := startEtcd(dir)
		if err != nil {
			return nil, err
		}
		runOne = func(w workload) (*result, error) { return drive(ctx, p, w) }
		stop = func() error { p.stop(); return nil }
	case "redis":
		p, err := startRedis(ctx, o.redis, dir)
		if err != nil {
			return nil, err
		}
		runOne = func(w workload) (*result, error) { return drive(ctx, p, w) }
		stop = func() error { p.stop(); return nil }
	}
	var results []*result
	var errs []error
	for _, dist := range o.dists {
		for _, c := range o.conns {
			w := o.w
			w.dist, w.connections = dist, c
			unlock, err := lockFile(o.lockPath)
			if err != nil {
				errs = append(errs, err)
				break
			}
			r, err := runOne(w)
			unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %d conns: %w", dist, c, err))
				if ctx.Err() != nil {
					break
				}
				continue
			}
			fmt.Fprintf(log, "%-8s %-7s %3d conns: %9.0f commits/s  p50 %7.3f ms  p99 %7.3f ms  conflicts %d errors %d %s\n",
				r.Peer, r.Dist, r.Connections, r.CommitsPerS, r.P50Ms, r.P99Ms, r.Conflicts, r.Errors, r.FirstError)
			results = append(results, r)
		}
	}
	if err := stop(); err != nil {
		errs = append(errs, err)
	}
	return results, errors.Join(errs...)
}

// lockFile takes an exclusive flock on path (created if missing) and
// returns its release; path "" locks nothing.
func lockFile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("bench lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the last descriptor releases the lock
}

// printTable prints every result and, per distribution and connection
// count, WeaselDB's ratios to each peer: commits/s over theirs (higher is
// better for WeaselDB) and p50/p99 over theirs (lower is better).
func printTable(out io.Writer, o *options, results []*result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "peer\tdist\tconns\tcommits/s\tp50 ms\tp99 ms\tmax ms\tconflicts\terrors\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.3f\t%.3f\t%.1f\t%d\t%d\t\n",
			r.Peer, r.Dist, r.Connections, r.CommitsPerS, r.P50Ms, r.P99Ms, r.MaxMs, r.Conflicts, r.Errors)
	}
	tw.Flush()
	find := func(peer, dist string, c int) *result {
		for _, r := range results {
			if r.Peer == peer && r.Dist == dist && r.Connections == c {
				return r
			}
		}
		return nil
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "WeaselDB's figure over the peer's: commits/s above 1 and latency below 1 favour WeaselDB.")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "WeaselDB vs\tdist\tconns\tcommits/s ×\tp50 ×\tp99 ×\t")
	for _, peer := range []string{"etcd", "redis"} {
		for _, d := range o.dists {
			for _, c := range o.conns {
				w, p := find("weaseldb", d, c), find(peer, d, c)
				if w == nil || p == nil {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t\n",
					peer, d, c, ratio(w.CommitsPerS, p.CommitsPerS), ratio(w.P50Ms, p.P50Ms), ratio(w.P99Ms, p.P99Ms))
			}
		}
	}
	tw.Flush()
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// mergeFiles reads earlier -json outputs and returns, per peer, distribution
// and connection count, the median of each figure over the runs: on a
// shared machine one run's cell can be hit by a neighbour's burst, and the
// median of three back-to-back rounds is the figure worth quoting.
func mergeFiles(paths []string) ([]*result, error) {
	type cell struct {
		peer, dist string
		conns      int
	}
	var order []cell
	groups := map[cell][]*result{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		var rs []*result
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, fmt.Errorf("merge %s: %w", p, err)
		}
		for _, r := range rs {
			c := cell{r.Peer, r.Dist, r.Connections}
			if _, ok := groups[c]; !ok {
				order = append(order, c)
			}
			groups[c] = append(groups[c], r)
		}
	}
	out := make([]*result, 0, len(order))
	for _, c := range order {
		rs := groups[c]
		pick := func(f func(*result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return median(v)
		}
		out = append(out, &result{
			Peer: c.peer, Dist: c.dist, Connections: c.conns,
			CommitsPerS: pick(func(r *result) float64 { return r.CommitsPerS }),
			P50Ms:       pick(func(r *result) float64 { return r.P50Ms }),
			P99Ms:       pick(func(r *result) float64 { return r.P99Ms }),
			MaxMs:       pick(func(r *result) float64 { return r.MaxMs }),
			Conflicts:   uint64(pick(func(r *result) float64 { return float64(r.Conflicts) })),
			Errors:      uint64(pick(func(r *result) float64 { return float64(r.Errors) })),
		})
	}
	return out, nil
}

// median of v (sorted in place); the mean of the middle two for even n.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
