// Package failover_test checks replicas and automatic failover on S3 with
// real binaries: `weaseldb fakes3` as the S3 service and several weaseldb
// servers sharing one bucket and prefix (API.md, "Replicas and failover").
//
// Figures (time to the first commit acknowledged by the new leader) are
// logged, never asserted. WEASELDB_FAILOVER_ROUNDS=N repeats the kill
// test N times (default 1) for a longer run. With WEASELDB_S3COMPAT_ENDPOINT
// (and _BUCKET, _ACCESS, _SECRET, as scripts/s3compat.sh sets them) the
// servers share that S3-compatible service instead of a fake S3.
package failover_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) { harness.Main(m, &bin) }

// s3Target is where the servers' log lives.
type s3Target struct {
	url, bucket, access, secret string
}

// fakeS3 is a `weaseldb fakes3` process.
type fakeS3 struct {
	url string
	cmd *exec.Cmd
}

func startS3(t *testing.T) s3Target {
	t.Helper()
	if ep := os.Getenv("WEASELDB_S3COMPAT_ENDPOINT"); ep != "" {
		return s3Target{url: ep, bucket: os.Getenv("WEASELDB_S3COMPAT_BUCKET"),
			access: os.Getenv("WEASELDB_S3COMPAT_ACCESS"), secret: os.Getenv("WEASELDB_S3COMPAT_SECRET")}
	}
	f := startFakeS3(t)
	return s3Target{url: f.url, bucket: "wfail", access: "test", secret: "test"}
}

func startFakeS3(t *testing.T) *fakeS3 {
	t.Helper()
	cmd := exec.Command(bin, "fakes3", "--listen", "127.0.0.1:0", "--buckets", "wfail", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "fakes3 listening on "); ok {
				urls <- strings.TrimSpace(rest)
			}
		}
	}()
	select {
	case u := <-urls:
		return &fakeS3{url: u, cmd: cmd}
	case <-time.After(30 * time.Second):
		t.Fatal("fakes3 did not start")
	}
	return nil
}

// leaseTimeout is the default (3s): the takeover figure is the one an
// operator gets without tuning.
const leaseTimeout = 3 * time.Second

func serverConfig(s3 s3Target, prefix string) string {
	return fmt.Sprintf(`[persist]
backend = "s3"
bucket = %q
prefix = %q
endpoint = %q
use_path_style = true
access_key_id = %q
secret_access_key = %q
request_timeout = "5s"
[commit]
conflict_window = "30s"
`, s3.bucket, prefix, s3.url, s3.access, s3.secret)
}

// cluster is a prefix of the S3 target and the servers started on it.
type cluster struct {
	t      *testing.T
	s3     s3Target
	prefix string
}

func newCluster(t *testing.T) *cluster {
	return &cluster{t: t, s3: startS3(t), prefix: "failover/" + t.Name() + "-" + strconv.Itoa(rand.IntN(1e9))}
}

func (c *cluster) start(extra ...string) *harness.Server {
	c.t.Helper()
	s, err := c.tryStart(extra...)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

func (c *cluster) tryStart(extra ...string) (*harness.Server, error) {
	s, err := harness.Start(harness.Options{Bin: bin, DataDir: c.t.TempDir(), Config: serverConfig(c.s3, c.prefix), Args: extra, AllowReplica: true})
	if err != nil {
		return nil, err
	}
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("server %s log:\n%s", s.URL, tailLines(s.Log(), 40))
		}
		s.Kill()
	})
	return s, nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var hc = &http.Client{Timeout: 10 * time.Second}

