//go:build race

package httpapi

// raceEnabled: the race detector allocates, so allocation tests skip.
const raceEnabled = true
