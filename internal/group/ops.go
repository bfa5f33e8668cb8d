package group

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/table"
)

// barrier makes the reads that follow it linearizable.
func (g *Group) barrier(ctx context.Context) error {
	if err := g.r.ReadBarrier(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return nil
}

// Get returns the value of key.
func (g *Group) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	return g.GetAppend(ctx, key, nil)
}

// GetAppend appends the value of key to dst and returns it, so that a caller serving many
// reads (a client connection) can reuse one buffer instead of allocating a copy per read.
// When key is absent it returns false and the returned slice is not meaningful.
func (g *Group) GetAppend(ctx context.Context, key, dst []byte) ([]byte, bool, error) {
	return g.GetAppendSlot(ctx, key, keyspace.Slot(key), dst)
}

// GetAppendSlot is GetAppend for a caller that has computed key's slot (keyspace.Slot(key))
// already, so that a GET hashes its key once on its way through the router.
func (g *Group) GetAppendSlot(ctx context.Context, key []byte, slot uint16, dst []byte) ([]byte, bool, error) {
	v, ok, at, err := g.getAppend(ctx, key, slot, dst)
	if err != nil || at == 0 {
		return v, ok, err // the hot path: no closure, nothing expired
	}
	type found struct {
		v  []byte
		ok bool
	}
	r, err := reapingRead(ctx, g, [][]byte{key}, at, &found{dst, false}, func() (found, [][]byte, int64, error) {
		v, ok, at, err := g.getAppend(ctx, key, slot, dst)
		return found{v, ok}, expiredKey(key, at), at, err
	})
	return r.v, r.ok, err
}

// expiredKey is the list of expired keys of a one-key read that found key expired at at (0: not).
func expiredKey(key []byte, at int64) [][]byte {
	if at == 0 {
		return nil
	}
	return [][]byte{key}
}

// reapingRead finishes a read whose first attempt found the keys reap expired (the latest of
// their expiries at): it has them reaped through the log and runs attempt again, until an
// attempt finds nothing expired. A read of one key passes absent, its answer once the reap
// deleted the key (as of the reap); otherwise, or when the key was rewritten meanwhile, the read
// runs again. After maxReadReaps reaps it gives up: only a clock far ahead of the writers' keeps
// finding fresh values expired.
func reapingRead[T any](ctx context.Context, g *Group, reap [][]byte, at int64, absent *T, attempt func() (T, [][]byte, int64, error)) (T, error) {
	var zero T
	for range maxReadReaps {
		n, err := g.reap(ctx, reap, at)
		if err != nil {
			return zero, err
		}
		if absent != nil && n == 1 {
			return *absent, nil
		}
		var v T
		if v, reap, at, err = attempt(); err != nil || len(reap) == 0 {
			return v, err
		}
	}
	return zero, errKeepExpiring
}

// getAppend is one attempt of GetAppendSlot: when the value it finds has expired, it returns
// that value's expiry instead of the value.
func (g *Group) getAppend(ctx context.Context, key []byte, slot uint16, dst []byte) (v []byte, ok bool, expiredAt int64, err error) {
	if err := g.barrier(ctx); err != nil {
		return nil, false, 0, err
	}
	g.own.RLock()
	defer g.own.RUnlock()
	if err := g.checkSlot(slot); err != nil {
		return nil, false, 0, err
	}
	g.ops[slot].Add(1)
	v, ok = g.tab.Get(key, dst)
	if !ok {
		return v, false, 0, nil
	}
	val, at := unwrapValue(v[len(dst):])
	if expired(at, g.nowMillis()) {
		return nil, false, at, nil
	}
	// Moved down over the header, so that the caller's buffer keeps its capacity from read to
	// read.
	n := copy(v[len(dst):], val)
	return v[:len(dst)+n], true, 0, nil
}

