package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// weaseldbBin is the real server built once for this test binary (or
// $WEASELDB_TEST_BIN); TestMain removes it.
var weaseldbBin struct {
	once      sync.Once
	path, dir string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if weaseldbBin.dir != "" {
		os.RemoveAll(weaseldbBin.dir)
	}
	os.Exit(code)
}

// weaseldbBinary builds the real server once (or takes $WEASELDB_TEST_BIN)
// and returns its path.
func weaseldbBinary(t *testing.T) string {
	t.Helper()
	weaseldbBin.once.Do(func() {
		if b := os.Getenv("WEASELDB_TEST_BIN"); b != "" {
			weaseldbBin.path = b
			return
		}
		dir, err := os.MkdirTemp("", "loadgen-weaseldb-bin-")
		if err != nil {
			weaseldbBin.err = err
			return
		}
		weaseldbBin.dir, weaseldbBin.path = dir, filepath.Join(dir, "weaseldb")
		cmd := exec.Command("go", "build", "-o", weaseldbBin.path, "./cmd/weaseldb")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			weaseldbBin.err = fmt.Errorf("go build ./cmd/weaseldb: %v\n%s", err, out)
		}
	})
	if weaseldbBin.err != nil {
		t.Fatal(weaseldbBin.err)
	}
	return weaseldbBin.path
}

