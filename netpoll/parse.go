package netpoll

import "bytes"

// headError is a request head the server refuses: the status to answer with
// and the JSON error code and message. Values are package-level so that
// returning one allocates nothing.
type headError struct {
	status  int
	code    string
	message string
}

func (e *headError) Error() string { return e.message }

var (
	errMalformedRequestLine = &headError{400, "bad_request", "malformed request line"}
	errMalformedHeader      = &headError{400, "bad_request", "malformed header field"}
	errBadTarget            = &headError{400, "bad_request", "request target must be an absolute path or an absolute http(s) URI"}
	errBadContentLength     = &headError{400, "bad_request", "invalid Content-Length"}
	errDupTransferEncoding  = &headError{400, "bad_request", "repeated Transfer-Encoding"}
	errLengthAndChunked     = &headError{400, "bad_request", "both Content-Length and Transfer-Encoding"}
	errMissingHost          = &headError{400, "bad_request", "missing or repeated Host header"}
	errObsFold              = &headError{400, "bad_request", "obsolete header line folding"}
	errHeadTooLarge         = &headError{431, "request_header_fields_too_large", "request line and headers too large"}
	errTooManyFields        = &headError{431, "request_header_fields_too_large", "too many header fields"}
	errUnsupportedTE        = &headError{501, "not_implemented", "unsupported Transfer-Encoding"}
	errVersion              = &headError{505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served"}
	errExpectation          = &headError{417, "expectation_failed", "unsupported Expect value"}
)

// findHeadEnd returns the length of the request head in b (through the
// empty line) or -1 when the head is incomplete. Lines may end in CRLF or a
// bare LF (RFC 9112 §2.2 lets a recipient accept LF). from is where the
// previous call stopped, so that a head arriving byte by byte is scanned
// once in total, not once per byte.
func findHeadEnd(b []byte, from int) (end, next int) {
	if from > 0 {
		from-- // the '\n' of the previous line may have been the last byte
	}
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, len(b)
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1, 0
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2, 0
		}
		if i == len(b) || (i+1 == len(b) && b[i] == '\r') {
			return -1, i
		}
	}
	return -1, len(b)
}

