package conflict

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unsafe"

	"github.com/weaseldb/weaseldb/tx"
)

const (
	// nodeMax is the number of entries of a leaf and of children of an
	// inner node. 32 keeps a node's inline keys in 12 cache lines (a binary
	// search touches 5) and the tree 4 levels deep at a million keys.
	nodeMax = 32
	// nodeMin: a non-root node with fewer entries is merged with or
	// refilled from a sibling.
	nodeMin = nodeMax / 4
	// heightMax bounds the tree height: nodeMin^heightMax is far beyond
	// any memory.
	heightMax = 24
	// nilNode ends the leaf chain.
	nilNode = ^uint32(0)
)

// node is a leaf or an inner node of the B+tree. Nodes live in one slice
// and refer to each other by index, so the tree holds no pointers for the
// garbage collector to trace.
//
// A leaf holds n boundaries in key order: keys[i] with point version a[i]
// and gap version b[i]. An inner node holds n children b[i] (node indexes);
// child i holds the keys in [keys[i], keys[i+1]) (keys[0] is unused: minus
// infinity), and a[i] is the greatest point version in child i's subtree.
// Separators need not be keys still present in the leaves.
type node struct {
	n          int32
	prev, next uint32 // leaves only: neighbours in key order, or nilNode
	keys       [nodeMax]keyRef
	a          [nodeMax]tx.Version
	b          [nodeMax]uint64
}

const nodeBytes = int64(unsafe.Sizeof(node{}))

// maxA returns the greatest a[i]: for a leaf its greatest point version,
// for an inner node that of its subtree.
func (nd *node) maxA() tx.Version {
	var m tx.Version
	for _, v := range nd.a[:nd.n] {
		m = max(m, v)
	}
	return m
}

// pathStep is one inner node on the way from the root to a leaf and the
// child taken there.
type pathStep struct {
	node uint32
	pos  int32
}

// tree is a B+tree of boundaries with per-child max-point-version
// aggregates. It always holds the sentinel boundary "" so that every key
// has a floor.
type tree struct {
	nodes  []node
	free   []uint32 // released node indexes, reused first
	root   uint32
	height int // 0: the root is a leaf
	count  int // boundaries stored, sentinel included
	arena  arena
	path   [heightMax]pathStep // scratch: filled by seek
	hint   seekHint            // the last seek, while its path is current
	// rebuild thresholds: free nodes and arena garbage bytes below which a
	// rebuild is not worth it (tests lower them to rebuild often).
	freeMin, garbageMin int
}

func (t *tree) init() {
	*t = tree{}
	t.root = t.alloc()
	t.nodes[t.root].n = 1 // the sentinel: key "", versions 0
	t.count = 1
	t.freeMin, t.garbageMin = 1024, 1<<20
}

func (t *tree) alloc() uint32 {
	if n := len(t.free); n > 0 {
		i := t.free[n-1]
		t.free = t.free[:n-1]
		t.nodes[i] = node{prev: nilNode, next: nilNode}
		return i
	}
	t.nodes = append(t.nodes, node{prev: nilNode, next: nilNode})
	return uint32(len(t.nodes) - 1)
}

func (t *tree) release(i uint32) {
	t.nodes[i].n = 0
	t.free = append(t.free, i)
}

// floorIn returns the index of the greatest key <= q among the keys from
// lo, or lo-1 if none.
func (t *tree) floorIn(nd *node, lo int, q *query) int {
	p := lo + countBelow(nd, lo, q)
	// Keys whose first 16 bytes equal q's: rare (an exact match, or long
	// keys sharing 16 bytes), decided by length or the arena.
	for p < int(nd.n) && nd.keys[p].hi == q.hi && nd.keys[p].lo == q.lo && t.arena.cmpTail(&nd.keys[p], q) <= 0 {
		p++
	}
	return p - 1
}

