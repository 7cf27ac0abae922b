// Package s3fault runs the real weaseldb binary on the S3 backend against a
// fake S3 hosted in the test process (persist/fakes3), whose faults the test
// switches while committers run: latency spikes, 20% 503 SlowDown, dropped
// connections (before and after the write took effect), and an outage. The
// server must answer 503 while it cannot persist (never a false 200),
// recover by itself, and lose and duplicate nothing; and two servers on one
// prefix must never both acknowledge a version.
//
// The tests skip, saying so, while the binary does not accept --persist s3.
// WEASELDB_S3_OUTAGE=30s sets the outage of the long form (default 3s).
package s3fault

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist"
	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

const bucket = "weaseldb"

// fake starts a fake S3 on a loopback port for the test.
func fake(t *testing.T) (*fakes3.Server, string) {
	t.Helper()
	srv, err := fakes3.New(fakes3.Options{Buckets: []string{bucket}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := fakes3.ListenTCP(srv, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Faults().Clear()
		srv.Faults().Resume()
		ts.Close()
	})
	return srv, ts.URL
}

// s3Config points the server at the fake; short timeouts so that an outage
// turns into failed writes (and 503s) within a test's time.
func s3Config(endpoint, prefix, requestTimeout string) string {
	return fmt.Sprintf(`
[commit]
batch_interval = "1ms"

[persist]
backend = "s3"
bucket = %q
prefix = %q
endpoint = %q
use_path_style = true
access_key_id = "test"
secret_access_key = "test"
request_timeout = %q
max_attempts = 3
`, bucket, prefix, endpoint, requestTimeout)
}

// startS3 starts a server on the fake, or skips the test when the binary
// does not have the S3 backend yet.
//
// The 1s request timeout makes an outage fail writes (and answer 503)
// quickly; restarts that must read back a long log use startS3Patient.
func startS3(t *testing.T, endpoint, prefix string) (*harness.Server, error) {
	return startS3With(t, endpoint, prefix, "1s")
}

func startS3Patient(t *testing.T, endpoint, prefix string) (*harness.Server, error) {
	return startS3With(t, endpoint, prefix, "30s")
}

func startS3With(t *testing.T, endpoint, prefix, requestTimeout string) (*harness.Server, error) {
	t.Helper()
	srv, err := startS3Replica(t, endpoint, prefix, requestTimeout)
	if err != nil {
		return nil, err
	}
	// A restart after a SIGKILL finds the dead leader's lease and takes
	// over only when it has not changed for lease_timeout (issue 14): the
	// server is the leader once /readyz says so.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := harness.WaitReady(ctx, &http.Client{Timeout: 5 * time.Second}, srv.URL); err != nil {
		srv.Kill()
		return nil, fmt.Errorf("%w\n%s", err, srv.Log())
	}
	return srv, nil
}

// startS3Replica starts a server without waiting for it to lead (a second
// server on a prefix with a live leader follows it as a replica).
func startS3Replica(t *testing.T, endpoint, prefix, requestTimeout string) (*harness.Server, error) {
	t.Helper()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Config: s3Config(endpoint, prefix, requestTimeout), AllowReplica: true})
	if err != nil && strings.Contains(err.Error(), "not wired") {
		t.Skipf("the binary does not accept --persist s3 yet: %v", err)
	}
	return srv, err
}

// restartAlone starts a server on prefix once every earlier server on it
// was killed, to check what they acknowledged. A killed server's requests
// may still be in the fake and land after the restart's recovery listed
// the log; then its claim meets them (412, another writer) and it stays
// down, which is right: it is the dead leader's late write. So it waits
// for the fake to serve what it holds, and starts again (a supervisor's
// restart) when the claim was fenced; the dead write no new ones.
func restartAlone(t *testing.T, s3 *fakes3.Server, endpoint, prefix string) *harness.Server {
	t.Helper()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := s3.WaitIdle(ctx)
		cancel()
		if err != nil {
			t.Fatalf("restart on %q: %v", prefix, err)
		}
		srv, err := startS3Patient(t, endpoint, prefix)
		if err == nil {
			return srv
		}
		if try >= 5 || !errors.Is(err, harness.ErrExited) || !strings.Contains(err.Error(), "fenced by another leader") {
			t.Fatalf("restart on %q (try %d): %v", prefix, try, err)
		}
		t.Logf("restart on %q fenced at its claim by a killed server's late write; starting again: %v", prefix, lastLine(err))
	}
}

