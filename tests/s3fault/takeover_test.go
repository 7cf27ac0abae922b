package s3fault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/persist/fakes3"
	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

// takeoverRounds is how many newcomers TestTakeoverUnderLoad starts while
// the leader commits: WEASELDB_S3_TAKEOVER_ROUNDS, default 10 (CI, about
// 10 s; the old code lost acknowledged commits in 4 of 5 such runs), 4
// with -short.
func takeoverRounds() int {
	if s := os.Getenv("WEASELDB_S3_TAKEOVER_ROUNDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	if testing.Short() {
		return 4
	}
	return 10
}

// TestTakeoverUnderLoad is issue 12 item 1: a leader commits under load
// from several connections, with request ids, while a second server is
// started on the same bucket and prefix again and again, and S3 PUTs land
// and answer out of order (jittered latency before the write takes effect
// and again before the answer). Each newcomer either loses its claim
// (exits, fenced) or wins it (the old leader is deposed and exits, and the
// load follows the newcomer). Afterwards every acknowledged commit must be
// in the log exactly once, at its version.
//
// The defect it catches: recovery deleted the segments it discarded after
// a gap before the newcomer's claim; when the claim then lost to the live
// leader's in-flight segment at that name, the leader acknowledged past the
// hole the newcomer had dug, and a later recovery dropped all of it.
func TestTakeoverUnderLoad(t *testing.T) {
	s3, endpoint := fake(t)
	const prefix = "takeover"
	// The effects land out of order (LatencyJitter) and the answers come
	// later still, in another order (AnswerJitter).
	s3.Faults().Set(fakes3.Fault{LatencyJitter: 40 * time.Millisecond, AnswerJitter: 20 * time.Millisecond}, fakes3.OpPutObject)
	start := func(patient bool) (*harness.Server, error) {
		timeout := "2s"
		if patient {
			timeout = "30s"
		}
		// Many segment writes in flight: the more there are, the more
		// land out of order.
		cfg := strings.Replace(s3Config(endpoint, prefix, timeout), "[commit]\n", "[commit]\nmax_in_flight = 16\n", 1)
		// Retention keeps the log (and each newcomer's recovery) short
		// over many rounds, and truncates while servers take over: the
		// floor markers are under test too. Losses show at the top of
		// the log (recovery stops at a hole), far above what is truncated.
		cfg += "\n[retention]\ndefault_keep_versions = 1000\ntruncate_interval = \"500ms\"\n"
		// --take-over: each newcomer claims the log while the leader is
		// live and busy (a planned switchover), the race this test is
		// about; without it a newcomer would follow the leader as a
		// replica (issue 14).
		srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Config: cfg, Args: []string{"--take-over"}})
		if err != nil && strings.Contains(err.Error(), "not wired") {
			t.Skipf("the binary does not accept --persist s3 yet: %v", err)
		}
		return srv, err
	}
	leader, err := start(true)
	if err != nil {
		t.Fatal(err)
	}
	servers := []*harness.Server{leader}
	defer func() {
		for _, s := range servers {
			s.Kill()
		}
	}()

	var current atomic.Pointer[string]
	current.Store(&leader.URL)
	led := harness.NewLedger()
	var acked sync.Map // request id -> version
	var nAcked, nRefused, nLost atomic.Int64
	dup := atomic.Value{}
	var byVersion sync.Map // version -> request id
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			hc := &http.Client{Timeout: 20 * time.Second}
			defer hc.CloseIdleConnections()
			for i := 0; ctx.Err() == nil; i++ {
				rid := fmt.Sprintf("tk-%02d-%08d-%d", w, i, time.Now().UnixNano())
				ops := []harness.Op{{Type: "write", Key: base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "k%d", w)),
					Value: base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "v%d", i))}}
				led.Sent(rid, ops)
				code, ans, err := harness.Commit(ctx, hc, *current.Load(), harness.CommitRequest{RequestID: rid, Operations: ops})
				switch {
				case err != nil:
					nLost.Add(1)
					time.Sleep(5 * time.Millisecond)
				case code == 200 && ans.Status == "committed" && !ans.Duplicate:
					led.Acked(rid, ans.Version)
					acked.Store(rid, ans.Version)
					nAcked.Add(1)
					if prev, loaded := byVersion.LoadOrStore(ans.Version, rid); loaded {
						dup.CompareAndSwap(nil, fmt.Sprintf("version %d acknowledged for %s and %s", ans.Version, prev, rid))
					}
				default:
					nRefused.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
				// A random pause keeps the workers from falling into
				// step (one segment in flight for all of them): several
				// segments must be in flight to land out of order.
				time.Sleep(time.Duration(rand.Int64N(int64(10 * time.Millisecond))))
			}
		})
	}

	rounds := takeoverRounds()
	won, fenced, restarts, gapSeen := 0, 0, 0, 0
	for round := range rounds {
		time.Sleep(300 * time.Millisecond) // let the leader pipeline fill
		newcomer, err := start(false)
		switch {
		case err == nil:
			servers = append(servers, newcomer)
			won++
			current.Store(&newcomer.URL)
			leader.Kill() // deposed at its next write anyway
			leader = newcomer
		case errors.Is(err, harness.ErrExited):
			fenced++
			if strings.Contains(err.Error(), "recovery discard") {
				gapSeen++ // it saw a gap: the case that used to delete
			}
		default:
			t.Fatalf("round %d: %v", round, err)
		}
		if leader.Exited() {
			// Both deposed (the old leader's in-flight segment after the
			// claim fenced the newcomer too): a restart settles it.
			restarts++
			next, err := start(true)
			if err != nil {
				t.Fatalf("round %d: restart after both were deposed: %v", round, err)
			}
			servers = append(servers, next)
			current.Store(&next.URL)
			leader = next
		}
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if v := dup.Load(); v != nil {
		t.Errorf("SPLIT BRAIN: %v", v)
	}
	t.Logf("%d rounds: newcomer won %d, fenced %d (%d of them after recovering past a gap), restarts %d; commits: %d acknowledged, %d refused, %d answers lost",
		rounds, won, fenced, gapSeen, restarts, nAcked.Load(), nRefused.Load(), nLost.Load())

	for _, s := range servers {
		s.Kill()
	}
	s3.Faults().Clear()
	// A killed leader's PUTs still waiting out their injected latency land
	// after it died (the fake, like S3, does not notice a client gone
	// before reading its body). A server recovering meanwhile may lose its
	// claim to one of them and stay down: correct, and a supervisor would
	// start it again. So does this test.
	var final *harness.Server
	for attempt := 1; ; attempt++ {
		time.Sleep(500 * time.Millisecond)
		final, err = start(true)
		if err == nil {
			break
		}
		if !errors.Is(err, harness.ErrExited) || !strings.Contains(err.Error(), "another leader claimed") || attempt == 5 {
			t.Fatalf("%v\nsegments:\n%s", err, dumpSegments(endpoint, prefix))
		}
		t.Logf("final server lost its claim to a dead leader's late segment; starting it again")
	}
	servers = append(servers, final)
	vctx, vcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer vcancel()
	hc := &http.Client{}
	v, err := harness.Version(vctx, hc, final.URL)
	if err != nil {
		t.Fatal(err)
	}
	oldest, err := harness.SettledOldest(vctx, hc, final.URL)
	if err != nil {
		t.Fatal(err)
	}
	txns, err := harness.ReadLog(vctx, hc, final.URL, oldest, v.Version)
	if err != nil {
		t.Fatal(err)
	}
	inLog := make(map[string][]uint64, len(txns))
	for _, tx := range txns {
		if tx.RequestID != "" {
			inLog[tx.RequestID] = append(inLog[tx.RequestID], tx.Version)
		}
	}
	var lost, twice, total, checked int
	var firstLost string
	acked.Range(func(k, val any) bool {
		rid, ver := k.(string), val.(uint64)
		total++
		if ver <= oldest {
			return true // truncated by retention
		}
		checked++
		got := inLog[rid]
		switch {
		case len(got) == 0 || got[0] != ver:
			lost++
			if firstLost == "" {
				firstLost = fmt.Sprintf("%s acknowledged at %d, in the log at %v", rid, ver, got)
			}
		case len(got) > 1:
			twice++
		}
		return true
	})
	if lost > 0 || twice > 0 {
		t.Fatalf("LOST %d of %d acknowledged commits (first: %s), %d present more than once; recovered to %d\nsegments:\n%s",
			lost, total, firstLost, twice, v.Version, dumpSegments(endpoint, prefix))
	}
	check, err := led.Verify(vctx, hc, final.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("all %d acknowledged commits above the oldest retained version %d (of %d) present once at their version; %+v", checked, oldest, total, check)
}
