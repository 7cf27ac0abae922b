package netpoll

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

const sampleHead = "POST /v1/commit?durable=false&x=a%2Bb&flag HTTP/1.1\r\n" +
	"Host: localhost:8080\r\n" +
	"User-Agent: weaseldb-client/1.0\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 300\r\n" +
	"Accept: */*\r\n" +
	"X-Request-Id:   abc \t\r\n" +
	"\r\n"

func TestParseHead(t *testing.T) {
	var r Request
	b := []byte(sampleHead)
	end, _ := findHeadEnd(b, 0)
	if end != len(b) {
		t.Fatalf("head end %d, want %d", end, len(b))
	}
	if err := parseHead(b, &r); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got []byte, want string) {
		t.Helper()
		if string(got) != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	check("method", r.Method(), "POST")
	check("path", r.Path(), "/v1/commit")
	check("query", r.RawQuery(), "durable=false&x=a%2Bb&flag")
	v, ok := r.Header("x-request-id")
	check("x-request-id", v, "abc")
	if !ok || r.ContentLength() != 300 || r.Chunked() || r.HTTP10() {
		t.Errorf("framing: ok %v cl %d", ok, r.ContentLength())
	}
	q, _ := r.Query("x")
	dec, err := AppendUnescapeQuery(nil, q)
	check("query x", dec, "a+b")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Query("flag"); !ok || len(v) != 0 {
		t.Errorf("flag = %q %v", v, ok)
	}
	if _, ok := r.Query("nope"); ok {
		t.Error("missing query parameter found")
	}
	if _, ok := r.Header("Nope"); ok {
		t.Error("missing header found")
	}
}

// TestParseAbsoluteForm: RFC 9112 §3.2.2 says a server must accept an
// absolute-form target; routing then sees its path alone (issue 12, item 13).
func TestParseAbsoluteForm(t *testing.T) {
	for _, tc := range []struct{ target, path, query string }{
		{"http://localhost:8080/v1/version", "/v1/version", ""},
		{"HTTPS://h/v1/subscribe?after=3", "/v1/subscribe", "after=3"},
		{"http://[::1]:1/a/b?", "/a/b", ""},
		{"http://h", "/", ""},
		{"http://h?x=1", "/", "x=1"},
		{"/plain?y", "/plain", "y"},
	} {
		var r Request
		head := "GET " + tc.target + " HTTP/1.1\r\nHost: h\r\n\r\n"
		if err := parseHead([]byte(head), &r); err != nil {
			t.Errorf("%q: %v", tc.target, err)
			continue
		}
		if string(r.Path()) != tc.path || string(r.RawQuery()) != tc.query || string(r.Target()) != tc.target {
			t.Errorf("%q: path %q query %q target %q, want %q %q", tc.target, r.Path(), r.RawQuery(), r.Target(), tc.path, tc.query)
		}
	}
}

func TestParseHeadRejects(t *testing.T) {
	cases := map[string]*headError{
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n":                                         errObsFold,
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n":                                                   errMalformedHeader,
		"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n":                                                errMalformedHeader,
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n":                                         errMissingHost,
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n":          errBadContentLength,
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n":                              errBadContentLength,
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n": errLengthAndChunked,
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n":                                   errExpectation,
		"GET x/ HTTP/1.1\r\nHost: a\r\n\r\n":                                                   errBadTarget,
		"GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n":                                             errBadTarget,
		"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n":                                            errBadTarget,
		"GET http://u@x/ HTTP/1.1\r\nHost: a\r\n\r\n":                                          errBadTarget,
		"GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n":                                              errBadTarget,
		"GET http://x HTTP/1.1\r\n\r\n":                                                        errMissingHost,
		"GET / HTTP/3.0\r\nHost: a\r\n\r\n":                                                    errVersion,
		"GET / FOO\r\nHost: a\r\n\r\n":                                                         errMalformedRequestLine,
		"G(T / HTTP/1.1\r\nHost: a\r\n\r\n":                                                    errMalformedRequestLine,
		"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n":                                                 errMalformedRequestLine,
	}
	for head, want := range cases {
		var r Request
		if err := parseHead([]byte(head), &r); err != want {
			t.Errorf("%q: got %v, want %v", head, err, want)
		}
	}
	var r Request
	many := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", maxHeaderFields) + "\r\n"
	if err := parseHead([]byte(many), &r); err != errTooManyFields {
		t.Errorf("too many fields: %v", err)
	}
}

