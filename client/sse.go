package client

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"time"
)

// sseLineBytesMax bounds one SSE line. A transaction event carries a whole
// commit body re-encoded (up to 16 MiB of request, more once base64'd and
// framed), so the bound is generous; it exists so that a broken peer cannot
// make the client buffer without end.
const sseLineBytesMax = 64 << 20

// sseEvent is one dispatched Server-Sent Event. Data is valid until the
// next call of sseReader.next.
type sseEvent struct {
	Type string // "message" when the stream gave none
	Data []byte // data lines joined by '\n'
	// ID is the stream's last event id after this event (the SSE "last event
	// ID buffer"): it persists across events until an id field changes it.
	ID string
}

// sseReader parses a text/event-stream as the WHATWG HTML standard says:
// lines end in CRLF, LF or CR (also when split across reads); a line
// starting with ':' is a comment; "field: value" loses one space after the
// colon; a line without colon is a field with an empty value; unknown
// fields are ignored; a blank line dispatches the event unless its data is
// empty; an id containing NUL is ignored; retry with non-digits is ignored.
type sseReader struct {
	sc        *bufio.Scanner
	data      []byte
	hasData   bool
	eventType string
	lastID    string
	retry     time.Duration // last valid retry field, 0 if none
	comments  int           // comment lines seen (keep-alives), for tests
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), sseLineBytesMax)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc}
}

// scanSSELines is a bufio.SplitFunc for CRLF, LF and lone CR line ends.
// A CR at the end of the buffer asks for more bytes, since an LF may follow.
func scanSSELines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := bytes.IndexAny(data, "\r\n")
	if i < 0 {
		// An unterminated last line is dropped, as the standard says (its
		// event is incomplete); return it only to be ignored by the caller.
		if atEOF {
			return len(data), nil, nil
		}
		return 0, nil, nil
	}
	if data[i] == '\n' {
		return i + 1, data[:i], nil
	}
	if i+1 < len(data) {
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	}
	if atEOF {
		return i + 1, data[:i], nil
	}
	return 0, nil, nil // CR at the end: wait for a possible LF
}

// next returns the next event. At the end of the stream it returns io.EOF
// (a partial event at the end is discarded), or the read error.
func (p *sseReader) next() (sseEvent, error) {
	for p.sc.Scan() {
		line := p.sc.Bytes()
		if len(line) == 0 {
			if ev, ok := p.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if line[0] == ':' {
			p.comments++
			continue
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		p.field(name, value)
	}
	if err := p.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

func (p *sseReader) field(name, value []byte) {
	switch string(name) {
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.hasData = true
	case "event":
		p.eventType = string(value)
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.lastID = string(value)
		}
	case "retry":
		if ms, err := strconv.ParseUint(string(value), 10, 32); err == nil {
			p.retry = time.Duration(ms) * time.Millisecond
		}
	}
}

// dispatch ends the event being read; ok is false when it had no data.
func (p *sseReader) dispatch() (ev sseEvent, ok bool) {
	typ := p.eventType
	p.eventType = ""
	if !p.hasData {
		p.data = p.data[:0]
		return sseEvent{}, false
	}
	if typ == "" {
		typ = "message"
	}
	ev = sseEvent{Type: typ, Data: p.data, ID: p.lastID}
	p.data = p.data[:0]
	p.hasData = false
	return ev, true
}
