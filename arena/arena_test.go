package arena

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// fillPattern writes a pattern derived from id into b, so overlap between
// two allocations shows up as a mismatch.
func fillPattern(b []byte, id int) {
	for i := range b {
		b[i] = byte(id*31 + i)
	}
}

func checkPattern(t *testing.T, b []byte, id int) {
	t.Helper()
	for i := range b {
		if b[i] != byte(id*31+i) {
			t.Fatalf("allocation %d (len %d) overwritten at byte %d: got %#x want %#x", id, len(b), i, b[i], byte(id*31+i))
		}
	}
}

// TestAllocNoAlias allocates random sizes (some oversize) over several
// Reset cycles and checks that no allocation overwrote another and that
// len == cap for each.
func TestAllocNoAlias(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d (replay by hard-coding it)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	a := New(256)
	for cycle := 0; cycle < 50; cycle++ {
		var got [][]byte
		for i := 0; i < 200; i++ {
			n := rng.IntN(64)
			if rng.IntN(20) == 0 {
				n = 200 + rng.IntN(600) // some oversize
			}
			b := a.Alloc(n)
			if len(b) != n || cap(b) != n {
				t.Fatalf("Alloc(%d): len %d cap %d", n, len(b), cap(b))
			}
			fillPattern(b, i)
			got = append(got, b)
		}
		for i, b := range got {
			checkPattern(t, b, i)
		}
		a.Reset()
		if a.InUse() != 0 {
			t.Fatalf("InUse after Reset = %d", a.InUse())
		}
	}
}

func TestAppendDoesNotClobberNeighbour(t *testing.T) {
	a := New(64)
	x := a.Alloc(4)
	y := a.Copy([]byte("yyyy"))
	x = append(x, 'z') // must reallocate, not write into y
	_ = x
	if string(y) != "yyyy" {
		t.Fatalf("append to earlier allocation overwrote neighbour: %q", y)
	}
}

func TestCopy(t *testing.T) {
	a := New(16)
	src := []byte("hello, arena, longer than a chunk")
	got := a.Copy(src)
	src[0] = 'X'
	if string(got) != "hello, arena, longer than a chunk" {
		t.Fatalf("Copy = %q", got)
	}
	if b := a.Copy(nil); len(b) != 0 {
		t.Fatalf("Copy(nil) len %d", len(b))
	}
}

func TestPoisonOnReset(t *testing.T) {
	if !poisonEnabled {
		t.Skip("poisoning is compiled only with the invariants or race tag")
	}
	a := New(32)
	small := a.Copy([]byte("secret"))
	big := a.Copy(bytes.Repeat([]byte("b"), 100))
	a.Reset()
	for _, b := range [][]byte{small, big} {
		for i, c := range b {
			if c != poisonByte {
				t.Fatalf("byte %d after Reset = %#x, want poison %#x", i, c, poisonByte)
			}
		}
	}
}

func TestOversizeKeptUpToCap(t *testing.T) {
	a := New(100)
	a.Alloc(150)
	a.Reset()
	held := a.Bytes()
	if held < 150 {
		t.Fatalf("small oversize buffer not kept: Bytes = %d", held)
	}
	// Reused: no growth on the next cycle.
	a.Alloc(120)
	a.Reset()
	if a.Bytes() != held {
		t.Fatalf("oversize buffer not reused: Bytes %d, was %d", a.Bytes(), held)
	}
	// A buffer bigger than the keep cap is dropped on Reset.
	a.Alloc(OversizeKeepFactor*100 + 1)
	a.Reset()
	if a.Bytes() != held {
		t.Fatalf("huge oversize buffer kept: Bytes %d, want %d", a.Bytes(), held)
	}
}

func TestShrinkAndRelease(t *testing.T) {
	a := New(64)
	for i := 0; i < 10; i++ {
		a.Alloc(60)
	}
	a.Alloc(1000)
	a.Reset()
	if a.Bytes() < 10*64 {
		t.Fatalf("Bytes = %d, want >= %d", a.Bytes(), 10*64)
	}
	a.Shrink(3 * 64)
	if a.Bytes() != 3*64 {
		t.Fatalf("Bytes after Shrink = %d, want %d", a.Bytes(), 3*64)
	}
	a.Release()
	if a.Bytes() != 0 {
		t.Fatalf("Bytes after Release = %d", a.Bytes())
	}
	b := a.Copy([]byte("still usable"))
	if string(b) != "still usable" {
		t.Fatalf("after Release: %q", b)
	}
}

func TestAllocNegativePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Alloc(-1) did not panic")
		}
	}()
	New(16).Alloc(-1)
}

// TestSteadyStateNoAllocs: once warm, a request cycle allocates nothing.
func TestSteadyStateNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	a := New(4096)
	src := bytes.Repeat([]byte("v"), 100)
	cycle := func() {
		for i := 0; i < 50; i++ {
			a.Copy(src)
			a.Alloc(16)
		}
		a.Alloc(5000) // oversize, kept
		a.Reset()
	}
	cycle()
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Fatalf("steady-state cycle allocates %.1f times", n)
	}
}

func TestInUse(t *testing.T) {
	a := New(10)
	want := 0
	for _, n := range []int{3, 0, 7, 4, 25, 9, 1} {
		a.Alloc(n)
		want += n
		if a.InUse() != want {
			t.Fatalf("after Alloc(%d): InUse %d, want %d", n, a.InUse(), want)
		}
	}
	a.Reset()
	if a.InUse() != 0 {
		t.Fatalf("InUse after Reset = %d", a.InUse())
	}
}