// lowerIn returns the index of the first key >= q from lo (n if none).
func (t *tree) lowerIn(nd *node, lo int, q *query) int {
	p := lo + countBelow(nd, lo, q)
	for p < int(nd.n) && nd.keys[p].hi == q.hi && nd.keys[p].lo == q.lo && t.arena.cmpTail(&nd.keys[p], q) < 0 {
		p++
	}
	return p
}

// countBelow counts the keys from lo whose first 16 bytes are below q's.
// It scans linearly without a branch per key (the borrow of a 128-bit
// subtraction is the comparison): the loads do not depend on each other,
// so the cache misses of a cold node overlap instead of queueing up one
// per binary-search probe, and there is no misprediction to pay.
func countBelow(nd *node, lo int, q *query) int {
	c := uint64(0)
	keys := nd.keys[lo:nd.n]
	for i := range keys {
		_, borrow := bits.Sub64(keys[i].lo, q.lo, 0)
		_, borrow = bits.Sub64(keys[i].hi, q.hi, borrow)
		c += borrow
	}
	return int(c)
}

// childFor returns the child of inner node nd whose key range holds q.
func (t *tree) childFor(nd *node, q *query) int {
	return max(t.floorIn(nd, 1, q), 0)
}

// seek descends to the leaf whose key range holds q, recording the path,
// and returns the leaf and the index of the greatest key <= q in it (-1 if
// q is below every key of the leaf; the floor is then the previous leaf's
// last key).
//
// A seek for the key of the previous seek, with no insert or removal in
// between, returns the remembered answer and leaves the path as it is: the
// resolve stage checks a point read and then writes the same key (a
// read-modify-write), and the write then costs no second descent.
func (t *tree) seek(q *query) (uint32, int) {
	h := &t.hint
	if h.valid && h.hi == q.hi && h.lo == q.lo && h.n == q.n && bytes.Equal(h.suffix, q.suffix) {
		return h.leaf, h.pos
	}
	i := t.root
	for l := 0; l < t.height; l++ {
		nd := &t.nodes[i]
		c := t.childFor(nd, q)
		t.path[l] = pathStep{node: i, pos: int32(c)}
		i = uint32(nd.b[c])
	}
	pos := t.floorIn(&t.nodes[i], 0, q)
	h.valid, h.hi, h.lo, h.n = true, q.hi, q.lo, q.n
	h.suffix = append(h.suffix[:0], q.suffix...)
	h.leaf, h.pos = i, pos
	return i, pos
}

// seekHint is the last seek's key and answer; valid until the next insert
// or removal changes the tree's shape (updating versions keeps it valid).
type seekHint struct {
	valid  bool
	hi, lo uint64
	n      int
	suffix []byte // a copy: the query's may alias a caller's buffer
	leaf   uint32
	pos    int
}

// find is seek without recording the path.
func (t *tree) find(q *query) (uint32, int) {
	i := t.root
	for l := 0; l < t.height; l++ {
		nd := &t.nodes[i]
		i = uint32(nd.b[t.childFor(nd, q)])
	}
	return i, t.floorIn(&t.nodes[i], 0, q)
}

// floorEntry turns a seek result into the position of the floor entry,
// stepping back to the previous leaf when needed. The sentinel guarantees
// there is one.
func (t *tree) floorEntry(leaf uint32, pos int) (uint32, int) {
	if pos >= 0 {
		return leaf, pos
	}
	p := t.nodes[leaf].prev
	return p, int(t.nodes[p].n) - 1
}

// raise records that point version v now occurs below every node of the
// path.
func (t *tree) raise(v tx.Version) {
	for l := 0; l < t.height; l++ {
		s := t.path[l]
		a := &t.nodes[s.node].a[s.pos]
		*a = max(*a, v)
	}
}

// fixAbove recomputes the aggregates of the path above level (the levels
// < level-1 still point at the same children).
func (t *tree) fixAbove(level int) {
	for l := level - 1; l >= 0; l-- {
		s := t.path[l]
		p := &t.nodes[s.node]
		p.a[s.pos] = t.nodes[p.b[s.pos]].maxA()
	}
}

