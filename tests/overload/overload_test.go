// Package overload attacks the real weaseldb binary with idle connections,
// slowloris clients, oversized bodies and malformed requests, stalled and
// numerous subscribers — while a normal committer keeps committing — and
// checks that the committer is always served, that every bad client gets the
// right 4xx (or is closed within the limits), and that the server's memory
// stays bounded (its peak RSS is logged; only a generous bound is asserted).
//
// Short form (always): 1,000 idle connections, 200 subscribers. Long form:
// WEASELDB_OVERLOAD_LONG=1 (10,000 idle connections, 1,000 subscribers).
package overload

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/tests/internal/harness"
)

var bin string

func TestMain(m *testing.M) {
	// The server is our child and inherits this limit; both sides of 10,000
	// connections need descriptors.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
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

func long() bool { return os.Getenv("WEASELDB_OVERLOAD_LONG") != "" }

// rssBound is deliberately generous: the point is "bounded", not a figure
// (the figure is logged and written to bench/results/reliability.md).
const rssBound = 2 << 30

// overloadConfig shortens the timeouts the test waits for and leaves room
// for the idle connections.
const overloadConfig = `
[server]
max_connections = 12000
header_timeout = "1s"
write_stall_timeout = "1s"
max_body_bytes = 1048576

[subscribe]
buffer_bytes = 262144
max_subscribers = 2000
`

func start(t *testing.T) *harness.Server {
	t.Helper()
	srv, err := harness.Start(harness.Options{Bin: bin, DataDir: t.TempDir(), Config: overloadConfig})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", srv.Log())
		}
		srv.Kill()
	})
	return srv
}

// committer commits blind writes until ctx ends; every answer must be 200.
type committer struct {
	ok, failed atomic.Int64
	firstErr   atomic.Value
}

func (c *committer) run(ctx context.Context, url string, value int) {
	hc := &http.Client{Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	val := strings.Repeat("QUFB", value/4+1)
	for i := 0; ctx.Err() == nil; i++ {
		code, ans, err := harness.Commit(context.Background(), hc, url, harness.CommitRequest{
			RequestID:  fmt.Sprintf("committer-%020d-%d", i, time.Now().UnixNano()),
			Operations: []harness.Op{{Type: "write", Key: "Y291bnRlcg==", Value: val}},
		})
		if err != nil || code != 200 {
			c.failed.Add(1)
			c.firstErr.CompareAndSwap(nil, fmt.Sprintf("HTTP %d %+v %v", code, ans, err))
			continue
		}
		c.ok.Add(1)
	}
}

func (c *committer) check(t *testing.T) {
	t.Helper()
	if c.failed.Load() > 0 {
		t.Errorf("the normal committer failed %d times (first: %v)", c.failed.Load(), c.firstErr.Load())
	}
	if c.ok.Load() == 0 {
		t.Errorf("the normal committer never succeeded")
	}
}

func reportRSS(t *testing.T, srv *harness.Server, what string) {
	t.Helper()
	hwm, err := srv.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: server peak RSS (VmHWM) %.1f MiB", what, float64(hwm)/(1<<20))
	if hwm > rssBound {
		t.Errorf("%s: peak RSS %d bytes > bound %d", what, hwm, int64(rssBound))
	}
}

// rawExchange sends req on a fresh connection and returns the status line
// and the body of the first answer (reading at most 64 KiB), or an error.
func rawExchange(addr string, req []byte, deadline time.Duration) (string, string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	if _, err := c.Write(req); err != nil {
		// The server may answer and close before reading everything.
		if !isReset(err) {
			return "", "", err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.Status, string(body), nil
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "broken pipe"))
}

// TestOverload: idle connections, slowloris, oversized and malformed
// requests at once, while the committer keeps going.
func TestOverload(t *testing.T) {
	srv := start(t)
	idle, slowloris, duration := 1000, 50, 3*time.Second
	if long() {
		idle, slowloris, duration = 10000, 500, 20*time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cm committer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cm.run(ctx, srv.URL, 100) }()

	// Idle connections: opened and held, never a byte sent.
	conns := make([]net.Conn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}

	// Slowloris: a head dribbled one byte at a time must be cut off after
	// the header timeout (1s here), with a 408 or a close.
	var slowClosed, slowWrong atomic.Int64
	for range slowloris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dribble(srv.Addr, 15*time.Second); err != nil {
				slowWrong.Add(1)
				t.Errorf("slowloris: %v", err)
				return
			}
			slowClosed.Add(1)
		}()
	}

	// Bad requests, each on its own connection, over and over.
	var badServed atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				bc := badClients[(w+i)%len(badClients)]
				status, body, err := rawExchange(srv.Addr, bc.req(), 10*time.Second)
				if err != nil {
					t.Errorf("%s: %v", bc.name, err)
					return
				}
				if !strings.HasPrefix(status, bc.want) {
					t.Errorf("%s: got %q %s, want %s", bc.name, status, body, bc.want)
					return
				}
				if bc.code != "" && !strings.Contains(body, `"error":"`+bc.code+`"`) {
					t.Errorf("%s: body %s, want error code %s", bc.name, body, bc.code)
					return
				}
				badServed.Add(1)
			}
		}()
	}

	time.Sleep(duration)
	cancel()
	wg.Wait()
	cm.check(t)
	if slowClosed.Load() != int64(slowloris) {
		t.Errorf("slowloris: %d of %d cut off", slowClosed.Load(), slowloris)
	}
	// The idle connections: the server may keep them (idle timeout 2m) but
	// must still accept and serve a new client now.
	if _, err := harness.Version(context.Background(), &http.Client{Timeout: 10 * time.Second}, srv.URL); err != nil {
		t.Errorf("after the storm: %v", err)
	}
	t.Logf("overload: %d idle connections, %d slowloris cut off, %d bad requests answered correctly, committer %d ok / %d failed",
		idle, slowClosed.Load(), badServed.Load(), cm.ok.Load(), cm.failed.Load())
	reportRSS(t, srv, fmt.Sprintf("overload (%d idle connections)", idle))
}