func version(t *testing.T, url string) harness.VersionInfo {
	t.Helper()
	v, err := harness.Version(context.Background(), hc, url)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitRole polls /v1/version until the server reports role, bounded.
func waitRole(t *testing.T, url, role string, within time.Duration) harness.VersionInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	var last harness.VersionInfo
	for time.Now().Before(deadline) {
		v, err := harness.Version(context.Background(), hc, url)
		if err == nil && v.Role == role {
			return v
		}
		last = v
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: role %q not reached within %s (last %+v)", url, role, within, last)
	return last
}

// segmentKeys lists the segment objects of the prefix, with the real S3
// client.
func (c *cluster) segmentKeys(t *testing.T) []string {
	t.Helper()
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(c.s3.url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(c.s3.access, c.s3.secret, "")})
	out, err := client.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{
		Bucket: aws.String(c.s3.bucket), Prefix: aws.String(c.prefix + "/log/")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

func commitOnce(t *testing.T, url, rid string) harness.CommitAnswer {
	t.Helper()
	status, ans, err := harness.Commit(context.Background(), hc, url, harness.CommitRequest{RequestID: rid,
		Operations: []harness.Op{{Type: "write", Key: b64("k-" + rid), Value: b64("v")}}})
	if err != nil || status != 200 {
		t.Fatalf("commit %s to %s: %d %+v %v", rid, url, status, ans, err)
	}
	return ans
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func rid(prefix string, i int) string { return fmt.Sprintf("%s-%020d", prefix, i) }

// TestMisstartedSecondServer: a second server on the same bucket and
// prefix whose port is taken writes nothing to the bucket and exits; the
// leader goes on committing (issue 14: it used to claim the log first).
func TestMisstartedSecondServer(t *testing.T) {
	c := newCluster(t)
	a := c.start()
	commitOnce(t, a.URL, rid("before", 0))
	keys := c.segmentKeys(t)
	lease := version(t, a.URL)

	_, err := c.tryStart("--listen", a.Addr)
	if err == nil || !errors.Is(err, harness.ErrExited) {
		t.Fatalf("second server on a taken port: %v, want it to exit", err)
	}
	if !strings.Contains(err.Error(), "server.listen") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second server's error does not name the listener: %v", err)
	}
	if got := c.segmentKeys(t); !slicesEqual(got, keys) {
		t.Fatalf("the misstarted server wrote to the bucket: segments %v, before %v", got, keys)
	}
	ans := commitOnce(t, a.URL, rid("after", 0))
	if v := version(t, a.URL); v.Role != "leader" || v.LeaderID != lease.LeaderID || ans.Version != lease.Version+1 {
		t.Fatalf("leader after the misstart: %+v, commit at %d; want the same leader %s at %d", v, ans.Version, lease.LeaderID, lease.Version+1)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestBadListenWritesNothing (issue 13 item 9): an unusable --listen or
// --admin-listen exits 2 with one line and creates no data directory.
func TestBadListenWritesNothing(t *testing.T) {
	for _, args := range [][]string{{"--listen", "notaport"}, {"--admin-listen", "localhost"}, {"--listen", "127.0.0.1:99999"}} {
		dir := filepath.Join(t.TempDir(), "data")
		cmd := exec.Command(bin, append([]string{"--data-dir", dir}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit status 2; stderr: %s", args, err, stderr.String())
		}
		if n := strings.Count(strings.TrimSpace(stderr.String()), "\n"); n != 0 {
			t.Errorf("%v: %d lines on stderr, want one: %s", args, n+1, stderr.String())
		}
		if strings.Count(stderr.String(), "listen") > 2 {
			t.Errorf("%v: the error repeats itself: %s", args, stderr.String())
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the data directory was created (%v)", args, err)
		}
	}
	// A port in use (valid configuration): exit non-zero, nothing created.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "--data-dir", dir, "--listen", ln.Addr().String())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("server on a taken port exited 0: %s", out)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("port in use: the data directory was created (%v): %s", err, out)
	}
}

// TestTwoStartedAtOnce: two servers started together on an empty prefix:
// one leads, the other follows it.
func TestTwoStartedAtOnce(t *testing.T) {
	c := newCluster(t)
	var wg sync.WaitGroup
	servers := make([]*harness.Server, 2)
	errs := make([]error, 2)
	for i := range servers {
		wg.Go(func() { servers[i], errs[i] = c.tryStart() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	roles := map[string]int{}
	var leader, replica *harness.Server
	for _, s := range servers {
		v := version(t, s.URL)
		roles[v.Role]++
		if v.Role == "leader" {
			leader = s
		} else {
			replica = s
		}
	}
	if roles["leader"] != 1 || roles["replica"] != 1 {
		t.Fatalf("roles %v, want one leader and one replica", roles)
	}
	// The replica learns the leader from its lease (a poll interval after
	// the leader wrote it; until then it answers 503), then redirects.
	waitLeaderURL(t, replica.URL, leader.URL)
	// The replica redirects a commit to the leader, which takes it.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Post(
		replica.URL+"/v1/commit", "application/json", strings.NewReader(`{"operations":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 307 || resp.Header.Get("Location") != leader.URL+"/v1/commit" {
		t.Fatalf("commit on the replica: %d Location %q, want 307 to %s/v1/commit", resp.StatusCode, resp.Header.Get("Location"), leader.URL)
	}
	// A status query keeps its query string.
	const statusPath = "/v1/status?request_id=status-query-0000000001"
	resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(replica.URL + statusPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 307 || resp.Header.Get("Location") != leader.URL+statusPath {
		t.Fatalf("status on the replica: %d Location %q, want 307 to %s", resp.StatusCode, resp.Header.Get("Location"), leader.URL+statusPath)
	}
	resp, err = hc.Get(replica.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), `"role":"replica"`) || !strings.Contains(string(b), leader.URL) {
		t.Fatalf("replica /readyz: %d %s", resp.StatusCode, b)
	}
	if resp, err := hc.Get(replica.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("replica /healthz: %v %v", resp, err)
	}
	// Each reports its role in /metrics, with the leader's term id (the
	// replica learns it from the lease at its next poll).
	lv := version(t, leader.URL)
	for _, s := range []struct{ url, role string }{{leader.URL, "leader"}, {replica.URL, "replica"}} {
		want := fmt.Sprintf(`weaseldb_role{leader_id=%q,role=%q} 1`, lv.LeaderID, s.role)
		var b []byte
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			resp, err := hc.Get(s.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), want) {
				break
			}
		}
		if !strings.Contains(string(b), want) || !strings.Contains(string(b), "weaseldb_lease_age_seconds") {
			t.Errorf("%s /metrics lacks %s or the lease age", s.url, want)
		}
	}
}

// committer sends commits with request ids, following 307 (the Go client
// resends the body) and moving to the next endpoint on connection errors.
// Only 200 answers are recorded as acknowledged.
type committer struct {
	urls   []string
	led    *harness.Ledger
	next   atomic.Int64
	acked  atomic.Int64
	firstB atomic.Int64 // unix nanos of the first 200 from ackFrom
	ackBy  sync.Map     // url -> count of 200s
	from   atomic.Pointer[string]
}

func (c *committer) run(ctx context.Context, id int) {
	endpoint := id % len(c.urls)
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		r := fmt.Sprintf("c%02d-%018d", id, i)
		ops := []harness.Op{{Type: "write", Key: b64(fmt.Sprintf("k%d", rand.IntN(64))), Value: b64(r)}}
		c.led.Sent(r, ops)
		body, _ := json.Marshal(harness.CommitRequest{RequestID: r, Operations: ops})
		req, _ := http.NewRequestWithContext(ctx, "POST", c.urls[endpoint]+"/v1/commit", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			endpoint = (endpoint + 1) % len(c.urls)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var ans harness.CommitAnswer
		json.NewDecoder(resp.Body).Decode(&ans)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		c.led.Acked(r, ans.Version)
		c.acked.Add(1)
		server := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host
		if f := c.from.Load(); f != nil && *f == server {
			c.firstB.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
}

func rounds() int {
	if n, err := strconv.Atoi(os.Getenv("WEASELDB_FAILOVER_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// TestKillLeaderUnderLoad: SIGKILL the leader while 16 connections commit
// with request ids through both servers. The replica takes over; every
// acknowledged commit is in its log exactly once, at its version, the
// versions chain, and every lost answer is resolved by /v1/status on the
// new leader. The time from the kill to the first commit the new leader
// acknowledges is reported.
func TestKillLeaderUnderLoad(t *testing.T) {
	c := newCluster(t)
	leader := c.start()
	for round := range rounds() {
		replica := c.start()
		waitRole(t, replica.URL, "replica", 30*time.Second)
		led := harness.NewLedger()
		com := &committer{urls: []string{leader.URL, replica.URL}, led: led}
		com.from.Store(&replica.URL)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() { com.run(ctx, i) })
		}
		// Load on the leader, then the kill.
		deadline := time.Now().Add(30 * time.Second)
		for com.acked.Load() < 200 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		before := com.acked.Load()
		killed := time.Now()
		leader.Kill()
		// Run until the new leader has acknowledged for a while.
		deadline = time.Now().Add(60 * time.Second)
		for (com.firstB.Load() == 0 || time.Since(time.Unix(0, com.firstB.Load())) < 500*time.Millisecond) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		if com.firstB.Load() == 0 {
			t.Fatalf("round %d: the replica acknowledged no commit within 60s of the leader's SIGKILL", round)
		}
		gap := time.Unix(0, com.firstB.Load()).Sub(killed)
		t.Logf("round %d: SIGKILL to first commit acknowledged by the new leader: %s (lease_timeout %s); %d acknowledged before, %d in all",
			round, gap.Round(time.Millisecond), leaseTimeout, before, com.acked.Load())
		v := waitRole(t, replica.URL, "leader", 10*time.Second)
		vctx, vcancel := context.WithTimeout(context.Background(), 60*time.Second)
		check, err := led.Verify(vctx, hc, replica.URL, nil)
		vcancel()
		if err != nil {
			t.Fatalf("round %d: new leader %s: %v", round, v.LeaderID, err)
		}
		t.Logf("round %d: checked %d acknowledged commits, %d lost answers resolved (%d committed)", round, check.Checked, check.Lost, check.LostCommitted)
		leader = replica
	}
}

// TestPausedLeader: a leader stopped (SIGSTOP) for longer than the lease
// timeout is replaced; once it runs again (SIGCONT) it acknowledges nothing
// the new leader's log does not hold, and becomes a replica.
func TestPausedLeader(t *testing.T) {
	c := newCluster(t)
	a := c.start()
	b := c.start()
	waitRole(t, b.URL, "replica", 30*time.Second)
	aTerm := version(t, a.URL).LeaderID
	led := harness.NewLedger()
	// Commits straight to a (no redirects), before, during and after the
	// pause: the ones sent during the pause wait in a's socket buffers.
	noRedirect := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	type ack struct {
		rid      string
		version  uint64
		leaderID string
		at       time.Time
	}
	var mu sync.Mutex
	var acks []ack
	for i := range 4 {
		wg.Go(func() {
			for j := 0; ctx.Err() == nil; j++ {
				r := fmt.Sprintf("p%d-%018d", i, j)
				ops := []harness.Op{{Type: "write", Key: b64(r), Value: b64("v")}}
				led.Sent(r, ops)
				body, _ := json.Marshal(harness.CommitRequest{RequestID: r, Operations: ops})
				resp, err := noRedirect.Post(a.URL+"/v1/commit", "application/json", bytes.NewReader(body))
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				var ans struct {
					Version  uint64 `json:"version"`
					LeaderID string `json:"leader_id"`
				}
				json.NewDecoder(resp.Body).Decode(&ans)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					led.Acked(r, ans.Version)
					mu.Lock()
					acks = append(acks, ack{r, ans.Version, ans.LeaderID, time.Now()})
					mu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if err := a.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			a.Cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	bv := waitRole(t, b.URL, "leader", leaseTimeout+30*time.Second)
	// The new term's claim is at bv.Version or below: find it exactly
	// from the log (first transaction of b's term).
	time.Sleep(time.Second)
	a.Cmd.Process.Signal(syscall.SIGCONT)
	stopped = false
	resumed := time.Now()
	av, demoted := pollRole(a.URL, "replica", 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	// Every 200 from a carries a's term and a version below b's claim.
	log, err := harness.ReadLog(context.Background(), hc, b.URL, 0, bv.Version)
	if err != nil {
		t.Fatal(err)
	}
	var claim uint64
	for _, tx := range log {
		if tx.LeaderID == bv.LeaderID {
			claim = tx.Version
			break
		}
	}
	if claim == 0 {
		t.Fatalf("no transaction of b's term %s in its log to %d", bv.LeaderID, bv.Version)
	}
	after, bad := 0, 0
	for _, k := range acks {
		if k.leaderID != aTerm || k.version >= claim {
			if bad++; bad <= 3 {
				t.Errorf("SPLIT BRAIN: paused leader acknowledged %s at version %d (term %s) after b's claim at %d", k.rid, k.version, k.leaderID, claim)
			}
		}
		if k.at.After(resumed) {
			after++
		}
	}
	if bad > 0 {
		t.Fatalf("SPLIT BRAIN: %d acknowledgements of the paused leader at or after the new leader's claim", bad)
	}
	t.Logf("paused leader: %d commits acknowledged, %d of them after SIGCONT (all before b's claim at %d)", len(acks), after, claim)
	vctx, vcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer vcancel()
	if _, err := led.Verify(vctx, hc, b.URL, nil); err != nil {
		t.Fatal(err)
	}
	if !demoted {
		t.Fatalf("the paused leader did not become a replica within 30s of SIGCONT (last %+v)", av)
	}
	if av.LeaderURL == a.URL {
		t.Errorf("paused leader as a replica names itself as the leader")
	}
	waitLeaderURL(t, a.URL, b.URL)
}

// pollRole polls /v1/version until the server reports role, bounded; it
// reports the last answer and whether the role was reached.
func pollRole(url, role string, within time.Duration) (harness.VersionInfo, bool) {
	deadline := time.Now().Add(within)
	var last harness.VersionInfo
	for time.Now().Before(deadline) {
		v, err := harness.Version(context.Background(), hc, url)
		if err == nil && v.Role == role {
			return v, true
		}
		last = v
		time.Sleep(50 * time.Millisecond)
	}
	return last, false
}

// sseEvent is one raw SSE transaction event.
type sseEvent struct {
	id   uint64
	data string
}

// subscribeRaw follows /v1/subscribe on url from after, reconnecting with
// Last-Event-ID whenever the stream ends, and sends every transaction event
// (raw data line) to out until ctx ends. It reports reconnections.
func subscribeRaw(ctx context.Context, url string, after uint64, out chan<- sseEvent, reconnects *atomic.Int64) {
	last := after
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/subscribe", nil)
		req.Header.Set("Last-Event-ID", strconv.FormatUint(last, 10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			if resp != nil {
				resp.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var event, data string
		var id uint64
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if event == "transaction" {
					select {
					case out <- sseEvent{id, data}:
					case <-ctx.Done():
					}
					last = id
				}
				event, data, id = "", "", 0
			case strings.HasPrefix(line, "event: "):
				event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			case strings.HasPrefix(line, "id: "):
				id, _ = strconv.ParseUint(line[len("id: "):], 10, 64)
			}
		}
		resp.Body.Close()
		if ctx.Err() == nil {
			reconnects.Add(1)
		}
	}
}

// TestSubscribersAcrossTakeover: a subscriber on the replica and one on the
// leader receive identical transaction events, byte for byte; the replica's
// subscriber goes on across the takeover without a gap.
func TestSubscribersAcrossTakeover(t *testing.T) {
	c := newCluster(t)
	a := c.start()
	b := c.start()
	waitRole(t, b.URL, "replica", 30*time.Second)
	start := version(t, a.URL).Version
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onA, onB := make(chan sseEvent, 10000), make(chan sseEvent, 10000)
	var reA, reB atomic.Int64
	go subscribeRaw(ctx, a.URL, start, onA, &reA)
	go subscribeRaw(ctx, b.URL, start, onB, &reB)
	const n = 50
	for i := range n {
		commitOnce(t, a.URL, rid("sub-a", i))
	}
	fromA := make([]sseEvent, 0, n)
	for len(fromA) < n {
		select {
		case e := <-onA:
			fromA = append(fromA, e)
		case <-time.After(30 * time.Second):
			t.Fatalf("leader's subscriber got %d of %d events", len(fromA), n)
		}
	}
	a.Kill()
	waitRole(t, b.URL, "leader", leaseTimeout+30*time.Second)
	for i := range n {
		commitOnce(t, b.URL, rid("sub-b", i))
	}
	want := version(t, b.URL).Version
	var fromB []sseEvent
	for len(fromB) == 0 || fromB[len(fromB)-1].id < want {
		select {
		case e := <-onB:
			fromB = append(fromB, e)
		case <-time.After(30 * time.Second):
			t.Fatalf("replica's subscriber stalled at %d events (want up to version %d)", len(fromB), want)
		}
	}
	for i, e := range fromA {
		if i >= len(fromB) || fromB[i] != e {
			t.Fatalf("event %d differs: leader's %+v, replica's %+v", i, e, fromB[min(i, len(fromB)-1)])
		}
	}
	for i := 1; i < len(fromB); i++ {
		if fromB[i].id != fromB[i-1].id+1 {
			t.Fatalf("replica's stream has a gap: %d after %d", fromB[i].id, fromB[i-1].id)
		}
	}
	t.Logf("%d events identical on both; the replica's stream went on to %d across the takeover (%d reconnections)", len(fromA), want, reB.Load())
}

// TestIdleDeposedLeader (issue 12 item 8): a leader that commits nothing
// while another takes over must notice by itself: /readyz and /v1/version
// stop claiming leadership without any commit to fail.
func TestIdleDeposedLeader(t *testing.T) {
	c := newCluster(t)
	a := c.start()
	b := c.start()
	waitRole(t, b.URL, "replica", 30*time.Second)
	if err := a.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitRole(t, b.URL, "leader", leaseTimeout+30*time.Second)
	a.Cmd.Process.Signal(syscall.SIGCONT)
	v := waitRole(t, a.URL, "replica", 30*time.Second)
	if v.LeaderURL == a.URL {
		t.Errorf("deposed leader names itself as the leader")
	}
	waitLeaderURL(t, a.URL, b.URL)
	resp, err := hc.Get(a.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("deposed idle leader /readyz: %d, want 503", resp.StatusCode)
	}
	if !strings.Contains(a.Log(), `"msg":"failover: role change","from":"leader","to":"replica"`) {
		t.Errorf("no role-change log line on the deposed leader")
	}
}

// waitLeaderURL polls a replica until it names leader (it learns the new
// leader from its lease, a poll interval after the leader wrote it).
func waitLeaderURL(t *testing.T, url, leader string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var v harness.VersionInfo
	for time.Now().Before(deadline) {
		var err error
		if v, err = harness.Version(context.Background(), hc, url); err == nil && v.LeaderURL == leader {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s names leader %q, want %s", url, v.LeaderURL, leader)
}

// TestCleanStopHandsOver: a leader stopped with SIGTERM drains its pipeline
// and releases its lease; a replica takes over without waiting for the
// lease to go stale (its log says why), and every acknowledged commit is
// there.
func TestCleanStopHandsOver(t *testing.T) {
	c := newCluster(t)
	a := c.start()
	b := c.start()
	waitRole(t, b.URL, "replica", 30*time.Second)
	last := commitOnce(t, a.URL, rid("clean", 0))
	if err := a.Stop(30 * time.Second); err != nil {
		t.Fatalf("leader's clean stop: %v", err)
	}
	waitRole(t, b.URL, "leader", 30*time.Second)
	if !strings.Contains(b.Log(), "the leader released its lease") {
		t.Errorf("the replica did not take over on the released lease:\n%s", tailLines(b.Log(), 10))
	}
	if v := version(t, b.URL); v.Version <= last.Version {
		t.Fatalf("new leader at %d, the last acknowledged commit was %d", v.Version, last.Version)
	}
}

// TestTakeOverFlag: a server started with --take-over claims the log from a
// live leader (a planned switchover); the old leader notices at its next
// lease renewal, even idle, and follows the new one as a replica.
func TestTakeOverFlag(t *testing.T) {
	c := newCluster(t)
	a := c.start()
	last := commitOnce(t, a.URL, rid("switch", 0))
	b := c.start("--take-over")
	if v := version(t, b.URL); v.Role != "leader" || v.Version <= last.Version {
		t.Fatalf("--take-over server: %+v, want the leader past %d", v, last.Version)
	}
	waitRole(t, a.URL, "replica", 30*time.Second)
	waitLeaderURL(t, a.URL, b.URL)
	commitOnce(t, b.URL, rid("switch", 1))
}
