//go:build race

package conflict

const raceEnabled = true