// TestFindHeadEndIncremental: scanning a head that arrives in pieces finds
// the same end as scanning it whole.
func TestFindHeadEndIncremental(t *testing.T) {
	for _, head := range []string{sampleHead, "GET / HTTP/1.0\n\n", "GET / HTTP/1.1\r\nA: b\n\r\n"} {
		whole, _ := findHeadEnd([]byte(head), 0)
		for step := 1; step < 8; step++ {
			from, got := 0, -1
			for n := step; got < 0; n += step {
				n = min(n, len(head))
				got, from = findHeadEnd([]byte(head[:n]), from)
				if n == len(head) {
					break
				}
			}
			if got != whole {
				t.Fatalf("%q step %d: %d, want %d", head, step, got, whole)
			}
		}
	}
}

func TestChunkedDecoderPieces(t *testing.T) {
	in := "5\r\nhello\r\n1;a=b\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nNEXT"
	for step := 1; step <= len(in); step++ {
		var d chunkedDecoder
		var out []byte
		rest := []byte(in)
		pending := []byte{}
		for len(rest) > 0 && !d.done() {
			n := min(step, len(rest))
			pending = append(pending, rest[:n]...)
			rest = rest[n:]
			for len(pending) > 0 && !d.done() {
				consumed, data, err := d.decode(pending)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				out = append(out, data...)
				pending = pending[consumed:]
				if consumed == 0 {
					break
				}
			}
		}
		if string(out) != "hello 0123456789abcdef" || !d.done() || string(append(pending, rest...)) != "NEXT" {
			t.Fatalf("step %d: out %q done %v rest %q", step, out, d.done(), append(pending, rest...))
		}
	}
}

// strictChunkRefusals are chunked bodies that lenient parsers accept and a
// proxy may read differently: bare LF line ends, bare CR or control bytes
// in extensions and trailers (issue 12, item 14). Each must be refused.
var strictChunkRefusals = []string{
	"A\n0123456789\r\n0\r\n\r\n",         // bare LF after the size
	"5\r\nhello\n0\r\n\r\n",              // bare LF after data
	"5\r\nhello\r\n0\n\r\n",              // bare LF after the last size
	"5\r\nhello\r\n0\r\n\n",              // bare LF as the final line
	"5\r\nhello\r\n0\r\nT: v\n\r\n",      // bare LF after a trailer
	"5;a=b\n\r\nhello\r\n0\r\n\r\n",      // bare LF in an extension
	"5;a=b\rc\r\nhello\r\n0\r\n\r\n",     // bare CR in an extension
	"5;a=\x00\r\nhello\r\n0\r\n\r\n",     // NUL in an extension
	"5;a=\x7f\r\nhello\r\n0\r\n\r\n",     // DEL in an extension
	"5;a=\x1b\r\nhello\r\n0\r\n\r\n",     // ESC in an extension
	"5\r\nhello\r\n0\r\nT: a\rb\r\n\r\n", // bare CR in a trailer
	"5\r\nhello\r\n0\r\nT: \x00\r\n\r\n", // NUL in a trailer
	"5\r\nhello\r\n0\r\n\x01\r\n\r\n",    // control byte starting a trailer
	"5\r\nhello\r\n0\r\n\rX\r\n",         // CR not followed by LF at the end
	"5\rX\nhello\r\n0\r\n\r\n",           // CR not followed by LF after the size
	"5\r\nhelloX\r\n0\r\n\r\n",           // data longer than its size
}

func TestChunkedDecoderStrict(t *testing.T) {
	for _, in := range strictChunkRefusals {
		for _, step := range []int{1, len(in) + 1} {
			if _, done, err := decodeAll([]byte(in), step); err == nil {
				t.Errorf("%q (step %d): accepted (done %v), want refused", in, step, done)
			}
		}
	}
	// Extensions and trailers with HTAB, SP and obs-text stay accepted.
	ok := "5;a=\"b c\"\t;d\r\nhello\r\n0;x=\xff\r\nT:\tv \xe9\r\nU: w\r\n\r\n"
	if out, done, err := decodeAll([]byte(ok), 1); err != nil || !done || string(out) != "hello" {
		t.Errorf("%q: got %q done %v err %v, want hello", ok, out, done, err)
	}
}

