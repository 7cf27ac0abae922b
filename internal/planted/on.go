//go:build plantbugs

package planted

import "os"

// Enabled: this build carries the planted bugs (-tags plantbugs).
const Enabled = true

var active = Bug(os.Getenv("WEASELDB_PLANT"))

// Is reports whether b is the active planted bug.
func Is(b Bug) bool { return active == b }
