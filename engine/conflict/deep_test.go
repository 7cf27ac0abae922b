package conflict

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weaseldb/weaseldb/tx"
)

// TestDeepTree grows a tree several levels deep, then shrinks it with range
// writes and sweeps, checking it against the model along the way: the small
// streams of TestDifferential stay within two levels.
func TestDeepTree(t *testing.T) {
	keys, heightWant, checkEvery, readsPerCheck := 300_000, 3, 30_000, 50
	if testing.Short() {
		keys, heightWant, checkEvery, readsPerCheck = 12_000, 2, 1000, 200
	}
	for _, eager := range []bool{false, true} {
		t.Run(fmt.Sprintf("eager=%v", eager), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(keys), 7))
			s, m := New(0), NewModel(0)
			if eager {
				s.sweepMin = 64
				s.tree.freeMin, s.tree.garbageMin = 2, 16
			}
			key := func() []byte { return fmt.Appendf(nil, "key/%012d", rng.IntN(keys*4)) }
			v := tx.Version(0)
			heightMaxSeen := 0
			var got, want []Result
			checkAll := func(step int) {
				reads := make([]Read, 0, readsPerCheck)
				for range readsPerCheck {
					r := Read{Begin: key(), Version: s.OldestVersion() + tx.Version(rng.Uint64N(uint64(v-s.OldestVersion())+1))}
					if rng.IntN(2) == 0 {
						r.End = append(append([]byte{}, r.Begin...), '~')
					}
					reads = append(reads, r)
				}
				got, want = s.Check(reads, got[:0]), m.Check(reads, want[:0])
				for i := range want {
					if got[i] != want[i] {
						t.Fatalf("step %d: read %s@%d: set %v, model %v", step, span(reads[i].Begin, reads[i].End), reads[i].Version, got[i], want[i])
					}
				}
				if err := s.verify(); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
			}
			for step := range keys {
				v++
				w := []Write{{Begin: key()}}
				if step > keys/2 && rng.IntN(10) == 0 {
					w[0].End = append(append([]byte{}, w[0].Begin...), '~')
				}
				s.AddWrites(w, v)
				m.AddWrites(w, v)
				heightMaxSeen = max(heightMaxSeen, s.tree.height)
				if step%100 == 99 && step > keys/3 {
					o := v - tx.Version(keys/3)
					s.SetOldestVersion(o)
					m.SetOldestVersion(o)
				}
				if step%checkEvery == checkEvery-1 {
					checkAll(step)
				}
			}
			if heightMaxSeen < heightWant {
				t.Fatalf("tree height reached only %d", heightMaxSeen)
			}
			// Forget everything: repeated sweeps must empty the set.
			for i := 0; s.Len() > 0 && i < keys; i++ {
				v++
				s.SetOldestVersion(v)
				m.SetOldestVersion(v)
			}
			checkAll(keys)
			if s.Len() != 0 {
				t.Fatalf("after forgetting everything the set still holds %d boundaries", s.Len())
			}
			if s.tree.height != 0 {
				t.Fatalf("empty set has height %d", s.tree.height)
			}
		})
	}
}