// insertAt inserts the boundary (k, pv, gv) at position pos of leaf, whose
// path seek recorded.
func (t *tree) insertAt(leaf uint32, pos int, k keyRef, pv, gv tx.Version) {
	t.hint.valid = false
	t.count++
	nd := &t.nodes[leaf]
	if nd.n < nodeMax {
		copy(nd.keys[pos+1:nd.n+1], nd.keys[pos:nd.n])
		copy(nd.a[pos+1:nd.n+1], nd.a[pos:nd.n])
		copy(nd.b[pos+1:nd.n+1], nd.b[pos:nd.n])
		nd.keys[pos], nd.a[pos], nd.b[pos] = k, pv, uint64(gv)
		nd.n++
		t.raise(pv)
		return
	}
	t.splitInsert(t.height, leaf, pos, k, pv, uint64(gv))
}

// splitInsert inserts (k, a, b) at pos into the full node idx at level,
// splitting it, and inserts the new right sibling into the parent,
// splitting upwards as needed.
func (t *tree) splitInsert(level int, idx uint32, pos int, k keyRef, a tx.Version, b uint64) {
	leaf := level == t.height
	var keys [nodeMax + 1]keyRef
	var as [nodeMax + 1]tx.Version
	var bs [nodeMax + 1]uint64
	nd := &t.nodes[idx]
	copy(keys[:pos], nd.keys[:pos])
	copy(as[:pos], nd.a[:pos])
	copy(bs[:pos], nd.b[:pos])
	keys[pos], as[pos], bs[pos] = k, a, b
	copy(keys[pos+1:], nd.keys[pos:])
	copy(as[pos+1:], nd.a[pos:])
	copy(bs[pos+1:], nd.b[pos:])

	right := t.alloc()
	nd, rd := &t.nodes[idx], &t.nodes[right]
	h := (nodeMax + 1) / 2
	nd.n = int32(h)
	copy(nd.keys[:], keys[:h])
	copy(nd.a[:], as[:h])
	copy(nd.b[:], bs[:h])
	clear(nd.keys[h:])
	rd.n = int32(nodeMax + 1 - h)
	copy(rd.keys[:], keys[h:])
	copy(rd.a[:], as[h:])
	copy(rd.b[:], bs[h:])
	var sep keyRef
	if leaf {
		sep = t.arena.clone(rd.keys[0])
		rd.prev, rd.next = idx, nd.next
		if nd.next != nilNode {
			t.nodes[nd.next].prev = right
		}
		nd.next = right
	} else {
		sep = rd.keys[0] // moves up
		rd.keys[0] = keyRef{}
	}
	leftMax, rightMax := nd.maxA(), rd.maxA()

	if level == 0 {
		root := t.alloc()
		r := &t.nodes[root]
		r.n = 2
		r.b[0], r.b[1] = uint64(idx), uint64(right)
		r.a[0], r.a[1] = leftMax, rightMax
		r.keys[1] = sep
		t.root = root
		t.height++
		return
	}
	s := t.path[level-1]
	p := &t.nodes[s.node]
	p.a[s.pos] = leftMax
	ppos := int(s.pos) + 1
	if p.n < nodeMax {
		copy(p.keys[ppos+1:p.n+1], p.keys[ppos:p.n])
		copy(p.a[ppos+1:p.n+1], p.a[ppos:p.n])
		copy(p.b[ppos+1:p.n+1], p.b[ppos:p.n])
		p.keys[ppos], p.a[ppos], p.b[ppos] = sep, rightMax, uint64(right)
		p.n++
		t.fixAbove(level - 1)
		return
	}
	t.splitInsert(level-1, s.node, ppos, sep, rightMax, uint64(right))
}

// removeRun deletes entries [lo, hi) of leaf (path recorded by seek) and
// rebalances.
func (t *tree) removeRun(leaf uint32, lo, hi int) {
	t.hint.valid = false
	nd := &t.nodes[leaf]
	for _, k := range nd.keys[lo:hi] {
		t.arena.free(k)
	}
	n := int(nd.n)
	copy(nd.keys[lo:], nd.keys[hi:n])
	copy(nd.a[lo:], nd.a[hi:n])
	copy(nd.b[lo:], nd.b[hi:n])
	nd.n -= int32(hi - lo)
	clear(nd.keys[nd.n:n])
	t.count -= hi - lo
	t.rebalance(t.height, leaf)
}

