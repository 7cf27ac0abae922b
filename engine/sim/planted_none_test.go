//go:build !plantbug

package sim

// plantedTag is the build tag of the planted bug this test binary carries
// ("" in a normal build); see planted_test.go.
const plantedTag = ""
