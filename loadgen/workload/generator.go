package workload

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
)

// requestIDPrefix starts every request_id loadgen sends:
//
//	lg<run id: 16 hex>-<send time: unix ns, 16 hex>-<connection: 8 hex><sequence: 16 hex>
//
// 60 bytes, inside API.md's 20–256. The send time rides along so that a
// subscriber computes commit-to-delivery lag from the event alone: the server
// echoes request_id in every transaction event. The run id keeps ids unique
// across loadgen runs against one server (a repeat would be a "duplicate").
const (
	requestIDPrefix = "lg"
	requestIDBytes  = 2 + 16 + 1 + 16 + 1 + 8 + 16
)

// Generator builds the commit bodies of one connection. It is not safe for
// concurrent use: give each connection its own (NewGenerator is cheap after
// the first, the key chooser and value are shared and immutable).
type Generator struct {
	shape     *Shape     // immutable
	keys      KeyChooser // immutable tables
	rng       *rand.Rand
	runID     [16]byte // hex
	conn      uint32
	seq       uint64
	valueB64  []byte // immutable: the base64 of the value every write carries
	keyDigits int
	key       []byte // scratch: raw key bytes
}

// Source holds what every Generator of a run shares: the validated shape,
// the key chooser (the zipf table costs O(keys) to build) and the value.
type Source struct {
	shape    Shape
	keys     KeyChooser
	runID    [16]byte
	valueB64 []byte
	seed     uint64
}

// NewSource validates the shape and builds the shared tables. runID
// distinguishes this run's request_ids from earlier runs' (any 64 bits).
func NewSource(shape Shape, runID uint64) (*Source, error) {
	if err := shape.Validate(); err != nil {
		return nil, fmt.Errorf("workload shape: %w", err)
	}
	s := &Source{shape: shape, seed: shape.Seed}
	hex.Encode(s.runID[:], be64(runID))
	switch shape.Distribution {
	case "zipf":
		z, err := NewZipf(shape.Keys, shape.Theta)
		if err != nil {
			return nil, fmt.Errorf("workload shape: %w", err)
		}
		s.keys = z
	default:
		s.keys = uniformKeys{n: shape.Keys}
	}
	value := make([]byte, shape.ValueBytes)
	rng := rand.New(rand.NewPCG(runID, 0x5eed))
	for i := range value {
		value[i] = byte(rng.Uint32())
	}
	s.valueB64 = base64.StdEncoding.AppendEncode(nil, value)
	return s, nil
}

// RunID is the 16 hex digits that mark this run's request_ids.
func (s *Source) RunID() string { return string(s.runID[:]) }

// Generator returns the body builder of connection conn.
func (s *Source) Generator(conn uint32) *Generator {
	return &Generator{
		shape: &s.shape, keys: s.keys,
		rng:       rand.New(rand.NewPCG(s.seed, uint64(conn)+1)),
		runID:     s.runID,
		conn:      conn,
		valueB64:  s.valueB64,
		keyDigits: s.shape.KeyBytes - 1,
		key:       make([]byte, 0, s.shape.KeyBytes),
	}
}

func be64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

// AppendKey appends key number i: "k" and i in decimal, zero-padded so that
// byte order is numeric order (ranges over indexes are ranges over keys).
func (g *Generator) appendKeyB64(dst []byte, i uint64) []byte {
	k := append(g.key[:0], 'k')
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], i, 10)
	for n := len(d); n < g.keyDigits; n++ {
		k = append(k, '0')
	}
	k = append(k, d...)
	g.key = k
	return base64.StdEncoding.AppendEncode(dst, k)
}

// AppendCommit appends the JSON body of the next commit to dst: preconditions
// at readVersion (the newest version this connection has seen), a request_id
// carrying sendNanos when the shape asks for ids. It allocates nothing once
// dst has grown to a body's size.
func (g *Generator) AppendCommit(dst []byte, readVersion uint64, sendNanos int64) []byte {
	s := g.shape
	g.seq++
	dst = append(dst, '{')
	if s.RequestID {
		dst = append(dst, `"request_id":"`...)
		dst = g.appendRequestID(dst, sendNanos)
		dst = append(dst, `",`...)
	}
	if s.HotFraction > 0 && g.rng.Float64() < s.HotFraction {
		// Read-modify-write of one hot key: conflicts whenever another
		// connection wrote it since this one last heard a version.
		hot := g.rng.Uint64N(uint64(s.HotKeys))
		dst = append(dst, `"read_version":`...)
		dst = strconv.AppendUint(dst, readVersion, 10)
		dst = append(dst, `,"preconditions":[{"type":"point_read","key":"`...)
		dst = g.appendKeyB64(dst, hot)
		dst = append(dst, `"}],"operations":[`...)
		dst = g.appendWrite(dst, hot)
		return append(dst, "]}"...)
	}
	if s.PointReads+s.RangeReads > 0 {
		dst = append(dst, `"read_version":`...)
		dst = strconv.AppendUint(dst, readVersion, 10)
		dst = append(dst, `,"preconditions":[`...)
		for i := 0; i < s.PointReads; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"type":"point_read","key":"`...)
			dst = g.appendKeyB64(dst, g.keys.Next(g.rng))
			dst = append(dst, `"}`...)
		}
		for i := 0; i < s.RangeReads; i++ {
			if i > 0 || s.PointReads > 0 {
				dst = append(dst, ',')
			}
			begin := min(g.keys.Next(g.rng), s.Keys-uint64(s.RangeKeys))
			dst = append(dst, `{"type":"range_read","begin":"`...)
			dst = g.appendKeyB64(dst, begin)
			dst = append(dst, `","end":"`...)
			dst = g.appendKeyB64(dst, begin+uint64(s.RangeKeys))
			dst = append(dst, `"}`...)
		}
		dst = append(dst, "],"...)
	}
	dst = append(dst, `"operations":[`...)
	for i := 0; i < s.Writes; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = g.appendWrite(dst, g.keys.Next(g.rng))
	}
	return append(dst, "]}"...)
}

func (g *Generator) appendWrite(dst []byte, key uint64) []byte {
	dst = append(dst, `{"type":"write","key":"`...)
	dst = g.appendKeyB64(dst, key)
	dst = append(dst, `","value":"`...)
	dst = append(dst, g.valueB64...)
	return append(dst, `"}`...)
}

func (g *Generator) appendRequestID(dst []byte, sendNanos int64) []byte {
	dst = append(dst, requestIDPrefix...)
	dst = append(dst, g.runID[:]...)
	dst = append(dst, '-')
	dst = appendHex(dst, uint64(sendNanos), 16)
	dst = append(dst, '-')
	dst = appendHex(dst, uint64(g.conn), 8)
	return appendHex(dst, g.seq, 16)
}

func appendHex(dst []byte, v uint64, width int) []byte {
	const digits = "0123456789abcdef"
	for shift := (width - 1) * 4; shift >= 0; shift -= 4 {
		dst = append(dst, digits[(v>>uint(shift))&0xf])
	}
	return dst
}

// SendTimeOf extracts the send time (unix ns) from a request_id this run
// made; ok is false for any other id (another run's, the server's UUIDs).
func SendTimeOf(requestID []byte, runID string) (sendNanos int64, ok bool) {
	if len(requestID) != requestIDBytes || !bytes.HasPrefix(requestID, []byte(requestIDPrefix)) ||
		string(requestID[2:18]) != runID || requestID[18] != '-' || requestID[35] != '-' {
		return 0, false
	}
	var v uint64
	for _, c := range requestID[19:35] {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return int64(v), true
}
