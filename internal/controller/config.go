package controller

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// InitialShards is how many equal shards the keyspace is cut into when the first group joins.
// Balancing moves whole shards, so the shard size is the granularity of balance: 64 shards of
// 256 slots let up to 64 groups each own a shard and keep any two groups within 256 slots (1.6%
// of the keyspace) of each other, while keeping configurations small (64 entries) and a single
// migration a modest fraction of a group's data. Hot shards are cut further by load-based
// splitting, and an operator can Split or Merge explicitly.
const InitialShards = 64

// Errors returned by the configuration operations. They are wrapped with details; test with
// errors.Is.
var (
	ErrBadRange       = errors.New("bad slot range")
	ErrUnknownGroup   = errors.New("unknown group")
	ErrBadGroup       = errors.New("bad group")
	ErrNoShard        = errors.New("no such shard")
	ErrBadSplit       = errors.New("bad split point")
	ErrNotAdjacent    = errors.New("shards are not adjacent")
	ErrDifferentOwner = errors.New("shards belong to different groups")
	ErrBadReport      = errors.New("bad load report")
	ErrInvalidConfig  = errors.New("invalid configuration")
)

// Node is one replica of a group as clients see it.
type Node struct {
	// ID is the replica's raft id inside its group (positive, unique in the group).
	ID uint64 `json:"id"`
	// Addr is the replica's client (RESP) address, host:port.
	Addr string `json:"addr"`
}

// Group is a replica group: the nodes that replicate the shards the group owns.
type Group struct {
	ID    uint64 `json:"id"`
	Nodes []Node `json:"nodes"` // sorted by ID
}

// Shard is a slot range and the group that owns it. Group 0 means unassigned, which happens only
// while no group exists.
type Shard struct {
	Range keyspace.Range `json:"range"`
	Group uint64         `json:"group"`
}

// Config is one numbered configuration.
//
// Invariants (checked by Validate): Shards are sorted by Range.Lo, non-empty, and cover
// [0,16384) exactly once; every shard's Group is a key of Groups, or 0 when Groups is empty; each
// Groups entry's ID equals its key and lists at least one node with unique positive ids and
// non-empty addresses.
type Config struct {
	Num    uint64           `json:"num"`
	Shards []Shard          `json:"shards"`
	Groups map[uint64]Group `json:"groups"`
}

// InitialConfig returns configuration 0: no groups, one unassigned shard holding every slot.
func InitialConfig() Config {
	return Config{Shards: []Shard{{Range: keyspace.All()}}, Groups: map[uint64]Group{}}
}

// Owner returns the group owning slot (0 when unassigned or out of range).
func (c Config) Owner(slot uint16) uint64 {
	i := c.shardIndex(slot)
	if i < 0 {
		return 0
	}
	return c.Shards[i].Group
}

// shardIndex returns the index of the shard holding slot, or -1.
func (c Config) shardIndex(slot uint16) int {
	i := sort.Search(len(c.Shards), func(k int) bool { return c.Shards[k].Range.Hi > slot })
	if i < len(c.Shards) && c.Shards[i].Range.Contains(slot) {
		return i
	}
	return -1
}

// exactShard returns the index of the shard whose range is exactly r, or -1.
func (c Config) exactShard(r keyspace.Range) int {
	if r.Empty() {
		return -1
	}
	i := c.shardIndex(r.Lo)
	if i >= 0 && c.Shards[i].Range == r {
		return i
	}
	return -1
}

// Clone returns a deep copy of c, so a caller may modify it without touching the history.
func (c Config) Clone() Config {
	out := Config{Num: c.Num, Shards: slices.Clone(c.Shards), Groups: make(map[uint64]Group, len(c.Groups))}
	for id, g := range c.Groups {
		out.Groups[id] = Group{ID: g.ID, Nodes: slices.Clone(g.Nodes)}
	}
	return out
}