// MGet returns the values of keys; found[i] tells a missing key from an empty value.
func (g *Group) MGet(ctx context.Context, keys [][]byte) ([][]byte, []bool, error) {
	type answer struct {
		vals  [][]byte
		found []bool
	}
	attempt := func() (answer, [][]byte, int64, error) {
		vals, found, reap, at, err := g.mget(ctx, keys)
		return answer{vals, found}, reap, at, err
	}
	a, reap, at, err := attempt()
	if err == nil && len(reap) > 0 {
		a, err = reapingRead(ctx, g, reap, at, nil, attempt)
	}
	return a.vals, a.found, err
}

// mget is one attempt of MGet; it returns the keys it found expired, and the latest of their
// expiries, instead of an answer.
func (g *Group) mget(ctx context.Context, keys [][]byte) (vals [][]byte, found []bool, reap [][]byte, latest int64, err error) {
	if err := g.barrier(ctx); err != nil {
		return nil, nil, nil, 0, err
	}
	g.own.RLock()
	defer g.own.RUnlock()
	if err := g.checkKeys(keys); err != nil {
		return nil, nil, nil, 0, err
	}
	g.countReads(keys)
	vals = make([][]byte, len(keys))
	found = make([]bool, len(keys))
	now := g.nowMillis()
	for i, k := range keys {
		v, ok := g.tab.Get(k, nil)
		if !ok {
			continue
		}
		val, at := unwrapValue(v)
		if expired(at, now) {
			reap, latest = append(reap, k), max(latest, at)
			continue
		}
		vals[i], found[i] = val, true
	}
	return vals, found, reap, latest, nil
}

// Exists counts the keys that exist, counting repeated keys repeatedly as Redis does.
func (g *Group) Exists(ctx context.Context, keys [][]byte) (int64, error) {
	attempt := func() (int64, [][]byte, int64, error) { return g.exists(ctx, keys) }
	n, reap, at, err := attempt()
	if err == nil && len(reap) > 0 {
		n, err = reapingRead(ctx, g, reap, at, nil, attempt)
	}
	return n, err
}

// exists is one attempt of Exists, returning like mget the keys it found expired.
func (g *Group) exists(ctx context.Context, keys [][]byte) (n int64, reap [][]byte, latest int64, err error) {
	if err := g.barrier(ctx); err != nil {
		return 0, nil, 0, err
	}
	g.own.RLock()
	defer g.own.RUnlock()
	if err := g.checkKeys(keys); err != nil {
		return 0, nil, 0, err
	}
	now := g.nowMillis()
	var buf [expiringHdr]byte
	for _, k := range keys {
		at, ok := g.peekExpiry(k, buf[:])
		if !ok {
			continue
		}
		if expired(at, now) {
			reap, latest = append(reap, k), max(latest, at)
			continue
		}
		n++
	}
	return n, reap, latest, nil
}

// ExpireTime returns when key expires, in Unix milliseconds, 0 when it never does; ok is false
// when the key does not exist (or has expired).
func (g *Group) ExpireTime(ctx context.Context, key []byte) (at int64, ok bool, err error) {
	type answer struct {
		at int64
		ok bool
	}
	attempt := func() (answer, [][]byte, int64, error) {
		at, ok, expiredAt, err := g.expireTime(ctx, key)
		return answer{at, ok}, expiredKey(key, expiredAt), expiredAt, err
	}
	a, reap, expiredAt, err := attempt()
	if err == nil && len(reap) > 0 {
		a, err = reapingRead(ctx, g, reap, expiredAt, &answer{}, attempt)
	}
	return a.at, a.ok, err
}

func (g *Group) expireTime(ctx context.Context, key []byte) (at int64, ok bool, expiredAt int64, err error) {
	if err := g.barrier(ctx); err != nil {
		return 0, false, 0, err
	}
	g.own.RLock()
	defer g.own.RUnlock()
	if err := g.checkKeys([][]byte{key}); err != nil {
		return 0, false, 0, err
	}
	var buf [expiringHdr]byte
	at, ok = g.peekExpiry(key, buf[:])
	if ok && expired(at, g.nowMillis()) {
		return 0, false, at, nil
	}
	return at, ok, 0, nil
}

