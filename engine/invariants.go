package engine

import (
	"fmt"

	"github.com/weaseldb/weaseldb/tx"
)

// The pipeline's stage-boundary assertions (internal/invariants: checked
// under -tags invariants, compiled away otherwise). Each stage keeps its
// own checker, owned by its goroutine like the rest of its state.
//
// Invariants (doc.go states the contract they guard):
//  1. Stage 2 releases segments in version order, contiguous: each
//     released segment starts right after the previous one (the first
//     right after the claim) and holds at least one version.
//  2. A released segment's write returned success (groupDurable).
//  3. The durable version never exceeds the resolved version.
//  4. Stage 3 acknowledges nothing above the durable version, and the
//     versions of first-time commits it acknowledges strictly increase.

// releaseChecks is stage 2's view: the last version released.
type releaseChecks struct{ through tx.Version }

// released checks invariants 1-3 for g, about to be released as durable.
func (c *releaseChecks) released(e *Engine, g *group) {
	if g.first != c.through+1 {
		panic(fmt.Sprintf("engine: released segment [%d, %d] after %d: not contiguous or out of order", g.first, g.last, c.through))
	}
	if g.last < g.first {
		panic(fmt.Sprintf("engine: released segment [%d, %d] is empty or inverted", g.first, g.last))
	}
	if g.state != groupDurable {
		panic(fmt.Sprintf("engine: released segment [%d, %d] in state %d, not durable", g.first, g.last, g.state))
	}
	if r := tx.Version(e.resolvedVersion.Load()); g.last > r {
		panic(fmt.Sprintf("engine: released segment [%d, %d] above the resolved version %d", g.first, g.last, r))
	}
	c.through = g.last
}

// replyChecks is stage 3's view: the last first-time commit answered.
type replyChecks struct{ acked tx.Version }

// answering checks invariant 4 for r, about to be answered.
func (c *replyChecks) answering(e *Engine, r *Request) {
	if r.Outcome != Committed {
		return
	}
	if d := tx.Version(e.durableVersion.Load()); r.Version > d {
		panic(fmt.Sprintf("engine: acknowledging version %d (duplicate %v) above the durable version %d", r.Version, r.Duplicate, d))
	}
	if r.Duplicate {
		return
	}
	if r.Version <= c.acked {
		panic(fmt.Sprintf("engine: acknowledging version %d after %d: versions must strictly increase", r.Version, c.acked))
	}
	c.acked = r.Version
}
