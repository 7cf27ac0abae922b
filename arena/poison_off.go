//go:build !invariants && !race

package arena

// poisonEnabled is false in production builds: Reset does not touch memory.
const poisonEnabled = false