// Expire sets or removes key's expiry (EXPIRE and its kin, PERSIST) and reports whether it did:
// false when the key does not exist, one of its conditions failed, or PERSIST found no expiry.
func (g *Group) Expire(ctx context.Context, a ExpireArgs) (bool, error) {
	res, err := g.propose(ctx, expireCommand(a, 0))
	return res.n == 1, err
}

// GetEx returns key's value and sets or removes its expiry in the same step (GETEX with an
// option): At, or Persist, as for Expire; the conditions do not apply. ok is false when the key
// does not exist (nothing changes then).
func (g *Group) GetEx(ctx context.Context, a ExpireArgs) (val []byte, ok bool, err error) {
	a.NX, a.XX, a.GT, a.LT = false, false, false, false
	res, err := g.propose(ctx, expireCommand(a, expGetValue))
	return res.val, res.ok, err
}

// expireCommand is the opExpire of a, with more flags.
func expireCommand(a ExpireArgs, flags byte) *command {
	c := &command{op: opExpire, delta: a.At, flags: flags, args: [][]byte{a.Key}}
	if c.delta <= 0 {
		c.delta = -1 // in the command 0 is no expiry; any time up to 1970 is as past as -1
	}
	for _, f := range []struct {
		on   bool
		flag byte
	}{{a.NX, expNX}, {a.XX, expXX}, {a.GT, expGT}, {a.LT, expLT}, {a.Persist, expPersist}} {
		if f.on {
			c.flags |= f.flag
		}
	}
	return c
}

// Set writes a value with SET's NX/XX/GET options.
func (g *Group) Set(ctx context.Context, a SetArgs) (SetResult, error) {
	c := setCommand(a)
	res, err := g.propose(ctx, &c)
	if err != nil {
		return SetResult{}, err
	}
	return SetResult{Done: res.ok, Old: res.val, HadOld: res.n == 1}, nil
}

// Del deletes keys and returns how many existed.
func (g *Group) Del(ctx context.Context, keys [][]byte) (int64, error) {
	res, err := g.propose(ctx, &command{op: opDel, args: keys})
	return res.n, err
}

// GetDel deletes key and returns the value it held; ok is false when there was none.
func (g *Group) GetDel(ctx context.Context, key []byte) (val []byte, ok bool, err error) {
	res, err := g.propose(ctx, &command{op: opDel, flags: delGet, args: [][]byte{key}})
	return res.val, res.n > 0, err
}

// Append appends val to key's value (creating it) and returns the new length.
func (g *Group) Append(ctx context.Context, key, val []byte) (int64, error) {
	res, err := g.propose(ctx, &command{op: opAppend, args: [][]byte{key, val}})
	return res.n, err
}

// IncrBy adds delta to the integer stored at key (0 when missing) and returns the new value.
func (g *Group) IncrBy(ctx context.Context, key []byte, delta int64) (int64, error) {
	res, err := g.propose(ctx, &command{op: opIncrBy, delta: delta, args: [][]byte{key}})
	return res.n, err
}

// MSet sets the alternating key/value pairs atomically.
func (g *Group) MSet(ctx context.Context, kvs [][]byte) error {
	_, err := g.propose(ctx, &command{op: opMSet, args: kvs})
	return err
}

// Scan returns a page of keys matching the glob pattern (all keys when match is empty) and the
// cursor of the next page; cursor 0 starts and ends a walk.
func (g *Group) Scan(ctx context.Context, cursor uint64, match []byte, count int) (uint64, [][]byte, error) {
	return g.ScanRange(ctx, keyspace.All(), cursor, match, count)
}

// ScanRange is Scan restricted to the slots of r: it returns 0 when it reaches r.Hi. The expired
// keys it meets are left out and reaped, as Redis's SCAN does: what one read saw expire, none
// after it may see again.
func (g *Group) ScanRange(ctx context.Context, r keyspace.Range, cursor uint64, match []byte, count int) (uint64, [][]byte, error) {
	next, keys, reap, latest, err := g.scanRange(ctx, r, cursor, match, count)
	if err == nil && len(reap) > 0 {
		_, err = g.reap(ctx, reap, latest)
	}
	if err != nil {
		return 0, nil, err
	}
	return next, keys, nil
}

