package workload

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// wireConn is a minimal HTTP/1.1 client connection for the commit path:
// requests are appended to a buffer and written with one syscall, responses
// are parsed in order from a bufio.Reader, so K requests may be in flight
// (pipelining). net/http's client costs several allocations and two
// goroutine hand-offs per request, too slow to measure a fast server on the
// same two cores; this costs none in steady state.
//
// Responses: a status line, headers (only Content-Length,
// Transfer-Encoding: chunked and Connection: close are looked at), a body.
// The body slice returned by readResponse is valid until the next read.
type wireConn struct {
	nc      net.Conn // immutable; never nil
	r       *bufio.Reader
	host    string
	auth    []byte // "Authorization: Bearer …\r\n" or empty; immutable
	w       []byte // pending requests, written by flush
	scratch []byte // bodies larger than the reader buffer, chunked bodies
	closing bool   // the server said Connection: close
}

const (
	wireReadBufferBytes = 64 << 10
	wireBodyBytesMax    = 64 << 20 // an answer larger than this is an error, not a buffer
)

var errWireProtocol = errors.New("loadgen: malformed HTTP response")

func dialWire(addr, token string, timeout time.Duration) (*wireConn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true) // Go's default, but say it: latency matters here
	}
	c := newWireConn(nc, addr)
	if token != "" {
		c.auth = []byte("Authorization: Bearer " + token + "\r\n")
	}
	return c, nil
}

func newWireConn(nc net.Conn, host string) *wireConn {
	return &wireConn{nc: nc, r: bufio.NewReaderSize(nc, wireReadBufferBytes), host: host, w: make([]byte, 0, 16<<10)}
}

// appendPost queues a POST with a JSON body.
func (c *wireConn) appendPost(path string, body []byte) {
	c.w = append(c.w, "POST "...)
	c.w = append(c.w, path...)
	c.w = append(c.w, " HTTP/1.1\r\nHost: "...)
	c.w = append(c.w, c.host...)
	c.w = append(c.w, "\r\n"...)
	c.w = append(c.w, c.auth...)
	c.w = append(c.w, "Content-Type: application/json\r\nContent-Length: "...)
	c.w = strconv.AppendInt(c.w, int64(len(body)), 10)
	c.w = append(c.w, "\r\n\r\n"...)
	c.w = append(c.w, body...)
}

// appendGet queues a GET.
func (c *wireConn) appendGet(path string) {
	c.w = append(c.w, "GET "...)
	c.w = append(c.w, path...)
	c.w = append(c.w, " HTTP/1.1\r\nHost: "...)
	c.w = append(c.w, c.host...)
	c.w = append(c.w, "\r\n"...)
	c.w = append(c.w, c.auth...)
	c.w = append(c.w, "\r\n"...)
}

// flush writes every queued request.
func (c *wireConn) flush() error {
	if len(c.w) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.w)
	c.w = c.w[:0]
	if err != nil {
		return fmt.Errorf("write request: %w", err)
	}
	return nil
}

func (c *wireConn) close() error { return c.nc.Close() }

// readResponse reads one response. body is valid until the next call.
func (c *wireConn) readResponse() (status int, body []byte, err error) {
	return readResponse(c.r, &c.scratch, &c.closing)
}

