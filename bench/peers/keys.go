package main

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strconv"
)

// keyChooser picks key indexes in [0, n); each worker owns one rng.
type keyChooser interface {
	next(rng *rand.Rand) uint64
}

type uniformKeys struct{ n uint64 }

func (u uniformKeys) next(rng *rand.Rand) uint64 { return rng.Uint64N(u.n) }

// zipfKeys is loadgen's chooser (loadgen/workload/keys.go) copied rather than
// imported, so that this module does not depend on the main one: YCSB's θ
// parameterisation by Gray et al.'s method, ranks scattered over the key
// space by the same bijection, so the peers see exactly WeaselDB's key
// stream shape (the same hot set for the same n and θ).
type zipfKeys struct {
	n              uint64
	theta          float64
	alpha, eta     float64
	zetaN          float64
	half           float64
	stride, offset uint64
}

func newZipf(n uint64, theta float64) (*zipfKeys, error) {
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
	z := &zipfKeys{
		n: n, theta: theta, alpha: 1 / (1 - theta), zetaN: zetaN,
		eta:    (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/zetaN),
		half:   zeta2,
		offset: n / 3,
	}
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

func (z *zipfKeys) rank(rng *rand.Rand) uint64 {
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

func (z *zipfKeys) next(rng *rand.Rand) uint64 {
	hi, lo := bits.Mul64(z.rank(rng), z.stride)
	_, rem := bits.Div64(hi%z.n, lo, z.n)
	return (rem + z.offset) % z.n
}

// newChooser builds the chooser named by dist ("uniform" or "zipf").
func newChooser(dist string, n uint64, theta float64) (keyChooser, error) {
	switch dist {
	case "uniform":
		if n == 0 {
			return nil, fmt.Errorf("uniform: no keys")
		}
		return uniformKeys{n: n}, nil
	case "zipf":
		return newZipf(n, theta)
	}
	return nil, fmt.Errorf("key distribution %q: want uniform or zipf", dist)
}

// appendKey appends key i as loadgen spells it: "k" and the index in
// decimal, zero-padded to keyBytes in all.
func appendKey(dst []byte, i uint64, keyBytes int) []byte {
	dst = append(dst, 'k')
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], i, 10)
	for n := len(d); n < keyBytes-1; n++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}