// GroupIDs returns the ids of the configuration's groups in increasing order. Every decision the
// controller makes walks groups in this order, never in map order, so that it is deterministic.
func (c Config) GroupIDs() []uint64 {
	ids := make([]uint64, 0, len(c.Groups))
	for id := range c.Groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// SlotsByGroup returns how many slots each group owns (groups owning none included, with 0).
func (c Config) SlotsByGroup() map[uint64]int {
	out := make(map[uint64]int, len(c.Groups))
	for id := range c.Groups {
		out[id] = 0
	}
	for _, s := range c.Shards {
		if s.Group != 0 {
			out[s.Group] += s.Range.Len()
		}
	}
	return out
}

// MaxShardLen returns the size in slots of the largest shard.
func (c Config) MaxShardLen() int {
	m := 0
	for _, s := range c.Shards {
		m = max(m, s.Range.Len())
	}
	return m
}

// Validate checks the invariants documented on Config.
func (c Config) Validate() error {
	for id, g := range c.Groups {
		if err := validateGroup(g); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if g.ID != id {
			return fmt.Errorf("%w: group %d stored under id %d", ErrInvalidConfig, g.ID, id)
		}
	}
	next := uint16(0)
	for i, s := range c.Shards {
		if s.Range.Lo != next {
			return fmt.Errorf("%w: shard %d %v does not start at slot %d", ErrInvalidConfig, i, s.Range, next)
		}
		if s.Range.Empty() || !s.Range.Valid() {
			return fmt.Errorf("%w: shard %d %v is empty or out of bounds", ErrInvalidConfig, i, s.Range)
		}
		if s.Group == 0 {
			if len(c.Groups) > 0 {
				return fmt.Errorf("%w: shard %v unassigned although groups exist", ErrInvalidConfig, s.Range)
			}
		} else if _, ok := c.Groups[s.Group]; !ok {
			return fmt.Errorf("%w: shard %v owned by unknown group %d", ErrInvalidConfig, s.Range, s.Group)
		}
		next = s.Range.Hi
	}
	if next != keyspace.NumSlots {
		return fmt.Errorf("%w: shards end at slot %d, not %d", ErrInvalidConfig, next, keyspace.NumSlots)
	}
	return nil
}

// validateGroup checks a group's id and node list.
func validateGroup(g Group) error {
	if g.ID == 0 {
		return fmt.Errorf("%w: group id must be positive", ErrBadGroup)
	}
	if len(g.Nodes) == 0 {
		return fmt.Errorf("%w: group %d has no nodes", ErrBadGroup, g.ID)
	}
	seen := make(map[uint64]bool, len(g.Nodes))
	for _, n := range g.Nodes {
		if n.ID == 0 || n.Addr == "" {
			return fmt.Errorf("%w: group %d: node %d=%q needs a positive id and an address", ErrBadGroup, g.ID, n.ID, n.Addr)
		}
		if seen[n.ID] {
			return fmt.Errorf("%w: group %d lists node %d twice", ErrBadGroup, g.ID, n.ID)
		}
		seen[n.ID] = true
	}
	return nil
}

// sameLayout reports whether two configurations have the same shards, owners and groups (their
// numbers aside): an operation that changes nothing does not create a new configuration.
func sameLayout(a, b *Config) bool {
	if !slices.Equal(a.Shards, b.Shards) || len(a.Groups) != len(b.Groups) {
		return false
	}
	for id, g := range a.Groups {
		h, ok := b.Groups[id]
		if !ok || !slices.Equal(g.Nodes, h.Nodes) {
			return false
		}
	}
	return true
}

// splitShard cuts shard i at slot at (strictly inside it); both halves keep the owner.
func splitShard(c *Config, i int, at uint16) {
	s := c.Shards[i]
	lo, hi := s.Range.Split(at)
	c.Shards = slices.Replace(c.Shards, i, i+1, Shard{Range: lo, Group: s.Group}, Shard{Range: hi, Group: s.Group})
}

// cutAt makes slot at a shard boundary, splitting the shard that holds it if needed.
func cutAt(c *Config, at uint16) {
	if at == 0 || at >= keyspace.NumSlots {
		return
	}
	if i := c.shardIndex(at); i >= 0 && c.Shards[i].Range.Lo != at {
		splitShard(c, i, at)
	}
}