// readResponse parses one HTTP/1.1 response from r. Bodies that fit r's
// buffer are returned in place; others go to *scratch.
func readResponse(r *bufio.Reader, scratch *[]byte, closing *bool) (status int, body []byte, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, nil, fmt.Errorf("read status line: %w", err)
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 14 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, nil, fmt.Errorf("%w: status line %q", errWireProtocol, trimEOL(line))
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, nil, fmt.Errorf("%w: status line %q", errWireProtocol, trimEOL(line))
		}
		status = status*10 + int(d-'0')
	}
	contentLength, chunked := int64(-1), false
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, nil, fmt.Errorf("read header: %w", err)
		}
		line = trimEOL(line)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, nil, fmt.Errorf("%w: header line %q", errWireProtocol, line)
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, perr := strconv.ParseInt(string(value), 10, 64)
			if perr != nil || n < 0 || n > wireBodyBytesMax {
				return 0, nil, fmt.Errorf("%w: Content-Length %q", errWireProtocol, value)
			}
			contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
			if !chunked {
				return 0, nil, fmt.Errorf("%w: Transfer-Encoding %q not supported", errWireProtocol, value)
			}
		case bytes.EqualFold(name, []byte("Connection")):
			*closing = bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		body, err = readChunked(r, scratch)
		return status, body, err
	case contentLength < 0:
		if status == 204 || status == 304 || (status >= 100 && status < 200) {
			return status, nil, nil
		}
		return 0, nil, fmt.Errorf("%w: status %d without Content-Length (body to EOF is not supported)", errWireProtocol, status)
	case contentLength <= int64(r.Size()):
		body, err = r.Peek(int(contentLength))
		if err != nil {
			return 0, nil, fmt.Errorf("read body: %w", err)
		}
		r.Discard(len(body))
		return status, body, nil
	default:
		*scratch = growTo(*scratch, int(contentLength))
		if _, err := io.ReadFull(r, *scratch); err != nil {
			return 0, nil, fmt.Errorf("read body: %w", err)
		}
		return status, *scratch, nil
	}
}

func readChunked(r *bufio.Reader, scratch *[]byte) ([]byte, error) {
	body := (*scratch)[:0]
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return nil, fmt.Errorf("read chunk size: %w", err)
		}
		line = trimEOL(line)
		if semi := bytes.IndexByte(line, ';'); semi >= 0 {
			line = line[:semi]
		}
		size, perr := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if perr != nil || size < 0 || int64(len(body))+size > wireBodyBytesMax {
			return nil, fmt.Errorf("%w: chunk size %q", errWireProtocol, line)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				line, err = r.ReadSlice('\n')
				if err != nil {
					return nil, fmt.Errorf("read trailer: %w", err)
				}
				if len(trimEOL(line)) == 0 {
					*scratch = body
					return body, nil
				}
			}
		}
		n := len(body)
		body = growTo(body, n+int(size))
		if _, err := io.ReadFull(r, body[n:]); err != nil {
			return nil, fmt.Errorf("read chunk: %w", err)
		}
		line, err = r.ReadSlice('\n')
		if err != nil || len(trimEOL(line)) != 0 {
			return nil, fmt.Errorf("%w: no CRLF after chunk", errWireProtocol)
		}
	}
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	return append(b[:cap(b)], make([]byte, n-cap(b))...)[:n]
}

func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// jsonUint finds "field": <digits> in a flat JSON answer. It is not a JSON
// parser: it is good for WeaselDB's own small answers, whose field names do
// not occur inside strings (keys and ids are base64 or hex).
func jsonUint(body []byte, field string) (uint64, bool) {
	i := indexField(body, field)
	if i < 0 {
		return 0, false
	}
	var v uint64
	n := 0
	for ; i < len(body) && body[i] >= '0' && body[i] <= '9'; i++ {
		v = v*10 + uint64(body[i]-'0')
		n++
	}
	return v, n > 0
}

// jsonString finds "field": "<value>" and returns value (no escapes expected).
func jsonString(body []byte, field string) ([]byte, bool) {
	i := indexField(body, field)
	if i < 0 || i >= len(body) || body[i] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(body[i+1:], '"')
	if end < 0 {
		return nil, false
	}
	return body[i+1 : i+1+end], true
}

// indexField returns the index just after `"field"` and its colon (and any
// spaces), or -1.
func indexField(body []byte, field string) int {
	for off := 0; ; {
		j := bytes.Index(body[off:], []byte(field))
		if j < 0 {
			return -1
		}
		i := off + j
		off = i + len(field)
		if i == 0 || body[i-1] != '"' || off >= len(body) || body[off] != '"' {
			continue
		}
		k := off + 1
		for k < len(body) && (body[k] == ' ' || body[k] == '\t') {
			k++
		}
		if k >= len(body) || body[k] != ':' {
			continue
		}
		k++
		for k < len(body) && (body[k] == ' ' || body[k] == '\t') {
			k++
		}
		return k
	}
}