// rebalance restores the fill of node idx at level after removals (the
// path above it recorded by seek) and the aggregates above it.
func (t *tree) rebalance(level int, idx uint32) {
	for level > 0 {
		s := t.path[level-1]
		p := &t.nodes[s.node]
		nd := &t.nodes[idx]
		if nd.n >= nodeMin || p.n < 2 {
			p.a[s.pos] = nd.maxA()
			t.fixAbove(level - 1)
			break
		}
		sepPos := int(s.pos)
		if sepPos == 0 {
			sepPos = 1
		}
		left, right := uint32(p.b[sepPos-1]), uint32(p.b[sepPos])
		if t.nodes[left].n+t.nodes[right].n <= nodeMax {
			t.merge(level, left, right, s.node, sepPos)
			t.path[level-1].pos = int32(sepPos - 1)
			level--
			idx = s.node
			continue
		}
		t.redistribute(level, left, right, s.node, sepPos)
		t.fixAbove(level - 1)
		break
	}
	// The root: drop it while it is an inner node with one child.
	for t.height > 0 && t.nodes[t.root].n == 1 {
		old := t.root
		t.root = uint32(t.nodes[old].b[0])
		t.release(old)
		t.height--
	}
}

// merge moves node right (at level) into its left sibling and removes it
// from parent p, where it is child sepPos.
func (t *tree) merge(level int, left, right, parent uint32, sepPos int) {
	l, r, p := &t.nodes[left], &t.nodes[right], &t.nodes[parent]
	n := int(l.n)
	if level == t.height {
		t.arena.free(p.keys[sepPos])
		l.next = r.next
		if r.next != nilNode {
			t.nodes[r.next].prev = left
		}
	} else {
		r.keys[0] = p.keys[sepPos] // the separator moves down
	}
	copy(l.keys[n:], r.keys[:r.n])
	copy(l.a[n:], r.a[:r.n])
	copy(l.b[n:], r.b[:r.n])
	l.n += r.n
	t.release(right)
	pn := int(p.n)
	copy(p.keys[sepPos:], p.keys[sepPos+1:pn])
	copy(p.a[sepPos:], p.a[sepPos+1:pn])
	copy(p.b[sepPos:], p.b[sepPos+1:pn])
	p.n--
	p.keys[p.n] = keyRef{}
	p.a[sepPos-1] = l.maxA()
}

// redistribute evens out siblings left and right (at level, children
// sepPos-1 and sepPos of parent).
func (t *tree) redistribute(level int, left, right, parent uint32, sepPos int) {
	l, r, p := &t.nodes[left], &t.nodes[right], &t.nodes[parent]
	var keys [2 * nodeMax]keyRef
	var as [2 * nodeMax]tx.Version
	var bs [2 * nodeMax]uint64
	ln, rn := int(l.n), int(r.n)
	copy(keys[:], l.keys[:ln])
	copy(as[:], l.a[:ln])
	copy(bs[:], l.b[:ln])
	copy(keys[ln:], r.keys[:rn])
	copy(as[ln:], r.a[:rn])
	copy(bs[ln:], r.b[:rn])
	leaf := level == t.height
	if !leaf {
		keys[ln] = p.keys[sepPos] // the separator comes down...
	}
	total := ln + rn
	h := total / 2
	copy(l.keys[:], keys[:h])
	copy(l.a[:], as[:h])
	copy(l.b[:], bs[:h])
	clear(l.keys[h:])
	l.n = int32(h)
	copy(r.keys[:], keys[h:total])
	copy(r.a[:], as[h:total])
	copy(r.b[:], bs[h:total])
	clear(r.keys[total-h:])
	r.n = int32(total - h)
	if leaf {
		t.arena.free(p.keys[sepPos])
		p.keys[sepPos] = t.arena.clone(r.keys[0])
	} else {
		p.keys[sepPos] = r.keys[0] // ...and another goes up
		r.keys[0] = keyRef{}
	}
	p.a[sepPos-1], p.a[sepPos] = l.maxA(), r.maxA()
}

