package jsonstream

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/weaseldb/weaseldb/arena"
	"github.com/weaseldb/weaseldb/tx"
)

// Default limits of API.md, used for zero fields of Limits.
const (
	DefaultMaxBodyBytes     = 16 << 20
	DefaultMaxKeyBytes      = 8 << 10
	DefaultMaxValueBytes    = 128 << 10
	DefaultMaxPreconditions = 10_000
	DefaultMaxOperations    = 10_000
)

// Length rules of API.md for the id strings (bytes of UTF-8). A request_id
// outside them is a 400; leader_id has no rule in API.md, so the parser
// holds it to the same ceiling and refuses the empty string, which no
// leader ever has.
const (
	requestIDMinBytes = 20
	requestIDMaxBytes = 256
	leaderIDMaxBytes  = 256
)

// Limits bound a commit body. Zero selects the API.md default, never
// "unlimited" (negative values also select the default).
type Limits struct {
	MaxBodyBytes     int // whole body, bytes as sent
	MaxKeyBytes      int // a decoded key, begin or end
	MaxValueBytes    int // a decoded value
	MaxPreconditions int // elements of "preconditions"
	MaxOperations    int // elements of "operations"
}

// WithDefaults returns l with every zero or negative field set to its
// API.md default.
func (l Limits) WithDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxBodyBytes, DefaultMaxBodyBytes)
	def(&l.MaxKeyBytes, DefaultMaxKeyBytes)
	def(&l.MaxValueBytes, DefaultMaxValueBytes)
	def(&l.MaxPreconditions, DefaultMaxPreconditions)
	def(&l.MaxOperations, DefaultMaxOperations)
	return l
}

// strictBase64 is the one base64 flavour of API.md: standard alphabet,
// padded, padding bits zero. (It still skips \r and \n; decodeBase64
// refuses those by checking the decoded length.)
var strictBase64 = base64.StdEncoding.Strict()

// state is where the parser is in the document; see Parser.Write.
type state uint8

const (
	stStart    state = iota // before the top-level '{'
	stObjFirst              // after '{': a field name or '}'
	stObjKey                // after ',' in an object: a field name
	stColon                 // after a field name: ':'
	stValue                 // after ':': the field's value
	stObjNext               // after a value: ',' or '}'
	stArrFirst              // after '[': an element or ']'
	stArrElem               // after ',' in an array: an element
	stArrNext               // after an element: ',' or ']'
	stString                // inside a string
	stEscape                // after '\' in a string
	stUnicode               // inside \uXXXX
	stNumber                // inside a number
	stLiteral               // inside null
	stDone                  // after the top-level '}': whitespace only
)

// field identifies a known member name. Bit 1<<field marks it seen.
type field uint8

const (
	fNone field = iota
	fRequestID
	fLeaderID
	fReadVersion
	fPreconditions
	fOperations
	fType
	fKey
	fValue
	fBegin
	fEnd
	fVersion
)

var fieldNames = [...]string{
	fNone: "", fRequestID: "request_id", fLeaderID: "leader_id", fReadVersion: "read_version",
	fPreconditions: "preconditions", fOperations: "operations", fType: "type", fKey: "key",
	fValue: "value", fBegin: "begin", fEnd: "end", fVersion: "version",
}

func (f field) String() string { return fieldNames[f] }

func bit(f field) uint16 { return 1 << f }

// strKind says what a string being read is for, which decides where its
// bytes go and how long it may grow.
type strKind uint8

const (
	sName   strKind = iota // a member name: matched against the fields
	sText                  // request_id, leader_id: copied to the arena
	sType                  // a "type" value: matched against the types
	sBase64                // key, value, begin, end: decoded to the arena
)

// Element types, parsed from "type" before the object is complete.
const (
	elemNone uint8 = iota
	elemPointRead
	elemRangeRead
	elemWrite
	elemDelete
	elemRangeDelete
)

