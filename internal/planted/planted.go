// Package planted holds the bugs planted in the engine to prove that its
// safety suite (engine/sim, internal/invariants) catches them. They exist
// only in a build with -tags plantbugs, and then only the one named by
// WEASELDB_PLANT is active; in every other build Enabled is the constant
// false and each
//
//	if planted.Enabled && planted.Is(planted.SkipPrecondition) { ... }
//
// compiles away. engine/sim's TestPlantedBugsCaught runs the simulator
// once per bug and requires a failure within make test's seed budget.
package planted

// Bug names one planted bug (the value of WEASELDB_PLANT).
type Bug string

const (
	// ReleaseOutOfOrder: stage 2 releases a durable segment ahead of an
	// earlier one whose write has not returned.
	ReleaseOutOfOrder Bug = "release-out-of-order"
	// AckBeforeAppend: stage 2 counts a segment durable when its write
	// starts, not when it returns (a failed write is never retried).
	AckBeforeAppend Bug = "ack-before-append"
	// SkipPrecondition: stage 1 does not check a commit's first
	// precondition when it has more than one.
	SkipPrecondition Bug = "skip-precondition"
	// ForgetIDOnRecovery: recovery leaves the request ids of odd versions
	// out of the status index (so a retry after a restart commits again).
	ForgetIDOnRecovery Bug = "forget-id-on-recovery"
	// WindowTooFar: the conflict set forgets writes up to 16 versions above
	// its oldest version, while still accepting reads at that version.
	WindowTooFar Bug = "window-too-far"
)

// All lists every planted bug.
var All = []Bug{ReleaseOutOfOrder, AckBeforeAppend, SkipPrecondition, ForgetIDOnRecovery, WindowTooFar}