// dribble sends a request head one byte every 100ms and returns nil once the
// server cuts it off (408 or a close) before limit.
func dribble(addr string, limit time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	head := []byte("POST /v1/commit HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000))
	startedAt := time.Now()
	closed := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c) // until the server closes
		closed <- string(b)
	}()
	for i := 0; ; i++ {
		select {
		case answer := <-closed:
			if answer != "" && !strings.HasPrefix(answer, "HTTP/1.1 408") {
				return fmt.Errorf("cut off with %q, want 408 or a bare close", firstLine(answer))
			}
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(startedAt) > limit {
			return fmt.Errorf("still connected after %v of dribbling", limit)
		}
		if i < len(head) {
			c.Write(head[i : i+1])
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

type badClient struct {
	name string
	req  func() []byte
	want string // status prefix
	code string // JSON error code, "" to skip the check
}

func post(path, contentType, body string, extra ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n", path, len(body))
	if contentType != "" {
		fmt.Fprintf(&b, "Content-Type: %s\r\n", contentType)
	}
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

var badClients = []badClient{
	{"garbage request line", func() []byte { return []byte("\x00\x01GARBAGE\r\n\r\n") }, "400", "bad_request"},
	{"malformed JSON", func() []byte { return post("/v1/commit", "application/json", `{"operations":[`) }, "400", "bad_request"},
	{"unknown field", func() []byte { return post("/v1/commit", "application/json", `{"operationz":[]}`) }, "400", "bad_request"},
	{"bad base64", func() []byte {
		return post("/v1/commit", "application/json", `{"operations":[{"type":"write","key":"!!","value":"eA=="}]}`)
	}, "400", "bad_request"},
	{"form content type", func() []byte { return post("/v1/commit", "application/x-www-form-urlencoded", `{}`) }, "415", "unsupported_media_type"},
	{"declared body over the limit", func() []byte {
		return []byte("POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{")
	}, "413", "payload_too_large"},
	{"value over the limit", func() []byte {
		return post("/v1/commit", "application/json", `{"operations":[{"type":"write","key":"eA==","value":"`+strings.Repeat("QUFB", 200<<10/3)+`"}]}`)
	}, "413", "payload_too_large"},
	{"chunked body over the limit", func() []byte {
		var b bytes.Buffer
		b.WriteString("POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		chunk := strings.Repeat("x", 256<<10)
		for range 6 {
			fmt.Fprintf(&b, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}, "4", ""}, // 400 (not JSON) or 413, whichever the parser reaches first
	{"head over the limit", func() []byte {
		return []byte("GET /v1/version HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 32<<10) + "\r\n\r\n")
	}, "431", ""},
	{"unknown path", func() []byte { return []byte("GET /v1/nope HTTP/1.1\r\nHost: x\r\n\r\n") }, "404", "not_found"},
	{"wrong method", func() []byte { return []byte("DELETE /v1/commit HTTP/1.1\r\nHost: x\r\n\r\n") }, "405", "method_not_allowed"},
}

// TestStalledSubscriber: a subscriber that never reads (its receive window
// full) is closed after the write stall timeout; commits go on meanwhile.
func TestStalledSubscriber(t *testing.T) {
	srv := start(t)
	d := net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	c, err := d.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/subscribe?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")

	ctx, cancel := context.WithCancel(context.Background())
	var cm committer
	done := make(chan struct{})
	go func() { defer close(done); cm.run(ctx, srv.URL, 32<<10) }()
	time.Sleep(4 * time.Second) // many times the 1s stall timeout, with 32 KiB values flowing
	cancel()
	<-done
	cm.check(t)

	// Now read: the server must have closed the stream, so draining what
	// the kernel buffered ends in EOF instead of blocking on keep-alives.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("stalled subscriber was not closed by the server (read %d bytes, then %v)", n, err)
	}
	t.Logf("stalled subscriber closed after %d bytes; committer %d commits of 32 KiB meanwhile", n, cm.ok.Load())
	reportRSS(t, srv, "stalled subscriber")
}

// TestManySubscribers: many subscribers at once all receive every commit;
// the committer is unaffected.
func TestManySubscribers(t *testing.T) {
	srv := start(t)
	subs, commits := 200, 200
	if long() {
		subs, commits = 1000, 1000
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: subs + 10, MaxConnsPerHost: 0}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := harness.Version(ctx, hc, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var complete atomic.Int64
	errs := make(chan error, subs)
	opened := make(chan struct{}, subs)
	for range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := harness.Subscribe(ctx, hc, srv.URL, v.Version)
			opened <- struct{}{}
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			for want := v.Version + 1; want <= v.Version+uint64(commits); want++ {
				txn, err := s.NextTxn()
				if err != nil {
					errs <- err
					return
				}
				if txn.Version != want {
					errs <- fmt.Errorf("subscriber got version %d, want %d", txn.Version, want)
					return
				}
			}
			complete.Add(1)
		}()
	}
	for range subs {
		<-opened
	}
	hc2 := &http.Client{}
	for i := range commits {
		code, ans, err := harness.Commit(ctx, hc2, srv.URL, harness.CommitRequest{
			RequestID:  fmt.Sprintf("fanout-%020d", i),
			Operations: []harness.Op{{Type: "write", Key: "a2V5", Value: strings.Repeat("QUFB", 256)}},
		})
		if err != nil || code != 200 {
			t.Fatalf("commit %d with %d subscribers: HTTP %d %+v %v", i, subs, code, ans, err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if complete.Load() != int64(subs) {
		t.Errorf("%d of %d subscribers saw all %d commits", complete.Load(), subs, commits)
	}
	t.Logf("%d subscribers each received %d commits", complete.Load(), commits)
	reportRSS(t, srv, fmt.Sprintf("%d subscribers", subs))
}
