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
