//go:build !plant_nofence

package failover

// plantNoFence is false in every real build. The build tag plant_nofence
// sets it (plant_on.go) to show that tests/failover catches a leader
// without fencing: segment writes without If-None-Match and a leader that
// ignores its lease. Never used in a release build.
const plantNoFence = false
