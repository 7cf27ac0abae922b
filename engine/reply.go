package engine

import "github.com/weaseldb/weaseldb/internal/invariants"

// runReplier is stage 3: answer every request in pipeline order.
func (e *Engine) runReplier() {
	defer close(e.replyDone)
	var batch []*Request
	var inv replyChecks // -tags invariants (engine/invariants.go)
	for {
		var ok bool
		batch, ok = e.toReply.popAll(batch[:0])
		if !ok {
			return
		}
		var seq uint64
		for _, r := range batch {
			seq = r.seq
			if invariants.Enabled {
				inv.answering(e, r)
			}
			e.stats.countOutcome(r)
			done := r.done
			r.done = nil
			done(r) // r belongs to the caller from here on
		}
		e.queued.Add(-int64(len(batch)))
		e.answeredSeq.Store(seq)
		clear(batch)
	}
}
