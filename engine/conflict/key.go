package conflict

import (
	"bytes"
	"encoding/binary"
)

// inline is the number of leading key bytes a keyRef holds in the node
// itself. 16 covers whole keys of the usual shapes ("user/12345",
// "account/00000042", a prefix plus an 8-byte id), so that a search
// compares two integers per probe and never leaves the node; longer keys
// fall through to the arena only when their first 16 bytes are equal.
const inline = 16

// keyRef is a key stored in the tree: its first 16 bytes inline, as two
// big-endian integers, and the rest, if any, in the arena.
type keyRef struct {
	// hi and lo hold bytes [0, 8) and [8, 16), big-endian and zero-padded:
	// comparing (hi, lo) as a 128-bit integer compares the keys' first 16
	// bytes.
	hi, lo uint64
	// ref packs the key length (low 32 bits) and, for keys longer than 16
	// bytes, the offset of key[16:] in the arena divided by 8 (high 32
	// bits). Arena allocations are 8-byte aligned, so the arena can address
	// 32 GiB.
	ref uint64
}

func (r keyRef) len() int { return int(uint32(r.ref)) }

// query is a key being looked up, pre-split like a keyRef.
type query struct {
	hi, lo uint64
	n      int
	suffix []byte // key[16:], nil for keys of at most 16 bytes
}

func makeQuery(k []byte) query {
	hi, lo := prefixOf(k)
	q := query{hi: hi, lo: lo, n: len(k)}
	if len(k) > inline {
		q.suffix = k[inline:]
	}
	return q
}

// prefixOf returns the first 16 bytes of k, zero-padded, as two
// big-endian integers.
func prefixOf(k []byte) (hi, lo uint64) {
	if len(k) >= inline {
		return binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:])
	}
	var b [inline]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:]), binary.BigEndian.Uint64(b[8:])
}

// arena holds the suffixes (bytes after the first 16) of stored keys.
// Freed bytes are only counted; rebuild copies the live ones to a fresh
// arena.
type arena struct {
	buf     []byte
	garbage int // bytes freed but not yet reclaimed
}

func padded(n int) int { return (n + 7) &^ 7 }

// store returns a keyRef for k, copying its suffix into the arena.
func (a *arena) store(k []byte) keyRef {
	hi, lo := prefixOf(k)
	r := keyRef{hi: hi, lo: lo, ref: uint64(uint32(len(k)))}
	if len(k) > inline {
		r.ref |= a.put(k[inline:])
	}
	return r
}

// put appends s, padded to 8 bytes, and returns its offset for a ref.
func (a *arena) put(s []byte) uint64 {
	off := len(a.buf)
	a.buf = append(a.buf, s...)
	a.buf = append(a.buf, zeros[:padded(len(s))-len(s)]...)
	return uint64(off/8) << 32
}

var zeros [8]byte

// suffix returns key[16:] of r (nil for short keys); valid until the next
// rebuild.
func (a *arena) suffix(r keyRef) []byte {
	n := r.len()
	if n <= inline {
		return nil
	}
	off := int(r.ref>>32) * 8
	return a.buf[off : off+n-inline : off+n-inline]
}

// clone stores a copy of the key r refers to.
func (a *arena) clone(r keyRef) keyRef {
	if r.len() <= inline {
		return r
	}
	return keyRef{hi: r.hi, lo: r.lo, ref: uint64(uint32(r.len())) | a.put(a.suffix(r))}
}

// free marks r's bytes as garbage.
func (a *arena) free(r keyRef) {
	if n := r.len(); n > inline {
		a.garbage += padded(n - inline)
	}
}

// cmp compares the stored key r with q.
func (a *arena) cmp(r *keyRef, q *query) int {
	if r.hi != q.hi {
		if r.hi < q.hi {
			return -1
		}
		return 1
	}
	if r.lo != q.lo {
		if r.lo < q.lo {
			return -1
		}
		return 1
	}
	return a.cmpTail(r, q)
}

// cmpTail compares r with q given that their first 16 bytes (zero-padded)
// are equal.
func (a *arena) cmpTail(r *keyRef, q *query) int {
	n := r.len()
	if n <= inline || q.n <= inline {
		// Equal zero-padded prefixes and one key of at most 16 bytes: the
		// shorter key is a prefix of the longer.
		switch {
		case n < q.n:
			return -1
		case n > q.n:
			return 1
		}
		return 0
	}
	return bytes.Compare(a.suffix(*r), q.suffix)
}

// le reports whether the stored key r is <= q: the search's predicate,
// decided by the inline integers except on a 16-byte tie.
func (a *arena) le(r *keyRef, q *query) bool {
	if r.hi != q.hi {
		return r.hi < q.hi
	}
	if r.lo != q.lo {
		return r.lo < q.lo
	}
	return a.cmpTail(r, q) <= 0
}

// lt reports whether the stored key r is < q.
func (a *arena) lt(r *keyRef, q *query) bool {
	if r.hi != q.hi {
		return r.hi < q.hi
	}
	if r.lo != q.lo {
		return r.lo < q.lo
	}
	return a.cmpTail(r, q) < 0
}

// queryOf returns a query for a stored key; its suffix aliases the arena.
func (a *arena) queryOf(r keyRef) query {
	return query{hi: r.hi, lo: r.lo, n: r.len(), suffix: a.suffix(r)}
}
