package client

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// shard is one replica group as the slot map lists it: its nodes, leader first. Any node of
// the group accepts any of the group's commands; pref selects the one to use and moves on when
// a node fails.
type shard struct {
	addrs []string
	pref  atomic.Uint32
}

// pick returns the node to send to.
func (s *shard) pick() string { return s.addrs[int(s.pref.Load())%len(s.addrs)] }

// avoid moves the preference away from addr after it failed.
func (s *shard) avoid(addr string) {
	cur := s.pref.Load()
	if s.addrs[int(cur)%len(s.addrs)] == addr {
		s.pref.CompareAndSwap(cur, cur+1)
	}
}

func (s *shard) has(addr string) bool { return slices.Contains(s.addrs, addr) }

// slotMap is an immutable snapshot of which shard serves each slot.
type slotMap struct {
	owner  [keyspace.NumSlots]uint16 // index+1 into shards; 0: slot not served
	shards []*shard
}

// lookup returns the shard serving slot, or nil.
func (m *slotMap) lookup(slot uint16) *shard {
	if i := m.owner[slot]; i != 0 {
		return m.shards[i-1]
	}
	return nil
}

// addrs returns every node the map names.
func (m *slotMap) addrs() []string {
	var out []string
	for _, s := range m.shards {
		for _, a := range s.addrs {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// parseSlots builds a slotMap from a CLUSTER SLOTS reply:
// [[lo, hi, [host, port, id...], [host, port, id...]...]...], bounds inclusive, master first.
// from is the address that answered, used for an empty host as Redis clients do.
func parseSlots(v resp.Value, from string) (*slotMap, error) {
	if v.Type != '*' || v.Null {
		return nil, fmt.Errorf("shoal: CLUSTER SLOTS: unexpected reply type %q", v.Type)
	}
	m := &slotMap{}
	byNodes := map[string]int{} // shard identity: its node list
	for _, e := range v.Array {
		if e.Type != '*' || len(e.Array) < 3 || e.Array[0].Type != ':' || e.Array[1].Type != ':' {
			return nil, fmt.Errorf("shoal: CLUSTER SLOTS: malformed entry")
		}
		lo, hi := e.Array[0].Int, e.Array[1].Int
		if lo < 0 || hi >= keyspace.NumSlots || lo > hi {
			return nil, fmt.Errorf("shoal: CLUSTER SLOTS: bad range %d-%d", lo, hi)
		}
		var addrs []string
		for _, n := range e.Array[2:] {
			if n.Type != '*' || len(n.Array) < 2 || n.Array[1].Type != ':' {
				return nil, fmt.Errorf("shoal: CLUSTER SLOTS: malformed node")
			}
			host := string(n.Array[0].Str)
			if host == "" || host == "?" {
				host, _, _ = net.SplitHostPort(from)
			}
			addrs = append(addrs, net.JoinHostPort(host, strconv.FormatInt(n.Array[1].Int, 10)))
		}
		id := fmt.Sprint(addrs)
		idx, ok := byNodes[id]
		if !ok {
			m.shards = append(m.shards, &shard{addrs: addrs})
			idx = len(m.shards)
			byNodes[id] = idx
		}
		for s := lo; s <= hi; s++ {
			m.owner[s] = uint16(idx)
		}
	}
	return m, nil
}
