package persist

import (
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/cespare/xxhash/v2"

	"github.com/weaseldb/weaseldb/tx"
)

const (
	segmentMagic         = "WSEG"
	segmentFormatVersion = 1
	// SegmentHeaderBytes is the size of the fixed part of a segment header
	// (without the leader id).
	SegmentHeaderBytes = 42
	// LeaderIDBytesMax is the longest leader id a segment can carry.
	LeaderIDBytesMax = 1<<16 - 1
	// segmentBodyBytesMax bounds the body length field (u32).
	segmentBodyBytesMax = 1<<32 - 1

	offChecksum = 8
	offFirst    = 16
	offLast     = 24
	offCount    = 32
	offBodyLen  = 36
	offIDLen    = 40
)

// SegmentHeader describes a decoded segment.
type SegmentHeader struct {
	First tx.Version // version of the first transaction; 0 for genesis
	Last  tx.Version // version of the last transaction; 0 for genesis
	Count uint32     // number of transactions
	// LeaderID is the id of the leader term that wrote the segment. It
	// aliases the decoded bytes.
	LeaderID []byte
	// Bytes is the whole encoded length of the segment.
	Bytes int
}

// IsGenesis reports whether h is the genesis segment (no transactions,
// First == Last == 0).
func (h SegmentHeader) IsGenesis() bool { return h.Count == 0 }

// Info returns the SegmentInfo naming this segment.
func (h SegmentHeader) Info() SegmentInfo {
	return SegmentInfo{First: h.First, Last: h.Last, Bytes: int64(h.Bytes)}
}

// EncodeSegment appends the encoding of a segment holding txns, written by
// leaderID, to dst and returns the extended slice. First and Last come from
// the transactions, which must have contiguous versions starting at 1 or
// more; an empty txns encodes the genesis segment (First 0, Last 0).
//
// Non-contiguous versions, a version 0 transaction, a leader id longer than
// LeaderIDBytesMax or a body over 4 GiB are a broken contract (a bug in the
// caller, never client input) and panic.
func EncodeSegment(dst []byte, leaderID []byte, txns []tx.Transaction) []byte {
	if len(leaderID) > LeaderIDBytesMax {
		panic(fmt.Sprintf("persist: leader id of %d bytes > %d", len(leaderID), LeaderIDBytesMax))
	}
	var first, last tx.Version
	if len(txns) > 0 {
		first = txns[0].Version
		last = txns[len(txns)-1].Version
		if first == 0 {
			panic("persist: EncodeSegment: transaction with version 0")
		}
	}
	start := len(dst)
	var hdr [SegmentHeaderBytes]byte
	copy(hdr[:4], segmentMagic)
	binary.LittleEndian.PutUint16(hdr[4:], segmentFormatVersion)
	binary.LittleEndian.PutUint64(hdr[offFirst:], uint64(first))
	binary.LittleEndian.PutUint64(hdr[offLast:], uint64(last))
	binary.LittleEndian.PutUint32(hdr[offCount:], uint32(len(txns)))
	binary.LittleEndian.PutUint16(hdr[offIDLen:], uint16(len(leaderID)))
	dst = append(dst, hdr[:]...)
	dst = append(dst, leaderID...)
	bodyStart := len(dst)

	var prevTS int64
	for i := range txns {
		t := &txns[i]
		if want := first + tx.Version(i); t.Version != want {
			panic(fmt.Sprintf("persist: EncodeSegment: txns[%d].Version = %d, want %d (first %d)", i, t.Version, want, first))
		}
		dst = binary.AppendUvarint(dst, uint64(len(t.RequestID)))
		dst = append(dst, t.RequestID...)
		dst = binary.AppendVarint(dst, t.TimestampUnixNano-prevTS)
		prevTS = t.TimestampUnixNano
		dst = binary.AppendUvarint(dst, uint64(len(t.Operations)))
		for j := range t.Operations {
			dst = appendOp(dst, &t.Operations[j])
		}
	}
	bodyLen := len(dst) - bodyStart
	if bodyLen > segmentBodyBytesMax {
		panic(fmt.Sprintf("persist: EncodeSegment: body of %d bytes > %d", bodyLen, segmentBodyBytesMax))
	}
	seg := dst[start:]
	binary.LittleEndian.PutUint32(seg[offBodyLen:], uint32(bodyLen))
	binary.LittleEndian.PutUint64(seg[offChecksum:], xxhash.Sum64(seg[offFirst:]))
	return dst
}

