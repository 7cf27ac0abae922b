package conflict

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

// TestReadThenWriteSameKey drives the resolve stage's pattern, a point
// read of k followed by a write of k (which reuses the read's descent),
// over a tree that keeps splitting and shrinking, against the model, with
// the invariants checked after every step.
func TestReadThenWriteSameKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s, m := New(0), NewModel(0)
	s.sweepMin = 16
	s.tree.freeMin, s.tree.garbageMin = 2, 16
	steps := 8000
	if testing.Short() {
		steps = 3000
	}
	v := tx.Version(0)
	var got, want []Result
	for step := range steps {
		k := fmt.Appendf(nil, "k/%03d/%s", rng.IntN(400), []byte{"\x00a"[rng.IntN(2)]})
		if rng.IntN(4) == 0 {
			k = append(k, "-long-enough-to-spill-into-the-arena"...)
		}
		rv := s.OldestVersion() + tx.Version(rng.Uint64N(uint64(v-s.OldestVersion())+1))
		reads := []Read{{Begin: k, Version: rv}}
		got, want = s.Check(reads, got[:0]), m.Check(reads, want[:0])
		if got[0] != want[0] {
			t.Fatalf("step %d: check %q@%d = %v, model %v", step, k, rv, got[0], want[0])
		}
		v++
		w := []Write{{Begin: k}}
		if rng.IntN(10) == 0 { // now and then a range write reshapes the tree
			w = append(w, Write{Begin: k[:len(k)-1], End: append(k[:len(k)-1:len(k)-1], 'z')})
		}
		s.AddWrites(w, v)
		m.AddWrites(w, v)
		if rng.IntN(50) == 0 && v > 3000 { // keep a window of ~3000 versions
			o := v - 3000 + tx.Version(rng.IntN(100))
			s.SetOldestVersion(o)
			m.SetOldestVersion(o)
		}
		if err := s.verify(); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
	}
	if s.tree.height < 2 {
		t.Fatalf("tree of height %d: the test should exercise inner nodes", s.tree.height)
	}
}