// Parser is a streaming parser for commit bodies (see the package doc for
// the contract). The zero value is not usable: use NewParser. A Parser is
// reused request after request; in steady state it allocates nothing.
//
// Invariants between calls to Write:
//  1. depth 0 is the top object, 1 an array (list names it), 2 an element
//     object (the last element of list in dst, at index).
//  2. field is the member whose value is being read (fNone between members).
//  3. In stString and its sub-states, scratch holds the string's decoded
//     content so far, except that a high surrogate waiting for its low
//     half is in high.
type Parser struct {
	lim Limits // immutable after NewParser; all fields > 0

	a   *arena.Arena
	dst *tx.Commit
	err *Error // sticky

	state    state
	depth    uint8
	list     field
	index    int
	field    field
	topSeen  uint16
	elemSeen uint16
	elemType uint8
	body     int // bytes written so far

	str     strKind
	strMax  int    // bound on len(scratch) for the current string
	scratch []byte // reused across strings and requests
	high    rune   // pending high surrogate, 0 if none
	uHex    uint8  // hex digits read of a \u escape
	uVal    rune

	num     uint64
	numZero bool  // the number started with 0: no more digits allowed
	lit     uint8 // bytes of "null" matched
}

// NewParser returns a parser enforcing l (zero fields: API.md defaults).
func NewParser(l Limits) *Parser {
	return &Parser{lim: l.WithDefaults(), err: errNotReset}
}

var errNotReset = &Error{Kind: KindBadRequest, Msg: "jsonstream: Write before Reset"}

// Limits returns the limits in force (with defaults filled in).
func (p *Parser) Limits() Limits { return p.lim }

// Reset starts a new body: dst is emptied (keeping capacity) and will
// receive the commit; decoded keys, values and ids are allocated in a.
func (p *Parser) Reset(a *arena.Arena, dst *tx.Commit) {
	dst.Reset()
	scratch := p.scratch[:0]
	*p = Parser{lim: p.lim, a: a, dst: dst, scratch: scratch}
}

// Parse is Reset, Write(body) and Finish in one call, for a body that is
// already whole.
func (p *Parser) Parse(a *arena.Arena, dst *tx.Commit, body []byte) error {
	p.Reset(a, dst)
	if err := p.Write(body); err != nil {
		return err
	}
	return p.Finish()
}

// Write feeds the next piece of the body. It returns an *Error as soon as
// the body is known to be bad or over a limit, and the same error on every
// later call. Write does not keep chunk.
func (p *Parser) Write(chunk []byte) error {
	if p.err != nil {
		return p.err
	}
	p.body += len(chunk)
	if p.body > p.lim.MaxBodyBytes {
		return p.failf(KindTooLarge, "", "request body over %d bytes", p.lim.MaxBodyBytes)
	}
	i := 0
	for i < len(chunk) {
		switch p.state {
		case stString:
			i += p.stringRun(chunk[i:])
		case stEscape:
			p.escape(chunk[i])
			i++
		case stUnicode:
			p.unicodeDigit(chunk[i])
			i++
		case stNumber:
			i += p.digits(chunk[i:])
		case stLiteral:
			p.literal(chunk[i])
			i++
		default:
			c := chunk[i]
			i++
			if c == ' ' || c == '\n' || c == '\r' || c == '\t' {
				continue
			}
			if c == '"' && (p.state == stObjFirst || p.state == stObjKey) {
				if n := p.knownName(chunk[i:]); n > 0 {
					i += n
					continue
				}
			}
			p.token(c)
		}
		if p.err != nil {
			return p.err
		}
	}
	return nil
}

// Finish ends the body. It returns an *Error when the document is
// incomplete or a precondition has no version to apply.
func (p *Parser) Finish() error {
	if p.err != nil {
		return p.err
	}
	if p.state != stDone {
		if p.body == 0 {
			return p.failf(KindBadRequest, "", "empty body: want a JSON object")
		}
		return p.failf(KindBadRequest, "", "unexpected end of body (incomplete JSON)")
	}
	if !p.dst.HasReadVersion {
		for i := range p.dst.Preconditions {
			if !p.dst.Preconditions[i].HasVersion {
				return p.fail(&Error{Kind: KindBadRequest,
					Field: "preconditions[" + strconv.Itoa(i) + "].version",
					Msg:   "missing, and the commit has no read_version"})
			}
		}
	}
	return nil
}

