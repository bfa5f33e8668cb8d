package group

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Every value in the table carries a header: valPlain and the value, or valExpiring, the expiry
// (Unix milliseconds, u64 little-endian) and the value. One byte per pair is what a key without
// expiry pays; keeping the expiry in the value's own record means the lock-free read sees value
// and expiry together, and snapshots, hand-offs and the snapshot job's copies carry expiries
// without knowing of them.
const (
	valPlain    = 0
	valExpiring = 1
	expiringHdr = 1 + 8 // the longest header
)

// wrapValue appends the stored form of val, expiring at at (0: never), to dst.
func wrapValue(dst, val []byte, at int64) []byte {
	if at == 0 {
		dst = append(dst, valPlain)
	} else {
		dst = append(dst, valExpiring)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(at))
	}
	return append(dst, val...)
}

// unwrapValue splits a stored value into the value and its expiry (0: none). v may be only a
// prefix of the stored value (Table.Peek). A malformed header, which only a damaged snapshot
// could bring, reads as a value without expiry.
func unwrapValue(v []byte) (val []byte, at int64) {
	if len(v) == 0 {
		return v, 0
	}
	if v[0] == valExpiring && len(v) >= expiringHdr {
		return v[expiringHdr:], int64(binary.LittleEndian.Uint64(v[1:expiringHdr]))
	}
	return v[1:], 0
}

// headerLen is the length of the header of a stored value expiring at at.
func headerLen(at int64) int {
	if at == 0 {
		return 1
	}
	return expiringHdr
}

// expired reports whether a value expiring at at (0: never) has expired at time now.
func expired(at, now int64) bool { return at != 0 && at <= now }

