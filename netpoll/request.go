package netpoll

import (
	"bytes"
	"errors"
)

// span locates a field inside a request head by offset, so that the head
// bytes can move (compaction of the read buffer while a body streams in)
// without re-pointing every field.
type span struct {
	off, n uint32
}

func (s span) of(b []byte) []byte { return b[s.off : s.off+s.n : s.off+s.n] }

type headerField struct {
	name, value span
}

// maxHeaderFields bounds the number of header lines in one request; more is
// answered with 431 like an oversized head.
const maxHeaderFields = 100

// Request is the parsed head of one HTTP request. Every []byte it returns
// points into the connection's read buffer: valid until the response is
// sent (Respond, Detached.Respond or StartStream), never to be modified.
// Keep a copy to use it longer.
type Request struct {
	buf []byte // the head bytes, request line to the empty line inclusive

	method, target, path, query span
	fields                      [maxHeaderFields]headerField
	nfields                     int

	http10         bool
	closeRequested bool // Connection: close (or HTTP/1.0 without keep-alive)
	expectContinue bool
	chunked        bool
	contentLength  int64 // -1 when absent

	paramName string // from the route pattern, "" when none
	param     span
	head      bool // HEAD request: responses carry no body
	rootPath  bool // absolute-form target without a path: Path is "/"
}

// Method returns the request method exactly as sent ("GET").
func (r *Request) Method() []byte { return r.method.of(r.buf) }

// Target returns the request target as sent: path and query, or the
// absolute URI of an absolute-form request.
func (r *Request) Target() []byte { return r.target.of(r.buf) }

// rootSlash is the path of an absolute-form target that has none.
var rootSlash = []byte{'/'}

// Path returns the path of the target, still percent-encoded. For an
// absolute-form target ("http://host/a?b") it is the path alone ("/a").
func (r *Request) Path() []byte {
	if r.rootPath {
		return rootSlash
	}
	return r.path.of(r.buf)
}

// RawQuery returns the query string without the '?', still encoded.
func (r *Request) RawQuery() []byte { return r.query.of(r.buf) }

// HTTP10 reports whether the request was HTTP/1.0.
func (r *Request) HTTP10() bool { return r.http10 }

// ContentLength returns the declared body length, or -1 for a chunked body
// or none at all (see HasBody).
func (r *Request) ContentLength() int64 { return r.contentLength }

// HasBody reports whether a body follows the head (Content-Length > 0 or
// chunked).
func (r *Request) HasBody() bool { return r.chunked || r.contentLength > 0 }

// Chunked reports whether the body uses chunked transfer coding. Handlers
// always receive it de-chunked.
func (r *Request) Chunked() bool { return r.chunked }

// Header returns the value of the first header field named name
// (case-insensitive), with surrounding whitespace removed.
func (r *Request) Header(name string) ([]byte, bool) {
	for i := 0; i < r.nfields; i++ {
		f := &r.fields[i]
		if equalFoldString(f.name.of(r.buf), name) {
			return f.value.of(r.buf), true
		}
	}
	return nil, false
}

// VisitHeaders calls fn for each header field in order; names as sent.
func (r *Request) VisitHeaders(fn func(name, value []byte)) {
	for i := 0; i < r.nfields; i++ {
		fn(r.fields[i].name.of(r.buf), r.fields[i].value.of(r.buf))
	}
}

// Param returns the path parameter of the matched route pattern
// ("/v1/retention/{id}" → Param("id")), still percent-encoded. It reports
// false for another name or a route without parameter.
func (r *Request) Param(name string) ([]byte, bool) {
	if r.paramName == "" || r.paramName != name {
		return nil, false
	}
	return r.param.of(r.buf), true
}

// Query returns the raw (still encoded) value of the first query parameter
// named name. A parameter without '=' has an empty value. Decode it with
// AppendUnescapeQuery.
func (r *Request) Query(name string) ([]byte, bool) {
	q := r.RawQuery()
	for len(q) > 0 {
		var pair []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		key, value := pair, []byte(nil)
		if i := bytes.IndexByte(pair, '='); i >= 0 {
			key, value = pair[:i], pair[i+1:]
		}
		if string(key) == name {
			if value == nil {
				value = pair[len(pair):]
			}
			return value, true
		}
	}
	return nil, false
}

// ErrBadEscape is returned by AppendUnescapeQuery for a '%' not followed by
// two hex digits.
var ErrBadEscape = errors.New("netpoll: invalid percent escape")

// AppendUnescapeQuery appends the query-decoded form of raw to dst ('+' is
// a space, %XX a byte) and returns the extended slice.
func AppendUnescapeQuery(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(raw) {
				return dst, ErrBadEscape
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return dst, ErrBadEscape
			}
			dst = append(dst, hi<<4|lo)
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func equalFoldString(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
