package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/engine"
	"github.com/weaseldb/weaseldb/netpoll"
	"github.com/weaseldb/weaseldb/persist/memlog"
)

// testServer is the API on an engine over persist/memlog, served by a real
// netpoll server; clients reach it through local connections.
type testServer struct {
	api *API
	eng *engine.Engine
	srv *netpoll.Server
}

func startTestServer(t testing.TB, cfg config.Config) *testServer {
	t.Helper()
	return startTestServerEngine(t, cfg, engine.Config{})
}

// startTestServerEngine is startTestServer with an engine configuration.
func startTestServerEngine(t testing.TB, cfg config.Config, ecfg engine.Config) *testServer {
	t.Helper()
	log := memlog.NewStore().Open()
	eng, err := engine.Open(context.Background(), ecfg, log)
	if err != nil {
		t.Fatal(err)
	}
	a := New(cfg, eng, log, Options{})
	router, err := netpoll.NewRouter(a.Routes())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := netpoll.NewServer(netpoll.Config{Reactors: 1, DisableThreadPinning: true, MaxDetachedPerConn: cfg.Server.MaxPipelinedCommits}, router)
	if err != nil {
		t.Fatal(err)
	}
	a.SetReady(true)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		eng.Close(ctx)
		a.CloseSubscribers(ctx)
		srv.Shutdown(ctx)
		log.Close()
	})
	return &testServer{api: a, eng: eng, srv: srv}
}

// rawConn is a keep-alive client connection that reads answers into one
// reused buffer, so that it allocates nothing itself.
type rawConn struct {
	c   net.Conn
	buf []byte
}

func (ts *testServer) dial(t testing.TB) *rawConn {
	t.Helper()
	c, err := ts.srv.CreateLocalConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{c: c, buf: make([]byte, 64<<10)}
}

var (
	headEnd       = []byte("\r\n\r\n")
	contentLength = []byte("\r\ncontent-length:")
)

// roundTrip writes one pre-encoded request and reads one answer (with a
// Content-Length). It returns the status code and the body, which is valid
// until the next call.
func (rc *rawConn) roundTrip(req []byte) (int, []byte, error) {
	if _, err := rc.c.Write(req); err != nil {
		return 0, nil, err
	}
	return rc.readAnswer()
}

// readAnswer reads one answer to a request written earlier (see roundTrip).
func (rc *rawConn) readAnswer() (int, []byte, error) {
	n, want := 0, -1
	for want < 0 || n < want {
		if n == len(rc.buf) {
			return 0, nil, fmt.Errorf("answer larger than %d bytes", len(rc.buf))
		}
		m, err := rc.c.Read(rc.buf[n:])
		if err != nil {
			return 0, nil, err
		}
		n += m
		if want < 0 {
			want = answerLen(rc.buf[:n])
		}
	}
	if n != want {
		return 0, nil, fmt.Errorf("%d bytes beyond the answer", n-want)
	}
	head := rc.buf[:bytes.Index(rc.buf[:n], headEnd)]
	status := 0
	if len(head) >= 12 {
		status = int(head[9]-'0')*100 + int(head[10]-'0')*10 + int(head[11]-'0')
	}
	return status, rc.buf[len(head)+len(headEnd) : n], nil
}

// answerLen returns the length of the answer at the start of b once its
// head is complete, else -1.
func answerLen(b []byte) int {
	end := bytes.Index(b, headEnd)
	if end < 0 {
		return -1
	}
	head := b[:end+2]
	i := indexFold(head, contentLength)
	if i < 0 {
		return end + len(headEnd)
	}
	v := head[i+len(contentLength):]
	v = v[:bytes.IndexByte(v, '\r')]
	cl, err := strconv.Atoi(string(bytes.TrimSpace(v)))
	if err != nil {
		return -1
	}
	return end + len(headEnd) + cl
}

// indexFold is bytes.Index ignoring ASCII case of b (sep is lower case),
// without allocating.
func indexFold(b, sep []byte) int {
	for i := 0; i+len(sep) <= len(b); i++ {
		j := 0
		for j < len(sep) && lower(b[i+j]) == sep[j] {
			j++
		}
		if j == len(sep) {
			return i
		}
	}
	return -1
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// commitRequest is a complete POST /v1/commit request with a unique
// request id, writing key.
func commitRequest(i int, key string) []byte {
	body := fmt.Sprintf(`{"request_id":"alloc-test-%020d","operations":[{"type":"write","key":%q,"value":"dmFsdWU="}]}`, i, key)
	return fmt.Appendf(nil, "POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}