func appendOp(dst []byte, op *tx.Operation) []byte {
	switch op.Type {
	case tx.OpWrite:
		dst = append(dst, byte(op.Type))
		dst = appendBytes(dst, op.Key)
		return appendBytes(dst, op.Value)
	case tx.OpDelete:
		dst = append(dst, byte(op.Type))
		return appendBytes(dst, op.Key)
	case tx.OpRangeDelete:
		dst = append(dst, byte(op.Type))
		dst = appendBytes(dst, op.Key)
		return appendBytes(dst, op.End)
	}
	panic(fmt.Sprintf("persist: EncodeSegment: operation type %d", op.Type))
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// DecodeSegmentHeader validates the framing of the segment b — magic, format
// version, exact length, checksum, and that first/last/count agree — and
// returns its header. Every failure wraps ErrCorruption. It does not parse
// the body (see DecodeSegment or SegmentReader for that).
func DecodeSegmentHeader(b []byte) (SegmentHeader, error) {
	if len(b) < SegmentHeaderBytes {
		return SegmentHeader{}, fmt.Errorf("%w: segment of %d bytes shorter than its %d-byte header", ErrCorruption, len(b), SegmentHeaderBytes)
	}
	if string(b[:4]) != segmentMagic {
		return SegmentHeader{}, fmt.Errorf("%w: segment magic %q, want %q", ErrCorruption, b[:4], segmentMagic)
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != segmentFormatVersion {
		return SegmentHeader{}, fmt.Errorf("%w: segment format version %d, want %d", ErrCorruption, v, segmentFormatVersion)
	}
	if z := binary.LittleEndian.Uint16(b[6:]); z != 0 {
		return SegmentHeader{}, fmt.Errorf("%w: segment reserved field %d, want 0", ErrCorruption, z)
	}
	idLen := int(binary.LittleEndian.Uint16(b[offIDLen:]))
	bodyLen := uint64(binary.LittleEndian.Uint32(b[offBodyLen:]))
	want := uint64(SegmentHeaderBytes) + uint64(idLen) + bodyLen
	if uint64(len(b)) != want {
		return SegmentHeader{}, fmt.Errorf("%w: segment of %d bytes, header says %d (leader id %d, body %d)", ErrCorruption, len(b), want, idLen, bodyLen)
	}
	stored := binary.LittleEndian.Uint64(b[offChecksum:])
	if sum := xxhash.Sum64(b[offFirst:]); sum != stored {
		return SegmentHeader{}, fmt.Errorf("%w: segment checksum %016x, stored %016x", ErrCorruption, sum, stored)
	}
	h := SegmentHeader{
		First:    tx.Version(binary.LittleEndian.Uint64(b[offFirst:])),
		Last:     tx.Version(binary.LittleEndian.Uint64(b[offLast:])),
		Count:    binary.LittleEndian.Uint32(b[offCount:]),
		LeaderID: b[SegmentHeaderBytes : SegmentHeaderBytes+idLen : SegmentHeaderBytes+idLen],
		Bytes:    len(b),
	}
	if err := checkRange(h); err != nil {
		return SegmentHeader{}, err
	}
	return h, nil
}

func checkRange(h SegmentHeader) error {
	if h.Count == 0 {
		if h.First != 0 || h.Last != 0 {
			return fmt.Errorf("%w: empty segment with first %d last %d, want genesis 0..0", ErrCorruption, h.First, h.Last)
		}
		return nil
	}
	if h.First == 0 || h.Last < h.First || uint64(h.Last-h.First) != uint64(h.Count)-1 {
		return fmt.Errorf("%w: segment versions %d..%d do not match count %d", ErrCorruption, h.First, h.Last, h.Count)
	}
	return nil
}

// DecodeSegment validates b (as DecodeSegmentHeader) and decodes its
// transactions, appending them to txns[:0] and returning the extended slice.
// Byte slices in the result alias b. The Operations slices of the elements
// already in txns' capacity are reused, so decoding into the slice returned
// by the previous call allocates nothing in steady state. Every failure wraps
// ErrCorruption; hostile bytes never cause a panic.
func DecodeSegment(b []byte, txns []tx.Transaction) (SegmentHeader, []tx.Transaction, error) {
	txns = txns[:0]
	var r SegmentReader
	h, err := r.Reset(b)
	if err != nil {
		return SegmentHeader{}, txns, err
	}
	for {
		n := len(txns)
		if n < cap(txns) {
			txns = txns[:n+1]
		} else {
			txns = append(txns, tx.Transaction{})
		}
		t := &txns[n]
		if !r.decodeInto(t) {
			txns = txns[:n]
			break
		}
	}
	if r.err != nil {
		return SegmentHeader{}, txns[:0], r.err
	}
	return h, txns, nil
}

// SegmentReader iterates over the transactions of one segment without
// allocating per transaction: Next returns a pointer to a Transaction owned
// by the reader, valid until the next call of Next or Reset, whose byte
// slices alias the segment bytes.
//
//	var r persist.SegmentReader
//	if _, err := r.Reset(data); err != nil { ... }
//	for t, ok := r.Next(); ok; t, ok = r.Next() { ... }
//	if err := r.Err(); err != nil { ... }
type SegmentReader struct {
	body      []byte
	off       int
	next      tx.Version
	remaining uint32
	prevTS    int64
	cur       tx.Transaction
	err       error
}

// Reset validates the segment b (see DecodeSegmentHeader) and positions the
// reader before its first transaction.
func (r *SegmentReader) Reset(b []byte) (SegmentHeader, error) {
	ops := r.cur.Operations[:0]
	*r = SegmentReader{}
	r.cur.Operations = ops
	h, err := DecodeSegmentHeader(b)
	if err != nil {
		r.err = err
		return SegmentHeader{}, err
	}
	r.body = b[SegmentHeaderBytes+len(h.LeaderID):]
	r.next = h.First
	r.remaining = h.Count
	return h, nil
}

// Next returns the next transaction, or false at the end of the segment or
// on corruption (see Err).
func (r *SegmentReader) Next() (*tx.Transaction, bool) {
	if !r.decodeInto(&r.cur) {
		return nil, false
	}
	return &r.cur, true
}

// Err returns the error that stopped the iteration, if any. Errors wrap
// ErrCorruption.
func (r *SegmentReader) Err() error { return r.err }

// decodeInto decodes the next record into t, reusing t.Operations' capacity.
func (r *SegmentReader) decodeInto(t *tx.Transaction) bool {
	if r.err != nil {
		return false
	}
	if r.remaining == 0 {
		if r.off != len(r.body) {
			r.fail("%d trailing bytes after the last record", len(r.body)-r.off)
		}
		return false
	}
	t.Version = r.next
	var ok bool
	if t.RequestID, ok = r.bytes(); !ok {
		return r.fail("version %d: bad request id", t.Version)
	}
	delta, n := binary.Varint(r.body[r.off:])
	if n <= 0 || !minimalVarint(r.body[r.off:r.off+n]) {
		return r.fail("version %d: bad timestamp", t.Version)
	}
	r.off += n
	r.prevTS += delta
	t.TimestampUnixNano = r.prevTS
	count, ok := r.uvarint()
	// Every op takes at least two bytes; this bound keeps hostile counts
	// from driving allocation.
	if !ok || count > uint64(len(r.body)-r.off)/2 {
		return r.fail("version %d: bad operation count", t.Version)
	}
	ops := t.Operations[:0]
	for i := uint64(0); i < count; i++ {
		var op tx.Operation
		if r.off >= len(r.body) {
			return r.fail("version %d op %d: truncated", t.Version, i)
		}
		op.Type = tx.OpType(r.body[r.off])
		r.off++
		if op.Key, ok = r.bytes(); !ok {
			return r.fail("version %d op %d: bad key", t.Version, i)
		}
		switch op.Type {
		case tx.OpWrite:
			op.Value, ok = r.bytes()
		case tx.OpDelete:
		case tx.OpRangeDelete:
			op.End, ok = r.bytes()
		default:
			return r.fail("version %d op %d: unknown type %d", t.Version, i, op.Type)
		}
		if !ok {
			return r.fail("version %d op %d: bad value or end", t.Version, i)
		}
		ops = append(ops, op)
	}
	t.Operations = ops
	r.next++
	r.remaining--
	return true
}

func (r *SegmentReader) fail(format string, args ...any) bool {
	r.err = fmt.Errorf("%w: segment body: %s", ErrCorruption, fmt.Sprintf(format, args...))
	return false
}

func (r *SegmentReader) uvarint() (uint64, bool) {
	v, n := binary.Uvarint(r.body[r.off:])
	if n <= 0 || !minimalVarint(r.body[r.off:r.off+n]) {
		return 0, false
	}
	r.off += n
	return v, true
}

// minimalVarint reports whether the varint b is in its shortest form (no
// trailing zero groups). Rejecting padded forms keeps the encoding canonical:
// one segment has exactly one byte string.
func minimalVarint(b []byte) bool {
	return len(b) == 1 || b[len(b)-1] != 0
}

// bytes reads a uvarint length and that many bytes, capped to their length
// so that an append by the caller cannot overwrite the next field.
func (r *SegmentReader) bytes() ([]byte, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(len(r.body)-r.off) {
		return nil, false
	}
	end := r.off + int(n)
	b := r.body[r.off:end:end]
	r.off = end
	return b, true
}

// SegmentNameDigits is the width of the zero-padded First version in segment
// names (enough for any uint64), so that names sort like versions.
const SegmentNameDigits = 20

// AppendSegmentName appends the name of the segment starting at first: its
// version as 20 zero-padded decimal digits (backends add their own prefix or
// suffix).
func AppendSegmentName(dst []byte, first tx.Version) []byte {
	var digits [SegmentNameDigits]byte
	s := strconv.AppendUint(digits[:0], uint64(first), 10)
	for i := len(s); i < SegmentNameDigits; i++ {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// ParseSegmentName parses a name produced by AppendSegmentName; it accepts
// exactly 20 decimal digits.
func ParseSegmentName(name string) (tx.Version, bool) {
	if len(name) != SegmentNameDigits {
		return 0, false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(name, 10, 64)
	if err != nil {
		return 0, false
	}
	return tx.Version(v), true
}

// PeekSegmentRange returns the First version of the segment whose header
// starts b (at least SegmentHeaderBytes), checking only its magic: for
// indexing copies that are validated in full when used.
func PeekSegmentRange(b []byte) (tx.Version, bool) {
	if len(b) < SegmentHeaderBytes || string(b[:4]) != segmentMagic {
		return 0, false
	}
	return tx.Version(binary.LittleEndian.Uint64(b[offFirst:])), true
}
