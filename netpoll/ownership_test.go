package netpoll

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDetachResumePipelined: commits are detached to a "pipeline"
// goroutine that answers them later; requests pipelined behind them (a
// plain GET included) are answered in order once each answer comes back.
func TestDetachResumePipelined(t *testing.T) {
	tokens := make(chan Detached, 16)
	commit := Buffered(func(ex *Exchange, body []byte) {
		d := ex.Detach()
		// The Exchange is no longer ours: answering through it is ignored.
		ex.Respond(500, "", []byte("must not appear"))
		tokens <- d
	})
	routes := append(echoRoutes(), Route{Method: "POST", Path: "/commit", Handler: commit})
	_, addr := startServer(t, Config{}, routes)

	stop := make(chan struct{})
	defer close(stop)
	answered := make(chan error, 16)
	go func() {
		for {
			select {
			case d := <-tokens:
				time.Sleep(time.Millisecond) // the pipeline takes a while
				path := string(d.Request().Path())
				err := d.Respond(200, "text/plain", []byte("committed "+path))
				if err == nil {
					err = d.Respond(200, "", nil) // a second answer must be refused
					if errors.Is(err, ErrNotOwner) {
						err = nil
					} else {
						err = fmt.Errorf("second Respond = %v, want ErrNotOwner", err)
					}
				}
				answered <- err
			case <-stop:
				return
			}
		}
	}()

	c := dial(t, addr)
	mustWrite(t, c, "POST /commit HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na"+
		"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /commit HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nb"+
		"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nlast")
	br := bufio.NewReader(c)
	for i, want := range []string{"committed /commit", "Hello, World!", "committed /commit", "last"} {
		resp := readResponse(t, br, "POST")
		if resp.body != want {
			t.Fatalf("response %d = %q, want %q", i, resp.body, want)
		}
	}
	for i := 0; i < 2; i++ {
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
	}
}

func sseRoute(streams chan<- *Stream) Route {
	return Route{Method: "GET", Path: "/subscribe", Handler: Buffered(func(ex *Exchange, _ []byte) {
		streams <- ex.StartStream(200, "text/event-stream")
	})}
}

