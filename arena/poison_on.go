//go:build invariants || race

package arena

// poisonEnabled is true in test builds (tags invariants or race): memory
// handed back by Reset is overwritten with poisonByte so that a slice kept
// past its lifetime reads garbage that tests notice.
const poisonEnabled = true
