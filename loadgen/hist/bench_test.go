package hist

import (
	"slices"
	"testing"
)

// Benchmarks: the cost of recording one latency sample and reading p99, for
// the histogram and for the obvious baseline (append every sample to a slice,
// sort it to read a quantile). Run:
//
//	flock /tmp/weaseldb-bench.lock go test -run '^$' -bench . -benchtime=200ms ./loadgen/hist/

// samplesFixture is shared by both benchmarks: latency-like values.
func samplesFixture() []int64 {
	s := make([]int64, 4096)
	x := uint64(88172645463325252)
	for i := range s {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		s[i] = int64(x%4_000_000) + 50_000 // 50µs .. 4ms
	}
	return s
}

func BenchmarkRecord(b *testing.B) {
	s := samplesFixture()
	h := New()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(s[i&4095])
	}
	if h.Count() == 0 {
		b.Fatal("nothing recorded")
	}
}

func BenchmarkRecordBaselineAppend(b *testing.B) {
	s := samplesFixture()
	var all []int64
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		all = append(all, s[i&4095])
	}
	if len(all) == 0 {
		b.Fatal("nothing recorded")
	}
}

// BenchmarkQuantile100k reads p99 of 100,000 samples (what the progress line
// and the final table do).
func BenchmarkQuantile100k(b *testing.B) {
	s := samplesFixture()
	h := New()
	for i := 0; i < 100_000; i++ {
		h.Record(s[i&4095])
	}
	b.ReportAllocs()
	for b.Loop() {
		if h.Quantile(0.99) == 0 {
			b.Fatal("zero p99")
		}
	}
}

func BenchmarkQuantile100kBaselineSort(b *testing.B) {
	s := samplesFixture()
	all := make([]int64, 100_000)
	for i := range all {
		all[i] = s[i&4095]
	}
	work := make([]int64, len(all))
	b.ReportAllocs()
	for b.Loop() {
		copy(work, all) // each read sorts afresh, as samples keep arriving
		slices.Sort(work)
		if work[len(work)*99/100] == 0 {
			b.Fatal("zero p99")
		}
	}
}
