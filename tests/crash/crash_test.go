// Package crash is the crash-safety driver: it runs the real weaseldb binary,
// commits from many goroutines while recording every acknowledged commit,
// kills the server with SIGKILL at a random moment (under load, while
// segments are being written, while truncation runs), restarts it on the
// same data and proves that nothing acknowledged was lost or changed, that
// the log is contiguous and free of duplicates, that /v1/status and the log
// agree on every commit whose answer was lost, and that retrying such a
// commit by its request_id never commits it twice.
//
// Run:
//
//	go test ./tests/crash/ -run TestCrash -v                       # 3 iterations
//	WEASELDB_CRASH_ITERATIONS=200 go test ./tests/crash/ -run TestCrash -v -timeout 2h
//	WEASELDB_CRASH_SEED=1234 ...                                   # replay a seed
//
// Each iteration logs one summary line; a failure names the seed.
package crash

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

// crashConfig batches often and truncates often, so that a kill lands in
// the middle of segment writes and of truncation.
const crashConfig = `
[commit]
batch_interval = "1ms"
max_in_flight = 4

[retention]
truncate_interval = "10ms"
`

const committers = 12

func iterations(t *testing.T) int {
	if s := os.Getenv("WEASELDB_CRASH_ITERATIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("WEASELDB_CRASH_ITERATIONS=%q: want a positive integer", s)
		}
		return n
	}
	return 3
}

func seed(t *testing.T) uint64 {
	if s := os.Getenv("WEASELDB_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("WEASELDB_CRASH_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

func TestCrashDisk(t *testing.T) {
	runCrash(t, "disk")
}

func TestCrashFakeS3(t *testing.T) {
	probe, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Persist: "fakes3"})
	if err != nil {
		t.Skipf("--persist fakes3 is not available in this binary yet; skipping the S3 crash variant: %v", firstLine(err))
	}
	probe.Stop(30 * time.Second)
	runCrash(t, "fakes3")
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.LastIndex(strings.TrimSpace(s), "\n"); i >= 0 {
		return strings.TrimSpace(s[i:])
	}
	return s
}

type totals struct {
	commitsChecked, lostResolved, retried int
}

func runCrash(t *testing.T, backend string) {
	s := seed(t)
	n := iterations(t)
	t.Logf("backend=%s seed=%d iterations=%d (replay: WEASELDB_CRASH_SEED=%d)", backend, s, n, s)
	rng := rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
	dir := t.TempDir()
	led := harness.NewLedger()
	var verified uint64 // every version <= verified was checked by an earlier iteration
	var sum totals
	for i := 1; i <= n; i++ {
		iterSeed := rng.Uint64()
		it, err := runIteration(t, backend, dir, led, verified, iterSeed)
		if err != nil {
			t.Fatalf("iteration %d (seed %d, iteration seed %d): %v", i, s, iterSeed, err)
		}
		verified = it.Recovered
		sum.commitsChecked += it.Checked
		sum.lostResolved += it.Lost
		sum.retried += it.Retried
		t.Logf("crash %s iteration %d/%d: killed after %v, %d acked this run, recovered v%d (oldest retained %d), %d commits checked, %d lost answers resolved (%d committed), %d retried, nothing lost",
			backend, i, n, it.delay.Round(time.Millisecond), it.acked, it.Recovered, it.Oldest, it.Checked, it.Lost, it.LostCommitted, it.Retried)
	}
	t.Logf("crash %s total: %d iterations, %d commits checked, %d lost answers resolved, %d retried by request_id, nothing lost, nothing duplicated",
		backend, n, sum.commitsChecked, sum.lostResolved, sum.retried)
}

type iteration struct {
	harness.Check
	delay time.Duration
	acked int
}

