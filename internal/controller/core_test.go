package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

func nodes(gid uint64) []Node {
	return []Node{{ID: 1, Addr: fmt.Sprintf("10.0.%d.1:7379", gid)}, {ID: 2, Addr: fmt.Sprintf("10.0.%d.2:7379", gid)}}
}

func rg(lo, hi uint16) keyspace.Range { return keyspace.Range{Lo: lo, Hi: hi} }

// checkBalanced asserts the invariants every configuration after a Join or Leave must meet.
func checkBalanced(t *testing.T, c Config, live map[uint64]bool) {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatalf("config %d: %v", c.Num, err)
	}
	if len(c.Groups) != len(live) {
		t.Fatalf("config %d has groups %v, want %v", c.Num, c.GroupIDs(), live)
	}
	for _, s := range c.Shards {
		if len(live) > 0 && !live[s.Group] {
			t.Fatalf("config %d: shard %v owned by dead group %d", c.Num, s.Range, s.Group)
		}
	}
	if len(live) == 0 {
		return
	}
	tot := c.SlotsByGroup()
	lo, hi := keyspace.NumSlots, 0
	for _, n := range tot {
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > c.MaxShardLen() {
		t.Fatalf("config %d unbalanced: %v (largest shard %d)", c.Num, tot, c.MaxShardLen())
	}
}

// movedSlots counts the slots whose owner differs between two configurations, walking both
// shard lists together.
func movedSlots(a, b Config) int {
	n, i, j := 0, 0, 0
	for i < len(a.Shards) && j < len(b.Shards) {
		x, y := a.Shards[i], b.Shards[j]
		if x.Group != y.Group {
			n += x.Range.Intersect(y.Range).Len()
		}
		if x.Range.Hi <= y.Range.Hi {
			i++
		}
		if y.Range.Hi <= x.Range.Hi {
			j++
		}
	}
	return n
}

func TestFirstJoinCutsInitialShards(t *testing.T) {
	s := NewState()
	c0 := s.Query(-1)
	if c0.Num != 0 || len(c0.Shards) != 1 || c0.Shards[0].Group != 0 || c0.Validate() != nil {
		t.Fatalf("bad config 0: %+v", c0)
	}
	c, err := s.Join(7, nodes(7))
	if err != nil {
		t.Fatal(err)
	}
	if c.Num != 1 || len(c.Shards) != InitialShards {
		t.Fatalf("got num %d with %d shards", c.Num, len(c.Shards))
	}
	for _, sh := range c.Shards {
		if sh.Group != 7 || sh.Range.Len() != keyspace.NumSlots/InitialShards {
			t.Fatalf("bad shard %+v", sh)
		}
	}
	if c.Owner(0) != 7 || c.Owner(16383) != 7 {
		t.Fatal("owner lookup")
	}
	// Re-joining with the same nodes changes nothing; with new nodes only the addresses change.
	if c2, _ := s.Join(7, nodes(7)); c2.Num != 1 {
		t.Fatalf("idempotent join made config %d", c2.Num)
	}
	c3, err := s.Join(7, []Node{{ID: 3, Addr: "x:1"}})
	if err != nil || c3.Num != 2 || !reflectEqualShards(c3, c) || c3.Groups[7].Nodes[0].Addr != "x:1" {
		t.Fatalf("address update: %+v %v", c3, err)
	}
	// Everyone leaves: shards become unassigned but keep their layout.
	c4, err := s.Leave(7)
	if err != nil || len(c4.Groups) != 0 || c4.Owner(100) != 0 || len(c4.Shards) != InitialShards {
		t.Fatalf("leave all: %+v %v", c4, err)
	}
	c5, _ := s.Join(9, nodes(9))
	if c5.Owner(100) != 9 || len(c5.Shards) != InitialShards {
		t.Fatal("rejoin after empty")
	}
}

func reflectEqualShards(a, b Config) bool { return reflect.DeepEqual(a.Shards, b.Shards) }

func TestJoinErrors(t *testing.T) {
	s := NewState()
	for _, tc := range []struct {
		gid   uint64
		nodes []Node
	}{
		{0, nodes(1)}, {1, nil}, {1, []Node{{ID: 0, Addr: "a:1"}}}, {1, []Node{{ID: 1}}},
		{1, []Node{{ID: 1, Addr: "a:1"}, {ID: 1, Addr: "b:1"}}},
	} {
		if _, err := s.Join(tc.gid, tc.nodes); !errors.Is(err, ErrBadGroup) {
			t.Errorf("Join(%d, %v) = %v, want ErrBadGroup", tc.gid, tc.nodes, err)
		}
	}
	if _, err := s.Leave(3); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("Leave unknown: %v", err)
	}
	if s.Latest().Num != 0 {
		t.Fatal("failed operations created configurations")
	}
}

