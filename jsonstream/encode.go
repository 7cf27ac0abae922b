package jsonstream

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/weaseldb/weaseldb/tx"
)

// CommitStatus is the "status" of a commit answer.
type CommitStatus uint8

const (
	// StatusCommitted: the transaction is durable at Version (200).
	StatusCommitted CommitStatus = iota + 1
	// StatusNotCommitted: refused for Reason (409); Version is the latest
	// committed version.
	StatusNotCommitted
)

// Reason says why a commit was not committed.
type Reason uint8

const (
	ReasonNone Reason = iota
	// ReasonConflict: preconditions failed; CommitAnswer.Conflicts lists them.
	ReasonConflict
	// ReasonTooOld: a precondition's version is older than the conflict window.
	ReasonTooOld
	// ReasonLeaderChanged: leader_id is not the current leader's.
	ReasonLeaderChanged
)

// String returns the API.md name of the reason.
func (r Reason) String() string {
	switch r {
	case ReasonConflict:
		return "conflict"
	case ReasonTooOld:
		return "too_old"
	case ReasonLeaderChanged:
		return "leader_changed"
	}
	return ""
}

func (r Reason) message() string {
	switch r {
	case ReasonConflict:
		return "a transaction committed after the read version wrote what a precondition read (see conflicts)"
	case ReasonTooOld:
		return "a precondition's version is older than the conflict window; read again"
	case ReasonLeaderChanged:
		return "leader_id is not the current leader's"
	}
	return ""
}

// CommitAnswer is the body of a 200 or 409 answer to POST /v1/commit.
type CommitAnswer struct {
	RequestID []byte
	Status    CommitStatus
	Reason    Reason     // for StatusNotCommitted
	Version   tx.Version // the commit's version, or the latest committed one
	LeaderID  []byte
	Conflicts []int // 0-based precondition indexes, for ReasonConflict
	Duplicate bool  // answered from an earlier commit with the same request_id
}