// token handles one non-whitespace byte in a structural state.
func (p *Parser) token(c byte) {
	switch p.state {
	case stStart:
		if c == '{' {
			p.state = stObjFirst
			return
		}
		p.syntax(c, "the body must be a JSON object")
	case stObjFirst, stObjKey:
		if c == '"' {
			p.beginString(sName, 16)
			return
		}
		if c == '}' && p.state == stObjFirst {
			p.closeObject()
			return
		}
		p.syntax(c, "want a field name")
	case stColon:
		if c == ':' {
			p.state = stValue
			return
		}
		p.syntax(c, "want ':'")
	case stValue:
		p.valueStart(c)
	case stObjNext:
		switch c {
		case ',':
			p.state = stObjKey
		case '}':
			p.closeObject()
		default:
			p.syntax(c, "want ',' or '}'")
		}
	case stArrFirst:
		if c == ']' {
			p.closeArray()
			return
		}
		p.elementStart(c)
	case stArrElem:
		p.elementStart(c)
	case stArrNext:
		switch c {
		case ',':
			p.state = stArrElem
		case ']':
			p.closeArray()
		default:
			p.syntax(c, "want ',' or ']'")
		}
	case stDone:
		p.syntax(c, "data after the JSON object")
	default:
		panic(fmt.Sprintf("jsonstream: token in state %d", p.state))
	}
}

// valueStart handles the first byte of a member's value.
func (p *Parser) valueStart(c byte) {
	f := p.field
	switch {
	case c == '"':
		switch f {
		case fRequestID:
			p.beginString(sText, requestIDMaxBytes)
		case fLeaderID:
			p.beginString(sText, leaderIDMaxBytes)
		case fType:
			p.beginString(sType, 16)
		case fKey, fBegin, fEnd:
			p.beginString(sBase64, encodedLen(p.lim.MaxKeyBytes))
		case fValue:
			p.beginString(sBase64, encodedLen(p.lim.MaxValueBytes))
		default:
			p.typeError()
		}
	case c >= '0' && c <= '9':
		if f != fReadVersion && f != fVersion {
			p.typeError()
			return
		}
		p.num = uint64(c - '0')
		p.numZero = c == '0'
		p.state = stNumber
	case c == 'n':
		switch f {
		case fRequestID, fLeaderID, fReadVersion, fPreconditions, fOperations, fVersion:
			p.lit = 1
			p.state = stLiteral
		default:
			p.typeError()
		}
	case c == '[':
		if f != fPreconditions && f != fOperations {
			p.typeError()
			return
		}
		p.depth, p.list, p.index, p.field = 1, f, 0, fNone
		p.state = stArrFirst
	case c == '-' && (f == fReadVersion || f == fVersion):
		p.failf(KindBadRequest, p.path(), "must be a non-negative integer")
	case c == '{' || c == 't' || c == 'f' || c == '-':
		p.typeError()
	default:
		p.syntax(c, "want a value")
	}
}

// typeError refuses a value of the wrong JSON type for p.field.
func (p *Parser) typeError() {
	var want string
	switch p.field {
	case fRequestID, fLeaderID, fType:
		want = "a string"
	case fKey, fValue, fBegin, fEnd:
		want = "a base64 string"
	case fReadVersion, fVersion:
		want = "an unsigned integer"
	case fPreconditions, fOperations:
		want = "an array of objects"
	}
	p.failf(KindBadRequest, p.path(), "wrong type: must be %s", want)
}

// valueDone moves on after a member's value.
func (p *Parser) valueDone() {
	p.field = fNone
	p.state = stObjNext
}

