package bench

import (
	"math"
	"math/bits"
	"time"
)

// subBits is the number of mantissa bits kept per power of two: 2^5 = 32 sub-buckets bound the
// relative error of a recorded value to about 3%, plenty for p50/p99 on a noisy machine, in a
// fixed 2 KiB array per worker so recording never allocates.
const subBits = 5

const subCount = 1 << subBits

// numBuckets covers every int64 nanosecond value.
const numBuckets = (64 - subBits + 1) * subCount

// Histogram is a log-linear latency histogram (HDR-style). Each worker owns one, and results
// are combined with Merge afterwards, so recording takes no lock. The zero value is empty and
// ready to use.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// bucketOf maps a value to its bucket: values below subCount have their own bucket; above, the
// bucket is the power of two and the top subBits bits below the leading one.
func bucketOf(v int64) int {
	if v < subCount {
		return int(max(v, 0))
	}
	u := uint64(v)
	shift := bits.Len64(u) - subBits - 1
	return (shift+1)*subCount + int(u>>uint(shift)) - subCount
}

// bucketBounds returns the half-open value range [lo, hi) of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i) + 1
	}
	shift := i/subCount - 1
	mant := int64(i%subCount + subCount)
	return mant << uint(shift), (mant + 1) << uint(shift)
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
}

// RecordN adds n observations of the same value: a pipelined batch gives each of its operations
// the batch's latency, as redis-benchmark does.
func (h *Histogram) RecordN(d time.Duration, n int) {
	if n <= 0 {
		return
	}
	v := int64(d)
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[bucketOf(v)] += uint64(n)
	h.n += uint64(n)
	h.sum += float64(v) * float64(n)
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Mean returns the mean observation, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest observation.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Percentile returns the value below which a fraction q (0..1) of the observations fall,
// interpolated inside the bucket and clamped to the observed min and max; 0 when empty.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	rank := q * float64(h.n)
	var seen float64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := bucketBounds(i)
			frac := (rank - seen) / float64(c)
			v := float64(lo) + frac*float64(hi-lo)
			return time.Duration(math.Min(math.Max(v, float64(h.min)), float64(h.max)))
		}
		seen += float64(c)
	}
	return time.Duration(h.max)
}
