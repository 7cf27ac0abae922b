package netpoll

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startServer runs a server with routes on 127.0.0.1:0 and shuts it down
// at the end of the test.
func startServer(t testing.TB, cfg Config, routes []Route) (*Server, string) {
	t.Helper()
	router, err := NewRouter(routes)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Reactors == 0 {
		cfg.Reactors = 2
	}
	cfg.DisableThreadPinning = true // tests share the machine
	srv, err := NewServer(cfg, router)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv, addr.String()
}

// echoRoutes is the standard test table.
func echoRoutes() []Route {
	hello := Buffered(func(ex *Exchange, body []byte) {
		ex.Respond(200, "text/plain", []byte("Hello, World!"))
	})
	echo := Buffered(func(ex *Exchange, body []byte) {
		ex.Respond(200, "application/octet-stream", body)
	})
	param := Buffered(func(ex *Exchange, body []byte) {
		id, _ := ex.Request().Param("id")
		ex.Respond(200, "text/plain", append([]byte("id="), id...))
	})
	list := Buffered(func(ex *Exchange, body []byte) {
		ex.Respond(200, "text/plain", []byte("list"))
	})
	return []Route{
		{Method: "GET", Path: "/hello", Handler: hello},
		{Method: "POST", Path: "/echo", Handler: echo, MaxBodyBytes: 1 << 16},
		{Method: "GET", Path: "/v1/retention/{id}", Handler: param},
		{Method: "PUT", Path: "/v1/retention/{id}", Handler: param},
		{Method: "GET", Path: "/v1/retention/", Handler: list},
	}
}

type rawResponse struct {
	status int
	header http.Header
	body   string
}

// readResponse reads one response with net/http's parser.
func readResponse(t testing.TB, br *bufio.Reader, method string) rawResponse {
	t.Helper()
	req, _ := http.NewRequest(method, "/", nil)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	if _, err := bufioCopy(&sb, resp); err != nil {
		t.Fatalf("read body: %v", err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: sb.String()}
}

func bufioCopy(sb *strings.Builder, resp *http.Response) (int64, error) {
	buf := make([]byte, 4096)
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		sb.Write(buf[:m])
		n += int64(m)
		if err != nil {
			if err.Error() == "EOF" {
				return n, nil
			}
			return n, err
		}
	}
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustWrite(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readAllUntilClose reads until EOF (bounded by a generous deadline so a
// bug fails instead of hanging).
func readAllUntilClose(t testing.TB, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection not closed; got %q", sb.String())
			}
			return sb.String()
		}
	}
}

func getOK(t testing.TB, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	bufioCopy(&sb, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, sb.String())
	}
	return sb.String()
}

var _ = fmt.Sprintf