// anyAbove reports whether a boundary strictly between b and e, in the
// subtree of node idx at level, has a point version above v.
func (t *tree) anyAbove(idx uint32, level int, b, e *query, v tx.Version) bool {
	nd := &t.nodes[idx]
	if level == t.height {
		lo := t.floorIn(nd, 0, b) + 1
		hi := t.lowerIn(nd, lo, e)
		for _, pv := range nd.a[lo:hi] {
			if pv > v {
				return true
			}
		}
		return false
	}
	c0 := t.childFor(nd, b)
	c1 := max(t.lowerIn(nd, c0+1, e)-1, c0) // last child with a key < e
	for c := c0 + 1; c < c1; c++ {
		if nd.a[c] > v {
			return true
		}
	}
	if nd.a[c0] > v && t.anyAbove(uint32(nd.b[c0]), level+1, b, e, v) {
		return true
	}
	return c1 != c0 && nd.a[c1] > v && t.anyAbove(uint32(nd.b[c1]), level+1, b, e, v)
}

// firstLeaf returns the leftmost leaf.
func (t *tree) firstLeaf() uint32 {
	i := t.root
	for range t.height {
		i = uint32(t.nodes[i].b[0])
	}
	return i
}

// bytes returns the memory the tree holds.
func (t *tree) bytes() int64 {
	return int64(cap(t.nodes))*nodeBytes + int64(cap(t.free))*4 + int64(cap(t.arena.buf))
}

// needsRebuild reports whether at least half the nodes or the arena is
// garbage (and enough of it to be worth an O(n) rebuild).
func (t *tree) needsRebuild() bool {
	return (len(t.free) > t.freeMin && len(t.free) > len(t.nodes)/2) ||
		(t.arena.garbage > t.garbageMin && t.arena.garbage > len(t.arena.buf)/2)
}

// rebuild bulk-loads the boundaries into fresh, right-sized node and arena
// slices, leaving nodes 3/4 full so that the next inserts do not all split.
func (t *tree) rebuild() {
	const fill = nodeMax * 3 / 4
	old := *t
	*t = tree{freeMin: old.freeMin, garbageMin: old.garbageMin}
	t.hint.suffix = old.hint.suffix[:0] // keep the buffer; the hint is invalid
	t.arena.buf = make([]byte, 0, len(old.arena.buf)-old.arena.garbage)
	leaves := (old.count + fill - 1) / fill
	t.nodes = make([]node, 0, leaves+leaves/(fill-1)+8)

	// Leaves: deal the boundaries out evenly.
	level := make([]uint32, 0, leaves)
	mins := make([]keyRef, 0, leaves) // first key under each node of level
	src, pos := old.firstLeaf(), 0
	prev := nilNode
	for i := range leaves {
		n := old.count*(i+1)/leaves - old.count*i/leaves
		idx := t.alloc()
		nd := &t.nodes[idx]
		nd.n = int32(n)
		for j := range n {
			for pos == int(old.nodes[src].n) {
				src, pos = old.nodes[src].next, 0
			}
			s := &old.nodes[src]
			nd.keys[j] = t.arena.store(keyBytes(&old.arena, s.keys[pos]))
			nd.a[j], nd.b[j] = s.a[pos], s.b[pos]
			pos++
		}
		nd.prev = prev
		if prev != nilNode {
			t.nodes[prev].next = idx
		}
		prev = idx
		level = append(level, idx)
		mins = append(mins, nd.keys[0])
	}
	t.count = old.count
	// Inner levels, bottom up, until one node remains.
	for len(level) > 1 {
		m := len(level)
		parents := (m + fill - 1) / fill
		up := make([]uint32, 0, parents)
		upMins := make([]keyRef, 0, parents)
		c := 0
		for i := range parents {
			n := m*(i+1)/parents - m*i/parents
			idx := t.alloc()
			nd := &t.nodes[idx]
			nd.n = int32(n)
			upMins = append(upMins, mins[c])
			for j := range n {
				child := level[c]
				nd.b[j] = uint64(child)
				nd.a[j] = t.nodes[child].maxA()
				if j > 0 {
					nd.keys[j] = t.arena.clone(mins[c])
				}
				c++
			}
			up = append(up, idx)
		}
		level, mins = up, upMins
		t.height++
	}
	t.root = level[0]
}

