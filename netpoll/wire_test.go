package netpoll

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSplitAtEveryByte sends a pipelined GET, a Content-Length POST and a
// chunked POST split in two at every byte boundary, and expects the same
// three answers each time.
func TestSplitAtEveryByte(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	msg := "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
	step := 1
	if testing.Short() {
		step = 7
	}
	for cut := 1; cut < len(msg); cut += step {
		c := dial(t, addr)
		mustWrite(t, c, msg[:cut])
		time.Sleep(time.Millisecond) // give the server a chance to see the first part alone
		mustWrite(t, c, msg[cut:])
		br := bufio.NewReader(c)
		for i, want := range []string{"Hello, World!", "hello", "abcde"} {
			resp := readResponse(t, br, "GET")
			if resp.status != 200 || resp.body != want {
				t.Fatalf("cut %d response %d: %d %q, want %q", cut, i, resp.status, resp.body, want)
			}
		}
		c.Close()
	}
}

// TestByteByByte dribbles a request one byte per write.
func TestByteByByte(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	msg := "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n"
	for i := 0; i < len(msg); i++ {
		mustWrite(t, c, msg[i:i+1])
	}
	resp := readResponse(t, bufio.NewReader(c), "POST")
	if resp.body != "wxyz" {
		t.Fatalf("got %q", resp.body)
	}
}