func (p *Parser) elementStart(c byte) {
	n := len(p.dst.Operations)
	max := p.lim.MaxOperations
	if p.list == fPreconditions {
		n, max = len(p.dst.Preconditions), p.lim.MaxPreconditions
	}
	p.index = n
	if c != '{' {
		switch c {
		case '"', '[', 'n', 't', 'f', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			p.failf(KindBadRequest, p.path(), "wrong type: must be an object")
		default:
			p.syntax(c, "want an object")
		}
		return
	}
	if n >= max {
		p.failf(KindTooLarge, p.list.String(), "more than %d elements", max)
		return
	}
	if p.list == fPreconditions {
		p.dst.Preconditions = append(p.dst.Preconditions, tx.Precondition{})
	} else {
		p.dst.Operations = append(p.dst.Operations, tx.Operation{})
	}
	p.depth, p.elemSeen, p.elemType = 2, 0, elemNone
	p.state = stObjFirst
}

func (p *Parser) closeArray() {
	p.depth, p.list, p.field = 0, fNone, fNone
	p.state = stObjNext
}

func (p *Parser) closeObject() {
	switch p.depth {
	case 0:
		p.state = stDone
	case 2:
		p.finishElement()
		p.depth, p.field = 1, fNone
		p.state = stArrNext
	}
}

// finishElement checks a complete precondition or operation against the
// rules of its type, now that every member (and the type) is known.
func (p *Parser) finishElement() {
	var allowed, required uint16
	const ver = 1 << fVersion
	switch p.elemType {
	case elemNone:
		p.failElem(fType, "missing")
		return
	case elemPointRead:
		allowed, required = bit(fType)|bit(fKey)|ver, bit(fType)|bit(fKey)
	case elemRangeRead:
		allowed, required = bit(fType)|bit(fBegin)|bit(fEnd)|ver, bit(fType)|bit(fBegin)|bit(fEnd)
	case elemWrite:
		allowed = bit(fType) | bit(fKey) | bit(fValue)
		required = allowed
	case elemDelete:
		allowed = bit(fType) | bit(fKey)
		required = allowed
	case elemRangeDelete:
		allowed = bit(fType) | bit(fBegin) | bit(fEnd)
		required = allowed
	}
	for f := fType; f <= fVersion; f++ {
		if p.elemSeen&bit(f) != 0 && allowed&bit(f) == 0 {
			p.failElem(f, "not allowed for type "+elemTypeName(p.elemType))
			return
		}
		if required&bit(f) != 0 && p.elemSeen&bit(f) == 0 {
			p.failElem(f, "missing")
			return
		}
	}
	var begin, end []byte
	if p.list == fPreconditions {
		el := &p.dst.Preconditions[p.index]
		el.Type = tx.PointRead
		if p.elemType == elemRangeRead {
			el.Type = tx.RangeRead
		}
		begin, end = el.Key, el.End
	} else {
		el := &p.dst.Operations[p.index]
		switch p.elemType {
		case elemWrite:
			el.Type = tx.OpWrite
		case elemDelete:
			el.Type = tx.OpDelete
		default:
			el.Type = tx.OpRangeDelete
		}
		begin, end = el.Key, el.End
	}
	if (p.elemType == elemRangeRead || p.elemType == elemRangeDelete) && bytes.Compare(begin, end) >= 0 {
		p.failElem(fEnd, "must be greater than begin (bytewise)")
	}
}

func elemTypeName(t uint8) string {
	switch t {
	case elemPointRead:
		return "point_read"
	case elemRangeRead:
		return "range_read"
	case elemWrite:
		return "write"
	case elemDelete:
		return "delete"
	case elemRangeDelete:
		return "range_delete"
	}
	return "unknown"
}

func (p *Parser) failElem(f field, msg string) {
	p.field = f
	p.failf(KindBadRequest, p.path(), "%s", msg)
}

// --- strings ---

func (p *Parser) beginString(k strKind, max int) {
	p.str, p.strMax = k, max
	p.scratch = p.scratch[:0]
	p.high = 0
	p.state = stString
}

