package controller

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Load balancing parameters.
const (
	// LoadRatio is the target of Rebalance: the busiest group carries at most this many times
	// the load (ops/s) of the least busy one. 1.25 leaves room for measurement noise, so the
	// controller does not chase small differences with migrations (PD's hot-region scheduler
	// likewise tolerates a 1.05 ratio per store pair before it acts).
	LoadRatio = 1.25
	// MinBusiestOps is the load (ops/s) below which the busiest group is considered idle and
	// nothing is rebalanced: moving shards to even out noise costs more than it gains. PD's
	// min-hot-query-rate is 10/s for the same reason.
	MinBusiestOps = 10
	// MaxSplitsPerRebalance bounds the shards one Rebalance may split.
	MaxSplitsPerRebalance = 8
	// BlindSplitMinSlots is the narrowest shard Rebalance splits at its middle slot. Below this
	// width it splits only at a split point the owning group reported from key sampling: a
	// middle split of a narrow range assumes the load is spread evenly, and when it is one hot
	// key the halves would be split again and again down to single slots without ever dividing
	// the load (the pathological splits TiKV and PD met: tikv/pd#4588, tikv/tikv#19572).
	BlindSplitMinSlots = 64
)

// ShardLoad is the load a group measured on one slot range it serves.
type ShardLoad struct {
	Range     keyspace.Range `json:"range"`
	OpsPerSec float64        `json:"ops"`
	Bytes     int64          `json:"bytes"`
	Keys      int64          `json:"keys"`
	// SplitAt optionally names the slot at which the range's load divides roughly in half, as
	// found by sampling the keys of requests. 0 (never a useful split point) means none; the
	// controller then splits at the middle slot, and only ranges at least BlindSplitMinSlots
	// wide. A group should leave it 0 when no slot divides the load (one hot key).
	SplitAt uint16 `json:"split_at,omitempty"`
}

// Report is a group's latest load measurement of the shards it serves. The controller keeps the
// latest report per group.
type Report struct {
	Group  uint64      `json:"group"`
	Shards []ShardLoad `json:"shards"`
}

// validateReport checks a report's ranges and numbers.
func validateReport(r Report) error {
	if r.Group == 0 {
		return fmt.Errorf("%w: group id must be positive", ErrBadReport)
	}
	for _, s := range r.Shards {
		if !s.Range.Valid() || s.Range.Empty() {
			return fmt.Errorf("%w: range %v", ErrBadReport, s.Range)
		}
		if s.OpsPerSec < 0 || math.IsNaN(s.OpsPerSec) || math.IsInf(s.OpsPerSec, 0) || s.Bytes < 0 || s.Keys < 0 {
			return fmt.Errorf("%w: negative or non-finite load for %v", ErrBadReport, s.Range)
		}
	}
	return nil
}

// storedReport is a report with the order in which it arrived: for slots several reports cover
// (a shard that moved, reported by its old and its new owner), the newest wins.
type storedReport struct {
	Report Report `json:"report"`
	Seq    uint64 `json:"seq"`
}

// loadSeg is the load density of a reported range: per-slot shares of its entry's totals.
type loadSeg struct {
	orig             keyspace.Range // the reported range this density comes from
	ops, bytes, keys float64        // per slot
	splitAt          uint16
}

// Load is the estimated load of one shard.
type Load struct {
	OpsPerSec float64 `json:"ops"`
	Bytes     float64 `json:"bytes"`
	Keys      float64 `json:"keys"`
	// Measured is true when reports measured exactly this shard (or finer ranges inside it);
	// false when the figures are pro-rated from a wider reported range, e.g. for the halves of a
	// shard split since the last report, or zero because nothing reported it.
	Measured bool `json:"measured"`
	// Reported is true when any report covers some of the shard's slots.
	Reported bool   `json:"reported"`
	splitAt  uint16 // the reported split point, when measured as one entry
}

// loadMap merges reports into per-slot densities, newest report winning where they overlap.
func loadMap(reports []storedReport) *keyspace.RangeMap[loadSeg] {
	sorted := slices.Clone(reports)
	slices.SortFunc(sorted, func(a, b storedReport) int { return cmpU64(a.Seq, b.Seq) })
	var m keyspace.RangeMap[loadSeg]
	for _, r := range sorted {
		for _, s := range r.Report.Shards {
			n := float64(s.Range.Len())
			m.Set(s.Range, loadSeg{orig: s.Range, ops: s.OpsPerSec / n, bytes: float64(s.Bytes) / n,
				keys: float64(s.Keys) / n, splitAt: s.SplitAt})
		}
	}
	return &m
}

// shardLoads estimates each shard's load from the merged reports.
func shardLoads(c *Config, m *keyspace.RangeMap[loadSeg]) []Load {
	out := make([]Load, len(c.Shards))
	type seg struct {
		r keyspace.Range
		v loadSeg
	}
	var segs []seg
	for r, v := range m.All() {
		segs = append(segs, seg{r, v})
	}
	j := 0
	for i, s := range c.Shards {
		for j < len(segs) && segs[j].r.Hi <= s.Range.Lo {
			j++
		}
		l := Load{Measured: true}
		covered := 0
		for k := j; k < len(segs) && segs[k].r.Lo < s.Range.Hi; k++ {
			x := segs[k].r.Intersect(s.Range)
			n := float64(x.Len())
			l.OpsPerSec += segs[k].v.ops * n
			l.Bytes += segs[k].v.bytes * n
			l.Keys += segs[k].v.keys * n
			covered += x.Len()
			if segs[k].v.orig.Lo < s.Range.Lo || segs[k].v.orig.Hi > s.Range.Hi {
				l.Measured = false
			}
			if segs[k].v.orig == s.Range {
				l.splitAt = segs[k].v.splitAt
			}
		}
		l.Reported = covered > 0
		if covered < s.Range.Len() {
			l.Measured = false
		}
		out[i] = l
	}
	return out
}

