package netpoll

import (
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// Header is one extra response header field. Fields with a CR, LF or NUL in
// the name or value are dropped (they would split the response).
type Header struct {
	Name  string
	Value []byte
}

// statusLines holds "HTTP/1.1 200 OK\r\n" for every status net/http knows,
// built once so that a response head costs no formatting.
var statusLines = func() (t [600][]byte) {
	for code := 100; code < 600; code++ {
		if text := http.StatusText(code); text != "" {
			t[code] = []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
		}
	}
	return t
}()

func appendStatusLine(b []byte, status int) []byte {
	if status >= 100 && status < 600 && statusLines[status] != nil {
		return append(b, statusLines[status]...)
	}
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	return append(b, " Status\r\n"...)
}

// bodyAllowed reports whether a response with this status may carry a body
// and a Content-Length (RFC 9110 §8.6, §15.3.5, §15.4.5).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func validHeaderBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func validHeaderValue(b []byte) bool {
	for _, c := range b {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func appendHeaders(b []byte, hdrs []Header) []byte {
	for _, h := range hdrs {
		if h.Name == "" || !validHeaderBytes(h.Name) || !validHeaderValue(h.Value) {
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendErrorJSON appends {"error":"code","message":"..."}.
func appendErrorJSON(b []byte, code, message string) []byte {
	b = append(b, `{"error":`...)
	b = appendJSONString(b, code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, message)
	return append(b, '}')
}

// errorCode maps a status to the error code of API.md (or the closest
// HTTP name for statuses the API does not list).
func errorCode(status int) string {
	switch status {
	case 400:
		return "bad_request"
	case 404:
		return "not_found"
	case 405:
		return "method_not_allowed"
	case 408:
		return "request_timeout"
	case 409:
		return "conflict"
	case 410:
		return "gone"
	case 413:
		return "payload_too_large"
	case 415:
		return "unsupported_media_type"
	case 417:
		return "expectation_failed"
	case 429:
		return "too_many_requests"
	case 431:
		return "request_header_fields_too_large"
	case 501:
		return "not_implemented"
	case 503:
		return "unavailable"
	case 505:
		return "http_version_not_supported"
	}
	if status >= 500 {
		return "internal"
	}
	return "bad_request"
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x80 {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}

// dateCache holds the "Date: ...\r\n" line, refreshed by the reactor at
// most once a second (RFC 9110 §6.6.1: an origin server with a clock sends
// Date).
type dateCache struct {
	unix int64
	line []byte
}

func (d *dateCache) update(now time.Time) {
	if s := now.Unix(); s != d.unix || d.line == nil {
		d.unix = s
		d.line = append(d.line[:0], "Date: "...)
		d.line = now.UTC().AppendFormat(d.line, http.TimeFormat)
		d.line = append(d.line, "\r\n"...)
	}
}

// appendChunk frames p as one chunk of chunked transfer coding.
func appendChunk(b, p []byte) []byte {
	b = strconv.AppendUint(b, uint64(len(p)), 16)
	b = append(b, "\r\n"...)
	b = append(b, p...)
	return append(b, "\r\n"...)
}

func chunkFrameBytes(n int) int {
	digits := 1
	for v := n >> 4; v > 0; v >>= 4 {
		digits++
	}
	return digits + 4 + n
}
