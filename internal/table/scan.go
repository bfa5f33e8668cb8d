package table

import (
	"math/bits"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Scan calls fn for some keys and returns the cursor to continue from; cursor 0 starts a scan
// and a returned 0 ends it. Every key present for the whole scan is returned at least once,
// even while slots grow or shrink; keys added or removed meanwhile may or may not be returned,
// and a key may be returned more than once. count is a hint (Redis COUNT): a call returns
// about count keys, more when a bucket holds several. fn runs without any lock held; key is
// valid only during the call.
//
// The cursor is slot<<32 | position, where position walks the slot's index groups in
// reverse-binary order (Redis's dictScan), so a doubling or halving index never makes the
// cursor skip a group it has not visited.
func (t *Table) Scan(cursor uint64, count int, fn func(key []byte)) (next uint64) {
	return t.ScanRange(keyspace.All(), cursor, count, fn)
}

// ScanRange is Scan restricted to the slots of r. A cursor outside r starts at r's first slot.
func (t *Table) ScanRange(r keyspace.Range, cursor uint64, count int, fn func(key []byte)) (next uint64) {
	lo, hi := clampRange(r)
	slot, pos := int(cursor>>32), uint32(cursor)
	if slot < lo {
		slot, pos = lo, 0
	}
	if slot >= hi {
		return 0
	}
	if count <= 0 {
		count = 10
	}
	var buf []byte
	var ends []int
	emitted := 0
	for ; slot < hi; slot, pos = slot+1, 0 {
		if emitted >= count {
			return uint64(slot) << 32
		}
		s := t.reader(uint16(slot))
		if s == nil {
			continue
		}
		var done bool
		s.mu.RLock()
		pos, done, buf, ends = s.scan(pos, count-emitted, buf[:0], ends[:0])
		s.mu.RUnlock()
		start := 0
		for _, e := range ends {
			fn(buf[start:e:e])
			start = e
		}
		emitted += len(ends)
		if !done {
			return uint64(slot)<<32 | uint64(pos)
		}
	}
	return 0
}

// scan appends to buf (ending offsets in ends) the keys of the index groups visited from
// cursor position v, until about want keys were collected. It returns the next position, or
// done when the slot's cursor wrapped to 0.
func (s *slotTable) scan(v uint32, want int, buf []byte, ends []int) (uint32, bool, []byte, []int) {
	if len(s.idx) == 0 {
		return 0, true, buf, ends
	}
	mask := uint32(s.idx.groups() - 1)
	for visits := 0; ; visits++ {
		buf, ends = s.collectHome(uint64(v&mask), buf, ends)
		// Increment the reversed cursor: bits above mask are set so the carry runs through
		// them, and the result leaves the lower bits in reverse-binary order.
		v |= ^mask
		v = bits.Reverse32(bits.Reverse32(v) + 1)
		if v == 0 {
			return 0, true, buf, ends
		}
		if len(ends) >= want || visits >= 10*want {
			return v, false, buf, ends
		}
	}
}

// collectHome appends the keys whose home group (the first of their probe sequence) is g.
// They lie on g's probe sequence up to the first group with an empty entry: inserts stop at
// the first group with a free entry, and a group without empty entries never regains one
// except through a rebuild.
func (s *slotTable) collectHome(g uint64, buf []byte, ends []int) ([]byte, []int) {
	x := s.idx
	gmask := uint64(x.groups() - 1)
	cur := g
	for i := uint64(1); ; i++ {
		lo, hi := x.ctrl(cur)
		for m := matchFull(lo, hi); m != 0; m &= m - 1 {
			k := recordKey(s.record(x.off(int(cur)<<posShift | firstMatch(m))))
			if h1, _ := splitHash(s.hash(k)); h1&gmask == g {
				buf = append(buf, k...)
				ends = append(ends, len(buf))
			}
		}
		if matchEmpty(lo, hi) != 0 {
			return buf, ends
		}
		cur = (cur + i) & gmask
	}
}
