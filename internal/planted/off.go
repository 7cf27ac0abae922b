//go:build !plantbugs

package planted

// Enabled: this build carries the planted bugs (-tags plantbugs).
const Enabled = false

// Is reports whether b is the active planted bug: never, in this build.
func Is(Bug) bool { return false }