// TestJoinLeaveProperties runs random Join/Leave sequences and checks after every step: exact
// coverage, only live groups own shards, slot balance within one shard, minimal movement, Num+1
// per change, the whole history queryable, and determinism (the same operations on a fresh State
// give identical configurations).
func TestJoinLeaveProperties(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 99))
		type op struct {
			join bool
			gid  uint64
		}
		var ops []op
		s := NewState()
		live := map[uint64]bool{}
		prev := s.Latest()
		for range 60 {
			var o op
			if len(live) == 0 || (len(live) < 12 && rng.IntN(3) > 0) {
				o = op{true, uint64(rng.IntN(20) + 1)}
				for live[o.gid] {
					o.gid = uint64(rng.IntN(20) + 1)
				}
			} else {
				ids := prev.GroupIDs()
				o = op{false, ids[rng.IntN(len(ids))]}
			}
			ops = append(ops, o)
			var c Config
			var err error
			if o.join {
				c, err = s.Join(o.gid, nodes(o.gid))
				live[o.gid] = true
			} else {
				c, err = s.Leave(o.gid)
				delete(live, o.gid)
			}
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if c.Num != prev.Num+1 {
				t.Fatalf("seed %d: num %d after %d", seed, c.Num, prev.Num)
			}
			checkBalanced(t, c, live)
			moved := movedSlots(prev, c)
			L := c.MaxShardLen()
			switch {
			case o.join && len(prev.Groups) > 0:
				// The new group must end within one shard of the average; nothing else moves.
				avg := keyspace.NumSlots / len(c.Groups)
				got := c.SlotsByGroup()[o.gid]
				if moved != got || abs(moved-avg) > L {
					t.Fatalf("seed %d join %d: moved %d, new group owns %d, avg %d, shard %d", seed, o.gid, moved, got, avg, L)
				}
			case !o.join && len(c.Groups) > 0:
				if want := prev.SlotsByGroup()[o.gid]; moved != want {
					t.Fatalf("seed %d leave %d: moved %d slots, it owned %d", seed, o.gid, moved, want)
				}
			}
			prev = c
		}
		// Query(n) returns each configuration; replaying the same ops gives the same history.
		r := NewState()
		for _, o := range ops {
			if o.join {
				r.Join(o.gid, nodes(o.gid))
			} else {
				r.Leave(o.gid)
			}
		}
		for n := range int64(len(ops) + 1) {
			a, b := s.Query(n), r.Query(n)
			if a.Num != uint64(n) || !reflect.DeepEqual(a, b) {
				t.Fatalf("seed %d: config %d differs between runs", seed, n)
			}
		}
		if q := s.Query(-1); q.Num != uint64(len(ops)) {
			t.Fatalf("Query(-1) = %d", q.Num)
		}
		if q := s.Query(int64(len(ops) + 5)); q.Num != uint64(len(ops)) {
			t.Fatalf("Query(past end) = %d", q.Num)
		}
	}
}

func TestJoinMinimalMovesEqualShards(t *testing.T) {
	s := NewState()
	s.Join(1, nodes(1))
	c, _ := s.Join(2, nodes(2))
	if got := c.SlotsByGroup(); got[1] != 8192 || got[2] != 8192 {
		t.Fatalf("two groups: %v", got)
	}
	prev := c
	c, _ = s.Join(3, nodes(3))
	// 64 shards over 3 groups: 22/21/21; the new group takes exactly 21 shards.
	if n := movedSlots(prev, c); n != 21*256 {
		t.Fatalf("moved %d slots, want %d", n, 21*256)
	}
	// Balancing keeps the new group's ranges contiguous where it can.
	runs := 0
	for i, sh := range c.Shards {
		if sh.Group == 3 && (i == 0 || c.Shards[i-1].Group != 3) {
			runs++
		}
	}
	if runs > 2 {
		t.Fatalf("group 3 owns %d separate runs", runs)
	}
	// Queries of old configurations are unaffected by later changes to returned copies.
	c.Shards[0].Group = 99
	if s.Query(3).Shards[0].Group == 99 {
		t.Fatal("Query returned shared memory")
	}
}

