//go:build plant_nofence

package failover

// plantNoFence: see plant_off.go. A planted bug, for tests only.
const plantNoFence = true
