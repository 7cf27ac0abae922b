package invariants

import (
	"fmt"
	"testing"
)

// The pair shows what a guarded assertion costs in this build: in a
// release build (no tag) BenchmarkAssertGuarded equals BenchmarkAssertNone,
// because `Enabled && ...` is constant-false and the compiler drops the
// check and its panic; with -tags invariants the difference is the check.
//
//	go test -run '^$' -bench Assert ./internal/invariants/
//	go test -tags invariants -run '^$' -bench Assert ./internal/invariants/

var sink uint64

func BenchmarkAssertNone(b *testing.B) {
	var last uint64
	for i := range b.N {
		v := uint64(i) + 1
		last = v
	}
	sink = last
}

func BenchmarkAssertGuarded(b *testing.B) {
	var last uint64
	for i := range b.N {
		v := uint64(i) + 1
		if Enabled && v <= last {
			panic(fmt.Sprintf("version %d <= last %d", v, last))
		}
		last = v
	}
	sink = last
}

// TestEnabledMatchesTag: the constant follows the build tag.
func TestEnabledMatchesTag(t *testing.T) {
	t.Logf("invariants.Enabled = %v", Enabled)
	if Enabled != tagged {
		t.Fatalf("Enabled = %v, built with tag invariants = %v", Enabled, tagged)
	}
}
