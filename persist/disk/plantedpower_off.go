//go:build !plantedbugs

package disk

// planted reports whether a planted durability bug is switched on: never,
// in every build without the plantedbugs tag (release builds). See
// plantedpower_on.go.
func planted(string) bool { return false }

// plantedMaxFileBytes is the identity outside plantedbugs builds.
func plantedMaxFileBytes(def int64) int64 { return def }