// lastLine is the last line of err's text (the exit's reason in a
// harness.ErrExited).
func lastLine(err error) string {
	s := strings.TrimSpace(err.Error())
	return s[strings.LastIndex(s, "\n")+1:]
}

// load runs committers against url until ctx ends, recording into led.
type load struct {
	ok, unavailable, lost, other atomic.Int64
	firstOther                   atomic.Value
	acked                        sync.Map // version -> server name (two-server test)
	dupVersion                   atomic.Value
}

func (l *load) run(ctx context.Context, wg *sync.WaitGroup, name, url string, led *harness.Ledger, workers int) {
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 20 * time.Second}
			defer hc.CloseIdleConnections()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for i := 0; ctx.Err() == nil; i++ {
				rid := fmt.Sprintf("%s-%02d-%016x%08d", name, w, rng.Uint64(), i)
				ops := []harness.Op{{Type: "write", Key: "czM=", Value: base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "value %d", i))}}
				led.Sent(rid, ops)
				code, ans, err := harness.Commit(ctx, hc, url, harness.CommitRequest{RequestID: rid, Operations: ops})
				switch {
				case err != nil:
					l.lost.Add(1)
					time.Sleep(5 * time.Millisecond)
				case code == 200 && ans.Status == "committed" && !ans.Duplicate:
					led.Acked(rid, ans.Version)
					l.ok.Add(1)
					if prev, dup := l.acked.LoadOrStore(ans.Version, name); dup {
						l.dupVersion.CompareAndSwap(nil, fmt.Sprintf("version %d acknowledged by %s and %s", ans.Version, prev, name))
					}
				case code == 503:
					l.unavailable.Add(1)
					time.Sleep(5 * time.Millisecond)
				case code == 200:
					l.other.Add(1) // checked below: a fresh request id is never a duplicate
					l.dupVersion.CompareAndSwap(nil, fmt.Sprintf("fresh %s answered %+v", rid, ans))
				default:
					// 409 leader_changed etc. from a deposed server: not committed,
					// Verify resolves it by status.
					l.other.Add(1)
					l.firstOther.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %+v", code, ans))
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
}

func (l *load) String() string {
	return fmt.Sprintf("%d ok, %d 503, %d lost, %d other (first: %v)", l.ok.Load(), l.unavailable.Load(), l.lost.Load(), l.other.Load(), l.firstOther.Load())
}

