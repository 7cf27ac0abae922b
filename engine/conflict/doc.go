// Package conflict is WeaselDB's conflict set: the optimistic-concurrency
// check of the resolve stage. It remembers, for the recent past, which
// versions wrote which keys and ranges, and answers whether a read made at
// some version has since been overwritten.
//
// # Use
//
//  1. s := conflict.New(oldest) — reads below oldest are TooOld.
//  2. For each transaction, in version order, in one goroutine:
//     results = s.Check(reads, results[:0]); if every result is Commit,
//     assign the next version v and s.AddWrites(writes, v). Versions passed
//     to AddWrites must grow; keys are copied, so callers reuse buffers.
//  3. From time to time s.SetOldestVersion(v) to forget history at or
//     below v (the conflict window) and release its memory.
//
// A Set is not safe for concurrent use. Check allocates nothing; AddWrites
// allocates only when the node slice or key arena grows.
//
// Model is a brute-force implementation of the same contract, exported as
// the oracle for randomized tests here and in other packages.
//
// # Representation: boundary keys
//
// The key space is cut at sorted boundary keys. Each boundary k carries a
// point version pv(k), the newest write covering k itself, and a gap
// version gv(k), the newest write covering every key strictly between k and
// the next boundary. The empty key "" is always a boundary (the sentinel),
// so every key has a floor (the greatest boundary <= it).
//
//	boundary:    ""        "a"         "c"            "m"
//	             pv=0      pv=7        pv=9           pv=5
//	             gv=0      gv=7        gv=2           gv=0
//	keys:      [ ""(..."a") "a"("a"..."c") "c"("c"..."m") "m"("m"...) ]
//
// is the state after range write [c, m) at 2, point write m at 5, range
// write [a, c) at 7 and point write c at 9. The rules, for a version v newer
// than every stored one:
//
//   - point write k: pv(k) = v; a new boundary k takes gv from its floor
//     (it splits that gap).
//   - range write [b, e): e becomes a boundary if it is not one, taking
//     pv = gv = gv(floor(e)) (what follows the range is unchanged); every
//     boundary strictly inside (b, e) is removed; b gets pv = gv = v.
//     [k, k\x00) is a point write.
//   - read [b, e) at r (a point read is [b, b\x00)): the newest write it
//     meets is pv(b) if b is a boundary, else gv(floor(b)), together with
//     pv of every boundary strictly inside (b, e). Gap versions of inner
//     boundaries are not needed because of the invariant gv(k) <= pv(k),
//     which every rule above preserves.
//   - SetOldestVersion(o): all versions <= o are equivalent to "never
//     written" for reads at or above o, so a boundary k with pv(k) <= o
//     whose predecessor has gv <= o is redundant and is removed. This sweep
//     is incremental: each call visits at least 4096 boundaries, or twice
//     the boundaries inserted since the last call, resuming where the last
//     stopped, so the resolve stage never stalls on a full pass, and memory
//     stays within a constant factor of what the window needs.
//
// # The tree
//
// Boundaries live in a B+tree (32 entries per node) whose inner nodes keep,
// per child, the greatest point version in the child's subtree. A range
// read descends the two paths to b and e and only looks at the aggregates
// of the children between them, pruning any subtree whose aggregate is <=
// the read version: O(log n) whatever the range's width. Nodes are values
// in one slice and point to each other by uint32 index; keys keep their
// first 16 bytes inline (compared as two big-endian integers, so a search
// over keys of the usual lengths never leaves the node) and the rest in one
// byte arena, so the garbage collector sees a handful of pointer-free objects
// however many keys there are. When half the nodes or half the arena is
// garbage, the tree is rebuilt into right-sized slices (O(n), amortized
// over the frees that caused it).
//
// A node is searched by a branch-free linear count of the inline keys below
// the query rather than by binary search: at a million keys the nodes are
// cold, and independent loads let their cache misses overlap. The tree
// remembers its last descent while its shape is unchanged, so writing a key
// just checked (read-modify-write) does not descend again.
//
// Rejected: a sorted slice (the first version: O(n) inserts), and a tree
// of *node pointers with []byte keys (10 million objects for the GC to
// trace).
package conflict
