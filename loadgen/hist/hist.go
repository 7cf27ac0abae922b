// Package hist is an HDR-style latency histogram for the load generator:
// log-linear buckets over int64 values (nanoseconds by convention), fixed
// memory, no allocation per sample, mergeable across connections.
//
// Using it:
//
//  1. Each recording goroutine owns a Histogram (the zero value is not
//     usable: call New) and calls Record for every sample. A Histogram is not
//     safe for concurrent use; guard it or give each goroutine its own.
//  2. To combine, Merge the per-goroutine histograms into one; to start an
//     interval afresh, Reset.
//  3. Read Quantile(q), Min, Max, Mean and Count from the merged result.
//
// Layout (after HdrHistogram): values below 2·subCount each have their own
// bucket; above, every power-of-two range [2^k, 2^(k+1)) is split into
// subCount equal sub-buckets. A bucket's width is at most 1/subCount of its
// lowest value, so any reported quantile is within 1/128 ≈ 0.8% (relative)
// of the exact sample at that rank. Values above MaxValue (about 4.9 hours in
// nanoseconds) are clamped to it and counted; negative values count as 0.
//
// Quantile reports the highest value of the bucket holding the sample of rank
// ceil(q·count), capped at the exact maximum: never below the exact answer.
//
// Rejected: a sorted slice of every sample (exact, but memory grows with the
// run and sorting stalls the progress line); atomic buckets shared by all
// connections (cache-line ping-pong on the hot path). See BenchmarkRecord.
package hist

import (
	"math"
	"math/bits"
)

const (
	subBits  = 7
	subCount = 1 << subBits // sub-buckets per power of two: 0.8% precision
	shiftMax = 36           // highest shift: MaxValue = 2^(shiftMax+subBits+1) - 1
	// MaxValue is the largest value recorded as itself; larger ones clamp.
	MaxValue    = int64(1)<<(shiftMax+subBits+1) - 1
	bucketCount = (shiftMax + 2) * subCount
)

// Histogram counts int64 samples in log-linear buckets.
type Histogram struct {
	counts  []uint64 // len bucketCount; immutable slice header
	count   uint64
	clamped uint64 // samples above MaxValue
	sum     float64
	min     int64
	max     int64
}

// New returns an empty histogram (about 39 KiB).
func New() *Histogram {
	return &Histogram{counts: make([]uint64, bucketCount), min: math.MaxInt64}
}

// bucketOf maps a value in [0, MaxValue] to its bucket index.
func bucketOf(v int64) int {
	u := uint64(v)
	if u < 2*subCount {
		return int(u)
	}
	shift := bits.Len64(u) - subBits - 1 // >= 1
	mantissa := u >> uint(shift)         // in [subCount, 2·subCount)
	return (shift+1)*subCount + int(mantissa) - subCount
}

// bucketHigh is the largest value that maps to bucket i.
func bucketHigh(i int) int64 {
	if i < 2*subCount {
		return int64(i)
	}
	shift := i/subCount - 1
	mantissa := uint64(i%subCount + subCount)
	return int64((mantissa+1)<<uint(shift) - 1)
}

// Record adds one sample. It never allocates.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	if v > MaxValue {
		v = MaxValue
		h.clamped++
	}
	h.counts[bucketOf(v)]++
	h.count++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds every sample of o to h. o is unchanged.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.count += o.count
	h.clamped += o.clamped
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset empties h, keeping its memory.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.count, h.clamped, h.sum, h.min, h.max = 0, 0, 0, math.MaxInt64, 0
}

// Count is the number of samples recorded.
func (h *Histogram) Count() uint64 { return h.count }

// Clamped is the number of samples that were above MaxValue.
func (h *Histogram) Clamped() uint64 { return h.clamped }

// Min is the exact smallest sample, 0 when empty.
func (h *Histogram) Min() int64 {
	if h.count == 0 {
		return 0
	}
	return h.min
}

// Max is the exact largest sample, 0 when empty.
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact mean of the (clamped) samples, 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / float64(h.count)
}

// Quantile returns the value at rank ceil(q·count) (q in [0, 1]; q <= 0 gives
// Min, q >= 1 gives Max), as the highest value of its bucket capped at Max.
// 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.count == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return max(min(bucketHigh(i), h.max), h.min)
		}
	}
	return h.max
}
