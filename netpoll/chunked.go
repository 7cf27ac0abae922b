package netpoll

// chunkedDecoder removes chunked transfer coding (RFC 9112 §7.1) from a
// request body fed in arbitrary pieces. It is a push state machine: decode
// consumes input and returns the data bytes in place (a sub-slice of the
// input, no copy), so the handler sees body bytes as they arrive.
type chunkedDecoder struct {
	state     chunkState
	remaining int64 // data bytes left in the current chunk
	lineBytes int   // bytes of the current size/extension/trailer line
	sawDigit  bool
}

type chunkState uint8

const (
	chunkSize      chunkState = iota // hex digits of the size
	chunkExt                         // extension after the size, up to CR
	chunkSizeLF                      // LF ending the size line
	chunkData                        // data bytes
	chunkDataCR                      // CR after data
	chunkDataLF                      // LF after data
	chunkTrailer                     // start of a trailer line or the final empty line
	chunkTrailerLn                   // inside a trailer field line
	chunkTrailerLF                   // LF ending a trailer field line
	chunkLastLF                      // LF of the final empty line
	chunkDone
)

// chunkLineMax bounds size lines (with extensions) and trailer lines.
const chunkLineMax = 4096

var (
	errChunkSyntax  = &headError{400, "bad_request", "malformed chunked body"}
	errChunkTooLong = &headError{400, "bad_request", "chunk size or trailer line too long"}
	errChunkLine    = &headError{400, "bad_request", "malformed chunked body: a chunk line must end in CRLF, with no bare CR or control byte"}
)

func (d *chunkedDecoder) reset() { *d = chunkedDecoder{} }

// done reports whether the terminating chunk and trailers were consumed.
func (d *chunkedDecoder) done() bool { return d.state == chunkDone }

// lineByteOK reports whether c may appear inside a chunk extension or a
// trailer line: visible ASCII, SP, HTAB and obs-text (RFC 9110 §5.5). CR,
// LF, NUL and the other controls are refused.
func lineByteOK(c byte) bool { return c == '\t' || (c >= 0x20 && c != 0x7f) }

// decode consumes a prefix of in. It returns the number of input bytes
// consumed and at most one run of data bytes (a sub-slice of in). Call it
// again with in[consumed:] until consumed is 0 or the decoder is done.
//
// Unlike the head, where RFC 9112 §2.2 lets a recipient accept a bare LF,
// every chunk line must end in CRLF, and extensions and trailers must not
// hold a bare CR or a control byte: those are the leniencies that make a
// proxy in front of us and this server disagree on where a body ends
// (request smuggling).
func (d *chunkedDecoder) decode(in []byte) (consumed int, data []byte, err *headError) {
	i := 0
	for i < len(in) {
		c := in[i]
		switch d.state {
		case chunkSize:
			if v, ok := unhex(c); ok {
				if d.remaining > (1<<59)>>4 {
					return i, nil, errChunkSyntax
				}
				d.remaining = d.remaining<<4 | int64(v)
				d.sawDigit = true
			} else if !d.sawDigit {
				return i, nil, errChunkSyntax
			} else if c == ';' || c == ' ' || c == '\t' {
				d.state = chunkExt
			} else if c == '\r' {
				d.state = chunkSizeLF
			} else if c == '\n' {
				return i, nil, errChunkLine
			} else {
				return i, nil, errChunkSyntax
			}
			if err := d.countLine(); err != nil {
				return i, nil, err
			}
		case chunkExt:
			if c == '\r' {
				d.state = chunkSizeLF
			} else if !lineByteOK(c) {
				return i, nil, errChunkLine
			} else if err := d.countLine(); err != nil {
				return i, nil, err
			}
		case chunkSizeLF:
			if c != '\n' {
				return i, nil, errChunkLine
			}
			d.endSizeLine()
		case chunkData:
			n := int64(len(in) - i)
			if n > d.remaining {
				n = d.remaining
			}
			d.remaining -= n
			if d.remaining == 0 {
				d.state = chunkDataCR
			}
			return i + int(n), in[i : i+int(n)], nil
		case chunkDataCR:
			if c == '\n' {
				return i, nil, errChunkLine
			} else if c != '\r' {
				return i, nil, errChunkSyntax
			}
			d.state = chunkDataLF
		case chunkDataLF:
			if c != '\n' {
				return i, nil, errChunkLine
			}
			d.state = chunkSize
		case chunkTrailer:
			if c == '\r' {
				d.state = chunkLastLF
			} else if !lineByteOK(c) {
				return i, nil, errChunkLine
			} else {
				d.state = chunkTrailerLn
				if err := d.countLine(); err != nil {
					return i, nil, err
				}
			}
		case chunkTrailerLn:
			if c == '\r' {
				d.state = chunkTrailerLF
			} else if !lineByteOK(c) {
				return i, nil, errChunkLine
			} else if err := d.countLine(); err != nil {
				return i, nil, err
			}
		case chunkTrailerLF:
			if c != '\n' {
				return i, nil, errChunkLine
			}
			d.state, d.lineBytes = chunkTrailer, 0
		case chunkLastLF:
			if c != '\n' {
				return i, nil, errChunkLine
			}
			d.state = chunkDone
			return i + 1, nil, nil
		case chunkDone:
			return i, nil, nil
		}
		i++
	}
	return i, nil, nil
}

func (d *chunkedDecoder) countLine() *headError {
	d.lineBytes++
	if d.lineBytes > chunkLineMax {
		return errChunkTooLong
	}
	return nil
}

func (d *chunkedDecoder) endSizeLine() {
	d.lineBytes, d.sawDigit = 0, false
	if d.remaining == 0 {
		d.state = chunkTrailer
		return
	}
	d.state = chunkData
}
