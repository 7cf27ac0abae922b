package httpapi

import (
	"fmt"
	"strings"
	"testing"

	"github.com/weaseldb/weaseldb/config"
	"github.com/weaseldb/weaseldb/tx"
)

func TestParsePolicyBody(t *testing.T) {
	for _, c := range []struct {
		body string
		want tx.Version
		ok   bool
	}{
		{`{"version":0}`, 0, true},
		{` {"version" : 18446744073709551615} `, 1<<64 - 1, true},
		{`{"version":18446744073709551616}`, 0, false},
		{`{"version":"1"}`, 0, false}, // a quoted number is a wrong type
		{`{"version":-1}`, 0, false},
		{`{"version":1.0}`, 0, false},
		{`{"version":1e3}`, 0, false},
		{`{"version":01}`, 0, false},
		{`{"version":null}`, 0, false},
		{`{}`, 0, false},
		{`{"version":1,"extra":2}`, 0, false},
		{`{"version":1} {}`, 0, false},
		{``, 0, false},
		{`[]`, 0, false},
	} {
		v, msg := parsePolicyBody([]byte(c.body))
		if ok := msg == ""; ok != c.ok || (ok && v != c.want) {
			t.Errorf("parsePolicyBody(%s) = %d, %q; want %d ok=%v", c.body, v, msg, c.want, c.ok)
		}
		if msg != "" && !strings.Contains(msg, "version") && !strings.Contains(msg, "body") {
			t.Errorf("parsePolicyBody(%s): message %q names no field", c.body, msg)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, ok := range map[string]bool{"0": true, "42": true, "18446744073709551615": true,
		"": false, "00": false, "042": false, "-1": false, "+1": false, "1x": false, " 1": false, "18446744073709551616": false} {
		if _, err := parseVersion([]byte(in)); (err == nil) != ok {
			t.Errorf("parseVersion(%q): err %v, want ok=%v", in, err, ok)
		}
	}
}

func TestClipOperations(t *testing.T) {
	ops := []tx.Operation{
		{Type: tx.OpWrite, Key: []byte("a"), Value: []byte("1")},
		{Type: tx.OpDelete, Key: []byte("m")},
		{Type: tx.OpRangeDelete, Key: []byte("a"), End: []byte("z")},
		{Type: tx.OpRangeDelete, Key: []byte("n"), End: []byte("p")},
		{Type: tx.OpWrite, Key: []byte("n"), Value: []byte("2")},
	}
	show := func(ops []tx.Operation) string {
		var b strings.Builder
		for _, op := range ops {
			fmt.Fprintf(&b, "%d:%s-%s ", op.Type, op.Key, op.End)
		}
		return b.String()
	}
	for _, c := range []struct {
		begin, end string
		noEnd      bool
		want       []tx.Operation
	}{
		{begin: "b", end: "n", want: []tx.Operation{ops[1], {Type: tx.OpRangeDelete, Key: []byte("b"), End: []byte("n")}}},
		{begin: "y", noEnd: true, want: []tx.Operation{{Type: tx.OpRangeDelete, Key: []byte("y"), End: []byte("z")}}},
		{begin: "", end: "b", want: []tx.Operation{ops[0], {Type: tx.OpRangeDelete, Key: []byte("a"), End: []byte("b")}}},
		{begin: "z", noEnd: true, want: nil}, // [a,z) ends where the range starts
		{begin: "n", end: "o", want: []tx.Operation{{Type: tx.OpRangeDelete, Key: []byte("n"), End: []byte("o")},
			{Type: tx.OpRangeDelete, Key: []byte("n"), End: []byte("o")}, ops[4]}},
	} {
		var end []byte
		if !c.noEnd {
			end = []byte(c.end)
		}
		got := clipOperations(nil, ops, []byte(c.begin), end)
		if show(got) != show(c.want) {
			t.Errorf("clip to [%q, %q): got %s want %s", c.begin, end, show(got), show(c.want))
		}
	}
	// The input is not modified.
	if string(ops[2].Key) != "a" || string(ops[2].End) != "z" {
		t.Errorf("clipOperations modified its input: %s", show(ops))
	}
}

// TestWireErrors: answers produced before the engine is involved, over a
// local connection (a fresh one each: the server may close a connection
// whose request it refused before reading the body).
func TestWireErrors(t *testing.T) {
	cfg := config.Default()
	cfg.Server.MaxKeyBytes = 4
	ts := startTestServer(t, cfg)
	post := func(ct, body string) []byte {
		h := "POST /v1/commit HTTP/1.1\r\nHost: x\r\n"
		if ct != "" {
			h += "Content-Type: " + ct + "\r\n"
		}
		return fmt.Appendf(nil, "%sContent-Length: %d\r\n\r\n%s", h, len(body), body)
	}
	for _, c := range []struct {
		req    []byte
		status int
		want   string
	}{
		{post("text/plain", `{}`), 415, `"error":"unsupported_media_type"`},
		{post("application/json", `{"x":1}`), 400, `"error":"bad_request"`},
		{post("application/json", `{"operations":[{"type":"write","key":"YWJjZGU=","value":""}]}`), 413, `"error":"payload_too_large"`},
		{post("Application/JSON ; charset=utf-8", `{}`), 200, `"status":"committed"`},
		{[]byte("GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n"), 200, `"version":1`},
		{[]byte("GET /v1/status?request_id=%zz HTTP/1.1\r\nHost: x\r\n\r\n"), 400, `request_id`},
		{[]byte("GET /v1/subscribe?after=99 HTTP/1.1\r\nHost: x\r\n\r\n"), 400, `"reason":"future_version"`},
		{[]byte("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"), 200, `"status":"ready"`},
	} {
		status, body, err := ts.dial(t).roundTrip(c.req)
		if err != nil {
			t.Fatalf("%q: %v", c.req, err)
		}
		if status != c.status || !strings.Contains(string(body), c.want) {
			t.Errorf("%q: %d %s, want %d containing %s", c.req, status, body, c.status, c.want)
		}
	}
	ts.api.SetReady(false)
	if status, body, err := ts.dial(t).roundTrip([]byte("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil || status != 503 {
		t.Errorf("readyz when not ready: %d %s %v", status, body, err)
	}
}
