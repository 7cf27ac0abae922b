package conflict

import (
	"bytes"
	"encoding/binary"
)

// keyRef is a key stored in the tree: its first 8 bytes inline (so most
// comparisons never leave the node) and the rest, if any, in the arena.
type keyRef struct {
	// prefix holds the first 8 bytes, big-endian, zero-padded: comparing
	// two prefixes as integers compares the keys' first 8 bytes.
	prefix uint64
	// ref packs the key length (low 32 bits) and, for keys longer than 8
	// bytes, the offset of key[8:] in the arena divided by 8 (high 32
	// bits). Arena allocations are 8-byte aligned, so the arena can address
	// 32 GiB.
	ref uint64
}

func (r keyRef) len() int { return int(uint32(r.ref)) }

// query is a key being looked up, pre-split like a keyRef.
type query struct {
	prefix uint64
	n      int
	suffix []byte // key[8:], nil for short keys
}

func makeQuery(k []byte) query {
	q := query{prefix: prefixOf(k), n: len(k)}
	if len(k) > 8 {
		q.suffix = k[8:]
	}
	return q
}

func prefixOf(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

// arena holds the suffixes (bytes after the first 8) of stored keys. Freed
// bytes are only counted; rebuild copies the live ones to a fresh arena.
type arena struct {
	buf     []byte
	garbage int // bytes freed but not yet reclaimed
}

func padded(n int) int { return (n + 7) &^ 7 }

// store returns a keyRef for k, copying its suffix into the arena.
func (a *arena) store(k []byte) keyRef {
	r := keyRef{prefix: prefixOf(k), ref: uint64(uint32(len(k)))}
	if len(k) > 8 {
		off := len(a.buf)
		a.buf = append(a.buf, k[8:]...)
		a.buf = append(a.buf, zeros[:padded(len(k)-8)-(len(k)-8)]...)
		r.ref |= uint64(off/8) << 32
	}
	return r
}

var zeros [8]byte

// suffix returns key[8:] of r (nil for short keys); valid until the next
// rebuild.
func (a *arena) suffix(r keyRef) []byte {
	n := r.len()
	if n <= 8 {
		return nil
	}
	off := int(r.ref>>32) * 8
	return a.buf[off : off+n-8 : off+n-8]
}

// clone stores a copy of the key r refers to.
func (a *arena) clone(r keyRef) keyRef {
	if r.len() <= 8 {
		return r
	}
	s := a.suffix(r)
	off := len(a.buf)
	a.buf = append(a.buf, s...)
	a.buf = append(a.buf, zeros[:padded(len(s))-len(s)]...)
	return keyRef{prefix: r.prefix, ref: uint64(uint32(r.len())) | uint64(off/8)<<32}
}

// free marks r's bytes as garbage.
func (a *arena) free(r keyRef) {
	if n := r.len(); n > 8 {
		a.garbage += padded(n - 8)
	}
}

// cmp compares the stored key r with q.
func (a *arena) cmp(r keyRef, q *query) int {
	if r.prefix != q.prefix {
		if r.prefix < q.prefix {
			return -1
		}
		return 1
	}
	n := r.len()
	if n <= 8 || q.n <= 8 {
		// Equal zero-padded prefixes and one key of at most 8 bytes: the
		// shorter key is a prefix of the longer.
		switch {
		case n < q.n:
			return -1
		case n > q.n:
			return 1
		}
		return 0
	}
	return bytes.Compare(a.suffix(r), q.suffix)
}

// queryOf returns a query for a stored key; its suffix aliases the arena.
func (a *arena) queryOf(r keyRef) query {
	return query{prefix: r.prefix, n: r.len(), suffix: a.suffix(r)}
}