func outage() time.Duration {
	if s := os.Getenv("WEASELDB_S3_OUTAGE"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return 3 * time.Second
}

// knownBugRetriedAppendDeposes was a bug this test found: a segment PUT
// that timed out during an outage was stored when S3 returned, the engine's
// retry (a new s3log Append) got 412, and s3log took it for fencing, so the
// server deposed itself. Fixed in persist/s3log (mayExist; regression test
// TestRetriedAppendAfterTimeoutIsOurs). Kept as a switch so that a
// regression shows as a failure with the diagnosis rather than a timeout.
const knownBugRetriedAppendDeposes = false

func TestS3FaultsUnderLoad(t *testing.T) {
	s3, endpoint := fake(t)
	srv, err := startS3(t, endpoint, "faults")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Kill()
	led := harness.NewLedger()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hc := &http.Client{}
	// knownBug skips (after proving nothing was lost) when the server
	// deposed itself; see knownBugRetriedAppendDeposes.
	knownBug := func(when string) {
		if !knownBugRetriedAppendDeposes || !srv.Exited() || !strings.Contains(srv.Log(), "deposed") {
			return
		}
		s3.Faults().Clear()
		s3.Faults().Resume()
		srv2, err := startS3Patient(t, endpoint, "faults")
		if err != nil {
			t.Fatal(err)
		}
		defer srv2.Kill()
		check, err := led.Verify(ctx, hc, srv2.URL, nil)
		if err != nil {
			t.Fatalf("after the server deposed itself %s: %v\n%s", when, err, srv2.Log())
		}
		t.Skipf("KNOWN BUG (knownBugRetriedAppendDeposes): the server deposed itself %s instead of riding out the S3 faults; nothing lost (%+v)", when, check)
	}
	phase := func(name string, d time.Duration, setup func()) *load {
		setup()
		var l load
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), d)
		l.run(ctx, &wg, name, srv.URL, led, 8)
		wg.Wait()
		cancel()
		if v := l.dupVersion.Load(); v != nil {
			t.Errorf("%s: %v", name, v)
		}
		t.Logf("phase %-10s %v: %v", name, d, &l)
		knownBug("in phase " + name)
		return &l
	}
	phase("clean", time.Second, func() {})
	phase("faulty", 3*time.Second, func() {
		s3.Faults().Set(fakes3.Fault{Latency: 2 * time.Millisecond, LatencyJitter: 50 * time.Millisecond,
			SlowDownRate: 0.2, DropRate: 0.05, DropAfterApplyRate: 0.05})
	})
	// The outage: the committers block on commits that cannot become
	// durable; a fresh probe, once the server has noticed, gets 503 at once.
	var probes, probe503 atomic.Int64
	probeDone := make(chan struct{})
	phase("outage", outage(), func() {
		s3.Faults().Clear()
		s3.Faults().Pause()
		go func() {
			defer close(probeDone)
			hc := &http.Client{}
			end := time.Now().Add(outage())
			for i := 0; time.Now().Before(end); i++ {
				time.Sleep(200 * time.Millisecond)
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				rid := fmt.Sprintf("probe-%024d", i)
				ops := []harness.Op{{Type: "write", Key: "cHJvYmU=", Value: "cA=="}}
				led.Sent(rid, ops)
				code, ans, err := harness.Commit(ctx, hc, srv.URL, harness.CommitRequest{RequestID: rid, Operations: ops})
				cancel()
				probes.Add(1)
				switch {
				case err == nil && code == 503:
					probe503.Add(1)
				case err == nil && code == 200:
					led.Acked(rid, ans.Version) // Verify proves it durable
				}
			}
		}()
	})
	<-probeDone
	knownBug("during the outage")
	if probe503.Load() == 0 {
		t.Errorf("no 503 to %d fresh commits during a %v S3 outage", probes.Load(), outage())
	}
	t.Logf("outage: %d of %d probe commits answered 503", probe503.Load(), probes.Load())
	s3.Faults().Resume()
	// Recovery by itself: commits succeed again without a restart.
	deadline := time.Now().Add(60 * time.Second)
	for {
		l := phase("recovery", time.Second, func() {})
		if l.ok.Load() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no commit succeeded within 60s after S3 came back\n%s", srv.Log())
		}
	}
	check, err := led.Verify(ctx, hc, srv.URL, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatalf("after the faults: %v\n%s", err, srv.Log())
	}
	t.Logf("after the faults: %+v", check)
	// And after a crash: SIGKILL, restart on the same prefix.
	srv.Kill()
	srv2 := restartAlone(t, s3, endpoint, "faults")
	defer srv2.Kill()
	if check, err = led.Verify(ctx, hc, srv2.URL, nil); err != nil {
		t.Fatalf("after a restart: %v\n%s", err, srv2.Log())
	}
	t.Logf("after a restart: %+v", check)
}

