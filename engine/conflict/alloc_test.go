package conflict

import (
	"fmt"
	"testing"

	"github.com/weaseldb/weaseldb/internal/invariants"
	"github.com/weaseldb/weaseldb/tx"
)

// TestAllocs: Check allocates nothing, and AddWrites nothing beyond the
// amortized growth of the node slice and arena (so, in steady state, once
// capacity exists, nothing).
func TestAllocs(t *testing.T) {
	if raceEnabled || invariants.Enabled {
		t.Skip("allocation counts are not meaningful under -race or -tags invariants")
	}
	s := New(0)
	for i := range 10_000 {
		s.AddWrites([]Write{{Begin: fmt.Appendf(nil, "account/%08d", i*2)}}, tx.Version(i+1))
	}
	reads := []Read{
		{Begin: []byte("account/00000100"), Version: 5000},
		{Begin: []byte("account/00000100"), End: []byte("account/00000300"), Version: 5000},
		{Begin: []byte("short"), Version: 9000},
	}
	dst := make([]Result, 0, len(reads))
	if n := testing.AllocsPerRun(1000, func() { dst = s.Check(reads, dst[:0]) }); n != 0 {
		t.Errorf("Check: %v allocations per run, want 0", n)
	}
	// Rewriting existing keys and ranges inside existing boundaries: no
	// growth needed.
	v := tx.Version(20_000)
	writes := []Write{
		{Begin: []byte("account/00000100")},
		{Begin: []byte("account/00000200"), End: []byte("account/00000202")},
	}
	if n := testing.AllocsPerRun(1000, func() { v++; s.AddWrites(writes, v) }); n != 0 {
		t.Errorf("AddWrites: %v allocations per run, want 0", n)
	}
}
