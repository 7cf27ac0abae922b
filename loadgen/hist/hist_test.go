package hist

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// oracleQuantile is the deliberately dumb answer: sort everything and take
// the sample at rank ceil(q·n).
func oracleQuantile(sorted []int64, q float64) int64 {
	if q <= 0 {
		return sorted[0]
	}
	if q >= 1 {
		return sorted[len(sorted)-1]
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestBucketsAreContiguousAndMonotonic(t *testing.T) {
	prevHigh := int64(-1)
	for i := 0; i < bucketCount; i++ {
		high := bucketHigh(i)
		if high <= prevHigh {
			t.Fatalf("bucket %d high %d <= previous high %d", i, high, prevHigh)
		}
		if got := bucketOf(prevHigh + 1); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d (first value of bucket)", prevHigh+1, got, i)
		}
		if got := bucketOf(high); got != i {
			t.Fatalf("bucketOf(%d) = %d, want %d (last value of bucket)", high, got, i)
		}
		width := high - prevHigh
		if low := prevHigh + 1; low >= 2*subCount && width > low/subCount {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its low value", i, low, high, subCount)
		}
		prevHigh = high
	}
	if prevHigh != MaxValue {
		t.Fatalf("last bucket ends at %d, want MaxValue %d", prevHigh, MaxValue)
	}
}

func TestQuantilesAgainstSortedOracle(t *testing.T) {
	quantiles := []float64{0, 0.001, 0.5, 0.9, 0.99, 0.999, 1}
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7))
		n := 1 + rng.IntN(20000)
		samples := make([]int64, n)
		h := New()
		for i := range samples {
			var v int64
			switch seed % 3 {
			case 0: // latency-like: log-normal around 1ms
				v = int64(math.Exp(rng.NormFloat64()*1.5 + 13.8))
			case 1: // small integers, exact region
				v = rng.Int64N(300)
			default: // wide uniform
				v = rng.Int64N(MaxValue)
			}
			samples[i] = v
			h.Record(v)
		}
		slices.Sort(samples)
		for _, q := range quantiles {
			want := oracleQuantile(samples, q)
			got := h.Quantile(q)
			// Never below the exact answer, at most one bucket width above.
			if got < want || float64(got-want) > float64(want)/subCount+1 {
				t.Fatalf("seed %d n %d: Quantile(%v) = %d, oracle %d (replay: seed=%d)", seed, n, q, got, want, seed)
			}
		}
		if h.Min() != samples[0] || h.Max() != samples[n-1] || h.Count() != uint64(n) {
			t.Fatalf("seed %d: min/max/count %d/%d/%d, want %d/%d/%d", seed, h.Min(), h.Max(), h.Count(), samples[0], samples[n-1], n)
		}
	}
}

func TestMergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	all, a, b := New(), New(), New()
	for i := 0; i < 50000; i++ {
		v := rng.Int64N(1 << 30)
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	merged := New()
	merged.Merge(a)
	merged.Merge(b)
	merged.Merge(New()) // empty merge changes nothing
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Fatalf("Quantile(%v): merged %d, direct %d", q, merged.Quantile(q), all.Quantile(q))
		}
	}
	if merged.Count() != all.Count() || merged.Mean() != all.Mean() {
		t.Fatalf("count/mean: merged %d/%v, direct %d/%v", merged.Count(), merged.Mean(), all.Count(), all.Mean())
	}
	merged.Reset()
	if merged.Count() != 0 || merged.Quantile(0.99) != 0 || merged.Max() != 0 || merged.Min() != 0 {
		t.Fatalf("after Reset: count %d p99 %d max %d min %d", merged.Count(), merged.Quantile(0.99), merged.Max(), merged.Min())
	}
}

func TestClampsOutOfRange(t *testing.T) {
	h := New()
	h.Record(-5)
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != MaxValue || h.Clamped() != 1 {
		t.Fatalf("min %d max %d clamped %d, want 0, %d, 1", h.Min(), h.Max(), h.Clamped(), MaxValue)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	h := New()
	v := int64(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(v); v = v*3 + 1 }); n != 0 {
		t.Fatalf("Record allocates %v times per call", n)
	}
}

func FuzzRecordQuantile(f *testing.F) {
	f.Add(int64(0), int64(1), int64(1000), 0.5)
	f.Add(int64(-1), int64(math.MaxInt64), int64(255), 0.99)
	f.Add(int64(256), int64(257), int64(1<<40), 0.999)
	f.Fuzz(func(t *testing.T, a, b, c int64, q float64) {
		if math.IsNaN(q) {
			return
		}
		h := New()
		samples := []int64{a, b, c}
		for i, v := range samples {
			h.Record(v)
			samples[i] = min(max(v, 0), MaxValue)
		}
		slices.Sort(samples)
		want := oracleQuantile(samples, q)
		got := h.Quantile(q)
		if got < want || float64(got-want) > float64(want)/subCount+1 {
			t.Fatalf("Quantile(%v) of %v = %d, oracle %d", q, samples, got, want)
		}
	})
}
