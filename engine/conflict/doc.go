// Package conflict is WeaselDB's conflict set: the optimistic-concurrency
// check of the resolve stage. It remembers, for the recent past, which
// versions wrote which keys and ranges, and answers whether a read made at
// some version has since been overwritten.
//
// Use:
//
//  1. s := conflict.New(oldest) — reads below oldest are TooOld.
//  2. For each transaction, in version order, in one goroutine:
//     results = s.Check(reads, results[:0]); if every result is Commit,
//     assign the next version v and s.AddWrites(writes, v).
//  3. From time to time s.SetOldestVersion(v) to forget history at or
//     below v and release its memory (the conflict window).
//
// Model is a brute-force implementation of the same contract, exported as
// the oracle for randomized tests here and in other packages.
package conflict