// weaseldbForTest starts the real server with env on a free loopback
// port; it is stopped at the end.
func weaseldbForTest(t *testing.T, env ...string) string {
	t.Helper()
	bin := weaseldbBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var log bytes.Buffer
	cmd := exec.Command(bin, "--listen", addr, "--data-dir", filepath.Join(t.TempDir(), "data"), "--persist", "disk")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("server log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return addr
			}
		}
		select {
		case <-done:
			t.Fatalf("weaseldb exited before ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weaseldb not ready within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replicaFront answers every request 307 to the same path on leader, with
// the body a replica sends, and counts what it answered.
func replicaFront(t *testing.T, leader string) (addr string, redirects *atomic.Int64) {
	redirects = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirects.Add(1)
		w.Header().Set("Location", "http://"+leader+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTemporaryRedirect)
		fmt.Fprintf(w, `{"error":"not_leader","message":"this server is a replica","leader_url":"http://%s"}`, leader)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), redirects
}

// Several endpoints and a token against the real server: the first
// endpoint refuses connections, the second is a replica answering 307; the
// run must end on the leader with the token accepted (no 401), committing.
func TestEndpointsTokenAndRedirectAgainstRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	const token = "loadgen-test-token-0001"
	leader := weaseldbForTest(t, "WEASELDB_AUTH_TOKEN="+token)
	front, redirects := replicaFront(t, leader)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()

	var out, errOut bytes.Buffer
	code := run([]string{"--addr", down + ",http://" + front, "--token", token, "--connections", "2",
		"--duration", "500ms", "--warmup", "0s", "--keys", "100", "--subscribers", "1", "--json", "--quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	o := s.Run.Outcomes
	if o.OK == 0 || o.Status4xx != 0 {
		t.Fatalf("outcomes %+v; want commits and no 4xx (a 401 would be one)", o)
	}
	// Counted at the front: the run's own count covers only the measured
	// window, and the first 307 (after which the leader is remembered) can
	// come before it opens.
	if redirects.Load() == 0 {
		t.Fatalf("the replica front was never asked: the down endpoint did not move the run on")
	}
	if s.Server == nil {
		t.Fatalf("no /metrics scrape with the token: %s", s.ServerError)
	}

	// The token from the environment.
	t.Setenv("WEASELDB_AUTH_TOKEN", token)
	out.Reset()
	if code := run([]string{"--addr", leader, "--connections", "1", "--duration", "200ms", "--warmup", "0s", "--json", "--quiet"}, &out, &errOut); code != 0 {
		t.Fatalf("with $WEASELDB_AUTH_TOKEN: exit %d: %s", code, errOut.String())
	}
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.Run.Outcomes.OK == 0 || s.Run.Outcomes.Status4xx != 0 {
		t.Fatalf("with $WEASELDB_AUTH_TOKEN: %v %+v", err, s.Run)
	}

	// Without the token every commit is refused.
	t.Setenv("WEASELDB_AUTH_TOKEN", "")
	out.Reset()
	errOut.Reset()
	run([]string{"--addr", leader, "--connections", "1", "--duration", "200ms", "--warmup", "0s", "--json", "--quiet"}, &out, &errOut)
	if err := json.Unmarshal(out.Bytes(), &s); err == nil && s.Run != nil && s.Run.Outcomes.OK != 0 {
		t.Fatalf("commits without the token were accepted: %+v", s.Run.Outcomes)
	}
}

// lossyFront forwards everything to the leader, but drops the answers of
// the first `drop` commits after they committed (the connection is closed
// unanswered), as a leader dying between its fsync and its answer would.
func lossyFront(t *testing.T, leader string, drop int64) string {
	var dropped atomic.Int64
	target := &url.URL{Scheme: "http", Host: leader}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // the dropped answers' writes fail, as intended
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/commit" && dropped.Add(1) <= drop {
			proxy.ServeHTTP(httptest.NewRecorder(), r)
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// Lost answers are not resent: after the run they are resolved with
// /v1/status, and every dropped answer was a commit that happened.
func TestLostAnswersResolvedWithStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	leader := weaseldbForTest(t)
	front := lossyFront(t, leader, 5)
	var out, errOut bytes.Buffer
	code := run([]string{"--addr", front, "--connections", "1", "--duration", "3s", "--warmup", "0s",
		"--keys", "100", "--json", "--quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	l := s.Run.Lost
	// Every dropped answer is settled by /v1/status. Most committed; one
	// can be a conflict (the run's next read version was chosen without
	// the lost answer), which is not_committed, truthfully.
	if l == nil || l.Count != 5 || l.Committed+l.NotCommitted != 5 || l.Committed == 0 || l.Unknown != 0 {
		t.Fatalf("lost answers %+v; want 5, each resolved, some committed", l)
	}
	if s.Run.Outcomes.Transport != 5 {
		t.Fatalf("transport errors %d; want the 5 lost answers", s.Run.Outcomes.Transport)
	}
	if want := fmt.Sprintf("lost answers 5, resolved with /v1/status: %d committed, %d not committed, 0 unknown", l.Committed, l.NotCommitted); !strings.Contains(errOut.String(), want) {
		t.Fatalf("table does not report the lost answers:\n%s", errOut.String())
	}
}

// TestFailoverScenario: --spawn --backend s3 starts a fake S3, a leader and
// a replica; --kill-leader-after SIGKILLs the leader; the replica takes
// over and the run reports a commit gap (its size is not asserted).
func TestFailoverScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := weaseldbBinary(t)
	var out, errOut bytes.Buffer
	code := run([]string{"--spawn", "--weaseldb", bin, "--backend", "s3", "--replicas", "1", "--kill-leader-after", "1s",
		"--connections", "4", "--duration", "8s", "--warmup", "0s", "--request-id", "--json", "--quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if s.Run.CommitGapMs <= 0 || s.Run.Outcomes.OK == 0 {
		t.Fatalf("commit gap %v ms, %d ok; want a gap and commits", s.Run.CommitGapMs, s.Run.Outcomes.OK)
	}
	if !strings.Contains(errOut.String(), "SIGKILL the leader") {
		t.Fatalf("the leader was not killed: %s", errOut.String())
	}
	t.Logf("commit gap across the SIGKILL: %.0f ms (%d commits acknowledged)", s.Run.CommitGapMs, s.Run.Outcomes.OK)
}

// TestSubscribeOnReplicas: with --subscribe-on replicas the subscribers of
// a leader and two replicas read their streams from the replicas, round
// robin, and none from the leader. 6 s of commits leave each replica
// several polls of the log (200 ms apart) even on a loaded machine.
func TestSubscribeOnReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the real server")
	}
	bin := weaseldbBinary(t)
	var out, errOut bytes.Buffer
	code := run([]string{"--spawn", "--weaseldb", bin, "--backend", "s3", "--replicas", "2",
		"--subscribers", "4", "--subscribe-on", "replicas",
		"--connections", "2", "--duration", "6s", "--warmup", "0s", "--keys", "100", "--json", "--quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var s Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	addrs := strings.Split(s.Addr, ",")
	if len(addrs) != 3 || s.Run.Subscribers == nil {
		t.Fatalf("addr %q, subscribers %+v: want a leader, 2 replicas and subscriber figures", s.Addr, s.Run.Subscribers)
	}
	by := s.Run.Subscribers.EventsByServer
	if by[addrs[0]] != 0 {
		t.Errorf("%d events read from the leader %s; want none", by[addrs[0]], addrs[0])
	}
	for _, r := range addrs[1:] {
		if by[r] == 0 {
			t.Errorf("no events read from the replica %s: %v", r, by)
		}
	}
	if s.Run.Subscribers.Gaps != 0 || s.Run.Outcomes.OK == 0 {
		t.Errorf("%d gaps, %d commits; want no gap and commits", s.Run.Subscribers.Gaps, s.Run.Outcomes.OK)
	}
	if !strings.Contains(errOut.String(), "subscriber events by server:") {
		t.Errorf("the table does not show the events by server:\n%s", errOut.String())
	}
	t.Logf("events by server %v, leader %s", by, addrs[0])
}
