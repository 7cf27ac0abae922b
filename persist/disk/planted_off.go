//go:build !planted_damage

package disk

// damageChecksOff is true only in a build with the planted bug (tag
// planted_damage): it shows that tests/fault's damage tests catch a server
// that does not check its files. Never in a release build.
const damageChecksOff = false
