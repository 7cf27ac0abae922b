//go:build !plantedbugs

package disk

// planted reports whether a planted durability bug is switched on: never,
// in every build without the plantedbugs tag (release builds). See
// plantedpower_on.go.
func planted(string) bool { return false }