func (g *Group) scanRange(ctx context.Context, r keyspace.Range, cursor uint64, match []byte, count int) (next uint64, keys, reap [][]byte, latest int64, err error) {
	if err := g.barrier(ctx); err != nil {
		return 0, nil, nil, 0, err
	}
	g.own.RLock()
	defer g.own.RUnlock()
	now := g.nowMillis()
	var buf [expiringHdr]byte
	next = g.tab.ScanRange(r, cursor, count, func(k []byte) {
		if !g.cs.slots[keyspace.Slot(k)].serves() {
			return // frozen data of a slot handed off, or not ours
		}
		at, ok := g.peekExpiry(k, buf[:])
		if !ok {
			return
		}
		if expired(at, now) {
			reap, latest = append(reap, bytes.Clone(k)), max(latest, at)
			return
		}
		if len(match) == 0 || keyspace.Match(match, k) {
			keys = append(keys, append([]byte(nil), k...))
		}
	})
	return next, keys, reap, latest, nil
}

// CompareAndSwap sets key to val if its current value equals old (or, when oldPresent is false,
// if the key is absent), and reports whether it did.
func (g *Group) CompareAndSwap(ctx context.Context, key, old []byte, oldPresent bool, val []byte) (bool, error) {
	c := command{op: opCAS, args: [][]byte{key, old, val}}
	if !oldPresent {
		c.flags |= setNX
	}
	res, err := g.propose(ctx, &c)
	return res.ok, err
}

// DBSize returns the number of keys in the group.
func (g *Group) DBSize(ctx context.Context) (int64, error) {
	if err := g.barrier(ctx); err != nil {
		return 0, err
	}
	return g.servedLen(), nil
}

// servedLen counts the pairs of the slots the group serves (not the frozen copies of slots it
// handed off).
func (g *Group) servedLen() int64 {
	g.own.RLock()
	defer g.own.RUnlock()
	var n int64
	all := true
	for s := range keyspace.NumSlots {
		if g.cs.slots[s].serves() {
			n += int64(g.tab.SlotLen(uint16(s)))
		} else {
			all = false
		}
	}
	if all {
		return int64(g.tab.Len())
	}
	return n
}

// Info returns the INFO section lines the group owns.
func (g *Group) Info(section string) string {
	var b strings.Builder
	st := g.r.Status()
	switch section {
	case "replication":
		role := "slave"
		if st.Leader == st.ID {
			role = "master"
		}
		fmt.Fprintf(&b, "role:%s\r\nconnected_slaves:%d\r\n", role, max(len(st.Voters)-1, 0))
	case "raft":
		fmt.Fprintf(&b, "raft_group:%d\r\nraft_id:%d\r\nraft_state:%s\r\nraft_leader:%d\r\nraft_term:%d\r\nraft_commit_index:%d\r\nraft_applied_index:%d\r\nraft_snapshot_index:%d\r\nraft_voters:%d\r\nraft_commit_notices_dropped:%d\r\n",
			g.cfg.GroupID, st.ID, st.State, st.Leader, st.Term, st.Commit, st.Applied, st.SnapshotIndex, len(st.Voters), st.NoticesDropped)
	case "keyspace":
		if n := g.tab.Len(); n > 0 {
			fmt.Fprintf(&b, "db0:keys=%d,expires=%d,avg_ttl=0\r\n", n, g.expires.Load())
		}
	case "memory":
		writeMemory(&b, g.tab.Stats())
	}
	return b.String()
}

func writeMemory(b *strings.Builder, s table.Stats) {
	fmt.Fprintf(b, "table_pairs:%d\r\ntable_key_bytes:%d\r\ntable_value_bytes:%d\r\ntable_index_bytes:%d\r\ntable_slab_bytes:%d\r\ntable_overhead_per_pair:%.2f\r\n",
		s.Pairs, s.KeyBytes, s.ValueBytes, s.IndexBytes, s.SlabBytes, s.OverheadPerPair)
}

// DefaultTimeout bounds a request that arrives without a deadline.
const DefaultTimeout = 5 * time.Second
