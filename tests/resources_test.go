package tests

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLoneSurrogateRequestID: "\ud800-…" and "\udbff-…" used to decode to
// the same request_id (U+FFFD), so the second commit was answered
// duplicate: true though its write was never applied (issue 12, item 10).
// A lone surrogate in any JSON string is a 400 naming the field.
func TestLoneSurrogateRequestID(t *testing.T) {
	s := startServer(t, spec{})
	for _, body := range []string{
		`{"request_id":"\ud800-lone-surrogate-0001","operations":[{"type":"write","key":"YQ==","value":"MQ=="}]}`,
		`{"request_id":"\udbff-lone-surrogate-0001","operations":[{"type":"write","key":"YQ==","value":"Mg=="}]}`,
		`{"request_id":"lone-surrogate-0001-\udc00","operations":[]}`,
	} {
		status, o := s.commitRaw(body)
		wantError(t, body, status, o, 400, "bad_request")
		if !strings.Contains(o.str("message"), "request_id") || !strings.Contains(o.str("message"), "surrogate") {
			t.Errorf("%s: message %q must name request_id and the lone surrogate", body, o.str("message"))
		}
	}
	status, o := s.commitRaw(`{"operations":[{"type":"write","key":"\ud800","value":""}]}`)
	wantError(t, "lone surrogate in a key", status, o, 400, "bad_request")
	if !strings.Contains(o.str("message"), "operations[0].key") {
		t.Errorf("message %q must name operations[0].key", o.str("message"))
	}
	// A proper pair is a character like any other.
	status, o = s.commitRaw(`{"request_id":"\ud83d\ude00-pair-0123456789abcdef","operations":[]}`)
	wantCommitted(t, "request_id with a surrogate pair", status, o)
	if v := s.version(); v != 1 {
		t.Errorf("version %d after refused bodies and one commit, want 1", v)
	}
}

// rawStatus sends req over a fresh TCP connection and returns the status
// code of the first answer (0 if the server closed without one).
func rawStatus(t *testing.T, s *server, req string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.URL, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStrictChunked: bare-LF chunk lines and a bare CR or control bytes in
// chunk extensions or trailers used to be accepted (issue 12, item 14);
// they are how a proxy and a server are made to disagree on a body's end.
func TestStrictChunked(t *testing.T) {
	s := startServer(t, spec{})
	body := `{"operations":[]}`
	head := "POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	size := strconv.FormatInt(int64(len(body)), 16)
	for _, tc := range []struct{ name, chunks string }{
		{"bare LF after size", size + "\n" + body + "\r\n0\r\n\r\n"},
		{"bare LF after data", size + "\r\n" + body + "\n0\r\n\r\n"},
		{"bare LF last line", size + "\r\n" + body + "\r\n0\r\n\n"},
		{"bare CR in extension", size + ";a\rb\r\n" + body + "\r\n0\r\n\r\n"},
		{"NUL in extension", size + ";a=\x00\r\n" + body + "\r\n0\r\n\r\n"},
		{"bare CR in trailer", size + "\r\n" + body + "\r\n0\r\nT: a\rb\r\n\r\n"},
		{"control byte in trailer", size + "\r\n" + body + "\r\n0\r\nT: \x1b\r\n\r\n"},
	} {
		if got := rawStatus(t, s, head+tc.chunks); got != 400 {
			t.Errorf("%s: status %d, want 400", tc.name, got)
		}
	}
	if v := s.version(); v != 0 {
		t.Errorf("refused chunked bodies committed: version %d", v)
	}
	if got := rawStatus(t, s, head+size+";ext=\"v\"\r\n"+body+"\r\n0\r\nT: v\r\n\r\n"); got != 200 {
		t.Errorf("well-formed chunked commit: status %d, want 200", got)
	}
}

// TestAbsoluteFormTarget: "GET http://host/v1/version" used to get 400;
// RFC 9112 §3.2.2 says a server must accept absolute-form targets
// (issue 12, item 13).
func TestAbsoluteFormTarget(t *testing.T) {
	s := startServer(t, spec{})
	host := strings.TrimPrefix(s.URL, "http://")
	for _, target := range []string{"http://" + host + "/v1/version", "HTTP://other.example/v1/version"} {
		if got := rawStatus(t, s, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); got != 200 {
			t.Errorf("GET %s: status %d, want 200", target, got)
		}
	}
	body := `{"operations":[]}`
	req := "POST http://" + host + "/v1/commit HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	if got := rawStatus(t, s, req); got != 200 {
		t.Errorf("absolute-form commit: status %d, want 200", got)
	}
	if got := rawStatus(t, s, "GET http://u@"+host+"/v1/version HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); got != 400 {
		t.Errorf("absolute-form with userinfo: status %d, want 400", got)
	}
}

// TestSlowloris: connections sending only "\r\n" every so often, or a
// commit body a byte at a time, escaped header_timeout and idle_timeout and
// filled max_connections, so every new client got 503 (issue 12, item 7).
// Each must now be closed by the head or body timer, and a client after
// them must be served.
func TestSlowloris(t *testing.T) {
	s := startServer(t, spec{conf: conf{"server": {
		"max_connections = 6", `header_timeout = "300ms"`, `body_timeout = "300ms"`, "min_body_rate = 1000",
	}}})
	addr := strings.TrimPrefix(s.URL, "http://")
	type result struct {
		what   string
		closed bool
		out    string
	}
	results := make(chan result, 6)
	for i := range 6 {
		what, head, piece := "empty lines", "", "\r\n"
		if i%2 == 1 {
			what, head, piece = "trickled body", "POST /v1/commit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", " "
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(90 * time.Second))
			c.Write([]byte(head))
			read := make(chan string, 1)
			go func() {
				b, _ := io.ReadAll(c)
				read <- string(b)
			}()
			// One piece every 100 ms for up to 60 s: far longer than any
			// timer under test, far shorter than the idle timeout (120 s).
			for range 600 {
				c.Write([]byte(piece))
				select {
				case out := <-read:
					results <- result{what, true, out}
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			results <- result{what, false, ""}
		}()
	}
	for range 6 {
		r := <-results
		if !r.closed {
			t.Errorf("%s: connection still open after 60 s", r.what)
		} else if r.what == "trickled body" && !strings.HasPrefix(r.out, "HTTP/1.1 408") {
			t.Errorf("%s: got %q, want a 408 before the close", r.what, r.out)
		}
	}
	status, o := s.commitRaw(`{"operations":[]}`)
	wantCommitted(t, "commit after the slowloris connections", status, o)
}
