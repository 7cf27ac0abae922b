package fakes3

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// aws-chunked framing (Content-Encoding: aws-chunked), as AWS documents it
// for SigV4 streaming uploads (sigv4-streaming and sigv4-streaming-trailers):
//
//	<hex size>[;chunk-signature=<64 hex>]\r\n
//	<size bytes>\r\n
//	... more chunks ...
//	0[;chunk-signature=<64 hex>]\r\n
//	[<trailer name>:<value>\r\n ...]             (STREAMING-*-TRAILER variants)
//	[x-amz-trailer-signature:<64 hex>\r\n]       (signed trailer variant)
//	\r\n
//
// Chunk extensions are the HTTP/1.1 kind (";name" or ";name=value",
// repeatable); only chunk-signature has a meaning, and it is parsed and
// ignored (the server does not verify SigV4, see the package doc).
//
// Real clients bend the trailer section, and the decoder takes what they
// send: minio-go ends each trailer with a bare LF, puts an empty line
// between the trailers and x-amz-trailer-signature, and ends with two empty
// lines; other clients end the body right after the trailers. So in the
// trailer section empty lines are skipped (at most trailerBlankLinesMax)
// and the end of the body ends it; anything else must be a
// "name:value" line, and nothing but empty lines may follow the trailer
// signature.

const (
	chunkLineBytesMax    = 4096 // a size line or a trailer line
	trailersMax          = 16
	trailerBlankLinesMax = 4
	trailerSignatureName = "x-amz-trailer-signature"
)

var (
	errChunkFraming = errors.New("aws-chunked: malformed framing")
	errChunkTooBig  = errors.New("aws-chunked: body too large")
)

// trailer is one trailing header of an aws-chunked body, name lower-cased.
type trailer struct {
	name, value string
}

// decodeAWSChunked reads a whole aws-chunked body from r and returns the
// decoded data and the trailers. It fails with errChunkTooBig when the
// decoded data would exceed dataBytesMax and with errChunkFraming (wrapped)
// on anything malformed or truncated. It never panics.
func decodeAWSChunked(r io.Reader, dataBytesMax int64) ([]byte, []trailer, error) {
	br := bufio.NewReaderSize(r, 16<<10)
	var data []byte
	for {
		line, err := readChunkLine(br)
		if err == io.EOF {
			return nil, nil, fmt.Errorf("%w: body ended before the last chunk", errChunkFraming)
		}
		if err != nil {
			return nil, nil, err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return nil, nil, err
		}
		if size == 0 {
			break
		}
		if size > dataBytesMax-int64(len(data)) {
			return nil, nil, errChunkTooBig
		}
		start := len(data)
		data = append(data, make([]byte, size)...)
		if _, err := io.ReadFull(br, data[start:]); err != nil {
			return nil, nil, fmt.Errorf("%w: chunk data: %v", errChunkFraming, err)
		}
		if err := readChunkEnd(br); err != nil {
			return nil, nil, err
		}
	}
	trailers, err := readTrailers(br)
	if err != nil {
		return nil, nil, err
	}
	if data == nil {
		data = []byte{}
	}
	return data, trailers, nil
}

// readChunkLine returns one line without its CRLF or LF terminator.
func readChunkLine(br *bufio.Reader) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > chunkLineBytesMax {
			return "", fmt.Errorf("%w: line longer than %d bytes", errChunkFraming, chunkLineBytesMax)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return "", io.EOF // clean end of input: the caller decides
		}
		return "", fmt.Errorf("%w: line not terminated: %v", errChunkFraming, err)
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return string(line), nil
}

func parseChunkSize(line string) (int64, error) {
	sizeText, exts, hasExt := strings.Cut(line, ";")
	if hasExt {
		for _, ext := range strings.Split(exts, ";") {
			name, _, _ := strings.Cut(ext, "=")
			if strings.TrimSpace(name) == "" {
				return 0, fmt.Errorf("%w: bad chunk extension %q", errChunkFraming, ext)
			}
		}
	}
	sizeText = strings.TrimSpace(sizeText)
	if sizeText == "" || len(sizeText) > 15 {
		return 0, fmt.Errorf("%w: bad chunk size %q", errChunkFraming, sizeText)
	}
	size, err := strconv.ParseInt(sizeText, 16, 64)
	if err != nil || size < 0 {
		return 0, fmt.Errorf("%w: bad chunk size %q", errChunkFraming, sizeText)
	}
	return size, nil
}

func readChunkEnd(br *bufio.Reader) error {
	c, err := br.ReadByte()
	if err == nil && c == '\r' {
		c, err = br.ReadByte()
	}
	if err != nil || c != '\n' {
		return fmt.Errorf("%w: chunk data not followed by CRLF", errChunkFraming)
	}
	return nil
}

func readTrailers(br *bufio.Reader) ([]trailer, error) {
	var trailers []trailer
	blank, signed := 0, false
	for {
		line, err := readChunkLine(br)
		if err == io.EOF {
			return trailers, nil // the body ends the trailer section
		}
		if err != nil {
			return nil, err
		}
		if line == "" {
			if blank++; blank > trailerBlankLinesMax {
				return nil, fmt.Errorf("%w: more than %d empty lines after the last chunk", errChunkFraming, trailerBlankLinesMax)
			}
			continue
		}
		if signed {
			return nil, fmt.Errorf("%w: trailer after %s", errChunkFraming, trailerSignatureName)
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: bad trailer line %q", errChunkFraming, line)
		}
		if len(trailers) == trailersMax {
			return nil, fmt.Errorf("%w: more than %d trailers", errChunkFraming, trailersMax)
		}
		signed = name == trailerSignatureName
		trailers = append(trailers, trailer{name: name, value: strings.TrimSpace(value)})
	}
}

// appendAWSChunked appends data framed as aws-chunked to dst, split into
// chunks of chunkBytes (> 0), followed by the trailers. Used by tests and
// fuzzing as the inverse of decodeAWSChunked.
func appendAWSChunked(dst, data []byte, chunkBytes int, signed bool, trailers []trailer) []byte {
	sig := ";chunk-signature=" + strings.Repeat("0", 64)
	for len(data) > 0 {
		n := min(chunkBytes, len(data))
		dst = strconv.AppendInt(dst, int64(n), 16)
		if signed {
			dst = append(dst, sig...)
		}
		dst = append(dst, "\r\n"...)
		dst = append(dst, data[:n]...)
		dst = append(dst, "\r\n"...)
		data = data[n:]
	}
	dst = append(dst, '0')
	if signed {
		dst = append(dst, sig...)
	}
	dst = append(dst, "\r\n"...)
	for _, t := range trailers {
		dst = append(dst, t.name...)
		dst = append(dst, ':')
		dst = append(dst, t.value...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}