// skipEmptyLines returns how many bytes of CRLF/LF precede the request line:
// RFC 9112 §2.2 asks servers to ignore at least one empty line there, which
// clients that send a stray CRLF after a body rely on.
func skipEmptyLines(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// parseHead parses a complete head (b ends with the empty line, as found by
// findHeadEnd) into r. r.buf is set to b. It never allocates.
func parseHead(b []byte, r *Request) *headError {
	r.buf = b
	r.nfields = 0
	r.contentLength = -1
	r.chunked, r.expectContinue, r.closeRequested, r.http10, r.head = false, false, false, false, false
	r.paramName, r.param = "", span{}

	line, pos := nextLine(b, 0)
	if err := parseRequestLine(b, line, r); err != nil {
		return err
	}
	hosts := 0
	keepAlive := false
	for {
		var l span
		l, pos = nextLine(b, pos)
		if l.n == 0 {
			break
		}
		text := l.of(b)
		if text[0] == ' ' || text[0] == '\t' {
			return errObsFold
		}
		colon := bytes.IndexByte(text, ':')
		if colon <= 0 || !isToken(text[:colon]) {
			return errMalformedHeader
		}
		vstart, vend := colon+1, len(text)
		for vstart < vend && (text[vstart] == ' ' || text[vstart] == '\t') {
			vstart++
		}
		for vend > vstart && (text[vend-1] == ' ' || text[vend-1] == '\t') {
			vend--
		}
		value := text[vstart:vend]
		if !isFieldValue(value) {
			return errMalformedHeader
		}
		if r.nfields == maxHeaderFields {
			return errTooManyFields
		}
		name := text[:colon]
		r.fields[r.nfields] = headerField{
			name:  span{l.off, uint32(colon)},
			value: span{l.off + uint32(vstart), uint32(vend - vstart)},
		}
		r.nfields++
		if err := r.noteField(name, value, &hosts, &keepAlive); err != nil {
			return err
		}
	}
	if r.chunked && r.contentLength >= 0 {
		return errLengthAndChunked
	}
	if !r.http10 && hosts != 1 {
		return errMissingHost
	}
	if r.http10 {
		r.closeRequested = !keepAlive || r.closeRequested
		r.expectContinue = false
	}
	return nil
}

// noteField records the header fields that change how the server frames
// and answers the request.
func (r *Request) noteField(name, value []byte, hosts *int, keepAlive *bool) *headError {
	switch len(name) {
	case 4:
		if equalFoldString(name, "host") {
			*hosts++
		}
	case 6:
		if equalFoldString(name, "expect") {
			if !equalFoldString(value, "100-continue") {
				return errExpectation
			}
			r.expectContinue = true
		}
	case 10:
		if equalFoldString(name, "connection") {
			forEachToken(value, func(tok []byte) {
				if equalFoldString(tok, "close") {
					r.closeRequested = true
				} else if equalFoldString(tok, "keep-alive") {
					*keepAlive = true
				}
			})
		}
	case 14:
		if equalFoldString(name, "content-length") {
			n, ok := parseContentLength(value)
			if !ok || (r.contentLength >= 0 && r.contentLength != n) {
				return errBadContentLength
			}
			r.contentLength = n
		}
	case 17:
		if equalFoldString(name, "transfer-encoding") {
			if r.chunked {
				return errDupTransferEncoding
			}
			if !equalFoldString(value, "chunked") {
				return errUnsupportedTE
			}
			r.chunked = true
		}
	}
	return nil
}

func parseRequestLine(b []byte, line span, r *Request) *headError {
	text := line.of(b)
	sp1 := bytes.IndexByte(text, ' ')
	if sp1 <= 0 || !isToken(text[:sp1]) {
		return errMalformedRequestLine
	}
	rest := text[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errMalformedRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	switch string(version) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		r.http10 = true
	default:
		if len(version) == 8 && string(version[:5]) == "HTTP/" && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]) {
			return errVersion
		}
		return errMalformedRequestLine
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return errMalformedRequestLine
		}
	}
	r.method = span{line.off, uint32(sp1)}
	toff := line.off + uint32(sp1) + 1
	r.target = span{toff, uint32(len(target))}
	r.rootPath = false
	// origin-form starts at the path; absolute-form (RFC 9112 §3.2.2, which
	// a server must accept: "GET http://host/v1/version") has its path after
	// the authority. Routing looks at the path alone in both.
	pathOff := 0
	if target[0] != '/' {
		n, ok := absoluteFormPrefix(target)
		if !ok {
			return errBadTarget
		}
		pathOff = n
	}
	pt := target[pathOff:]
	poff := toff + uint32(pathOff)
	q := bytes.IndexByte(pt, '?')
	if q < 0 {
		q = len(pt)
		r.query = span{poff + uint32(len(pt)), 0}
	} else {
		r.query = span{poff + uint32(q) + 1, uint32(len(pt) - q - 1)}
	}
	r.path = span{poff, uint32(q)}
	r.rootPath = q == 0 // "http://host" or "http://host?x": the path is "/"
	if string(text[:sp1]) == "HEAD" {
		r.head = true
	}
	return nil
}

// absoluteFormPrefix returns the length of the "http://authority" or
// "https://authority" that starts an absolute-form target, and false if t is
// not one. The scheme is case-insensitive; the authority must be non-empty
// and carry no userinfo (RFC 9110 §4.2.4 forbids it in http URIs, and an
// '@' is how a request is made to look as if it were meant for another
// host).
func absoluteFormPrefix(t []byte) (int, bool) {
	n := 0
	switch {
	case len(t) >= 7 && equalFoldString(t[:7], "http://"):
		n = 7
	case len(t) >= 8 && equalFoldString(t[:8], "https://"):
		n = 8
	default:
		return 0, false
	}
	start := n
	for n < len(t) && t[n] != '/' && t[n] != '?' {
		if t[n] == '@' || t[n] == '#' {
			return 0, false
		}
		n++
	}
	if n == start {
		return 0, false
	}
	return n, true
}

// nextLine returns the line starting at pos without its terminator, and the
// position after the terminator. The caller guarantees b ends in a line
// terminator. A CR anywhere but before the LF makes the line fail later
// validation (isFieldValue, the request-line checks).
func nextLine(b []byte, pos int) (span, int) {
	i := bytes.IndexByte(b[pos:], '\n')
	if i < 0 {
		return span{uint32(pos), 0}, len(b)
	}
	end := pos + i
	next := end + 1
	if end > pos && b[end-1] == '\r' {
		end--
	}
	return span{uint32(pos), uint32(end - pos)}, next
}

func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func forEachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 {
			fn(tok)
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// tokenTable marks the tchar bytes of RFC 9110 §5.6.2.
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// isFieldValue rejects control bytes other than HT (RFC 9110 §5.5), which
// also rejects a bare CR inside a line.
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