func TestStreamWriteCloseKeepAlive(t *testing.T) {
	streams := make(chan *Stream, 1)
	_, addr := startServer(t, Config{}, append(echoRoutes(), sseRoute(streams)))
	c := dial(t, addr)
	mustWrite(t, c, "GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
	s := <-streams
	br := bufio.NewReader(c)
	req, _ := http.NewRequest("GET", "/subscribe", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Type") != "text/event-stream" || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("head %+v", resp.Header)
	}
	go func() {
		for i := 0; i < 100; i++ {
			for s.Write([]byte(fmt.Sprintf("data: %d\n\n", i))) == ErrStreamFull {
				time.Sleep(time.Millisecond)
			}
		}
		s.Close()
	}()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(body), "data: "); n != 100 || !strings.HasSuffix(string(body), "data: 99\n\n") {
		t.Fatalf("got %d events: %q", n, body)
	}
	<-s.Done()
	if s.Err() != nil || s.Write([]byte("x")) != ErrStreamClosed {
		t.Fatalf("after Close: err %v", s.Err())
	}
	// The connection goes on serving requests.
	mustWrite(t, c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	if r := readResponse(t, br, "GET"); r.body != "Hello, World!" {
		t.Fatalf("after stream: %q", r.body)
	}
}

func TestStreamPeerStopsReading(t *testing.T) {
	streams := make(chan *Stream, 1)
	cfg := Config{MaxStreamQueueBytes: 64 << 10, WriteStallTimeout: 200 * time.Millisecond}
	_, addr := startServer(t, cfg, []Route{sseRoute(streams)})
	c := dial(t, addr)
	mustWrite(t, c, "GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
	s := <-streams
	chunk := []byte(strings.Repeat("x", 16<<10))
	full := 0
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Write(chunk)
		if err == ErrStreamFull {
			full++
			time.Sleep(time.Millisecond)
		} else if err == ErrStreamClosed {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("stalled stream never closed")
		}
	}
	<-s.Done()
	if s.Err() != ErrWriteStalled || full == 0 {
		t.Fatalf("err %v, full %d", s.Err(), full)
	}
}

func TestStreamPeerCloses(t *testing.T) {
	streams := make(chan *Stream, 1)
	_, addr := startServer(t, Config{}, []Route{sseRoute(streams)})
	c := dial(t, addr)
	mustWrite(t, c, "GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
	s := <-streams
	if err := s.Write([]byte("data: hi\n\n")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-s.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("stream not told that the peer left")
	}
	if s.Err() != ErrPeerGone {
		t.Fatalf("err %v", s.Err())
	}
}

func TestStreamHTTP10CloseDelimited(t *testing.T) {
	streams := make(chan *Stream, 1)
	_, addr := startServer(t, Config{}, []Route{sseRoute(streams)})
	c := dial(t, addr)
	mustWrite(t, c, "GET /subscribe HTTP/1.0\r\n\r\n")
	s := <-streams
	s.Write([]byte("data: a\n\n"))
	s.Close()
	out := readAllUntilClose(t, c)
	if !strings.HasSuffix(out, "\r\n\r\ndata: a\n\n") || strings.Contains(out, "chunked") {
		t.Fatalf("got %q", out)
	}
}

func TestHTTPHandlerAdapter(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/bucket/", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case "PUT":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("ETag", `"`+string(body)+`"`)
			w.WriteHeader(201)
			fmt.Fprintf(w, "stored %s at %s?%s host=%s", body, r.URL.Path, r.URL.RawQuery, r.Host)
		case "HEAD":
			w.Header().Set("Content-Length", "1234")
		case "GET":
			panic("boom")
		}
	})
	routes := []Route{{Path: "*", Handler: HTTPHandler(mux), MaxBodyBytes: 1 << 20}}
	_, addr := startServer(t, Config{}, routes)
	req, _ := http.NewRequest("PUT", "http://"+addr+"/bucket/key?x=1", strings.NewReader("data"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("ETag") != `"data"` || string(body) != "stored data at /bucket/key?x=1 host="+addr {
		t.Fatalf("PUT: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	resp, err = http.Head("http://" + addr + "/bucket/key")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1234 {
		t.Fatalf("HEAD: %d length %d", resp.StatusCode, resp.ContentLength)
	}
	resp, err = http.Get("http://" + addr + "/bucket/key")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("panic: %d", resp.StatusCode)
	}
	resp, err = http.Get("http://" + addr + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("mux 404 through catch-all: %d", resp.StatusCode)
	}
}

func TestStreamHeadRequest(t *testing.T) {
	streams := make(chan *Stream, 1)
	_, addr := startServer(t, Config{}, append(echoRoutes(), sseRoute(streams)))
	c := dial(t, addr)
	mustWrite(t, c, "HEAD /subscribe HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	s := <-streams
	<-s.Done()
	br := bufio.NewReader(c)
	if r := readResponse(t, br, "HEAD"); r.status != 200 || r.body != "" {
		t.Fatalf("HEAD stream: %+v", r)
	}
	if r := readResponse(t, br, "GET"); r.body != "Hello, World!" {
		t.Fatalf("after HEAD stream: %q", r.body)
	}
}

// TestStreamMemoryReturned: a stream whose peer reads nothing fills its
// queue and the write buffer the reactor took from it; once the peer is
// gone that memory must be given back, not kept by the recycled
// connection (c.wbuf and the swapped queue kept ~5 MiB per free
// connection, 962 MB after 200 subscribers; issue 12, item 6). Also the
// server-wide stream budget bounds what the streams hold together.
func TestStreamMemoryReturned(t *testing.T) {
	const n, queue = 40, 1 << 20
	started := make(chan *Stream, n)
	h := Buffered(func(ex *Exchange, _ []byte) {
		s := ex.StartStream(200, "text/plain")
		started <- s
		go func() {
			piece := make([]byte, 64<<10)
			for {
				switch err := s.Write(piece); err {
				case nil:
				case ErrStreamFull:
					select {
					case <-s.Room():
					case <-s.Done():
						return
					}
				default:
					return
				}
			}
		}()
	})
	srv, addr := startServer(t, Config{MaxStreamQueueBytes: queue, MaxStreamBytesTotal: 30 * queue},
		[]Route{{Method: "GET", Path: "/s", Handler: h}})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4 << 10)
		mustWrite(t, c, "GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
		conns = append(conns, c)
		<-started
	}
	// The streams fill until the budget (30 queues for 40 streams) is spent.
	waitFor(t, "the stream budget to fill", func() bool { return srv.Stats().StreamBytes > 28*queue })
	time.Sleep(100 * time.Millisecond)
	if got := srv.Stats().StreamBytes; got > 30*queue {
		t.Fatalf("streams hold %d bytes, over the budget %d", got, 30*queue)
	}
	var full runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&full)

	for _, c := range conns {
		c.Close()
	}
	waitFor(t, "the streams to end", func() bool {
		st := srv.Stats()
		return st.OpenStreams == 0 && st.OpenConnections == 0 && st.StreamBytes == 0
	})
	var after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("heap in use: before %d MiB, %d stalled streams %d MiB, after they closed %d MiB",
		before.HeapInuse>>20, n, full.HeapInuse>>20, after.HeapInuse>>20)
	if after.HeapInuse > before.HeapInuse+8<<20 {
		t.Errorf("heap in use %d MiB after every stream closed, was %d MiB before: stream buffers kept", after.HeapInuse>>20, before.HeapInuse>>20)
	}
}
