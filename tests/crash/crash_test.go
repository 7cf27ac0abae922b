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
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"weaseldb/client"
	"weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) {
	b, cleanup, err := harness.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = b
	code := m.Run()
	cleanup()
	os.Exit(code)
}

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

// state of one request id in the ledger.
type state uint8

const (
	stateSent         state = iota + 1 // sent, no answer yet (or the answer was lost)
	stateAcked                         // 200 committed: must be in the log forever (until truncated)
	stateNotCommitted                  // status said not_committed after a restart: must never appear
)

type record struct {
	ops     []harness.Op
	state   state
	version uint64 // stateAcked, or found in the log
}

// ledger is everything the committers sent and learned.
type ledger struct {
	mu   sync.Mutex
	recs map[string]*record // guarded by mu
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
	led := &ledger{recs: make(map[string]*record)}
	var verified uint64 // every version <= verified was checked by an earlier iteration
	var sum totals
	for i := 1; i <= n; i++ {
		iterSeed := rng.Uint64()
		it, err := runIteration(t, backend, dir, led, verified, iterSeed)
		if err != nil {
			t.Fatalf("iteration %d (seed %d, iteration seed %d): %v", i, s, iterSeed, err)
		}
		verified = it.recovered
		sum.commitsChecked += it.checked
		sum.lostResolved += it.lost
		sum.retried += it.retried
		t.Logf("crash %s iteration %d/%d: killed after %v, %d acked this run, recovered v%d (oldest retained %d), %d commits checked, %d lost answers resolved (%d committed), %d retried, nothing lost",
			backend, i, n, it.delay.Round(time.Millisecond), it.acked, it.recovered, it.oldest, it.checked, it.lost, it.lostCommitted, it.retried)
	}
	t.Logf("crash %s total: %d iterations, %d commits checked, %d lost answers resolved, %d retried by request_id, nothing lost, nothing duplicated",
		backend, n, sum.commitsChecked, sum.lostResolved, sum.retried)
}

type iteration struct {
	delay               time.Duration
	acked               int
	recovered, oldest   uint64
	checked             int
	lost, lostCommitted int
	retried             int
}

func runIteration(t *testing.T, backend, dir string, led *ledger, verified, seed uint64) (iteration, error) {
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
	if err := verify(hc2, srv2.URL, led, &it, rng); err != nil {
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
func commitLoop(ctx context.Context, hc *http.Client, url string, led *ledger, w int, rng *rand.Rand, acked *sync.Map) {
	for ctx.Err() == nil {
		rid := fmt.Sprintf("crash-%02d-%016x%016x", w, rng.Uint64(), rng.Uint64())
		ops := randomOps(rng, w)
		led.mu.Lock()
		led.recs[rid] = &record{ops: ops, state: stateSent}
		led.mu.Unlock()
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
			// Impossible for a fresh blind write; keep it visible.
			led.mu.Lock()
			led.recs[rid].state = stateSent
			led.mu.Unlock()
			acked.Store(rid, fmt.Sprintf("unexpected answer to a fresh blind write %s: HTTP %d %+v", rid, status, ans))
			continue
		}
		led.mu.Lock()
		r := led.recs[rid]
		r.state, r.version = stateAcked, ans.Version
		led.mu.Unlock()
		acked.Store(rid, ans.Version)
	}
}

// verify checks the restarted server against the ledger. The committers have
// all stopped, so led is no longer written concurrently.
func verify(hc *http.Client, url string, led *ledger, it *iteration, rng *rand.Rand) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := harness.Version(ctx, hc, url)
	if err != nil {
		return err
	}
	// The restarted server may still truncate up to the policy of the killed
	// run; a subscriber whose next segment is truncated away loses its
	// stream. Drop the policy (the next iteration sets it again) and wait
	// for the oldest retained version to settle before reading.
	if code, err := harness.Do(ctx, hc, "DELETE", url+"/v1/retention/crash", nil, nil); err != nil || (code != 204 && code != 404) {
		return fmt.Errorf("DELETE /v1/retention/crash: HTTP %d %v", code, err)
	}
	oldest, err := settledOldest(ctx, hc, url)
	if err != nil {
		return err
	}
	it.recovered, it.oldest = v.Version, oldest
	if it.oldest > it.recovered {
		return fmt.Errorf("oldest retained %d > version %d", it.oldest, it.recovered)
	}
	log, err := harness.ReadLog(ctx, hc, url, it.oldest, it.recovered)
	if err != nil {
		return err
	}
	if err := checkLog(log, it.oldest, it.recovered, led); err != nil {
		return err
	}
	inLog := make(map[string]uint64, len(log))
	for _, t := range log {
		inLog[t.RequestID] = t.Version
	}
	// Every acknowledged commit is there, at its version.
	var lost []string
	for rid, r := range led.recs {
		switch r.state {
		case stateAcked:
			if r.version > it.recovered {
				return fmt.Errorf("LOST: %s acknowledged at version %d, but the server recovered only to %d", rid, r.version, it.recovered)
			}
			if r.version > it.oldest {
				if got, ok := inLog[rid]; !ok || got != r.version {
					return fmt.Errorf("LOST: %s acknowledged at version %d, in the log at %d (present %v)", rid, r.version, got, ok)
				}
				it.checked++
			}
		case stateSent:
			lost = append(lost, rid)
		}
	}
	// Every lost answer: /v1/status and the log agree.
	for _, rid := range lost {
		r := led.recs[rid]
		st, err := settledStatus(ctx, hc, url, rid)
		if err != nil {
			return err
		}
		logV, inTheLog := inLog[rid]
		switch st.Status {
		case "committed":
			if !inTheLog || logV != st.Version {
				return fmt.Errorf("status says %s committed at %d, the log has it at %d (present %v)", rid, st.Version, logV, inTheLog)
			}
			r.state, r.version = stateAcked, st.Version
			it.lostCommitted++
		case "not_committed":
			if inTheLog {
				return fmt.Errorf("status says %s not_committed, the log has it at version %d", rid, logV)
			}
			r.state = stateNotCommitted
		default:
			return fmt.Errorf("status of %s after restart: %+v", rid, st)
		}
		it.lost++
	}
	// Retry some of them by request_id: a committed one answers duplicate
	// with its version; a not-committed one commits once, then duplicates.
	for _, rid := range lost {
		if rng.IntN(2) == 0 {
			continue
		}
		r := led.recs[rid]
		if err := retry(ctx, hc, url, rid, r); err != nil {
			return err
		}
		it.retried++
	}
	return nil
}

