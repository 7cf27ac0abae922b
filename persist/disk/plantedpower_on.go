//go:build plantedbugs

package disk

import "os"

// Planted durability bugs, for proving that tests/powerloss catches what
// SIGKILL cannot. Only in builds with `-tags plantedbugs`; the environment
// variable WEASELDB_PLANTED_BUG picks one:
//
//	no-dir-sync-after-create  a new log file's directory entry is not fsynced
//	no-fdatasync              appends are acknowledged without fdatasync
//	policy-in-place           retention.json is rewritten in place, unsynced
//	fsync-retry               a failed fdatasync is retried, and a success trusted
var plantedBug = os.Getenv("WEASELDB_PLANTED_BUG")

func planted(name string) bool { return plantedBug == name }

// plantedMaxFileBytes rolls log files every 256 KiB while the planted
// no-dir-sync-after-create bug is on: file creation then happens under
// load, not only at start-up (where the next fsync of the directory, for
// the status index's directory, hides the missing one).
func plantedMaxFileBytes(def int64) int64 {
	if planted("no-dir-sync-after-create") {
		return 256 << 10
	}
	return def
}