// TestTwoServersOnePrefix: a second server on the same prefix finds the
// first's live lease and follows it as a replica (issue 14: it used to claim
// the log and depose the first); commits sent to it are redirected to the
// leader; no version is ever acknowledged twice, and every acknowledgement
// is in the log. (Takeovers with two leaders racing are tests/failover's.)
func TestTwoServersOnePrefix(t *testing.T) {
	t.Run("first busy", func(t *testing.T) { twoServers(t, true) })
	t.Run("first idle", func(t *testing.T) { twoServers(t, false) })
}

// twoServers: with busy, the first server commits while the second starts;
// otherwise it is idle meanwhile.
func twoServers(t *testing.T, busy bool) {
	s3, endpoint := fake(t)
	a, err := startS3(t, endpoint, "shared")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Kill()
	led := harness.NewLedger()
	var l load
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if busy {
		l.run(ctx, &wg, "a", a.URL, led, 4)
	} else {
		// A few commits first, then nothing while the second claims.
		actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
		l.run(actx, &wg, "a", a.URL, led, 4)
		wg.Wait()
		acancel()
	}
	time.Sleep(500 * time.Millisecond)

	b, err := startS3Replica(t, endpoint, "shared", "1s")
	if err != nil {
		t.Fatalf("the second server: %v", err)
	}
	defer b.Kill()
	if v, err := harness.Version(ctx, &http.Client{}, b.URL); err != nil || v.Role != "replica" {
		t.Fatalf("the second server: %+v, %v; want a replica of the live leader", v, err)
	}
	if !busy {
		l.run(ctx, &wg, "a", a.URL, led, 4)
	}
	// Commits sent to the replica are redirected to the leader (the Go
	// client follows the 307).
	l.run(ctx, &wg, "b", b.URL, led, 4)
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	if v := l.dupVersion.Load(); v != nil {
		t.Fatalf("SPLIT BRAIN: %v", v)
	}
	for _, s := range []*harness.Server{a, b} {
		if s.Exited() {
			t.Errorf("a server exited: %s", s.Log())
		}
	}
	if v, err := harness.Version(context.Background(), &http.Client{}, a.URL); err != nil || v.Role != "leader" {
		t.Errorf("the first server after the second started: %+v, %v; want it still the leader", v, err)
	}
	t.Logf("two servers: %v", &l)

	// Every acknowledgement of either server is in the log.
	a.Kill()
	if b != nil {
		b.Kill()
	}
	c := restartAlone(t, s3, endpoint, "shared")
	defer c.Kill()
	vctx, vcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer vcancel()
	check, err := led.Verify(vctx, &http.Client{}, c.URL, nil)
	if err != nil {
		t.Fatalf("%v\nsegments on the prefix:\n%s", err, dumpSegments(endpoint, "shared"))
	}
	t.Logf("log after two servers: %+v", check)
}

// dumpSegments lists "<prefix>/log/" on the fake and describes every
// segment (versions and leader), for the failure message of a lost log.
func dumpSegments(endpoint, prefix string) string {
	var out strings.Builder
	after := ""
	for page := 0; page < 100; page++ {
		u := fmt.Sprintf("%s/%s?list-type=2&prefix=%s/log/&start-after=%s", endpoint, bucket, prefix, after)
		resp, err := http.Get(u)
		if err != nil {
			return err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var list struct {
			Contents []struct{ Key string }
		}
		if err := xml.Unmarshal(body, &list); err != nil {
			return fmt.Sprintf("list: %v", err)
		}
		if len(list.Contents) == 0 {
			break
		}
		for _, c := range list.Contents {
			after = c.Key
			resp, err := http.Get(endpoint + "/" + bucket + "/" + c.Key)
			if err != nil {
				return err.Error()
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			h, err := persist.DecodeSegmentHeader(data)
			if err != nil {
				fmt.Fprintf(&out, "%s: %v\n", c.Key, err)
				continue
			}
			fmt.Fprintf(&out, "%s: versions %d..%d leader %.8s\n", c.Key[strings.LastIndex(c.Key, "/")+1:], h.First, h.Last, h.LeaderID)
		}
	}
	return out.String()
}