func TestBalanceWithUnequalShards(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewState()
	s.Join(1, nodes(1))
	// Split shards at random points so sizes differ, then merge some.
	for range 40 {
		c := s.Latest()
		sh := c.Shards[rng.IntN(len(c.Shards))]
		if sh.Range.Len() < 2 {
			continue
		}
		at := sh.Range.Lo + 1 + uint16(rng.IntN(sh.Range.Len()-1))
		if _, err := s.Split(sh.Range, at); err != nil {
			t.Fatal(err)
		}
	}
	for range 10 {
		c := s.Latest()
		i := rng.IntN(len(c.Shards) - 1)
		if _, err := s.Merge(c.Shards[i].Range, c.Shards[i+1].Range); err != nil {
			t.Fatal(err)
		}
	}
	live := map[uint64]bool{1: true}
	for gid := uint64(2); gid <= 9; gid++ {
		prev := s.Latest()
		c, err := s.Join(gid, nodes(gid))
		if err != nil {
			t.Fatal(err)
		}
		live[gid] = true
		checkBalanced(t, c, live)
		if m, avg := movedSlots(prev, c), keyspace.NumSlots/len(live); abs(m-avg) > c.MaxShardLen() {
			t.Fatalf("join %d moved %d, avg %d", gid, m, avg)
		}
	}
	for _, gid := range []uint64{4, 1, 8} {
		prev := s.Latest()
		c, _ := s.Leave(gid)
		delete(live, gid)
		checkBalanced(t, c, live)
		if m := movedSlots(prev, c); m != prev.SlotsByGroup()[gid] {
			t.Fatalf("leave %d moved %d", gid, m)
		}
	}
}

func TestMoveSplitMerge(t *testing.T) {
	s := NewState()
	s.Join(1, nodes(1))
	s.Join(2, nodes(2))
	before := s.Latest()
	other := 3 - before.Owner(0) // the group not owning slot 0
	// Move a range that cuts two shards at its edges.
	c, err := s.Move(rg(100, 600), other)
	if err != nil {
		t.Fatal(err)
	}
	if c.Num != before.Num+1 || c.Validate() != nil {
		t.Fatalf("move: num %d, %v", c.Num, c.Validate())
	}
	for slot := range keyspace.NumSlots {
		want := before.Owner(uint16(slot))
		if slot >= 100 && slot < 600 {
			want = other
		}
		if got := c.Owner(uint16(slot)); got != want {
			t.Fatalf("slot %d owner %d want %d", slot, got, want)
		}
	}
	if c.exactShard(rg(0, 100)) < 0 || c.shardIndex(600) < 0 || c.Shards[c.shardIndex(600)].Range.Lo != 600 {
		t.Fatalf("edges not cut: %v", c.Shards[:5])
	}
	// Moving it again changes nothing, so no new configuration.
	if c2, _ := s.Move(rg(100, 600), other); c2.Num != c.Num {
		t.Fatal("no-op move created a configuration")
	}
	for _, tc := range []struct {
		name string
		err  error
		f    func() (Config, error)
	}{
		{"move empty", ErrBadRange, func() (Config, error) { return s.Move(rg(5, 5), 1) }},
		{"move past end", ErrBadRange, func() (Config, error) { return s.Move(rg(5, 16385), 1) }},
		{"move unknown gid", ErrUnknownGroup, func() (Config, error) { return s.Move(rg(0, 10), 3) }},
		{"split not a shard", ErrNoShard, func() (Config, error) { return s.Split(rg(0, 50), 10) }},
		{"split at edge", ErrBadSplit, func() (Config, error) { return s.Split(rg(0, 100), 0) }},
		{"split at hi", ErrBadSplit, func() (Config, error) { return s.Split(rg(0, 100), 100) }},
		{"split bad range", ErrBadRange, func() (Config, error) { return s.Split(rg(9, 3), 5) }},
		{"merge not adjacent", ErrNotAdjacent, func() (Config, error) { return s.Merge(rg(0, 100), rg(600, 768)) }},
		{"merge different groups", ErrDifferentOwner, func() (Config, error) { return s.Merge(rg(0, 100), rg(100, 256)) }},
		{"merge not shards", ErrNoShard, func() (Config, error) { return s.Merge(rg(0, 99), rg(99, 256)) }},
	} {
		if _, err := tc.f(); !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
	if s.Latest().Num != c.Num {
		t.Fatal("failed operations created configurations")
	}
	c, err = s.Split(rg(100, 256), 200)
	if err != nil || c.exactShard(rg(100, 200)) < 0 || c.exactShard(rg(200, 256)) < 0 {
		t.Fatalf("split: %v", err)
	}
	// Merge accepts either order.
	c, err = s.Merge(rg(200, 256), rg(100, 200))
	if err != nil || c.exactShard(rg(100, 256)) < 0 {
		t.Fatalf("merge: %v", err)
	}
	if c, err = s.Split(rg(100, 256), 101); err != nil {
		t.Fatal(err)
	}
	if c.exactShard(rg(100, 101)) < 0 {
		t.Fatal("one-slot shard missing")
	}
	if _, err := s.Split(rg(100, 101), 100); !errors.Is(err, ErrBadSplit) {
		t.Fatalf("split of a one-slot shard: %v", err)
	}
	// The whole history stays queryable and valid.
	for n := range int64(s.Latest().Num + 1) {
		if q := s.Query(n); q.Num != uint64(n) || q.Validate() != nil {
			t.Fatalf("config %d: %v", n, q.Validate())
		}
	}
}

func TestStateSnapshotRoundTrip(t *testing.T) {
	s := NewState()
	s.Join(1, nodes(1))
	s.Join(2, nodes(2))
	s.SetAuto(true)
	if err := s.Report(Report{Group: 1, Shards: []ShardLoad{{Range: rg(0, 256), OpsPerSec: 12.5, Bytes: 9, Keys: 3}}}); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	r := &State{}
	if err := json.Unmarshal(b, r); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, r) {
		t.Fatalf("round trip differs:\n%+v\n%+v", s, r)
	}
	if err := json.Unmarshal([]byte(`{"configs":[]}`), r); err == nil {
		t.Fatal("empty snapshot accepted")
	}
}

