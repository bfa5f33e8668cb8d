package bench

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// KeyLen is the length of every benchmark key: "key:" and 12 digits, the exact form
// redis-benchmark produces for "key:__rand_int__", so both generators touch the same keys.
const KeyLen = 16

// AppendKey appends the 16-byte key for index i with the given 4-byte prefix ("key:", "mem:").
func AppendKey(dst []byte, prefix string, i uint64) []byte {
	dst = append(dst, prefix...)
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], i, 10)
	for range 12 - len(d) {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// Dist names a key distribution.
type Dist string

// Key distributions of the Go generator.
const (
	Uniform Dist = "uniform"
	Zipfian Dist = "zipf"
)

// ZipfTheta is YCSB's default skew: a few keys take most of the traffic, the shape of real
// caches, which is where a hot slot or a hot lock shows.
const ZipfTheta = 0.99

// Zipf draws ranks 0..n-1 with P(rank k) proportional to 1/(k+1)^theta, using the method of
// Gray et al. ("Quickly generating billion-record synthetic databases"), which YCSB uses. Unlike
// math/rand's Zipf it accepts theta < 1. A Zipf is immutable after NewZipf, so workers share
// one and each brings its own *rand.Rand.
type Zipf struct {
	n                        uint64
	theta, alpha, zetan, eta float64
	halfPowTheta             float64
}

// NewZipf prepares a generator over n >= 1 items with skew 0 < theta < 1. It costs O(n) once
// (the zeta sum), so build one per workload, not per draw.
func NewZipf(n uint64, theta float64) *Zipf {
	n = max(n, 1)
	zeta := func(m uint64) float64 {
		var s float64
		for i := uint64(1); i <= m; i++ {
			s += 1 / math.Pow(float64(i), theta)
		}
		return s
	}
	z := &Zipf{n: n, theta: theta, alpha: 1 / (1 - theta), zetan: zeta(n), halfPowTheta: 1 + math.Pow(0.5, theta)}
	zeta2 := zeta(min(n, 2))
	z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta2/z.zetan)
	return z
}

// Next returns a rank in [0, n), 0 being the most popular.
func (z *Zipf) Next(r *rand.Rand) uint64 {
	u := r.Float64()
	uz := u * z.zetan
	if uz < 1 {
		return 0
	}
	if uz < z.halfPowTheta && z.n > 1 {
		return 1
	}
	k := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(k, z.n-1)
}

// KeyChooser picks key indexes for one worker. It is not safe for concurrent use: each worker
// owns one, built by NewKeyChooser from a shared immutable Zipf.
type KeyChooser struct {
	dist Dist
	n    uint64
	zipf *Zipf
	rng  *rand.Rand
}

// NewKeyChooser returns a chooser over n keys; zipf may be nil for Uniform.
func NewKeyChooser(dist Dist, n uint64, zipf *Zipf, seed uint64) *KeyChooser {
	return &KeyChooser{dist: dist, n: max(n, 1), zipf: zipf, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Next returns the next key index.
func (k *KeyChooser) Next() uint64 {
	if k.dist == Zipfian && k.zipf != nil {
		return k.zipf.Next(k.rng)
	}
	return k.rng.Uint64N(k.n)
}

// Float returns a uniform float in [0,1) from the chooser's stream, for the read/write coin.
func (k *KeyChooser) Float() float64 { return k.rng.Float64() }
