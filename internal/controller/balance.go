package controller

import (
	"fmt"
	"slices"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// The functions in this file compute the next configuration from the current one. They are
// pure: they take a clone, return it modified, and decide every tie by group id or slot order,
// so that every replica of the controller computes the same result.

// applyJoin adds group gid with the given nodes and rebalances by slots. Joining a group that
// exists replaces its node list (a group re-registering after its membership changed) without
// moving shards.
func applyJoin(cur Config, gid uint64, nodes []Node) (Config, error) {
	g := Group{ID: gid, Nodes: slices.Clone(nodes)}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return cmpU64(a.ID, b.ID) })
	if err := validateGroup(g); err != nil {
		return Config{}, err
	}
	c := cur.Clone()
	if _, ok := c.Groups[gid]; ok {
		c.Groups[gid] = g
		return c, nil
	}
	first := len(c.Groups) == 0
	c.Groups[gid] = g
	if first {
		// The keyspace is still the single shard of configuration 0: cut it into equal shards
		// so that later joins can move whole shards. A layout left behind by groups that have
		// since all left is kept as it was.
		if len(c.Shards) == 1 {
			c.Shards = equalShards(InitialShards)
		}
		for i := range c.Shards {
			c.Shards[i].Group = gid
		}
		return c, nil
	}
	balanceSlots(&c)
	return c, nil
}

// equalShards cuts the keyspace into n shards of equal size (the first ones one slot larger when
// n does not divide 16384), all unassigned.
func equalShards(n int) []Shard {
	out := make([]Shard, 0, n)
	lo := 0
	for i := range n {
		size := keyspace.NumSlots / n
		if i < keyspace.NumSlots%n {
			size++
		}
		out = append(out, Shard{Range: keyspace.Range{Lo: uint16(lo), Hi: uint16(lo + size)}})
		lo += size
	}
	return out
}

// applyLeave removes group gid. Its shards go one at a time, largest first, to the group that
// owns the fewest slots at that moment; if the configuration was balanced this keeps it balanced
// (each shard is at most the largest shard's size and lands on the minimum), so exactly the
// leaving group's slots move. A final balancing pass repairs configurations that an operator's
// Move had left unbalanced. When the last group leaves, its shards become unassigned.
func applyLeave(cur Config, gid uint64) (Config, error) {
	if _, ok := cur.Groups[gid]; !ok {
		return Config{}, fmt.Errorf("%w %d", ErrUnknownGroup, gid)
	}
	c := cur.Clone()
	delete(c.Groups, gid)
	if len(c.Groups) == 0 {
		for i := range c.Shards {
			c.Shards[i].Group = 0
		}
		return c, nil
	}
	var orphans []int
	for i, s := range c.Shards {
		if s.Group == gid {
			orphans = append(orphans, i)
		}
	}
	slices.SortStableFunc(orphans, func(a, b int) int {
		return c.Shards[b].Range.Len() - c.Shards[a].Range.Len() // larger first; ties keep slot order
	})
	totals := c.SlotsByGroup()
	ids := c.GroupIDs()
	for _, i := range orphans {
		to := minGroup(ids, totals)
		c.Shards[i].Group = to
		totals[to] += c.Shards[i].Range.Len()
	}
	balanceSlots(&c)
	return c, nil
}

// balanceSlots moves shards until every group's slot total is within one largest shard's size of
// every other group's. Each step moves one shard from the group owning the most slots to the
// group owning the fewest (ties: lowest gid), choosing the donor's shard that best evens the two
// (size closest to half their difference; then the smaller; then one adjacent to a shard the
// receiver already owns, to keep its ranges contiguous; then the lowest slot).
//
// Why this moves few slots: a step happens only while the spread exceeds the largest shard, so
// the moved shard is smaller than the donor-receiver gap and both end strictly between the old
// extremes; the largest total never grows and the sum of squared totals strictly shrinks (so the
// loop ends). A group that was within bounds before is never the receiver of a step taken from
// another in-bounds group: after a Join on a balanced configuration every moved slot goes to the
// new group, which ends within one shard of the average; after a Leave (see applyLeave) nothing
// more moves at all.
func balanceSlots(c *Config) {
	if len(c.Groups) < 2 {
		return
	}
	limit := c.MaxShardLen()
	totals := c.SlotsByGroup()
	ids := c.GroupIDs()
	for range 4 * (len(c.Shards) + len(ids)) { // a safety bound; the loop ends well before
		from, to := maxGroup(ids, totals), minGroup(ids, totals)
		gap := totals[from] - totals[to]
		if gap <= limit {
			return
		}
		best := -1
		var bestKey [4]int
		for i, s := range c.Shards {
			if s.Group != from {
				continue
			}
			n := s.Range.Len()
			adj := 1
			if (i > 0 && c.Shards[i-1].Group == to) || (i+1 < len(c.Shards) && c.Shards[i+1].Group == to) {
				adj = 0
			}
			key := [4]int{abs(gap - 2*n), n, adj, int(s.Range.Lo)}
			if best < 0 || lessKey(key[:], bestKey[:]) {
				best, bestKey = i, key
			}
		}
		if best < 0 {
			return // the donor owns nothing; cannot happen while gap > 0
		}
		c.Shards[best].Group = to
		n := c.Shards[best].Range.Len()
		totals[from] -= n
		totals[to] += n
	}
}