// stringRun consumes string content from s (non-empty) up to a backslash,
// the closing quote or the end of s, and returns the bytes consumed.
func (p *Parser) stringRun(s []byte) int {
	i := indexQuoteOrBackslash(s)
	if i < 0 {
		p.appendRaw(s)
		return len(s)
	}
	content := s[:i]
	if s[i] == '\\' {
		p.appendRaw(content)
		p.state = stEscape
		return i + 1
	}
	if len(p.scratch) == 0 && p.high == 0 {
		// Fast path: the whole string is in this chunk, unescaped, so it
		// is used from the chunk without a copy through scratch.
		if p.rawOK(content, 0) {
			p.stringDoneFrom(content)
		}
		return i + 1
	}
	p.appendRaw(content)
	if p.err == nil {
		p.stringDone()
	}
	return i + 1
}

// shortScan is how far indexQuoteOrBackslash looks eight bytes at a time
// before it switches to bytes.IndexByte: most strings (names, types, keys)
// end sooner, and two calls to the vectorised search cost more than that.
const shortScan = 64

const (
	lsbs = 0x0101010101010101
	msbs = 0x8080808080808080
)

// indexQuoteOrBackslash returns the index of the first '"' or '\\' in s, or
// -1. The first shortScan bytes are searched a word at a time (SWAR: a
// byte of w^pattern is zero where w matches; (x-lsbs)&^x&msbs flags the
// lowest zero byte exactly, higher flags may be borrow artefacts).
func indexQuoteOrBackslash(s []byte) int {
	n := min(len(s), shortScan)
	i := 0
	for ; i+8 <= n; i += 8 {
		w := binary.LittleEndian.Uint64(s[i:])
		q := w ^ (lsbs * '"')
		b := w ^ (lsbs * '\\')
		if m := ((q - lsbs) &^ q & msbs) | ((b - lsbs) &^ b & msbs); m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for ; i < n; i++ {
		if c := s[i]; c == '"' || c == '\\' {
			return i
		}
	}
	if len(s) <= shortScan {
		return -1
	}
	rest := s[shortScan:]
	q := bytes.IndexByte(rest, '"')
	if q >= 0 {
		rest = rest[:q]
	}
	if b := bytes.IndexByte(rest, '\\'); b >= 0 {
		return shortScan + b
	}
	if q >= 0 {
		return shortScan + q
	}
	return -1
}

// indexControl returns the index of the first control character in b, or -1.
func indexControl(b []byte) int {
	for i, c := range b {
		if c < 0x20 {
			return i
		}
	}
	return -1
}

// rawOK checks unescaped string bytes b that would follow have bytes of the
// string already gathered, and fails the parse if they hold a control
// character or make the string too long — whichever offending byte comes
// first, so that the error never depends on how the body was chunked.
func (p *Parser) rawOK(b []byte, have int) bool {
	room := p.strMax - have
	c := -1
	if p.str == sText {
		c = indexControl(b)
	}
	if len(b) > room && (c < 0 || c >= room) {
		p.stringTooLong()
		return false
	}
	if c >= 0 {
		p.failf(KindBadRequest, p.path(), "control character %#x in string (must be escaped)", b[c])
		return false
	}
	return true
}

// appendRaw adds unescaped string bytes as they appear in the body.
func (p *Parser) appendRaw(b []byte) {
	if len(b) == 0 {
		return // must not flush a high surrogate: a \u low half may follow
	}
	p.flushHigh()
	if p.err != nil || !p.rawOK(b, len(p.scratch)) {
		return
	}
	p.appendDecoded(b)
}

func (p *Parser) appendDecoded(b []byte) {
	if len(p.scratch)+len(b) > p.strMax {
		p.stringTooLong()
		return
	}
	p.scratch = append(p.scratch, b...)
}

func (p *Parser) stringTooLong() {
	switch p.str {
	case sName:
		p.failf(KindBadRequest, p.path(), "unknown field (name of more than %d bytes)", p.strMax)
	case sType:
		p.failElem(fType, "unknown type")
	case sText:
		if p.field == fRequestID {
			p.failf(KindBadRequest, p.path(), "must be %d–%d bytes", requestIDMinBytes, requestIDMaxBytes)
		} else {
			p.failf(KindBadRequest, p.path(), "must be 1–%d bytes", leaderIDMaxBytes)
		}
	case sBase64:
		max := p.lim.MaxKeyBytes
		if p.field == fValue {
			max = p.lim.MaxValueBytes
		}
		p.failf(KindTooLarge, p.path(), "over %d bytes", max)
	}
}

// flushHigh refuses a high surrogate not followed by a low one. encoding/json
// would turn it into U+FFFD, but then "\ud800-x" and "\udbff-x" decode to
// the same request_id and the second commit is answered as a duplicate of
// the first though its writes were never applied: a lone surrogate is not a
// character, so the body is refused instead.
func (p *Parser) flushHigh() {
	if p.high != 0 {
		p.loneSurrogate(p.high)
	}
}

func (p *Parser) loneSurrogate(r rune) {
	p.high = 0
	p.failf(KindBadRequest, p.path(), "lone surrogate \\u%04x in string (not a character)", r)
}

func (p *Parser) appendRune(r rune) {
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], r)
	p.appendDecoded(buf[:n])
}

