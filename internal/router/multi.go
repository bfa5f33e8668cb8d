package router

import (
	"context"
	"strconv"
	"sync"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// part is the subset of a multi-key command's keys that one owner serves: indexes into the
// command's key list.
type part struct {
	local bool
	addr  string
	idx   []int
}

// split groups key indexes by the owner Locate names for their slots.
func (r *Router) split(keys [][]byte, idx []int) []part {
	var parts []part
	for _, i := range idx {
		local, addr := r.Locate(keyspace.Slot(keys[i]))
		found := false
		for p := range parts {
			if parts[p].local == local && parts[p].addr == addr {
				parts[p].idx = append(parts[p].idx, i)
				found = true
				break
			}
		}
		if !found {
			parts = append(parts, part{local: local, addr: addr, idx: []int{i}})
		}
	}
	return parts
}

// fanOut runs run once per owner of keys, in parallel, each part atomic on its own group. A part
// refused because its keys moved is split again by the refreshed map and retried.
func (r *Router) fanOut(ctx context.Context, keys [][]byte, run func(ctx context.Context, p part, sub [][]byte) error) error {
	all := make([]int, len(keys))
	for i := range all {
		all[i] = i
	}
	parts := r.split(keys, all)
	if len(parts) == 1 {
		return r.runPart(ctx, keys, parts[0], run)
	}
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { errs[i] = r.runPart(ctx, keys, p, run) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// runPart runs one part through route, using its first key's slot to pick the owner; if the
// owner refuses, route retries after the map is refreshed and the part is re-split then.
func (r *Router) runPart(ctx context.Context, keys [][]byte, p part, run func(ctx context.Context, p part, sub [][]byte) error) error {
	sub := make([][]byte, len(p.idx))
	for j, i := range p.idx {
		sub[j] = keys[i]
	}
	first := true
	return r.route(ctx, keyspace.Slot(sub[0]), func() error {
		return r.runResplit(ctx, keys, p, sub, &first, true, "", run)
	}, func(addr string) error {
		return r.runResplit(ctx, keys, p, sub, &first, false, addr, run)
	})
}

// runResplit runs the part as routed the first time; on a retry the keys may have spread over
// several owners, so they are split and fanned out again.
func (r *Router) runResplit(ctx context.Context, keys [][]byte, p part, sub [][]byte, first *bool, local bool, addr string, run func(ctx context.Context, p part, sub [][]byte) error) error {
	if *first {
		*first = false
		return run(ctx, part{local: local, addr: addr, idx: p.idx}, sub)
	}
	parts := r.split(keys, p.idx)
	if len(parts) == 1 {
		return run(ctx, parts[0], sub)
	}
	for _, q := range parts {
		if err := r.runPart(ctx, keys, q, run); err != nil {
			return err
		}
	}
	return nil
}

// MGet implements server.Backend, fanning out over groups.
func (r *Router) MGet(ctx context.Context, keys [][]byte) ([][]byte, []bool, error) {
	vals := make([][]byte, len(keys))
	found := make([]bool, len(keys))
	err := r.fanOut(ctx, keys, func(ctx context.Context, p part, sub [][]byte) error {
		if p.local {
			v, f, err := r.cfg.Local.MGet(ctx, sub)
			if err != nil {
				return err
			}
			for j, i := range p.idx {
				vals[i], found[i] = v[j], f[j]
			}
			return nil
		}
		v, err := r.forward(ctx, p.addr, append([][]byte{[]byte("MGET")}, sub...)...)
		if err != nil {
			return err
		}
		for j, i := range p.idx {
			if j < len(v.Array) && !v.Array[j].Null {
				vals[i], found[i] = v.Array[j].Str, true
			}
		}
		return nil
	})
	return vals, found, err
}

// countKeys fans a counting command (EXISTS, DEL) out and sums the counts.
func (r *Router) countKeys(ctx context.Context, name string, keys [][]byte, local func(ctx context.Context, sub [][]byte) (int64, error)) (int64, error) {
	var mu sync.Mutex
	var total int64
	err := r.fanOut(ctx, keys, func(ctx context.Context, p part, sub [][]byte) error {
		var n int64
		if p.local {
			var err error
			if n, err = local(ctx, sub); err != nil {
				return err
			}
		} else {
			v, err := r.forward(ctx, p.addr, append([][]byte{[]byte(name)}, sub...)...)
			if err != nil {
				return err
			}
			n = v.Int
		}
		mu.Lock()
		total += n
		mu.Unlock()
		return nil
	})
	return total, err
}

// Exists implements server.Backend.
func (r *Router) Exists(ctx context.Context, keys [][]byte) (int64, error) {
	return r.countKeys(ctx, "EXISTS", keys, r.cfg.Local.Exists)
}

// Del implements server.Backend.
func (r *Router) Del(ctx context.Context, keys [][]byte) (int64, error) {
	return r.countKeys(ctx, "DEL", keys, r.cfg.Local.Del)
}

// MSet implements server.Backend: atomic within each group, not across groups.
func (r *Router) MSet(ctx context.Context, kvs [][]byte) error {
	keys := make([][]byte, 0, len(kvs)/2)
	for i := 0; i < len(kvs); i += 2 {
		keys = append(keys, kvs[i])
	}
	return r.fanOut(ctx, keys, func(ctx context.Context, p part, _ [][]byte) error {
		sub := make([][]byte, 0, 2*len(p.idx)+1)
		if !p.local {
			sub = append(sub, []byte("MSET"))
		}
		for _, i := range p.idx {
			sub = append(sub, kvs[2*i], kvs[2*i+1])
		}
		if p.local {
			return r.cfg.Local.MSet(ctx, sub)
		}
		_, err := r.forward(ctx, p.addr, sub...)
		return err
	})
}

// Scan implements server.Backend with a cluster-wide cursor: slot<<32 | position within the
// slot. Each page is served by the owner of the cursor's slot, which stops at the end of its run
// of slots, so the walk survives hand-offs: a slot is scanned wherever it lives when the cursor
// reaches it.
func (r *Router) Scan(ctx context.Context, cursor uint64, match []byte, count int) (next uint64, keys [][]byte, err error) {
	slot := uint16(cursor >> 32)
	if int(slot) >= keyspace.NumSlots {
		return 0, nil, nil
	}
	err = r.route(ctx, slot, func() error {
		if !r.cfg.Local.Serves(slot) {
			return group.ErrMoving // ours in a newer configuration, not arrived yet
		}
		end := r.runEnd(slot)
		var err error
		next, keys, err = r.cfg.Local.ScanRange(ctx, keyspace.Range{Lo: slot, Hi: end}, cursor, match, count)
		if err == nil && next == 0 && int(end) < keyspace.NumSlots {
			next = uint64(end) << 32
		}
		return err
	}, func(addr string) error {
		args := [][]byte{[]byte("SCAN"), strconv.AppendUint(nil, cursor, 10)}
		if len(match) > 0 {
			args = append(args, []byte("MATCH"), match)
		}
		args = append(args, []byte("COUNT"), strconv.AppendInt(nil, int64(count), 10))
		v, err := r.forward(ctx, addr, args...)
		if err != nil {
			return err
		}
		if len(v.Array) != 2 {
			return RemoteError("ERR malformed SCAN reply")
		}
		next, err = strconv.ParseUint(string(v.Array[0].Str), 10, 64)
		keys = keys[:0]
		for _, k := range v.Array[1].Array {
			keys = append(keys, k.Str)
		}
		return err
	})
	return next, keys, err
}

// runEnd returns the end of the run of slots starting at slot that the local group serves.
func (r *Router) runEnd(slot uint16) uint16 {
	s := int(slot)
	for s < keyspace.NumSlots && r.cfg.Local.Serves(uint16(s)) {
		s++
	}
	return uint16(s)
}
