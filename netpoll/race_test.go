//go:build race

package netpoll

// raceEnabled: the race detector allocates, so allocation tests skip.
const raceEnabled = true