func runIteration(t *testing.T, backend, dir string, led *harness.Ledger, verified, seed uint64) (iteration, error) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var it iteration
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: dir, Persist: backend, Config: crashConfig})
	if err != nil {
		return it, fmt.Errorf("start: %w", err)
	}
	defer srv.Kill()
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var acked sync.Map
	for w := 0; w < committers; w++ {
		wg.Add(1)
		go func(w int, seed uint64) {
			defer wg.Done()
			commitLoop(ctx, hc, srv.URL, led, w, rand.New(rand.NewPCG(seed, uint64(w))), &acked)
		}(w, rng.Uint64())
	}
	// Move the retention policy up to half of what earlier iterations
	// verified, at a random moment, so truncation runs near the kill.
	it.delay = killDelay(rng)
	if verified > 2 {
		policyAt := time.Duration(rng.Int64N(int64(it.delay) + 1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(policyAt):
			case <-ctx.Done():
				return
			}
			harness.PutRetention(ctx, hc, srv.URL, "crash", verified/2)
		}()
	}
	time.Sleep(it.delay)
	srv.Kill()
	cancel()
	wg.Wait()
	var bad []string
	acked.Range(func(k, v any) bool {
		if msg, isErr := v.(string); isErr {
			bad = append(bad, msg)
		} else {
			it.acked++
		}
		return true
	})
	if len(bad) > 0 {
		return it, fmt.Errorf("%d wrong answers, e.g. %s", len(bad), bad[0])
	}
	if log := srv.Log(); strings.Contains(log, "panic") {
		return it, fmt.Errorf("server log mentions a panic:\n%s", log)
	}

	srv2, err := harness.Start(harness.Options{Bin: bin, DataDir: dir, Persist: backend, Config: crashConfig})
	if err != nil {
		return it, fmt.Errorf("restart after SIGKILL: %w", err)
	}
	defer srv2.Kill()
	hc2 := newHTTPClient()
	defer hc2.CloseIdleConnections()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel2()
	// The restarted server may still truncate up to the policy of the killed
	// run, and a subscriber whose next segment is truncated away loses its
	// stream. Drop the policy (the next iteration sets it again); Verify
	// waits for the oldest retained version to settle.
	if code, err := harness.Do(ctx2, hc2, "DELETE", srv2.URL+"/v1/retention/crash", nil, nil); err != nil || (code != 204 && code != 404) {
		return it, fmt.Errorf("DELETE /v1/retention/crash: HTTP %d %v", code, err)
	}
	it.Check, err = led.Verify(ctx2, hc2, srv2.URL, rng)
	if err != nil {
		return it, fmt.Errorf("%w\nserver log after restart:\n%s", err, tail(srv2.Log(), 4000))
	}
	if err := srv2.Stop(30 * time.Second); err != nil {
		return it, fmt.Errorf("graceful stop after verification: %w\n%s", err, tail(srv2.Log(), 4000))
	}
	return it, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// killDelay varies the moment of the kill: right at startup (recovery and the
// first segment write), early in the load, and deep into it.
func killDelay(rng *rand.Rand) time.Duration {
	switch rng.IntN(3) {
	case 0:
		return time.Duration(rng.Int64N(int64(40 * time.Millisecond)))
	case 1:
		return 40*time.Millisecond + time.Duration(rng.Int64N(int64(400*time.Millisecond)))
	default:
		return 400*time.Millisecond + time.Duration(rng.Int64N(int64(1200*time.Millisecond)))
	}
}

func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: committers * 2, DisableCompression: true}}
}

var b64 = base64.StdEncoding

// randomOps returns 1-4 operations on the committer's own keys; now and then
// a large value, so that segments are big and writes take time.
func randomOps(rng *rand.Rand, w int) []harness.Op {
	n := 1 + rng.IntN(4)
	ops := make([]harness.Op, 0, n)
	for range n {
		key := b64.EncodeToString(fmt.Appendf(nil, "k/%02d/%03d", w, rng.IntN(200)))
		switch r := rng.IntN(20); {
		case r == 0:
			ops = append(ops, harness.Op{Type: "range_delete",
				Begin: b64.EncodeToString(fmt.Appendf(nil, "k/%02d/1", w)),
				End:   b64.EncodeToString(fmt.Appendf(nil, "k/%02d/2", w))})
		case r < 3:
			ops = append(ops, harness.Op{Type: "delete", Key: key})
		default:
			size := 1 + rng.IntN(200)
			if rng.IntN(50) == 0 {
				size = 32 << 10
			}
			v := make([]byte, size)
			for i := range v {
				v[i] = byte(rng.Uint32())
			}
			ops = append(ops, harness.Op{Type: "write", Key: key, Value: b64.EncodeToString(v)})
		}
	}
	return ops
}

// commitLoop commits until ctx ends, recording every request before it is
// sent and every acknowledgement after it arrives.
func commitLoop(ctx context.Context, hc *http.Client, url string, led *harness.Ledger, w int, rng *rand.Rand, acked *sync.Map) {
	for ctx.Err() == nil {
		rid := fmt.Sprintf("crash-%02d-%016x%016x", w, rng.Uint64(), rng.Uint64())
		ops := randomOps(rng, w)
		led.Sent(rid, ops)
		status, ans, err := harness.Commit(ctx, hc, url, harness.CommitRequest{RequestID: rid, Operations: ops})
		if err != nil || status != 200 {
			// Lost answer (kill, shutdown) or 503: outcome unknown, resolved
			// after the restart. Back off a little on a live server's 503.
			if status == 503 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		if ans.Status != "committed" || ans.Duplicate || ans.RequestID != rid || ans.Version == 0 {
			// Impossible for a fresh blind write; runIteration fails on it.
			acked.Store(rid, fmt.Sprintf("unexpected answer to a fresh blind write %s: HTTP %d %+v", rid, status, ans))
			continue
		}
		led.Acked(rid, ans.Version)
		acked.Store(rid, ans.Version)
	}
}
