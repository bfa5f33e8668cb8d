package controller

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// reportAll makes every group report each shard it owns with ops from opsOf.
func reportAll(t *testing.T, s *State, opsOf func(r keyspace.Range) float64) {
	t.Helper()
	c := s.Latest()
	by := map[uint64][]ShardLoad{}
	for _, sh := range c.Shards {
		by[sh.Group] = append(by[sh.Group], ShardLoad{Range: sh.Range, OpsPerSec: opsOf(sh.Range), Bytes: int64(sh.Range.Len()) * 100, Keys: int64(sh.Range.Len())})
	}
	for _, gid := range c.GroupIDs() {
		if err := s.Report(Report{Group: gid, Shards: by[gid]}); err != nil {
			t.Fatal(err)
		}
	}
}

func loadRatio(s *State) (busiest, least float64) {
	c := s.Latest()
	gl := groupLoads(&c, s.Loads())
	ids := c.GroupIDs()
	return gl[maxGroup(ids, gl)], gl[minGroup(ids, gl)]
}

func twoGroups(t *testing.T) *State {
	s := NewState()
	if _, err := s.Join(1, nodes(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(2, nodes(2)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRebalanceBalancedLoadDoesNothing(t *testing.T) {
	s := twoGroups(t)
	reportAll(t, s, func(keyspace.Range) float64 { return 100 })
	before := s.Latest()
	c, err := s.Rebalance()
	if err != nil || c.Num != before.Num {
		t.Fatalf("balanced load changed the config: %d -> %d (%v)", before.Num, c.Num, err)
	}
	// Without any report nothing happens either.
	s2 := twoGroups(t)
	if c, _ := s2.Rebalance(); c.Num != 2 {
		t.Fatal("rebalance without reports changed the config")
	}
}

func TestRebalanceSplitsAndMovesHotShard(t *testing.T) {
	s := twoGroups(t)
	c := s.Latest()
	hot := c.Shards[c.shardIndex(5000)].Range // one shard carries nearly all the load
	hotOwner := c.Owner(5000)
	reportAll(t, s, func(r keyspace.Range) float64 {
		if r == hot {
			return 10000
		}
		return 1
	})
	c, err := s.Rebalance()
	if err != nil {
		t.Fatal(err)
	}
	if c.exactShard(hot) >= 0 {
		t.Fatalf("hot shard %v was not split", hot)
	}
	mid := hot.Lo + uint16(hot.Len()/2)
	left, right := c.Owner(hot.Lo), c.Owner(mid)
	if left == right || (left != hotOwner && right != hotOwner) {
		t.Fatalf("halves of %v owned by %d and %d", hot, left, right)
	}
	b, l := loadRatio(s)
	if b > LoadRatio*l {
		t.Fatalf("estimated load still %v vs %v", b, l)
	}
	// The halves are unmeasured: a second Rebalance before new reports must not split them again.
	c2, _ := s.Rebalance()
	if c2.Num != c.Num {
		t.Fatalf("second rebalance changed config %d -> %d", c.Num, c2.Num)
	}
}

func TestRebalanceReachesRatio(t *testing.T) {
	s := NewState()
	for gid := uint64(1); gid <= 4; gid++ {
		s.Join(gid, nodes(gid))
	}
	// Load skewed by slot: low slots are hot.
	reportAll(t, s, func(r keyspace.Range) float64 { return math.Pow(float64(keyspace.NumSlots-r.Lo)/1000, 2) })
	b0, l0 := loadRatio(s)
	if b0 <= LoadRatio*l0 {
		t.Fatalf("test setup already balanced: %v %v", b0, l0)
	}
	c, _ := s.Rebalance()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if b, l := loadRatio(s); b > LoadRatio*l {
		t.Fatalf("busiest %v > %v x least %v", b, LoadRatio, l)
	}
	// Deterministic: the same reports on a fresh state give the same configuration.
	s2 := NewState()
	for gid := uint64(1); gid <= 4; gid++ {
		s2.Join(gid, nodes(gid))
	}
	reportAll(t, s2, func(r keyspace.Range) float64 { return math.Pow(float64(keyspace.NumSlots-r.Lo)/1000, 2) })
	if c2, _ := s2.Rebalance(); !reflect.DeepEqual(c, c2) {
		t.Fatal("rebalance is not deterministic")
	}
}

func TestRebalanceAfterMembershipChanges(t *testing.T) {
	s := twoGroups(t)
	reportAll(t, s, func(keyspace.Range) float64 { return 50 })
	s.Join(3, nodes(3))
	s.Join(4, nodes(4))
	s.Leave(1) // group 1's report goes with it
	// Group 3's shards are four times as busy as the others.
	c := s.Latest()
	reportAll(t, s, func(r keyspace.Range) float64 {
		if c.Owner(r.Lo) == 3 {
			return 200
		}
		return 50
	})
	if b, l := loadRatio(s); b <= LoadRatio*l {
		t.Fatalf("setup is balanced: %v %v", b, l)
	}
	if _, err := s.Rebalance(); err != nil {
		t.Fatal(err)
	}
	if b, l := loadRatio(s); b > LoadRatio*l {
		t.Fatalf("not balanced: %v %v", b, l)
	}
}

func TestRebalanceSplitGuards(t *testing.T) {
	// All load on one narrow shard with no reported split point: only blind splits of shards at
	// least BlindSplitMinSlots wide are allowed, so the narrow shard stays whole.
	s := twoGroups(t)
	c := s.Latest()
	hot := c.Shards[0].Range
	if _, err := s.Split(hot, hot.Lo+32); err != nil {
		t.Fatal(err)
	}
	narrow := rg(hot.Lo, hot.Lo+32)
	reportAll(t, s, func(r keyspace.Range) float64 {
		if r == narrow {
			return 1000
		}
		return 0
	})
	before := s.Latest()
	if c, _ := s.Rebalance(); c.Num != before.Num {
		t.Fatalf("narrow shard split blindly: %v", c.Shards[:3])
	}
	// With a reported split point it is split there and half moves.
	g := before.Owner(narrow.Lo)
	var loads []ShardLoad
	for _, sh := range before.Shards {
		if sh.Group == g {
			l := ShardLoad{Range: sh.Range}
			if sh.Range == narrow {
				l.OpsPerSec, l.SplitAt = 1000, narrow.Lo+5
			}
			loads = append(loads, l)
		}
	}
	if err := s.Report(Report{Group: g, Shards: loads}); err != nil {
		t.Fatal(err)
	}
	c, _ = s.Rebalance()
	if c.exactShard(rg(narrow.Lo, narrow.Lo+5)) < 0 || c.Owner(narrow.Lo) == c.Owner(narrow.Lo+5) {
		t.Fatalf("not split at the reported point: %v", c.Shards[:3])
	}
	// A one-slot hot shard can never be split.
	s3 := twoGroups(t)
	c = s3.Latest()
	first := c.Shards[0].Range
	s3.Split(first, first.Lo+1)
	reportAll(t, s3, func(r keyspace.Range) float64 {
		if r.Len() == 1 {
			return 1000
		}
		return 0
	})
	b := s3.Latest()
	if c, _ := s3.Rebalance(); c.Num != b.Num {
		t.Fatal("one-slot shard split")
	}
}

func TestReportValidation(t *testing.T) {
	s := twoGroups(t)
	for _, r := range []Report{
		{Group: 0},
		{Group: 1, Shards: []ShardLoad{{Range: rg(5, 5)}}},
		{Group: 1, Shards: []ShardLoad{{Range: rg(0, 10), OpsPerSec: -1}}},
		{Group: 1, Shards: []ShardLoad{{Range: rg(0, 10), OpsPerSec: math.NaN()}}},
	} {
		if err := s.Report(r); !errors.Is(err, ErrBadReport) {
			t.Errorf("Report(%+v) = %v", r, err)
		}
	}
	if err := s.Report(Report{Group: 9}); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("unknown group: %v", err)
	}
}

func TestLoadsNewestReportWins(t *testing.T) {
	s := twoGroups(t)
	c := s.Latest()
	r0 := c.Shards[0].Range
	g0 := c.Shards[0].Group
	other := 3 - g0
	s.Report(Report{Group: g0, Shards: []ShardLoad{{Range: r0, OpsPerSec: 10}}})
	s.Report(Report{Group: other, Shards: []ShardLoad{{Range: r0, OpsPerSec: 30}}})
	if l := s.Loads()[0]; l.OpsPerSec != 30 || !l.Measured {
		t.Fatalf("got %+v", l)
	}
	s.Report(Report{Group: g0, Shards: []ShardLoad{{Range: keyspace.Range{Lo: r0.Lo, Hi: r0.Lo + 128}, OpsPerSec: 4}}})
	if l := s.Loads()[0]; l.OpsPerSec != 4+15 || !l.Measured {
		t.Fatalf("got %+v", l)
	}
}
