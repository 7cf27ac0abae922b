package netpoll

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestNetHTTPClient(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	client := &http.Client{}
	if got := getOK(t, client, "http://"+addr+"/hello"); got != "Hello, World!" {
		t.Fatalf("GET /hello = %q", got)
	}
	if got := getOK(t, client, "http://"+addr+"/v1/retention/abc"); got != "id=abc" {
		t.Fatalf("param = %q", got)
	}
	if got := getOK(t, client, "http://"+addr+"/v1/retention/"); got != "list" {
		t.Fatalf("list = %q", got)
	}
	body := bytes.Repeat([]byte("0123456789"), 3000)
	resp, err := client.Post("http://"+addr+"/echo", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, body) {
		t.Fatalf("echo: status %d, %d bytes", resp.StatusCode, len(got))
	}
	// A chunked upload (unknown length) through net/http.
	resp, err = client.Post("http://"+addr+"/echo", "application/octet-stream", io.MultiReader(bytes.NewReader(body[:100]), strings.NewReader("tail")))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != string(body[:100])+"tail" {
		t.Fatalf("chunked echo = %q", got)
	}
}

func TestErrorAnswers(t *testing.T) {
	srv, addr := startServer(t, Config{}, echoRoutes())
	defer func() {
		st := srv.Stats()
		if st.Responses[4] != 13 || st.Responses[5] != 3 || st.Accepted != 16 || st.Requests != 15 {
			t.Errorf("stats after the error cases: %+v", st)
		}
	}()
	cases := []struct {
		name, req string
		status    int
		code      string
		allow     string
	}{
		{"not found", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found", ""},
		{"wrong method", "DELETE /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", "GET, HEAD"},
		{"unknown method known path", "BREW /hello HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", "GET, HEAD"},
		{"unknown method unknown path", "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented", ""},
		{"param methods", "POST /v1/retention/x HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", "GET, HEAD, PUT"},
		{"empty param", "PUT /v1/retention/ HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed", "GET, HEAD"},
		{"malformed", "GET/hello HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request", ""},
		{"no host", "GET /hello HTTP/1.1\r\n\r\n", 400, "bad_request", ""},
		{"bad version", "GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported", ""},
		{"body too large", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n", 413, "payload_too_large", ""},
		{"unsupported TE", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "not_implemented", ""},
		{"bad chunk", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "bad_request", ""},
		{"bare LF chunk line", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n", 400, "bad_request", ""},
		{"bare CR in chunk extension", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;a\rb\r\nabc\r\n0\r\n\r\n", 400, "bad_request", ""},
		{"control byte in trailer", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: \x01\r\n\r\n", 400, "bad_request", ""},
		{"header too large", "GET /hello HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 20000) + "\r\n\r\n", 431, "request_header_fields_too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			mustWrite(t, c, tc.req)
			br := bufio.NewReader(c)
			resp := readResponse(t, br, "GET")
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.status, tc.status, resp.body)
			}
			want := `{"error":"` + tc.code + `"`
			if !strings.HasPrefix(resp.body, want) || resp.header.Get("Content-Type") != "application/json" {
				t.Fatalf("body %q, want prefix %q", resp.body, want)
			}
			if got := resp.header.Get("Allow"); got != tc.allow {
				t.Fatalf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestNotFoundKeepsConnection(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	c := dial(t, addr)
	mustWrite(t, c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\nDELETE /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []int{404, 405, 200} {
		if r := readResponse(t, br, "GET"); r.status != want || r.header.Get("Connection") == "close" {
			t.Fatalf("status %d (Connection %q), want %d", r.status, r.header.Get("Connection"), want)
		}
	}
}

func TestHandlerPanicClosesOnlyItsConnection(t *testing.T) {
	boom := Buffered(func(ex *Exchange, _ []byte) { panic("handler bug") })
	_, addr := startServer(t, Config{}, append(echoRoutes(), Route{Method: "GET", Path: "/boom", Handler: boom}))
	c := dial(t, addr)
	mustWrite(t, c, "GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
	if out := readAllUntilClose(t, c); out != "" {
		t.Fatalf("panicking handler answered %q", out)
	}
	if got := getOK(t, http.DefaultClient, "http://"+addr+"/hello"); got != "Hello, World!" {
		t.Fatalf("server after a panic: %q", got)
	}
}

// TestListenRefusesTakenPort: SO_REUSEPORT must not let a second server
// share (and split) a port another server listens on.
func TestListenRefusesTakenPort(t *testing.T) {
	_, addr := startServer(t, Config{}, echoRoutes())
	router, _ := NewRouter(echoRoutes())
	other, err := NewServer(Config{Reactors: 2, DisableThreadPinning: true}, router)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Shutdown(context.Background())
	if _, err := other.Listen(addr); err == nil {
		t.Fatalf("second server could listen on %s", addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := other.Listen(ln.Addr().String()); err == nil {
		t.Fatal("listened on a port net.Listen holds")
	}
}