func TestPipelining(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	var sb strings.Builder
	const n = 200
	for i := 0; i < n; i++ {
		body := fmt.Sprintf("req-%d", i)
		fmt.Fprintf(&sb, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	go c.Write([]byte(sb.String())) // a failure shows as missing responses
	br := bufio.NewReader(c)
	for i := 0; i < n; i++ {
		resp := readResponse(t, br, "POST")
		if want := fmt.Sprintf("req-%d", i); resp.body != want {
			t.Fatalf("response %d = %q, want %q", i, resp.body, want)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	mustWrite(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after 100: %q", blank)
	}
	mustWrite(t, c, "abc")
	if resp := readResponse(t, br, "POST"); resp.body != "abc" {
		t.Fatalf("got %q", resp.body)
	}
	// Too large: 413 and no 100 Continue.
	mustWrite(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\nExpect: 100-continue\r\n\r\n")
	if resp := readResponse(t, br, "POST"); resp.status != 413 {
		t.Fatalf("status %d", resp.status)
	}
	// net/http client with ExpectContinueTimeout.
	tr := &http.Transport{ExpectContinueTimeout: 10 * time.Second}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", "http://"+addr+"/echo", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "payload" {
		t.Fatalf("got %q", got)
	}
}

func TestHTTP10AndConnectionClose(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	mustWrite(t, c, "GET /hello HTTP/1.0\r\n\r\n")
	out := readAllUntilClose(t, c)
	if !strings.Contains(out, "Hello, World!") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("HTTP/1.0: %q", out)
	}
	c = dial(t, addr)
	mustWrite(t, c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.0\r\n\r\n")
	out = readAllUntilClose(t, c)
	if strings.Count(out, "Hello, World!") != 2 || !strings.Contains(out, "Connection: keep-alive") {
		t.Fatalf("HTTP/1.0 keep-alive: %q", out)
	}
	c = dial(t, addr)
	mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	out = readAllUntilClose(t, c)
	if strings.Count(out, "Hello, World!") != 1 {
		t.Fatalf("Connection: close answered more than once: %q", out)
	}
}

func TestHeadRequest(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	mustWrite(t, c, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp := readResponse(t, br, "HEAD")
	if resp.status != 200 || resp.body != "" || resp.header.Get("Content-Length") != "13" {
		t.Fatalf("HEAD: %+v", resp)
	}
	if resp := readResponse(t, br, "GET"); resp.body != "Hello, World!" {
		t.Fatalf("GET after HEAD: %q", resp.body)
	}
}

func TestHalfClosedPeer(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
	c.(*net.TCPConn).CloseWrite()
	out := readAllUntilClose(t, c)
	if !strings.Contains(out, "Hello, World!") || !strings.HasSuffix(out, "ok") {
		t.Fatalf("half-closed: %q", out)
	}
	// A head cut off by EOF gets no answer, just a close.
	c = dial(t, addr)
	mustWrite(t, c, "GET /hel")
	c.(*net.TCPConn).CloseWrite()
	if out := readAllUntilClose(t, c); out != "" {
		t.Fatalf("partial head answered: %q", out)
	}
}

func TestTimeouts(t *testing.T) {
	cfg := Config{IdleTimeout: 200 * time.Millisecond, HeaderTimeout: 200 * time.Millisecond}
	_, addr := startServer(t, cfg, echoRoutes())
	// Idle keep-alive connection: closed after the idle timeout.
	c := dial(t, addr)
	mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	if out := readAllUntilClose(t, c); !strings.Contains(out, "Hello") {
		t.Fatalf("idle: %q", out)
	}
	// Slowloris: a head that never completes, one byte at a time.
	c = dial(t, addr)
	done := make(chan string)
	go func() { done <- readAllUntilClose(t, c) }()
	closed := false
	for i := 0; i < 400 && !closed; i++ {
		if _, err := c.Write([]byte("X")); err != nil {
			closed = true
		}
		select {
		case <-done:
			closed = true
		case <-time.After(20 * time.Millisecond):
		}
	}
	if !closed {
		t.Fatal("slowloris connection still open after 8s")
	}
}

// trickle writes piece every 20 ms until the server closes the connection
// (or 600 pieces, ~12s, pass) and returns what the server sent. The idle
// timeout of the server under test is a minute, so only the timers under
// test can close it.
func trickle(t *testing.T, c net.Conn, piece string) (string, bool) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				done <- sb.String()
				return
			}
		}
	}()
	for range 600 {
		c.Write([]byte(piece)) // an error means closed: the read side says so
		select {
		case out := <-done:
			return out, true
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.Close()
	return <-done, false
}

// TestSlowlorisEmptyLinesAndBody: a peer sending only "\r\n" every few
// seconds, or a body trickled a byte at a time, used to escape both the
// header and the idle timeout (issue 12, item 7).
func TestSlowlorisEmptyLinesAndBody(t *testing.T) {
	cfg := Config{IdleTimeout: time.Minute, HeaderTimeout: 200 * time.Millisecond, BodyTimeout: 200 * time.Millisecond, MinBodyRate: 1000}
	_, addr := startServer(t, cfg, echoRoutes())

	if out, closed := trickle(t, dial(t, addr), "\r\n"); !closed || out != "" {
		t.Errorf("empty lines forever: closed %v, got %q; want closed without an answer", closed, out)
	}

	c := dial(t, addr)
	mustWrite(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n")
	out, closed := trickle(t, c, "x")
	if !closed || !strings.HasPrefix(out, "HTTP/1.1 408") || !strings.Contains(out, `"request_timeout"`) {
		t.Errorf("trickled body: closed %v, got %q; want 408 request_timeout and close", closed, out)
	}

	c = dial(t, addr)
	mustWrite(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	out, closed = trickle(t, c, "1\r\nx\r\n")
	if !closed || !strings.HasPrefix(out, "HTTP/1.1 408") {
		t.Errorf("trickled chunked body: closed %v, got %q; want 408 and close", closed, out)
	}

	// One stray CRLF after a body is free: the connection waits for its
	// next request as any idle one does.
	c = dial(t, addr)
	br := bufio.NewReader(c)
	mustWrite(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab\r\n")
	if resp := readResponse(t, br, "POST"); resp.status != 200 || resp.body != "ab" {
		t.Fatalf("echo: %d %q", resp.status, resp.body)
	}
	time.Sleep(600 * time.Millisecond) // three header timeouts
	mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := readResponse(t, br, "GET"); resp.status != 200 {
		t.Fatalf("request after a stray CRLF and a pause: %d", resp.status)
	}
}

func TestMaxConnections(t *testing.T) {
	srv, addr := startServer(t, Config{MaxConnections: 3}, echoRoutes())
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c := dial(t, addr)
		mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
		readResponse(t, bufio.NewReader(c), "GET")
		conns = append(conns, c)
	}
	extra := dial(t, addr)
	out := readAllUntilClose(t, extra)
	if !strings.HasPrefix(out, "HTTP/1.1 503") || !strings.Contains(out, `"unavailable"`) {
		t.Fatalf("over the limit: %q", out)
	}
	if st := srv.Stats(); st.Rejected != 1 || st.OpenConnections != 3 {
		t.Fatalf("stats %+v", st)
	}
	conns[0].Close()
	// The slot frees once the server sees the close.
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().OpenConnections != 2 {
		if time.Now().After(deadline) {
			t.Fatal("closed connection still counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := dial(t, addr)
	mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := readResponse(t, bufio.NewReader(c), "GET"); resp.status != 200 {
		t.Fatalf("after a slot freed: %d", resp.status)
	}
}

func TestManyKeepAliveConnections(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 200
	}
	srv, addr := startServer(t, Config{}, echoRoutes())
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		defer c.Close()
		conns[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for round := 0; round < 3; round++ {
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf("c%d-r%d", i, round)
				fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				buf := make([]byte, 512)
				var got []byte
				for !bytes.HasSuffix(got, []byte(body)) {
					m, err := c.Read(buf)
					if err != nil {
						errs <- fmt.Errorf("conn %d: %v after %q", i, err, got)
						return
					}
					got = append(got, buf[:m]...)
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
	if st := srv.Stats(); st.OpenConnections != int64(n) {
		t.Fatalf("open connections %d, want %d", st.OpenConnections, n)
	}
}

func TestLocalConnectionHTTPClient(t *testing.T) {
	srv, _ := startServer(t, Config{}, echoRoutes())
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return srv.CreateLocalConnection()
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for i := 0; i < 20; i++ {
		if got := getOK(t, client, "http://fake-s3.local/hello"); got != "Hello, World!" {
			t.Fatalf("got %q", got)
		}
	}
	resp, err := client.Post("http://fake-s3.local/echo", "text/plain", strings.NewReader("via socketpair"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != "via socketpair" {
		t.Fatalf("got %q", got)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	release := make(chan struct{})
	slow := Buffered(func(ex *Exchange, body []byte) {
		d := ex.Detach()
		go func() {
			<-release
			d.Respond(200, "text/plain", []byte("late"))
		}()
	})
	router, _ := NewRouter([]Route{{Method: "GET", Path: "/slow", Handler: slow}, {Method: "GET", Path: "/hello", Handler: Buffered(func(ex *Exchange, _ []byte) { ex.Respond(200, "", nil) })}})
	srv, err := NewServer(Config{Reactors: 1, DisableThreadPinning: true}, router)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := srv.Listen("127.0.0.1:0")
	busy := dial(t, addr.String())
	mustWrite(t, busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	idle := dial(t, addr.String())
	mustWrite(t, idle, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	readResponse(t, bufio.NewReader(idle), "GET")
	for srv.Stats().Requests < 2 {
		time.Sleep(time.Millisecond)
	}
	shut := make(chan error)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	if out := readAllUntilClose(t, idle); out != "" {
		t.Fatalf("idle connection got %q", out)
	}
	close(release)
	out := readAllUntilClose(t, busy)
	if !strings.Contains(out, "late") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("in-flight answer: %q", out)
	}
	busy.Close() // the server lingers for our EOF after its last answer
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", addr.String()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

func TestShutdownDeadline(t *testing.T) {
	hang := Buffered(func(ex *Exchange, body []byte) { ex.Detach() }) // never answers
	router, _ := NewRouter([]Route{{Method: "GET", Path: "/hang", Handler: hang}})
	srv, _ := NewServer(Config{Reactors: 1, DisableThreadPinning: true}, router)
	addr, _ := srv.Listen("127.0.0.1:0")
	c := dial(t, addr.String())
	mustWrite(t, c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
	for srv.Stats().Requests < 1 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("shutdown = %v", err)
	}
	readAllUntilClose(t, c)
}

// bigBody streams a body much larger than the read buffer: the handler
// sees every byte in order and the head stays valid after the buffer is
// compacted under it.
type bigBody struct {
	sum  uint64
	n    int64
	head string
}

func (h *bigBody) ServeHead(ex *Exchange) { h.sum, h.n = 0, 0 }
func (h *bigBody) ServeBody(ex *Exchange, chunk []byte) {
	for _, c := range chunk {
		h.sum = h.sum*31 + uint64(c)
	}
	h.n += int64(len(chunk))
}
func (h *bigBody) ServeEnd(ex *Exchange) {
	v, _ := ex.Request().Header("X-Check")
	ex.Respond(200, "text/plain", fmt.Appendf(nil, "%d %d %s %s", h.n, h.sum, v, ex.Request().Path()))
}

func TestLargeBodies(t *testing.T) {
	h := &bigBody{}
	routes := []Route{{Method: "POST", Path: "/big", Handler: h, MaxBodyBytes: 8 << 20}}
	_, addr := startServer(t, Config{Reactors: 1}, routes)
	body := make([]byte, 3<<20+17)
	var want uint64
	for i := range body {
		body[i] = byte(i*7 + i>>9)
		want = want*31 + uint64(body[i])
	}
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd) // hides the length: net/http sends it chunked
		}
		req, _ := http.NewRequest("POST", "http://"+addr+"/big", rd)
		req.Header.Set("X-Check", "intact")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if exp := fmt.Sprintf("%d %d intact /big", len(body), want); string(got) != exp {
			t.Fatalf("chunked=%v: got %q, want %q", chunked, got, exp)
		}
	}
	// Over the limit while chunked: 413 mid-body, then close.
	req, _ := http.NewRequest("POST", "http://"+addr+"/big", io.MultiReader(bytes.NewReader(make([]byte, 9<<20))))
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("oversized chunked body: %d", resp.StatusCode)
		}
	}
}

// TestPipeliningPeerNeverReads: a client that sends requests without
// reading answers makes the server stop reading at MaxWriteBufferBytes and
// close the connection after WriteStallTimeout — bounded memory, no hang.
func TestPipeliningPeerNeverReads(t *testing.T) {
	cfg := Config{MaxWriteBufferBytes: 8 << 10, WriteStallTimeout: 200 * time.Millisecond}
	srv, addr := startServer(t, cfg, echoRoutes())
	c := dial(t, addr).(*net.TCPConn)
	c.SetReadBuffer(4 << 10)
	req := []byte(strings.Repeat("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 256))
	go func() {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := c.Write(req); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for srv.Stats().Requests == 0 || srv.Stats().OpenConnections != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("connection of a peer that never reads still open: %+v", srv.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBodyBudget: bodies being read count against MaxBodyBytesTotal (issue
// 12, item 9). A Content-Length body that does not fit is answered 503
// before it is read; small bodies still pass while a big one holds most of
// the budget; a chunked body that runs out is answered 503 and closed; the
// budget comes back when a body is complete.
func TestBodyBudget(t *testing.T) {
	echo := Buffered(func(ex *Exchange, body []byte) {
		ex.Respond(200, "text/plain", []byte(strconv.Itoa(len(body))))
	})
	routes := []Route{{Method: "POST", Path: "/echo", Handler: echo, MaxBodyBytes: 1 << 20}}
	srv, addr := startServer(t, Config{MaxBodyBytesTotal: 256 << 10}, routes)
	post := func(c net.Conn, n int, body bool) {
		t.Helper()
		mustWrite(t, c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n")
		if body {
			mustWrite(t, c, strings.Repeat("b", n))
		}
	}
	// A holds 200 KiB of the 256 KiB and sends all but one byte.
	a := dial(t, addr)
	post(a, 200<<10, false)
	mustWrite(t, a, strings.Repeat("a", 200<<10-1))
	waitFor(t, "A's reservation", func() bool { return srv.Stats().BodyBytes == 200<<10 })

	b := dial(t, addr)
	post(b, 100<<10, false)
	if out := readAllUntilClose(t, b); !strings.HasPrefix(out, "HTTP/1.1 503") || !strings.Contains(out, "total_body_bytes") {
		t.Fatalf("big body past the budget: %q, want 503 before it is read", out)
	}
	small := dial(t, addr)
	br := bufio.NewReader(small)
	post(small, 1000, true)
	if resp := readResponse(t, br, "POST"); resp.status != 200 || resp.body != "1000" {
		t.Fatalf("small body while a big one holds the budget: %d %q", resp.status, resp.body)
	}

	chunked := dial(t, addr)
	mustWrite(t, chunked, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	piece := "8000\r\n" + strings.Repeat("c", 0x8000) + "\r\n"
	go func() {
		for range 8 { // 256 KiB: more than is left
			if _, err := chunked.Write([]byte(piece)); err != nil {
				return
			}
		}
	}()
	if out := readAllUntilClose(t, chunked); !strings.HasPrefix(out, "HTTP/1.1 503") {
		t.Fatalf("chunked body past the budget: %q, want 503", out)
	}

	mustWrite(t, a, "a")
	if resp := readResponse(t, bufio.NewReader(a), "POST"); resp.status != 200 || resp.body != strconv.Itoa(200<<10) {
		t.Fatalf("A completes: %d %q", resp.status, resp.body)
	}
	waitFor(t, "the budget back", func() bool { return srv.Stats().BodyBytes == 0 })
	c := dial(t, addr)
	post(c, 100<<10, true)
	if resp := readResponse(t, bufio.NewReader(c), "POST"); resp.status != 200 {
		t.Fatalf("big body once the budget is back: %d", resp.status)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