func (p *Parser) escape(c byte) {
	var b byte
	switch c {
	case '"', '\\', '/':
		b = c
	case 'b':
		b = '\b'
	case 'f':
		b = '\f'
	case 'n':
		b = '\n'
	case 'r':
		b = '\r'
	case 't':
		b = '\t'
	case 'u':
		p.uHex, p.uVal = 0, 0
		p.state = stUnicode
		return
	default:
		p.failf(KindBadRequest, p.path(), "invalid escape %s in string", quoteByte('\\', c))
		return
	}
	p.flushHigh()
	if p.err != nil {
		return
	}
	if len(p.scratch) >= p.strMax {
		p.stringTooLong()
		return
	}
	p.scratch = append(p.scratch, b)
	p.state = stString
}

func (p *Parser) unicodeDigit(c byte) {
	var v byte
	switch {
	case c >= '0' && c <= '9':
		v = c - '0'
	case c >= 'a' && c <= 'f':
		v = c - 'a' + 10
	case c >= 'A' && c <= 'F':
		v = c - 'A' + 10
	default:
		p.failf(KindBadRequest, p.path(), "invalid \\u escape in string: %s", quoteByte(c, 0))
		return
	}
	p.uVal = p.uVal<<4 | rune(v)
	p.uHex++
	if p.uHex < 4 {
		return
	}
	p.state = stString
	r := p.uVal
	if p.high != 0 {
		if r >= 0xDC00 && r <= 0xDFFF {
			r = (p.high-0xD800)<<10 | (r - 0xDC00) + 0x10000
			p.high = 0
			p.appendRune(r)
			return
		}
		p.flushHigh()
		return
	}
	switch {
	case r >= 0xD800 && r <= 0xDBFF:
		p.high = r
	case r >= 0xDC00 && r <= 0xDFFF:
		p.loneSurrogate(r)
	default:
		p.appendRune(r)
	}
}

// stringDone handles a complete string held in scratch.
func (p *Parser) stringDone() {
	p.flushHigh()
	if p.err != nil {
		return
	}
	p.stringDoneFrom(p.scratch)
}

// stringDoneFrom handles a complete string s (in scratch or in the chunk).
func (p *Parser) stringDoneFrom(s []byte) {
	switch p.str {
	case sName:
		p.nameDone(s)
	case sText:
		p.textDone(s)
	case sType:
		p.typeDone(s)
	case sBase64:
		p.base64Done(s)
	}
}