// applyMove assigns exactly the slots of r to gid, cutting the shards at r's edges. It does not
// rebalance: an operator's explicit placement is kept until the next Join or Leave.
func applyMove(cur Config, r keyspace.Range, gid uint64) (Config, error) {
	if err := checkRange(r); err != nil {
		return Config{}, err
	}
	if _, ok := cur.Groups[gid]; !ok {
		return Config{}, fmt.Errorf("%w %d", ErrUnknownGroup, gid)
	}
	c := cur.Clone()
	cutAt(&c, r.Lo)
	cutAt(&c, r.Hi)
	for i := range c.Shards {
		if r.Lo <= c.Shards[i].Range.Lo && c.Shards[i].Range.Hi <= r.Hi {
			c.Shards[i].Group = gid
		}
	}
	return c, nil
}

// applySplit cuts the shard whose range is exactly r at slot at (r.Lo < at < r.Hi). Naming the
// whole shard, not just a slot, makes the request fail loudly if the shard changed meanwhile.
func applySplit(cur Config, r keyspace.Range, at uint16) (Config, error) {
	i, err := findShard(&cur, r)
	if err != nil {
		return Config{}, err
	}
	if at <= r.Lo || at >= r.Hi {
		return Config{}, fmt.Errorf("%w: %d is not strictly inside %v", ErrBadSplit, at, r)
	}
	c := cur.Clone()
	splitShard(&c, i, at)
	return c, nil
}

// applyMerge joins two adjacent shards (given in either order) of the same group into one.
func applyMerge(cur Config, a, b keyspace.Range) (Config, error) {
	if b.Hi == a.Lo && !a.Empty() {
		a, b = b, a
	}
	i, err := findShard(&cur, a)
	if err != nil {
		return Config{}, err
	}
	j, err := findShard(&cur, b)
	if err != nil {
		return Config{}, err
	}
	if a.Hi != b.Lo {
		return Config{}, fmt.Errorf("%w: %v and %v", ErrNotAdjacent, a, b)
	}
	if cur.Shards[i].Group != cur.Shards[j].Group {
		return Config{}, fmt.Errorf("%w: %v is group %d's, %v is group %d's", ErrDifferentOwner,
			a, cur.Shards[i].Group, b, cur.Shards[j].Group)
	}
	c := cur.Clone()
	c.Shards = slices.Replace(c.Shards, i, j+1, Shard{Range: keyspace.Range{Lo: a.Lo, Hi: b.Hi}, Group: c.Shards[i].Group})
	return c, nil
}

// findShard returns the index of the shard whose range is exactly r, or an error naming the shard
// that actually holds r.Lo.
func findShard(c *Config, r keyspace.Range) (int, error) {
	if err := checkRange(r); err != nil {
		return -1, err
	}
	if i := c.exactShard(r); i >= 0 {
		return i, nil
	}
	if i := c.shardIndex(r.Lo); i >= 0 {
		return -1, fmt.Errorf("%w %v (slot %d is in shard %v)", ErrNoShard, r, r.Lo, c.Shards[i].Range)
	}
	return -1, fmt.Errorf("%w %v", ErrNoShard, r)
}

// checkRange rejects empty and out-of-bounds ranges.
func checkRange(r keyspace.Range) error {
	if !r.Valid() || r.Empty() {
		return fmt.Errorf("%w %v: want lo < hi <= %d", ErrBadRange, r, keyspace.NumSlots)
	}
	return nil
}

// maxGroup returns the group owning the most (ties: lowest id) by totals; ids is sorted.
func maxGroup[T int | float64](ids []uint64, totals map[uint64]T) uint64 {
	best := ids[0]
	for _, id := range ids[1:] {
		if totals[id] > totals[best] {
			best = id
		}
	}
	return best
}

// minGroup returns the group owning the least (ties: lowest id) by totals; ids is sorted.
func minGroup[T int | float64](ids []uint64, totals map[uint64]T) uint64 {
	best := ids[0]
	for _, id := range ids[1:] {
		if totals[id] < totals[best] {
			best = id
		}
	}
	return best
}

func lessKey(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
