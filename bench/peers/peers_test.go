package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// checkSemantics runs the optimistic transaction's three cases against a
// real peer: a blind write commits, a read of a key written after the read
// version conflicts, and the same read at the newer version commits.
func checkSemantics(t *testing.T, p peer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := p.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	value := []byte("value")
	first, err := c.commit(ctx, &txn{read: []byte("never-written"), write: []byte("a"), readVersion: 0, value: value})
	if err != nil || !first.committed || first.version == 0 {
		t.Fatalf("first write: %+v, %v; want committed at a version > 0", first, err)
	}
	stale, err := c.commit(ctx, &txn{read: []byte("a"), write: []byte("b"), readVersion: first.version - 1, value: value})
	if err != nil || stale.committed {
		t.Fatalf("read of a at %d (written at %d): %+v, %v; want a conflict", first.version-1, first.version, stale, err)
	}
	if stale.version < first.version {
		t.Fatalf("conflict reports version %d, older than the write at %d", stale.version, first.version)
	}
	fresh, err := c.commit(ctx, &txn{read: []byte("a"), write: []byte("b"), readVersion: first.version, value: value})
	if err != nil || !fresh.committed || fresh.version <= first.version {
		t.Fatalf("read of a at %d: %+v, %v; want committed after %d", first.version, fresh, err, first.version)
	}
}

func TestRedisSemantics(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (bench/peers/run.sh installs it)")
	}
	p, err := startRedis(context.Background(), bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	checkSemantics(t, p)
}

func TestEtcdSemantics(t *testing.T) {
	p, err := startEtcd(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	checkSemantics(t, p)
}

// TestDriveRedis runs the closed loop briefly on a hot key space, where
// conflicts must occur, and checks the summary adds up.
func TestDriveRedis(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	p, err := startRedis(context.Background(), bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	r, err := drive(context.Background(), p, workload{
		dist: "uniform", keys: 4, keyBytes: 16, valueBytes: 10, connections: 4,
		warmup: 100 * time.Millisecond, duration: 500 * time.Millisecond, seed: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Commits == 0 || r.Conflicts == 0 {
		t.Fatalf("%+v: want commits and conflicts, no errors", r)
	}
	if !(r.P50Ms > 0 && r.P50Ms <= r.P99Ms && r.P99Ms <= r.MaxMs) {
		t.Fatalf("quantiles out of order: %+v", r)
	}
}

func TestAppendKey(t *testing.T) {
	if got := string(appendKey(nil, 42, 16)); got != "k000000000000042" {
		t.Fatalf("appendKey(42, 16) = %q", got)
	}
}

func TestQuantile(t *testing.T) {
	s := []int64{1e6, 2e6, 3e6, 4e6}
	for _, c := range []struct{ q, want float64 }{{0.5, 2}, {0.51, 3}, {0.99, 4}, {1, 4}, {0, 1}} {
		if got := quantileMs(s, c.q); got != c.want {
			t.Errorf("quantile %v = %v, want %v", c.q, got, c.want)
		}
	}
}

// TestZipfSkew checks the copied chooser is skewed as loadgen's: at θ 0.99
// over 1000 keys the hottest key takes about 1/zeta(1000) ≈ 13% of draws.
func TestZipfSkew(t *testing.T) {
	z, err := newZipf(1000, 0.99)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	counts := map[uint64]int{}
	const n = 100000
	for range n {
		k := z.next(rng)
		if k >= 1000 {
			t.Fatalf("key %d out of range", k)
		}
		counts[k]++
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	if f := float64(top) / n; f < 0.11 || f > 0.15 {
		t.Fatalf("hottest key has %.3f of draws, want about 0.13", f)
	}
}

// TestMergeMedians merges three rounds and checks each cell is the median.
func TestMergeMedians(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, v := range []float64{300, 100, 200} {
		rs := []*result{{Peer: "redis", Dist: "uniform", Connections: 1, CommitsPerS: v, P99Ms: v / 100}}
		b, err := json.Marshal(rs)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("run%d.json", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	got, err := mergeFiles(paths)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].CommitsPerS != 200 || got[0].P99Ms != 2 {
		t.Fatalf("merged %+v, want one cell at the medians 200/s, 2 ms", got[0])
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Fatalf("median of 1..4 = %v, want 2.5", m)
	}
}