// checkLog checks the log read from (oldest, recovered]: contiguous, chained,
// every request id known, once, and with the operations it was sent with.
func checkLog(log []harness.Txn, oldest, recovered uint64, led *ledger) error {
	if uint64(len(log)) != recovered-oldest {
		return fmt.Errorf("log (%d, %d] has %d transactions, want %d", oldest, recovered, len(log), recovered-oldest)
	}
	seen := make(map[string]uint64, len(log))
	for i, t := range log {
		want := oldest + uint64(i) + 1
		if t.Version != want || t.PrevVersion != want-1 {
			return fmt.Errorf("log not contiguous at index %d: version %d prev %d, want %d prev %d", i, t.Version, t.PrevVersion, want, want-1)
		}
		if t.RequestID == "" && len(t.Operations) == 0 {
			// The empty transaction a new leader writes to claim the log
			// (engine.claimLeadership): one per start, no request id.
			continue
		}
		if prev, dup := seen[t.RequestID]; dup {
			return fmt.Errorf("DUPLICATE: request_id %s at versions %d and %d", t.RequestID, prev, t.Version)
		}
		seen[t.RequestID] = t.Version
		r, ok := led.recs[t.RequestID]
		if !ok {
			return fmt.Errorf("version %d has request_id %q that no committer sent", t.Version, t.RequestID)
		}
		switch r.state {
		case stateAcked:
			if r.version != t.Version {
				return fmt.Errorf("CHANGED: %s acknowledged at version %d, in the log at %d", t.RequestID, r.version, t.Version)
			}
		case stateNotCommitted:
			return fmt.Errorf("%s was reported not_committed after an earlier restart, now in the log at %d", t.RequestID, t.Version)
		}
		if !reflect.DeepEqual(r.ops, t.Operations) {
			return fmt.Errorf("CHANGED: %s at version %d: operations %+v, sent %+v", t.RequestID, t.Version, t.Operations, r.ops)
		}
	}
	return nil
}

// settledOldest returns the oldest retained version once three reads in a
// row, more than a truncate interval apart, agree.
func settledOldest(ctx context.Context, hc *http.Client, url string) (uint64, error) {
	var last uint64
	same := 0
	for same < 3 {
		ret, err := harness.ListRetention(ctx, hc, url)
		if err != nil {
			return 0, err
		}
		if ret.OldestRetainedVersion == last {
			same++
		} else {
			last, same = ret.OldestRetainedVersion, 1
		}
		time.Sleep(30 * time.Millisecond)
	}
	return last, nil
}

// settledStatus asks /v1/status until the answer is not in_flight (after a
// restart nothing of the old process can be in flight, so this is short).
func settledStatus(ctx context.Context, hc *http.Client, url, rid string) (harness.StatusInfo, error) {
	for {
		code, st, err := harness.Status(ctx, hc, url, rid)
		if err != nil {
			return st, err
		}
		if code != 200 {
			return st, fmt.Errorf("status of %s: HTTP %d %+v", rid, code, st)
		}
		if st.Status != "in_flight" {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("status of %s stays in_flight after a restart: %w", rid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func retry(ctx context.Context, hc *http.Client, url, rid string, r *record) error {
	req := harness.CommitRequest{RequestID: rid, Operations: r.ops}
	code, ans, err := harness.Commit(ctx, hc, url, req)
	if err != nil {
		return fmt.Errorf("retry %s: %w", rid, err)
	}
	if code != 200 || ans.Status != "committed" {
		return fmt.Errorf("retry %s: HTTP %d %+v", rid, code, ans)
	}
	switch r.state {
	case stateAcked:
		if !ans.Duplicate || ans.Version != r.version {
			return fmt.Errorf("DOUBLE COMMIT: retry of %s (committed at %d) answered %+v", rid, r.version, ans)
		}
	case stateNotCommitted:
		if ans.Duplicate {
			return fmt.Errorf("retry of %s (status not_committed) answered duplicate %+v", rid, ans)
		}
		r.state, r.version = stateAcked, ans.Version
		// Once more: now it must be a duplicate of that version.
		code, again, err := harness.Commit(ctx, hc, url, req)
		if err != nil {
			return fmt.Errorf("second retry %s: %w", rid, err)
		}
		if code != 200 || !again.Duplicate || again.Version != ans.Version {
			return fmt.Errorf("DOUBLE COMMIT: second retry of %s (committed at %d) answered HTTP %d %+v", rid, ans.Version, code, again)
		}
	default:
		return errors.New("retry: unresolved record")
	}
	// The client library resolves by status the same way; cross-check it.
	c := client.New(url, client.WithHTTPClient(hc))
	st, err := c.Status(ctx, rid, 0)
	if err != nil {
		return fmt.Errorf("client status of %s: %w", rid, err)
	}
	if st.Status != client.StatusCommitted || st.Version != r.version {
		return fmt.Errorf("client status of %s: %+v, want committed at %d", rid, st, r.version)
	}
	return nil
}
