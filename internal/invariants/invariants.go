// Package invariants switches on the engine's costly self-checks (STYLE.md,
// after pebble's internal/invariants). Build with -tags invariants (make
// test's race run, and engine/sim) to check them; in a release build
// Enabled is the constant false and every
//
//	if invariants.Enabled && broken {
//		panic(...)
//	}
//
// compiles away (BenchmarkAssertOff shows the cost is nil). A broken
// invariant is a bug, never bad input: input is rejected before it gets
// this far, so the checks panic, printing every operand.
package invariants
