package conflict

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/google/btree"

	"github.com/weaseldb/weaseldb/internal/benchcpu"
	"github.com/weaseldb/weaseldb/tx"
)

// BenchmarkConflictSet measures the set against a baseline built on
// github.com/google/btree that stores each written key with its version and
// answers range reads by scanning. Fixture: keys=N 16-byte keys written in
// random order, one version each; reads are at a version that only the
// newest 0.1% of writes exceed, so most reads commit but the tree must be
// searched. Range reads span 100 keys. Run:
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench BenchmarkConflictSet -benchtime=200ms ./engine/conflict/
func BenchmarkConflictSet(b *testing.B) {
	for _, n := range []int{1e4, 1e6} {
		fx := newFixture(n)
		// Each implementation is loaded once per size, lazily (loading a
		// million keys takes seconds) and shared by the ops in order: the
		// reads run on the freshly loaded state, the writes after them
		// keep adding newer versions.
		loaded := map[string]*loadedChecker{}
		for _, op := range []string{"point_read", "range_read", "point_write", "range_write", "mixed"} {
			for _, impl := range []string{"set", "btree_baseline"} {
				b.Run(fmt.Sprintf("%s/keys=%.0e/%s", op, float64(n), impl), func(b *testing.B) {
					lc := loaded[impl]
					if lc == nil {
						lc = &loadedChecker{latest: fx.latest}
						if impl == "set" {
							lc.c = fx.set()
						} else {
							lc.c = fx.baseline()
						}
						loaded[impl] = lc
					}
					runOp(b, op, fx, lc)
				})
			}
		}
	}
}

// loadedChecker is a loaded implementation and the latest version written
// to it.
type loadedChecker struct {
	c      checker
	latest tx.Version
}

// checker is what the benchmark drives: Set or the baseline.
type checker interface {
	Check(reads []Read, dst []Result) []Result
	AddWrites(writes []Write, v tx.Version)
}

type fixture struct {
	n      int
	order  []int // key indexes in write order
	latest tx.Version
}

// benchKey is key i of the fixture: written keys are even i, so odd ones
// are new.
func benchKey(dst []byte, i int) []byte {
	dst = append(dst[:0], "user/"...)
	return binary.BigEndian.AppendUint64(append(dst, 0, 0, 0), uint64(i))
}

func newFixture(n int) *fixture {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	order := rng.Perm(n)
	return &fixture{n: n, order: order, latest: tx.Version(n)}
}

func (fx *fixture) set() *Set {
	s := New(0)
	var k []byte
	for i, key := range fx.order {
		k = benchKey(k, 2*key)
		s.AddWrites([]Write{{Begin: k}}, tx.Version(i+1))
	}
	return s
}

func (fx *fixture) baseline() *baseline {
	s := newBaseline()
	var k []byte
	for i, key := range fx.order {
		k = benchKey(k, 2*key)
		s.AddWrites([]Write{{Begin: k}}, tx.Version(i+1))
	}
	return s
}

func runOp(b *testing.B, op string, fx *fixture, lc *loadedChecker) {
	c := lc.c
	rng := rand.New(rand.NewPCG(2, 3))
	rv := fx.latest - tx.Version(fx.n/1000)
	v := lc.latest
	defer func() { lc.latest = v }()
	reads := make([]Read, 1)
	writes := make([]Write, 1)
	dst := make([]Result, 0, 4)
	var kb, ke []byte
	conflicts := 0
	var pair [2]Read
	b.ReportAllocs()
	b.ResetTimer()
	cpu := benchcpu.Start()
	defer cpu.Stop(b)
	for range b.N {
		i := rng.IntN(fx.n)
		switch op {
		case "point_read":
			kb = benchKey(kb, 2*i)
			reads[0] = Read{Begin: kb, Version: rv}
			dst = c.Check(reads, dst[:0])
			conflicts += int(dst[0])
		case "range_read":
			kb, ke = benchKey(kb, 2*i), benchKey(ke, 2*i+200)
			reads[0] = Read{Begin: kb, End: ke, Version: rv}
			dst = c.Check(reads, dst[:0])
			conflicts += int(dst[0])
		case "point_write":
			v++
			kb = benchKey(kb, i*2+rng.IntN(2))
			writes[0] = Write{Begin: kb}
			c.AddWrites(writes, v)
		case "range_write":
			v++
			kb, ke = benchKey(kb, 2*i+1), benchKey(ke, 2*i+20)
			writes[0] = Write{Begin: kb, End: ke}
			c.AddWrites(writes, v)
		case "mixed": // one transaction: a point read, a range read, a write
			kb = benchKey(kb, 2*i)
			ke = benchKey(ke, 2*i+200)
			pair = [2]Read{{Begin: kb, Version: v - 100}, {Begin: kb, End: ke, Version: v - 100}}
			dst = c.Check(pair[:], dst[:0])
			v++
			writes[0] = Write{Begin: kb}
			c.AddWrites(writes, v)
		}
	}
	if conflicts < 0 {
		b.Fatal("impossible")
	}
}

