// Package engine is WeaselDB's commit pipeline: optimistic concurrency
// control, version assignment, group commit to a persist.Log, the status
// index of request ids, the in-memory tail for subscribers, and retention.
// It is a library: no HTTP, no netpoll, no concrete persistence backend,
// and no clock of its own (Config.Clock).
//
// # Using it
//
//  1. Open(ctx, cfg, log) recovers the log, rebuilds the conflict window
//     and the status index from its tail, picks a new random leader id and
//     claims leadership by writing the next segment (the genesis segment on
//     an empty log, else one empty transaction at last+1). A persist.ErrFenced
//     here means another leader won: exit and stay standby. Only after Open
//     returns may the server report ready.
//  2. For each commit the caller fills a Request it owns (one per
//     connection, reused) and calls Submit(r, done). Submit never blocks.
//     done(r) is called exactly once; until then the engine owns r and the
//     bytes its Commit points to.
//  3. The answer is r.Outcome with r.Version, r.RequestID, r.Duplicate,
//     r.Conflicts and r.Err (see Outcome for the HTTP mapping).
//  4. Version(), ResolvedVersion(), LeaderID(), Stats(), OldestRetained()
//     and the retention calls may be used at any time from any goroutine.
//     Status queries go through the pipeline: SubmitStatus (never blocks;
//     answered by stage 1 in admission order, behind the commits queued
//     before it), or Status, which waits for that answer.
//  5. Subscribers read Tail() (contract on Tail) and fall back to
//     log.ReadFrom on ErrBehindTail.
//  6. Watch Deposed(): once closed, every commit is answered Deposed; the
//     server should stop and exit non-zero so a supervisor restarts it as
//     a standby.
//  7. Close(ctx) stops admitting, lets everything in the pipeline become
//     durable and answered, and returns; the caller then closes the log.
//
// # The pipeline
//
//	Submit ──admission queue (MPSC)──▶ 1 resolve ──ring──▶ 2 persist ──ring──▶ 3 reply ──▶ done(r)
//	                                                         │  ▲
//	                                         MaxInFlight × Log.Append
//
// The stages:
//
//  1. Resolve (one goroutine, the serial point) takes every admitted
//     request at once and, in arrival order: answers a request id already
//     committed within the status window with that result (Duplicate), and
//     one whose first instance is still in the pipeline with that instance's
//     outcome (Duplicate); refuses a foreign leader_id (LeaderChanged);
//     rejects a precondition above the last assigned version
//     (FutureVersion) or without any version (Invalid); checks the
//     preconditions against the conflict set (Conflict, TooOld); otherwise
//     assigns the next version, adds the writes to the conflict set and the
//     id to the status index. Status queries in the batch are answered here
//     too, after the batch was handed on: stage 1 owns the status index, so
//     no lock is shared with the callers. No I/O, no allocation per
//     transaction in steady state (TestResolveAllocatesNothing).
//  2. Persist gathers resolved requests into a group and its committed
//     transactions into one segment (persist.EncodeSegment). Group commit:
//     with no Append in flight a group is sealed at once (a lone client pays
//     one write, not a timer); with writes in flight it gathers until
//     BatchInterval, BatchMaxTransactions or BatchMaxBytes; at MaxInFlight
//     outstanding writes it keeps gathering. A sealed segment is published
//     to the Tail at once (durable=false readers), written by one of
//     MaxInFlight workers, and released strictly in version order once
//     durable: the durable version advances, the tail's durable watermark
//     moves, and the group goes to stage 3. Requests that did not commit
//     ride along in order, and get Version = the latest durable version
//     (a good next read version for a 409).
//  3. Reply calls each done callback in order.
//
// Invariants: versions are assigned +1 per committed transaction (1 for the
// first commit of an empty log) and continue after recovery; segments are
// contiguous; nothing is answered Committed before it is durable; Version()
// is at least every acknowledged version.
//
// # Failures
//
//   - A transient Append error is retried with backoff (RetryBackoffMin..Max)
//     while later segments are held back (never acknowledged out of order);
//     meanwhile Submit answers Unavailable, and the queues are bounded
//     (MaxQueued, RingSlots), so memory stays bounded.
//   - persist.ErrFenced: deposed. Every request not yet released, and every
//     later one, is answered Deposed; Deposed() closes; the Tail ends with
//     ErrDeposed. Segments that followed the fenced one are not acknowledged
//     even if their own write succeeded: they follow a hole.
//   - Close(ctx) with ctx expiring while writes still fail: the rest is
//     answered Unavailable (its fate unknown to the client: /v1/status).
//
// # Windows
//
// The conflict window keeps writes newer than whichever of "ConflictWindow
// ago" (mapped to versions through a small ring of time/version samples)
// and "ConflictWindowVersions ago" reaches further back; older reads are
// TooOld. The status window keeps request ids for StatusWindow or
// StatusWindowVersions, whichever is less (API.md); status queries answer
// StatusGone below its floor. Its newest StatusEntriesMax ids are in
// memory, the rest in on-disk runs under StatusDir (statusdisk.go,
// persist/statusruns; docs/architecture.md). After a restart the conflict
// set is rebuilt from the last ConflictWindowVersions versions of the log
// (within retention): the time-based part is not reconstructed, since the
// versions written in the last few seconds before a restart are among the
// last versions anyway unless more than ConflictWindowVersions were written
// in ConflictWindow. The status index loads its runs and reads the log
// only after the last one.
//
// # Rejected alternatives
//
// Go channels between stages cost one synchronisation per item; the ring
// costs one per batch (BenchmarkPipeline, bench/results/engine.md). Letting
// 409 answers skip stages 2 and 3 would answer them sooner, but their
// Version could then name a conflicting write that is not durable yet, so
// a client's re-read would not see it; in-order answers avoid that.
package engine