// knownName is the fast path for a member name: s follows the opening
// quote, and when it starts with a name that is valid here, not yet seen,
// and its closing quote, knownName takes it (returning the bytes consumed)
// without going through the string states. Anything else (escapes, a
// split, unknown or duplicate names) returns 0 and takes the general path,
// which produces the same result or the error.
func (p *Parser) knownName(s []byte) int {
	f := fNone
	if p.depth == 0 {
		switch {
		case hasName(s, "request_id"):
			f = fRequestID
		case hasName(s, "read_version"):
			f = fReadVersion
		case hasName(s, "leader_id"):
			f = fLeaderID
		case hasName(s, "preconditions"):
			f = fPreconditions
		case hasName(s, "operations"):
			f = fOperations
		}
	} else {
		switch {
		case hasName(s, "type"):
			f = fType
		case hasName(s, "key"):
			f = fKey
		case hasName(s, "value") && p.list == fOperations:
			f = fValue
		case hasName(s, "begin"):
			f = fBegin
		case hasName(s, "end"):
			f = fEnd
		case hasName(s, "version") && p.list == fPreconditions:
			f = fVersion
		}
	}
	seen := &p.topSeen
	if p.depth != 0 {
		seen = &p.elemSeen
	}
	if f == fNone || *seen&bit(f) != 0 {
		return 0
	}
	*seen |= bit(f)
	p.field = f
	p.state = stColon
	return len(fieldNames[f]) + 1
}

// hasName reports whether s starts with name and a closing quote.
func hasName(s []byte, name string) bool {
	return len(s) > len(name) && s[len(name)] == '"' && string(s[:len(name)]) == name
}

func (p *Parser) nameDone(name []byte) {
	f := fNone
	if p.depth == 0 {
		switch string(name) {
		case "request_id":
			f = fRequestID
		case "leader_id":
			f = fLeaderID
		case "read_version":
			f = fReadVersion
		case "preconditions":
			f = fPreconditions
		case "operations":
			f = fOperations
		}
	} else {
		switch string(name) {
		case "type":
			f = fType
		case "key":
			f = fKey
		case "begin":
			f = fBegin
		case "end":
			f = fEnd
		case "value":
			if p.list == fOperations {
				f = fValue
			}
		case "version":
			if p.list == fPreconditions {
				f = fVersion
			}
		}
	}
	if f == fNone {
		p.failf(KindBadRequest, p.path(), "unknown field %s", strconv.QuoteToASCII(string(name)))
		return
	}
	seen := &p.topSeen
	if p.depth != 0 {
		seen = &p.elemSeen
	}
	p.field = f
	if *seen&bit(f) != 0 {
		p.failf(KindBadRequest, p.path(), "duplicate field")
		return
	}
	*seen |= bit(f)
	p.state = stColon
}

func (p *Parser) textDone(s []byte) {
	if !utf8.Valid(s) {
		p.failf(KindBadRequest, p.path(), "invalid UTF-8")
		return
	}
	if p.field == fRequestID {
		if len(s) < requestIDMinBytes {
			p.failf(KindBadRequest, p.path(), "must be %d–%d bytes", requestIDMinBytes, requestIDMaxBytes)
			return
		}
		p.dst.RequestID = p.a.Copy(s)
	} else {
		if len(s) == 0 {
			p.failf(KindBadRequest, p.path(), "must be 1–%d bytes", leaderIDMaxBytes)
			return
		}
		p.dst.LeaderID = p.a.Copy(s)
	}
	p.valueDone()
}

func (p *Parser) typeDone(s []byte) {
	t := elemNone
	if p.list == fPreconditions {
		switch string(s) {
		case "point_read":
			t = elemPointRead
		case "range_read":
			t = elemRangeRead
		}
	} else {
		switch string(s) {
		case "write":
			t = elemWrite
		case "delete":
			t = elemDelete
		case "range_delete":
			t = elemRangeDelete
		}
	}
	if t == elemNone {
		p.failf(KindBadRequest, p.path(), "unknown type %s", strconv.QuoteToASCII(string(s)))
		return
	}
	p.elemType = t
	p.valueDone()
}

// encodedLen is the longest padded base64 text whose decoding can fit in
// n bytes.
func encodedLen(n int) int { return (n + 2) / 3 * 4 }

