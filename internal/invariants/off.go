//go:build !invariants

package invariants

// Enabled: the build checks invariants (-tags invariants).
const Enabled = false