// baseline is the obvious conflict check: an ordered map from each written
// key to its latest version; a range read scans the keys in the range. A
// range write records its begin key and raises every key already in it (it
// does not see keys written later inside the range, so it is weaker than
// Set, which only flatters the baseline).
type baseline struct {
	tree *btree.BTreeG[baseItem]
}

type baseItem struct {
	key string
	v   tx.Version
}

func newBaseline() *baseline {
	return &baseline{tree: btree.NewG(32, func(a, b baseItem) bool { return a.key < b.key })}
}

func (s *baseline) Check(reads []Read, dst []Result) []Result {
	for _, r := range reads {
		res := Commit
		if len(r.End) == 0 {
			if it, ok := s.tree.Get(baseItem{key: string(r.Begin)}); ok && it.v > r.Version {
				res = Conflict
			}
		} else {
			s.tree.AscendRange(baseItem{key: string(r.Begin)}, baseItem{key: string(r.End)}, func(it baseItem) bool {
				if it.v > r.Version {
					res = Conflict
					return false
				}
				return true
			})
		}
		dst = append(dst, res)
	}
	return dst
}

func (s *baseline) AddWrites(writes []Write, v tx.Version) {
	for _, w := range writes {
		s.tree.ReplaceOrInsert(baseItem{key: string(w.Begin), v: v})
		if len(w.End) != 0 {
			var inside []baseItem
			s.tree.AscendRange(baseItem{key: string(w.Begin)}, baseItem{key: string(w.End)}, func(it baseItem) bool {
				inside = append(inside, it)
				return true
			})
			for _, it := range inside {
				s.tree.ReplaceOrInsert(baseItem{key: it.key, v: v})
			}
		}
	}
}

// TestMemoryPerKey: at most 64 bytes plus the key length per boundary.
func TestMemoryPerKey(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 50_000
	}
	s := newFixture(n).set()
	perKey := float64(s.Bytes()) / float64(s.Len())
	keyLen := len(benchKey(nil, 0))
	t.Logf("%d keys of %d bytes: %.1f bytes per key (%d bytes)", s.Len(), keyLen, perKey, s.Bytes())
	if perKey > float64(64+keyLen) {
		t.Errorf("%.1f bytes per key, want <= %d", perKey, 64+keyLen)
	}
}

// TestHeapAndGC10M loads 10 million keys and reports heap size and GC
// pause. It needs about 1 GB and a minute, so it runs only with
// CONFLICT_BIG=1:
//
//	CONFLICT_BIG=1 go test -run TestHeapAndGC10M -v ./engine/conflict/
func TestHeapAndGC10M(t *testing.T) {
	if os.Getenv("CONFLICT_BIG") == "" {
		t.Skip("set CONFLICT_BIG=1 to run")
	}
	const n = 10_000_000
	start := time.Now()
	s := newFixture(n).set()
	load := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.NumGC
	gcStart := time.Now()
	for range 5 {
		runtime.GC()
	}
	gcWall := time.Since(gcStart) / 5
	runtime.ReadMemStats(&ms)
	var pauseMax time.Duration
	for i := before; i < ms.NumGC; i++ {
		pauseMax = max(pauseMax, time.Duration(ms.PauseNs[i%256]))
	}
	t.Logf("%d boundaries loaded in %v; Bytes()=%d (%.1f per key); HeapAlloc=%d MB; forced GC: %v wall each, max STW pause %v; NumGC=%d",
		s.Len(), load, s.Bytes(), float64(s.Bytes())/float64(s.Len()), ms.HeapAlloc>>20, gcWall, pauseMax, ms.NumGC)
	runtime.KeepAlive(s)
}