// AppendCommitAnswer appends the JSON of a commit answer:
//
//	{"request_id":"…","status":"committed","version":43,"leader_id":"…"}
//	{"request_id":"…","status":"not_committed","reason":"conflict","conflicts":[1],
//	 "version":57,"leader_id":"…","error":"conflict","message":"…"}
//
// "duplicate":true is added when Duplicate is set. A 409 carries "error"
// and "message" as every error body of API.md does.
func AppendCommitAnswer(dst []byte, a CommitAnswer) []byte {
	dst = append(dst, `{"request_id":`...)
	dst = AppendString(dst, a.RequestID)
	if a.Status == StatusCommitted {
		dst = append(dst, `,"status":"committed"`...)
	} else {
		dst = append(dst, `,"status":"not_committed","reason":"`...)
		dst = append(dst, a.Reason.String()...)
		dst = append(dst, '"')
		if a.Reason == ReasonConflict {
			dst = append(dst, `,"conflicts":[`...)
			for i, c := range a.Conflicts {
				if i > 0 {
					dst = append(dst, ',')
				}
				dst = strconv.AppendInt(dst, int64(c), 10)
			}
			dst = append(dst, ']')
		}
	}
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendUint(dst, uint64(a.Version), 10)
	dst = append(dst, `,"leader_id":`...)
	dst = AppendString(dst, a.LeaderID)
	if a.Duplicate {
		dst = append(dst, `,"duplicate":true`...)
	}
	if a.Status != StatusCommitted {
		dst = append(dst, `,"error":"conflict","message":"`...)
		dst = append(dst, a.Reason.message()...)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// AppendError appends an API.md error body:
// {"error":"<code>","message":"<message>"}.
func AppendError(dst []byte, code string, message []byte) []byte {
	dst = append(dst, `{"error":`...)
	dst = appendStringFrom(dst, code)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, message)
	return append(dst, '}')
}

// AppendTransactionEvent appends the JSON of an SSE "transaction" event
// (the text after "data: "), with prev the version of the previous
// transaction sent on the stream:
//
//	{"version":43,"prev_version":42,"request_id":"…","timestamp":"2026-11-25T18:00:00.123Z",
//	 "leader_id":"…","operations":[{"type":"write","key":"a2V5MQ==","value":"dmFsdWU="}]}
//
// Keys and values are base64; the timestamp is RFC 3339 in UTC with
// milliseconds. The output has no newline, so it fits on one data: line.
func AppendTransactionEvent(dst []byte, t *tx.Transaction, prev tx.Version, leaderID []byte) []byte {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendUint(dst, uint64(t.Version), 10)
	dst = append(dst, `,"prev_version":`...)
	dst = strconv.AppendUint(dst, uint64(prev), 10)
	dst = append(dst, `,"request_id":`...)
	dst = AppendString(dst, t.RequestID)
	dst = append(dst, `,"timestamp":"`...)
	dst = AppendTimestamp(dst, t.TimestampUnixNano)
	dst = append(dst, `","leader_id":`...)
	dst = AppendString(dst, leaderID)
	dst = append(dst, `,"operations":[`...)
	for i := range t.Operations {
		op := &t.Operations[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		switch op.Type {
		case tx.OpWrite:
			dst = append(dst, `{"type":"write","key":"`...)
			dst = AppendBase64(dst, op.Key)
			dst = append(dst, `","value":"`...)
			dst = AppendBase64(dst, op.Value)
		case tx.OpDelete:
			dst = append(dst, `{"type":"delete","key":"`...)
			dst = AppendBase64(dst, op.Key)
		default:
			dst = append(dst, `{"type":"range_delete","begin":"`...)
			dst = AppendBase64(dst, op.Key)
			dst = append(dst, `","end":"`...)
			dst = AppendBase64(dst, op.End)
		}
		dst = append(dst, `"}`...)
	}
	return append(dst, "]}"...)
}

// AppendVersionAnswer appends the body of GET /v1/version:
// {"version":42,"leader_id":"…"}.
func AppendVersionAnswer(dst []byte, v tx.Version, leaderID []byte) []byte {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendUint(dst, uint64(v), 10)
	dst = append(dst, `,"leader_id":`...)
	dst = AppendString(dst, leaderID)
	return append(dst, '}')
}

// RequestStatus is the "status" of a GET /v1/status answer.
type RequestStatus uint8

const (
	RequestCommitted    RequestStatus = iota + 1 // with "version"
	RequestInFlight                              // ask again
	RequestNotCommitted                          // none committed after min_version
)

// AppendStatusAnswer appends the body of a 200 GET /v1/status answer:
// {"request_id":"ID","status":"committed","version":43}, or the in_flight
// and not_committed forms without "version".
func AppendStatusAnswer(dst []byte, requestID []byte, s RequestStatus, v tx.Version) []byte {
	dst = append(dst, `{"request_id":`...)
	dst = AppendString(dst, requestID)
	switch s {
	case RequestCommitted:
		dst = append(dst, `,"status":"committed","version":`...)
		dst = strconv.AppendUint(dst, uint64(v), 10)
	case RequestInFlight:
		dst = append(dst, `,"status":"in_flight"`...)
	default:
		dst = append(dst, `,"status":"not_committed"`...)
	}
	return append(dst, '}')
}

// AppendCheckpointEvent appends the JSON of an SSE "checkpoint" event:
// {"committed_version":57,"leader_id":"…"}.
func AppendCheckpointEvent(dst []byte, committed tx.Version, leaderID []byte) []byte {
	dst = append(dst, `{"committed_version":`...)
	dst = strconv.AppendUint(dst, uint64(committed), 10)
	dst = append(dst, `,"leader_id":`...)
	dst = AppendString(dst, leaderID)
	return append(dst, '}')
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// AppendBase64 appends b in standard padded base64 (no quotes).
func AppendBase64(dst []byte, b []byte) []byte {
	n := len(dst)
	need := (len(b) + 2) / 3 * 4
	dst = slices.Grow(dst, need)[:n+need]
	strictBase64.Encode(dst[n:], b)
	return dst
}

// AppendTimestamp appends the UTC time of unixNano as RFC 3339 with
// milliseconds and "Z" (2026-11-25T18:00:00.123Z). The fields are computed
// by hand (days to civil date, Howard Hinnant's algorithm) because
// time.AppendFormat parses its layout on every call; years outside
// 0000–9999 fall back to it.
func AppendTimestamp(dst []byte, unixNano int64) []byte {
	sec := unixNano / 1e9
	nsec := unixNano % 1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	days := sec / 86400
	rem := sec % 86400
	if rem < 0 {
		days--
		rem += 86400
	}
	// civil_from_days
	z := days + 719468
	if z < 0 {
		z -= 146096 // so that the division below floors
	}
	era := z / 146097
	z = days + 719468
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	if y < 0 || y > 9999 {
		return time.Unix(0, unixNano).UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	var b [24]byte
	put := func(i int, v int64, width int) {
		for j := width - 1; j >= 0; j-- {
			b[i+j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	b[4] = '-'
	put(5, m, 2)
	b[7] = '-'
	put(8, d, 2)
	b[10] = 'T'
	put(11, rem/3600, 2)
	b[13] = ':'
	put(14, rem/60%60, 2)
	b[16] = ':'
	put(17, rem%60, 2)
	b[19] = '.'
	put(20, nsec/1e6, 3)
	b[23] = 'Z'
	return append(dst, b[:]...)
}

const hexDigits = "0123456789abcdef"

// needsEscape[c] is true for ASCII bytes that cannot appear raw in a JSON
// string.
var needsEscape = func() (t [utf8.RuneSelf]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// AppendString appends s as a quoted JSON string. Quotes, backslashes and
// control characters are escaped; invalid UTF-8 becomes \ufffd, as
// encoding/json does; everything else is copied as is.
func AppendString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if !needsEscape[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendStringFrom is AppendString for a string constant (no conversion
// allocation: codes are ASCII without escapes in practice, but escape
// anyway).
func appendStringFrom(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf || needsEscape[s[i]] {
			return AppendString(dst, []byte(s))
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