// keyBytes returns a stored key as a fresh slice.
func keyBytes(a *arena, r keyRef) []byte {
	return appendKey(make([]byte, 0, r.len()), a, r)
}

// appendKey appends the stored key r to dst.
func appendKey(dst []byte, a *arena, r keyRef) []byte {
	var p [inline]byte
	binary.BigEndian.PutUint64(p[:], r.hi)
	binary.BigEndian.PutUint64(p[8:], r.lo)
	dst = append(dst, p[:min(r.len(), inline)]...)
	return append(dst, a.suffix(r)...)
}

// verify checks the tree's invariants and returns the first broken one.
func (t *tree) verify() error {
	count := 0
	var last []byte
	var walk func(idx uint32, level int, lo, hi []byte) (tx.Version, error)
	walk = func(idx uint32, level int, lo, hi []byte) (tx.Version, error) {
		nd := &t.nodes[idx]
		if idx != t.root && nd.n < nodeMin {
			return 0, fmt.Errorf("node %d at level %d has %d entries", idx, level, nd.n)
		}
		if nd.n < 1 {
			return 0, fmt.Errorf("node %d at level %d is empty", idx, level)
		}
		if level == t.height {
			for i := range int(nd.n) {
				k := keyBytes(&t.arena, nd.keys[i])
				if count > 0 && string(k) <= string(last) {
					return 0, fmt.Errorf("leaf keys out of order: %q after %q", k, last)
				}
				if lo != nil && string(k) < string(lo) || hi != nil && string(k) >= string(hi) {
					return 0, fmt.Errorf("leaf key %q outside its separators [%q, %q)", k, lo, hi)
				}
				if nd.b[i] > uint64(nd.a[i]) {
					return 0, fmt.Errorf("boundary %q: gap version %d > point version %d", k, nd.b[i], nd.a[i])
				}
				last = k
				count++
			}
			return nd.maxA(), nil
		}
		var m tx.Version
		for i := range int(nd.n) {
			clo, chi := lo, hi
			if i > 0 {
				clo = keyBytes(&t.arena, nd.keys[i])
			}
			if i+1 < int(nd.n) {
				chi = keyBytes(&t.arena, nd.keys[i+1])
			}
			cm, err := walk(uint32(nd.b[i]), level+1, clo, chi)
			if err != nil {
				return 0, err
			}
			if cm != nd.a[i] {
				return 0, fmt.Errorf("node %d child %d: aggregate %d, subtree max %d", idx, i, nd.a[i], cm)
			}
			m = max(m, cm)
		}
		return m, nil
	}
	if _, err := walk(t.root, 0, nil, nil); err != nil {
		return err
	}
	if count != t.count {
		return fmt.Errorf("count %d, found %d", t.count, count)
	}
	first := t.firstLeaf()
	if t.nodes[first].keys[0] != (keyRef{}) {
		return fmt.Errorf("sentinel missing")
	}
	// The leaf chain visits every boundary in order.
	chained := 0
	prev := nilNode
	for i := first; i != nilNode; i = t.nodes[i].next {
		if t.nodes[i].prev != prev {
			return fmt.Errorf("leaf %d: prev %d, want %d", i, t.nodes[i].prev, prev)
		}
		chained += int(t.nodes[i].n)
		prev = i
	}
	if chained != count {
		return fmt.Errorf("leaf chain holds %d boundaries, tree %d", chained, count)
	}
	return nil
}