// rebalanceLoad returns c changed so that load is spread evenly, or c unchanged when it already
// is or nothing helps. It works in rounds: a round simulates moving shards greedily, each move
// from the busiest group to the least busy of the shard that best evens the two, until the
// busiest is within LoadRatio of the least busy or no move lowers the busier of the pair. If the
// moves alone cannot reach the ratio, the hottest splittable shard of the busiest group (in the
// simulated end state) is split and the round starts again from the unmoved configuration; after
// MaxSplitsPerRebalance splits, or when nothing can be split, the last round's moves are kept.
// Split halves are estimated at half the shard's ops each, and count as unmeasured so that
// neither is split again before a group reports on it.
func rebalanceLoad(cur Config, reports []storedReport) Config {
	if len(cur.Groups) < 2 {
		return cur
	}
	base := cur.Clone()
	loads := shardLoads(&base, loadMap(reports))
	for splits := 0; ; splits++ {
		trial := base.Clone()
		within := greedyLoadMoves(&trial, loads)
		if within || splits >= MaxSplitsPerRebalance {
			return trial
		}
		i := splitCandidate(&trial, loads)
		if i < 0 {
			return trial
		}
		at := splitPoint(base.Shards[i].Range, loads[i])
		splitShard(&base, i, at)
		lo, hi := base.Shards[i].Range.Len(), base.Shards[i+1].Range.Len()
		l := loads[i]
		frac := func(n int) float64 { return float64(n) / float64(lo+hi) }
		left := Load{OpsPerSec: l.OpsPerSec / 2, Bytes: l.Bytes * frac(lo), Keys: l.Keys * frac(lo), Reported: l.Reported}
		right := Load{OpsPerSec: l.OpsPerSec / 2, Bytes: l.Bytes * frac(hi), Keys: l.Keys * frac(hi), Reported: l.Reported}
		loads = slices.Replace(loads, i, i+1, left, right)
	}
}

// groupLoads sums shard loads per group.
func groupLoads(c *Config, loads []Load) map[uint64]float64 {
	out := make(map[uint64]float64, len(c.Groups))
	for id := range c.Groups {
		out[id] = 0
	}
	for i, s := range c.Shards {
		out[s.Group] += loads[i].OpsPerSec
	}
	return out
}

// balancedLoad reports whether the busiest group is within LoadRatio of the least busy one, or
// idle.
func balancedLoad(busiest, least float64) bool {
	return busiest < MinBusiestOps || busiest <= LoadRatio*least
}

// greedyLoadMoves moves shards of c (whose loads are parallel to c.Shards) from the busiest to
// the least busy group while that helps, and reports whether the ratio target was reached.
func greedyLoadMoves(c *Config, loads []Load) bool {
	ids := c.GroupIDs()
	gl := groupLoads(c, loads)
	for range 4 * (len(c.Shards) + len(ids)) { // safety bound; every move lowers the sum of squares
		from, to := maxGroup(ids, gl), minGroup(ids, gl)
		if balancedLoad(gl[from], gl[to]) {
			return true
		}
		gap := gl[from] - gl[to]
		best := -1
		var bestPeak, bestBytes float64
		for i, s := range c.Shards {
			x := loads[i].OpsPerSec
			if s.Group != from || x <= 0 || x >= gap {
				continue // idle shards gain nothing; one as hot as the gap only swaps the roles
			}
			peak := max(gl[from]-x, gl[to]+x)
			// Evenest pair first; then the least data to migrate; then slot order (loop order).
			if best < 0 || peak < bestPeak || (peak == bestPeak && loads[i].Bytes < bestBytes) {
				best, bestPeak, bestBytes = i, peak, loads[i].Bytes
			}
		}
		if best < 0 {
			return false
		}
		c.Shards[best].Group = to
		gl[from] -= loads[best].OpsPerSec
		gl[to] += loads[best].OpsPerSec
	}
	return false
}

// splitCandidate returns the index of the hottest splittable shard of the busiest group of c, or
// -1. Shard indexes of c equal those of the configuration it was simulated from: moves do not
// change ranges.
func splitCandidate(c *Config, loads []Load) int {
	ids := c.GroupIDs()
	gl := groupLoads(c, loads)
	from := maxGroup(ids, gl)
	best := -1
	for i, s := range c.Shards {
		if s.Group != from || !splittable(s.Range, loads[i]) {
			continue
		}
		if best < 0 || loads[i].OpsPerSec > loads[best].OpsPerSec {
			best = i
		}
	}
	return best
}

// splittable reports whether Rebalance may split a shard: it carries load, that load was measured
// on this very shard (not inferred from a split made since), and there is a split point: one the
// group reported, or the middle of a shard at least BlindSplitMinSlots wide.
func splittable(r keyspace.Range, l Load) bool {
	if l.OpsPerSec <= 0 || !l.Measured || r.Len() < 2 {
		return false
	}
	return validSplitAt(r, l.splitAt) || r.Len() >= BlindSplitMinSlots
}

// splitPoint is the reported split slot when it lies strictly inside r, else the middle slot.
func splitPoint(r keyspace.Range, l Load) uint16 {
	if validSplitAt(r, l.splitAt) {
		return l.splitAt
	}
	return r.Lo + uint16(r.Len()/2)
}

func validSplitAt(r keyspace.Range, at uint16) bool { return at > r.Lo && at < r.Hi }

// sortedReports returns stored reports in group order.
func sortedReports(m map[uint64]storedReport) []storedReport {
	out := make([]storedReport, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b storedReport) int { return cmp.Compare(a.Report.Group, b.Report.Group) })
	return out
}
