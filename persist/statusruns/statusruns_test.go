package statusruns

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func randomEntries(rng *rand.Rand, first, last uint64, n int, fewA bool) []Entry {
	out := make([]Entry, n)
	for i := range out {
		a := rng.Uint64()
		if fewA {
			a = rng.Uint64N(8) // many equal first hashes: straddle blocks
		}
		out[i] = Entry{A: a, B: rng.Uint64(), Version: first + rng.Uint64N(last-first+1), Time: int64(first) + int64(i)}
	}
	return out
}

func checkAll(t *testing.T, r *Run, want []Entry, rng *rand.Rand) {
	t.Helper()
	for _, e := range want {
		got, ok, err := r.Lookup(e.A, e.B)
		if err != nil || !ok || got != e {
			t.Fatalf("run %d..%d: lookup %+v = %+v %v %v", r.First, r.Last, e, got, ok, err)
		}
	}
	for range 2000 {
		a, b := rng.Uint64(), rng.Uint64()
		if _, ok, err := r.Lookup(a, b); ok || err != nil {
			t.Fatalf("lookup of an absent id: %v %v", ok, err)
		}
	}
}

func TestWriteLookupMergeLoad(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("second Open of a locked directory succeeded")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var all []Entry
	var runs []*Run
	first := uint64(1)
	for i, n := range []int{1000, 0, 1, 129, 5000} {
		last := first + uint64(n) + 3
		es := randomEntries(rng, first, last, n, i == 4)
		all = append(all, es...)
		r, err := d.Write(first, last, slicesClone(es))
		if err != nil {
			t.Fatal(err)
		}
		checkAll(t, r, es, rng)
		runs = append(runs, r)
		first = last + 1
	}
	m, err := d.Merge(runs)
	if err != nil {
		t.Fatal(err)
	}
	if m.First != 1 || m.Last != runs[len(runs)-1].Last || m.Count != len(all) {
		t.Fatalf("merged run %d..%d count %d", m.First, m.Last, m.Count)
	}
	checkAll(t, m, all, rng)
	d.Close()

	// Reopen: the inputs of the merge (not removed, as after a crash) lie
	// inside the merged run and are dropped.
	d, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	loaded, damaged, err := d.Load()
	if err != nil || len(damaged) != 0 || len(loaded) != 1 || loaded[0].Count != len(all) {
		t.Fatalf("Load: %d runs, damaged %v, %v", len(loaded), damaged, err)
	}
	checkAll(t, loaded[0], all, rng)

	// A damaged run is deleted and reported; merging one with damaged
	// entries fails with ErrCorruption.
	r2, err := d.Write(m.Last+1, m.Last+10, []Entry{{A: 1, B: 2, Version: m.Last + 1}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(r2.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, headerBytes+3); err != nil { // an entry byte
		t.Fatal(err)
	}
	f.Close()
	if _, err := d.Merge([]*Run{loaded[0], r2}); !errors.Is(err, ErrCorruption) {
		t.Fatalf("merge of a damaged run: %v, want ErrCorruption", err)
	}
	f, _ = os.OpenFile(r2.path, os.O_RDWR, 0)
	if _, err := f.WriteAt([]byte{0xff}, 40); err != nil { // a header byte
		t.Fatal(err)
	}
	f.Close()
	d.Close()
	d, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	loaded, damaged, err = d.Load()
	if err != nil || len(damaged) != 1 || len(loaded) != 1 {
		t.Fatalf("Load with a damaged run: %d runs, damaged %v, %v", len(loaded), damaged, err)
	}
	if _, err := os.Stat(r2.path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("damaged run still on disk: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix)); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}

func slicesClone(es []Entry) []Entry { return append([]Entry(nil), es...) }
