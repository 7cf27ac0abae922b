//go:build plant_nofence

package s3log

// plantNoFence: see plant_off.go. A planted bug, for tests only.
const plantNoFence = true
