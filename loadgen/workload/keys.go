package workload

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
)

// KeyChooser picks key indexes in [0, n). Implementations hold no shared
// state beyond immutable tables: each connection owns one and its rng.
type KeyChooser interface {
	Next(rng *rand.Rand) uint64
}

// uniformKeys picks every key with the same probability.
type uniformKeys struct{ n uint64 }

func (u uniformKeys) Next(rng *rand.Rand) uint64 { return rng.Uint64N(u.n) }

// Zipf draws ranks 0..n-1 with P(rank r) ∝ 1/(r+1)^θ, the YCSB parameterisation
// (θ in (0, 1), 0.99 the usual "hot" setting), by the method of Gray et al.,
// "Quickly Generating Billion-Record Synthetic Databases" (SIGMOD 1994), as
// YCSB's ZipfianGenerator does. Ranks are then scattered over the key space by
// a bijection (rank·stride + offset mod n, stride coprime with n), so the hot
// keys are not all neighbours, yet the distribution over keys is exactly the
// Zipf one (YCSB's ScrambledZipfian hashes instead, which merges some ranks).
//
// Why not math/rand/v2's Zipf: it requires s > 1 (P ∝ (v+k)^-s), so it cannot
// express YCSB's θ = 0.99, the setting the targets are written for.
//
// Construction costs O(n) (the zeta sum), once per run; Next is O(1).
type Zipf struct {
	n              uint64
	theta          float64
	alpha, eta     float64
	zetaN          float64
	half           float64 // 1 + 0.5^θ: the threshold for rank 1
	stride, offset uint64
}

// NewZipf returns a Zipf chooser over n keys with exponent theta in (0, 1).
func NewZipf(n uint64, theta float64) (*Zipf, error) {
	if n < 2 {
		return nil, fmt.Errorf("zipf: need at least 2 keys, have %d", n)
	}
	if !(theta > 0 && theta < 1) {
		return nil, fmt.Errorf("zipf: theta %v outside (0, 1)", theta)
	}
	zeta2 := 1 + math.Pow(0.5, theta)
	zetaN := 0.0
	for i := uint64(1); i <= n; i++ {
		zetaN += 1 / math.Pow(float64(i), theta)
	}
	z := &Zipf{
		n:      n,
		theta:  theta,
		alpha:  1 / (1 - theta),
		zetaN:  zetaN,
		eta:    (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetaN),
		half:   zeta2,
		offset: n / 3,
	}
	// A stride near n·(golden ratio - 1) scatters neighbouring ranks far
	// apart; step it until it is coprime with n so that the map is a bijection.
	z.stride = uint64(float64(n)*0.6180339887) | 1
	for gcd(z.stride, n) != 1 {
		z.stride += 2
	}
	return z, nil
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Rank draws a rank (0 = the most popular) without scattering.
func (z *Zipf) Rank(rng *rand.Rand) uint64 {
	u := rng.Float64()
	uz := u * z.zetaN
	if uz < 1 {
		return 0
	}
	if uz < z.half {
		return 1
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(r, z.n-1)
}

// KeyOfRank maps a rank to its key index (a bijection on [0, n)).
func (z *Zipf) KeyOfRank(r uint64) uint64 {
	// r·stride mod n on the 128-bit product: no overflow for any n.
	hi, lo := bits.Mul64(r, z.stride)
	_, rem := bits.Div64(hi%z.n, lo, z.n)
	return (rem + z.offset) % z.n
}

// Next draws a key index.
func (z *Zipf) Next(rng *rand.Rand) uint64 { return z.KeyOfRank(z.Rank(rng)) }

// Probability is the exact Zipf probability of rank r, for tests and docs.
func (z *Zipf) Probability(r uint64) float64 {
	return 1 / math.Pow(float64(r+1), z.theta) / z.zetaN
}