// FuzzParseHead checks the head parser against net/http: whatever we
// accept, net/http's ReadRequest accepts with the same method, target,
// protocol, header values and body framing. It also checks that finding
// the head end incrementally agrees with a single scan, and never panics.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte(sampleHead))
	f.Add([]byte("GET / HTTP/1.0\n\n"))
	f.Add([]byte("\r\nGET /x?y HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"))
	f.Add([]byte("PUT /v1/retention/p HTTP/1.1\r\nhost: h\r\nexpect: 100-continue\r\ncontent-length: 0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: h\r\nA:\r\n\r\n"))
	f.Add([]byte("GET http://h:80/v1/version?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Add([]byte("GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 8<<10 {
			return
		}
		in = in[skipEmptyLines(in):]
		end, _ := findHeadEnd(in, 0)
		from, inc := 0, -1
		for n := 1; n <= len(in) && inc < 0; n += 3 {
			inc, from = findHeadEnd(in[:n], from)
		}
		if inc < 0 && len(in) > 0 {
			inc, _ = findHeadEnd(in, from)
		}
		if len(in) > 0 && inc != end {
			t.Fatalf("incremental end %d, whole %d", inc, end)
		}
		if end < 0 {
			return
		}
		head := in[:end]
		var r Request
		if err := parseHead(head, &r); err != nil {
			return
		}
		if _, err := url.ParseRequestURI(string(r.Target())); err != nil {
			return // net/http also validates the URI; we route on raw bytes
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
		if err != nil {
			if strings.Contains(err.Error(), "Host") {
				return // net/http validates Host syntax; we do not look at it
			}
			t.Fatalf("we accepted %q, net/http: %v", head, err)
		}
		if req.Method != string(r.Method()) || req.RequestURI != string(r.Target()) || (req.ProtoMinor == 0) != r.HTTP10() {
			t.Fatalf("request line differs: %q %q %v", req.Method, req.RequestURI, req.Proto)
		}
		r.VisitHeaders(func(name, value []byte) {
			key := http.CanonicalHeaderKey(string(name))
			if key == "Host" || key == "Transfer-Encoding" {
				return // net/http moves these out of Header
			}
			got, _ := r.Header(string(name))
			if vals := req.Header.Values(key); len(vals) == 0 || vals[0] != string(got) {
				t.Fatalf("header %q: ours %q, net/http %q", key, got, vals)
			}
		})
		if !r.HTTP10() {
			if r.Chunked() != (len(req.TransferEncoding) > 0) {
				t.Fatalf("chunked: ours %v, net/http %v", r.Chunked(), req.TransferEncoding)
			}
			if !r.Chunked() && max(r.ContentLength(), 0) != req.ContentLength {
				t.Fatalf("content length: ours %d, net/http %d", r.ContentLength(), req.ContentLength)
			}
		}
	})
}

// FuzzChunkedDecoder: decoding in one piece and byte by byte agree, and a
// body we decode completely is what net/http/httputil's reader returns.
func FuzzChunkedDecoder(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("1;x\r\na\r\n0\r\nT: v\r\n\r\n"))
	for _, in := range strictChunkRefusals {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, wholeDone, wholeErr := decodeAll(in, len(in)+1)
		bytewise, byteDone, byteErr := decodeAll(in, 1)
		if !bytes.Equal(whole, bytewise) || wholeDone != byteDone || (wholeErr == nil) != (byteErr == nil) {
			t.Fatalf("whole %q %v %v, bytewise %q %v %v", whole, wholeDone, wholeErr, bytewise, byteDone, byteErr)
		}
		if !wholeDone || wholeErr != nil || bytes.ContainsAny(in, " \t;") {
			return
		}
		ref, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in)))
		if err != nil {
			return // httputil is stricter about line endings
		}
		if !bytes.Equal(ref, whole) {
			t.Fatalf("ours %q, httputil %q", whole, ref)
		}
	})
}

func decodeAll(in []byte, step int) (out []byte, done bool, err error) {
	var d chunkedDecoder
	var pending []byte
	for len(in) > 0 && !d.done() {
		n := min(step, len(in))
		pending = append(pending, in[:n]...)
		in = in[n:]
		for len(pending) > 0 && !d.done() {
			consumed, data, herr := d.decode(pending)
			if herr != nil {
				return out, false, herr
			}
			out = append(out, data...)
			pending = pending[consumed:]
			if consumed == 0 {
				break
			}
		}
	}
	return out, d.done(), nil
}