// TestMixedOperationsProperties interleaves Join, Leave, Move, Split and Merge at random: every
// configuration stays valid, Join and Leave always restore the slot balance, and replaying the
// operations reproduces the history exactly.
func TestMixedOperationsProperties(t *testing.T) {
	for seed := range uint64(20) {
		run := func() *State {
			rng := rand.New(rand.NewPCG(seed, 7))
			s := NewState()
			live := map[uint64]bool{}
			for range 80 {
				c := s.Latest()
				sh := c.Shards[rng.IntN(len(c.Shards))]
				var err error
				switch k := rng.IntN(6); {
				case k <= 1 || len(live) == 0:
					gid := uint64(rng.IntN(10) + 1)
					_, err = s.Join(gid, nodes(gid))
					live[gid] = true
				case k == 2 && len(live) > 1:
					ids := c.GroupIDs()
					gid := ids[rng.IntN(len(ids))]
					_, err = s.Leave(gid)
					delete(live, gid)
				case k == 3:
					ids := c.GroupIDs()
					lo := uint16(rng.IntN(keyspace.NumSlots - 1))
					hi := lo + 1 + uint16(rng.IntN(min(700, keyspace.NumSlots-int(lo))))
					_, err = s.Move(rg(lo, hi), ids[rng.IntN(len(ids))])
				case k == 4 && sh.Range.Len() > 1:
					_, err = s.Split(sh.Range, sh.Range.Lo+1+uint16(rng.IntN(sh.Range.Len()-1)))
				case k == 5:
					i := c.shardIndex(sh.Range.Lo)
					if i+1 < len(c.Shards) && c.Shards[i+1].Group == sh.Group {
						_, err = s.Merge(sh.Range, c.Shards[i+1].Range)
					}
				default:
					continue
				}
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				if err := s.Latest().Validate(); err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
			}
			return s
		}
		a, b := run(), run()
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: histories differ", seed)
		}
		// Check balance right after every Join and Leave in the history: those configurations
		// differ from their predecessor in their group set.
		for n := int64(1); n <= int64(a.Latest().Num); n++ {
			prev, cur := a.Query(n-1), a.Query(n)
			if len(prev.Groups) != len(cur.Groups) {
				live := map[uint64]bool{}
				for _, id := range cur.GroupIDs() {
					live[id] = true
				}
				checkBalanced(t, cur, live)
			}
		}
	}
}