// nowMillis is the clock writes are stamped with and reads judge expiry by.
func (g *Group) nowMillis() int64 {
	if g.cfg.Clock != nil {
		return g.cfg.Clock().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// Expiry is decided through the log, so that it is linearizable whatever the replicas' clocks:
// a write judges the values it touches by its command's time (at, the proposer's clock) and
// deletes those that have expired, and a read that finds an expired value has a reap command
// delete it (at the read's time or later) and reads again. Whatever any operation observes as
// expired is thereby gone for every later one; a value is never seen to come back.

// current returns key's value and expiry at time now (the applying command's at), deleting it
// when it has expired. The value is a fresh copy: results keep it.
func (g *Group) current(key []byte, now int64) (val []byte, at int64, ok bool) {
	v, ok := g.tab.Get(key, nil)
	if !ok {
		return nil, 0, false
	}
	val, at = unwrapValue(v)
	if expired(at, now) {
		g.remove(key, at)
		return nil, 0, false
	}
	return val, at, true
}

// liveExpiry is current for a caller that needs only the expiry: it copies the header alone.
func (g *Group) liveExpiry(key []byte, now int64) (at int64, ok bool) {
	at, ok = g.peekExpiry(key, g.hdr[:])
	if ok && expired(at, now) {
		g.remove(key, at)
		return 0, false
	}
	return at, ok
}

// remove deletes key, whose value expires at at (0: never), and reports whether it existed.
func (g *Group) remove(key []byte, at int64) bool {
	if !g.tab.Delete(key) {
		return false
	}
	if at != 0 {
		g.expires.Add(-1)
	}
	return true
}

// countExpiring counts the pairs of slot whose values have an expiry, for the bulk changes
// (hand-offs) that bypass store and remove.
func (g *Group) countExpiring(slot uint16) (n int64) {
	g.tab.Range(keyspace.SlotRange(slot), func(_, v []byte) bool {
		if len(v) > 0 && v[0] == valExpiring {
			n++
		}
		return true
	})
	return n
}

// peekExpiry returns key's expiry (0: none) without copying its value, using buf (at least
// expiringHdr long) as scratch space.
func (g *Group) peekExpiry(key []byte, buf []byte) (at int64, ok bool) {
	h, ok := g.tab.Peek(key, buf[:0], expiringHdr)
	if !ok {
		return 0, false
	}
	_, at = unwrapValue(h)
	return at, true
}

// store writes val under key expiring at at, or deletes key if that is not after now (SET or
// EXPIRE with a time already past). The stored form is built in a buffer reused from write to
// write (the apply path is one goroutine).
func (g *Group) store(key, val []byte, at, now int64) {
	var slot uint16
	var old int64
	if at != 0 || g.marked.Load() != 0 { // otherwise no value anywhere has an expiry
		slot = keyspace.Slot(key)
		if g.expiring[slot].Load() != 0 { // otherwise none of the slot's has
			old, _ = g.peekExpiry(key, g.hdr[:])
		}
	}
	if expired(at, now) {
		g.remove(key, old)
		return
	}
	if at != 0 {
		g.noteExpiring(slot)
	}
	switch {
	case old == 0 && at != 0:
		g.expires.Add(1)
	case old != 0 && at == 0:
		g.expires.Add(-1)
	}
	g.wbuf = wrapValue(g.wbuf[:0], val, at)
	g.tab.Set(key, g.wbuf)
	if cap(g.wbuf) > 64<<10 {
		g.wbuf = nil // one large value must not pin its size for good
	}
}

// executeExpire applies opExpire.
func (g *Group) executeExpire(c *command) result {
	if len(c.args) != 1 {
		return result{err: errCorrupt}
	}
	key := c.args[0]
	val, old, ok := g.current(key, c.at)
	if !ok {
		return result{}
	}
	var res result
	if c.flags&expGetValue != 0 { // GETEX: the value, whatever becomes of its expiry
		res.val, res.ok = val, true
	}
	f, at := c.flags, c.delta
	if f&expPersist != 0 {
		if old == 0 {
			return res
		}
		g.store(key, val, 0, c.at)
		res.n = 1
		return res
	}
	// A key without expiry counts as expiring never for GT and LT, as in Redis.
	if f&expNX != 0 && old != 0 || f&expXX != 0 && old == 0 ||
		f&expGT != 0 && (old == 0 || at <= old) || f&expLT != 0 && old != 0 && at >= old {
		return res
	}
	g.store(key, val, at, c.at)
	res.n = 1
	return res
}

// executeReap applies opReap: it deletes those of its keys that have expired by its time.
func (g *Group) executeReap(c *command) result {
	var n int64
	for _, k := range c.args {
		if at, ok := g.peekExpiry(k, g.hdr[:]); ok && expired(at, c.at) {
			g.remove(k, at)
			n++
		}
	}
	return result{n: n}
}

// reap has the keys a read found expired at (the latest of their expiries) deleted through the
// log, so that the read, repeated, finds them gone; it returns how many it deleted (those found
// rewritten since are not).
func (g *Group) reap(ctx context.Context, keys [][]byte, at int64) (int64, error) {
	res, err := g.propose(ctx, &command{op: opReap, at: max(at, g.nowMillis()), args: keys})
	if err == nil {
		err = res.err
	}
	return res.n, err
}

// maxReadReaps bounds how often a read of several keys reaps and reads again: each time, some
// were rewritten with values already expired by this replica's clock, which only a clock far
// ahead of the writers' keeps doing.
const maxReadReaps = 8

// errKeepExpiring is a read of several keys that gave up after maxReadReaps.
var errKeepExpiring = errors.New("group: values keep expiring as they are read (is this replica's clock ahead?)")

// Sweep reaps expired keys that no read or write has met, so that their memory comes back: it
// looks at about budget keys from where the previous call stopped, walking the slots that may
// hold expiring values in turn, and has those it finds expired deleted through the log, one reap
// per slot (a slot handed off meanwhile fails its own reap, not the others). The owner calls it
// periodically on the leader with a deadline, never concurrently with itself; it returns how
// many keys it reaped, and the first error.
func (g *Group) Sweep(ctx context.Context, budget int) (int, error) {
	var ps []pending
	var first error
	for _, b := range g.sweepScan(budget) {
		p, err := g.start(ctx, &command{op: opReap, at: max(b.latest, g.nowMillis()), args: b.keys})
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		ps = append(ps, p)
	}
	n := 0
	for _, p := range ps {
		res, err := p.wait(ctx)
		if err == nil {
			err = res.err
		}
		if err != nil {
			first = cmp.Or(first, err)
			continue
		}
		n += int(res.n)
	}
	return n, first
}

// maxReapBatch bounds the keys of one reap command the sweep proposes.
const maxReapBatch = 512

// reapBatch is a reap the sweep proposes: expired keys of one slot, and the latest of their
// expiries.
type reapBatch struct {
	keys   [][]byte
	latest int64
}

// sweepState is where Sweep is in its walk; only Sweep touches it.
type sweepState struct {
	slot    int    // the slot being walked
	pos     uint64 // table cursor within it; 0 at its start
	gen     uint64 // the slot's expiring generation when its walk started
	expires bool   // whether this walk of the slot met a value with an expiry
}

// sweepScan collects the expired keys of Sweep's next budget keys, in batches of one slot.
func (g *Group) sweepScan(budget int) (batches []reapBatch) {
	if g.marked.Load() == 0 && g.sweep.pos == 0 {
		return nil // no value with an expiry anywhere: the common case costs nothing
	}
	now := g.nowMillis()
	w := &g.sweep
	var buf [expiringHdr]byte
	g.own.RLock()
	defer g.own.RUnlock()
	seen := 0
	for skipped := 0; seen < budget && skipped < keyspace.NumSlots; {
		s := w.slot
		if w.pos == 0 {
			w.gen, w.expires = g.expiring[s].Load(), false
			if w.gen == 0 || !g.cs.slots[s].serves() {
				w.slot = (s + 1) % keyspace.NumSlots
				skipped++
				continue
			}
		}
		var b *reapBatch
		w.pos = g.tab.ScanRange(keyspace.SlotRange(uint16(s)), w.pos, budget-seen, func(k []byte) {
			seen++
			at, ok := g.peekExpiry(k, buf[:])
			if !ok || at == 0 {
				return
			}
			w.expires = true
			if !expired(at, now) {
				return
			}
			if b == nil || len(b.keys) == maxReapBatch {
				batches = append(batches, reapBatch{})
				b = &batches[len(batches)-1]
			}
			b.keys, b.latest = append(b.keys, bytes.Clone(k)), max(b.latest, at)
		})
		if w.pos == 0 {
			if !w.expires {
				// Nothing here expires: skip the slot until a write gives it an expiring
				// value again (which changes the generation, so this cannot lose one).
				if g.expiring[s].CompareAndSwap(w.gen, 0) {
					g.marked.Add(-1)
				}
			}
			w.slot = (s + 1) % keyspace.NumSlots
		}
	}
	return batches
}

// noteExpiring records that slot may hold a value with an expiry, for Sweep.
func (g *Group) noteExpiring(slot uint16) {
	if g.expiring[slot].Add(1) == 1 {
		g.marked.Add(1)
	}
}