// base64Done decodes a complete key, value, begin or end into the arena.
func (p *Parser) base64Done(src []byte) {
	max := p.lim.MaxKeyBytes
	if p.field == fValue {
		max = p.lim.MaxValueBytes
	}
	if len(src) > encodedLen(max) {
		p.failf(KindTooLarge, p.path(), "over %d bytes", max)
		return
	}
	if len(src)%4 != 0 {
		p.failf(KindBadRequest, p.path(), "invalid base64 (length %d is not a multiple of 4)", len(src))
		return
	}
	want := len(src) / 4 * 3
	if len(src) > 0 && src[len(src)-1] == '=' {
		want--
		if src[len(src)-2] == '=' {
			want--
		}
	}
	out := p.a.Alloc(len(src) / 4 * 3)
	// encoding/base64 skips \r and \n; they make the decoded length short
	// of want, which refuses them.
	n, err := strictBase64.Decode(out, src)
	if err != nil || n != want {
		p.failf(KindBadRequest, p.path(), "invalid base64")
		return
	}
	if n > max {
		p.failf(KindTooLarge, p.path(), "over %d bytes", max)
		return
	}
	out = out[:n:n]
	if p.list == fPreconditions {
		el := &p.dst.Preconditions[p.index]
		if p.field == fEnd {
			el.End = out
		} else {
			el.Key = out
		}
	} else {
		el := &p.dst.Operations[p.index]
		switch p.field {
		case fEnd:
			el.End = out
		case fValue:
			el.Value = out
		default:
			el.Key = out
		}
	}
	p.valueDone()
}

// --- numbers and null ---

// digits consumes the digits of a number from s and ends the number at the
// first other byte (which it leaves for the next state).
func (p *Parser) digits(s []byte) int {
	for i, c := range s {
		if c < '0' || c > '9' {
			p.numberEnd(c)
			return i
		}
		if p.numZero {
			p.failf(KindBadRequest, p.path(), "invalid number (leading zero)")
			return i
		}
		d := uint64(c - '0')
		if p.num > (math.MaxUint64-d)/10 {
			p.failf(KindBadRequest, p.path(), "overflows an unsigned 64-bit integer")
			return i
		}
		p.num = p.num*10 + d
	}
	return len(s)
}

func (p *Parser) numberEnd(c byte) {
	if c == '.' || c == 'e' || c == 'E' {
		p.failf(KindBadRequest, p.path(), "must be an integer (no fraction or exponent)")
		return
	}
	if p.field == fReadVersion {
		p.dst.ReadVersion, p.dst.HasReadVersion = tx.Version(p.num), true
	} else {
		el := &p.dst.Preconditions[p.index]
		el.Version, el.HasVersion = tx.Version(p.num), true
	}
	p.valueDone()
}

func (p *Parser) literal(c byte) {
	const null = "null"
	if c != null[p.lit] {
		p.syntax(c, "want null")
		return
	}
	p.lit++
	if int(p.lit) == len(null) {
		// Only optional fields get here (valueStart refuses the rest):
		// null leaves them absent.
		p.valueDone()
	}
}

// --- errors ---

// path names where the parser is, for error messages.
func (p *Parser) path() string {
	switch p.depth {
	case 0:
		return p.field.String()
	case 1:
		return p.list.String() + "[" + strconv.Itoa(p.index) + "]"
	}
	s := p.list.String() + "[" + strconv.Itoa(p.index) + "]"
	if p.field != fNone {
		s += "." + p.field.String()
	}
	return s
}

func (p *Parser) syntax(c byte, want string) {
	p.failf(KindBadRequest, p.path(), "invalid JSON: unexpected %s, %s", quoteByte(c, 0), want)
}

func quoteByte(a, b byte) string {
	s := []byte{a}
	if b != 0 {
		s = append(s, b)
	}
	return strconv.QuoteToASCII(string(s))
}

func (p *Parser) failf(k ErrorKind, path, format string, args ...any) *Error {
	return p.fail(&Error{Kind: k, Field: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *Parser) fail(e *Error) *Error {
	if p.err == nil {
		p.err = e
	}
	return p.err
}
