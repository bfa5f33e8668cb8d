package table

import (
	"bytes"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Table is a concurrent hash table from byte-string keys to byte-string values, organised by
// Redis Cluster hash slot. The zero value is not usable; call New. All methods are safe for
// concurrent use. Keys and values are copied in and out.
type Table struct {
	// dir is first so that its entries are aligned, four to a cache line (a Table is a
	// large allocation, which starts on a page boundary).
	dir  [keyspace.NumSlots]slotRef
	hk   hashKey // in the Table itself: a lookup reads it with no pointer to follow
	pool *pagePool
	_    [64 - 40]byte // keep bytes, written by every write, off the line of hk
	// bytes is the sum of the slots' footprints, kept up to date by every write so that
	// Bytes is one atomic load (a memory limit checks it before every write).
	bytes atomic.Int64
}

// Bytes returns the memory the table holds for its pairs: the slots' indexes and arena pages
// (records, plus dead bytes awaiting compaction, at most about a fifth more). It excludes
// idle pooled pages and fixed metadata (see Stats). It is one atomic load.
func (t *Table) Bytes() int64 { return t.bytes.Load() }

// footprint is the memory slot table s holds; s.mu must be held.
func (s *slotTable) footprint() int64 { return 8*int64(len(s.idx)) + s.smallCap + s.largeCap }

// account adds the change of s's footprint since before to the table's total; s.mu must be
// held. Most writes do not change the footprint and skip the shared counter.
func (t *Table) account(s *slotTable, before int64) {
	if d := s.footprint() - before; d != 0 {
		t.bytes.Add(d)
	}
}

// New returns an empty table. Arena memory is mapped outside the Go heap; it is returned by
// Delete, DropRange and Reset, and whatever remains is unmapped once the Table and its slots
// are unreachable.
func New() *Table {
	return &Table{hk: newHashKey(), pool: newPagePool()}
}

// reader returns the slot table of slot for reading, or nil when the slot never had a pair.
func (t *Table) reader(slot uint16) *slotTable { return t.dir[slot].st.Load() }

// writer returns the slot table of slot, creating it. Slot tables are never removed (DropRange
// empties them), so a writer holding one can never write into a detached table.
func (t *Table) writer(slot uint16) *slotTable {
	ref := &t.dir[slot]
	if s := ref.st.Load(); s != nil {
		return s
	}
	s := newSlotTable(ref, &t.hk, t.pool)
	if ref.st.CompareAndSwap(nil, s) {
		return s
	}
	return ref.st.Load()
}

// Get appends the value of key to dst and returns it with ok true, or returns dst and false
// when key is absent. It takes no lock (see read.go) and allocates only when dst lacks room
// for the value.
func (t *Table) Get(key []byte, dst []byte) (val []byte, ok bool) {
	if lockFreeReads {
		// The first attempt, inline (see probeKey); get retries.
		s, v, vl, v0, res := t.probeKey(unsafe.String(unsafe.SliceData(key), len(key)))
		if res == probeMiss {
			return dst, false
		}
		if res == probeHit {
			val = append(dst, unsafe.Slice((*byte)(v), vl)...)
			if s.seq.Load() == v0 {
				return val, true
			}
		}
	}
	return t.get(key, dst, math.MaxInt)
}

// Peek is Get for at most the first n bytes of the value: a caller that needs only a value's
// header does not pay for copying the rest.
func (t *Table) Peek(key []byte, dst []byte, n int) (val []byte, ok bool) {
	return t.get(key, dst, max(n, 0))
}

// Has reports whether key is present, without copying its value.
func (t *Table) Has(key []byte) bool {
	_, ok := t.get(key, nil, 0)
	return ok
}

// Set stores val under key and reports whether it replaced an existing value.
func (t *Table) Set(key, val []byte) (replaced bool) {
	slot, h := t.locate(key)
	s := t.writer(slot)
	s.lockWrite()
	before := s.footprint()
	s.reserve()
	if p, _ := s.find(key, h); p >= 0 {
		s.overwrite(p, key, val)
		replaced = true
	} else {
		s.insert(key, val, h)
	}
	s.maybeCompact()
	t.account(s, before)
	s.unlockWrite()
	return replaced
}

// Delete removes key and reports whether it was present.
func (t *Table) Delete(key []byte) bool {
	slot, h := t.locate(key)
	s := t.reader(slot)
	if s == nil {
		return false
	}
	s.lockWrite()
	before := s.footprint()
	p, _ := s.find(key, h)
	if p >= 0 {
		s.remove(p)
		s.maybeCompact()
	}
	t.account(s, before)
	s.unlockWrite()
	return p >= 0
}

// Append appends suffix to the value of key (creating key with value suffix when absent) and
// returns the new length of the value. A value that outgrows its record is relocated; values
// longer than 1 KiB get 25% headroom so that repeated appends copy linearly in total.
func (t *Table) Append(key, suffix []byte) (newLen int) {
	newLen, _ = t.AppendWithin(key, suffix, math.MaxInt)
	return newLen
}

// AppendWithin is Append, unless the value would grow longer than limit: then nothing changes,
// and it returns the value's current length (0 if absent) and false.
func (t *Table) AppendWithin(key, suffix []byte, limit int) (newLen int, ok bool) {
	slot, h := t.locate(key)
	s := t.writer(slot)
	s.lockWrite()
	defer s.unlockWrite()
	before := s.footprint()
	s.reserve() // before find: a compaction moves records
	p, _ := s.find(key, h)
	cur := 0
	if p >= 0 {
		_, cur, _ = recHeader(s.record(s.idx.off(p)))
	}
	if len(suffix) > limit-cur {
		t.account(s, before) // reserve may have compacted
		return cur, false
	}
	if p >= 0 {
		newLen = s.appendTo(p, suffix)
	} else {
		s.insert(key, suffix, h)
		newLen = len(suffix)
	}
	s.maybeCompact()
	t.account(s, before)
	return newLen, true
}

// CompareAndSwap sets key to new if its current state matches: when oldPresent is true, key
// must be present with a value equal to old; when false, key must be absent (old is ignored).
// It reports whether the value was written. A nil new stores an empty value.
func (t *Table) CompareAndSwap(key, old, new []byte, oldPresent bool) bool {
	slot, h := t.locate(key)
	s := t.writer(slot)
	s.lockWrite()
	before := s.footprint()
	defer func() {
		t.account(s, before)
		s.unlockWrite()
	}()
	s.reserve()
	p, v := s.find(key, h)
	if oldPresent {
		if p < 0 {
			return false
		}
		if !bytes.Equal(v, old) {
			return false
		}
		s.overwrite(p, key, new)
		s.maybeCompact()
		return true
	}
	if p >= 0 {
		return false
	}
	s.insert(key, new, h)
	return true
}

// Len returns the number of pairs. It sums per-slot counters (16384 atomic loads), so it is
// exact only when no writes run concurrently.
func (t *Table) Len() int {
	n := 0
	for i := range t.dir {
		if s := t.reader(uint16(i)); s != nil {
			n += int(s.count.Load())
		}
	}
	return n
}

// SlotLen returns the number of pairs in slot (0 for slots >= keyspace.NumSlots).
func (t *Table) SlotLen(slot uint16) int {
	if int(slot) >= keyspace.NumSlots {
		return 0
	}
	if s := t.reader(slot); s != nil {
		return int(s.count.Load())
	}
	return 0
}

// RangeLen returns the number of pairs in the slots of r, in time proportional to r.Len().
func (t *Table) RangeLen(r keyspace.Range) int {
	lo, hi := clampRange(r)
	n := 0
	for slot := lo; slot < hi; slot++ {
		if s := t.reader(uint16(slot)); s != nil {
			n += int(s.count.Load())
		}
	}
	return n
}

// RangeBytes returns the key and value bytes stored in the slots of r, in time proportional to
// r.Len() (for load reports and shard sizes).
func (t *Table) RangeBytes(r keyspace.Range) int64 {
	lo, hi := clampRange(r)
	var n int64
	for slot := lo; slot < hi; slot++ {
		if s := t.reader(uint16(slot)); s != nil {
			s.mu.RLock()
			n += s.keyBytes + s.valBytes
			s.mu.RUnlock()
		}
	}
	return n
}

// Range calls fn for every pair in the slots of r, slot by slot, until fn returns false. Each
// slot is visited under its read lock, so a slot's pairs are a consistent snapshot; key and val
// are valid only during the call, and fn must not call methods of t (a writer waiting on the
// same slot would deadlock with it).
func (t *Table) Range(r keyspace.Range, fn func(key, val []byte) bool) {
	lo, hi := clampRange(r)
	for slot := lo; slot < hi; slot++ {
		s := t.reader(uint16(slot))
		if s == nil {
			continue
		}
		s.mu.RLock()
		cont := s.each(fn)
		s.mu.RUnlock()
		if !cont {
			return
		}
	}
}

// each calls fn for every pair of the slot in index order; it reports whether fn always
// returned true.
func (s *slotTable) each(fn func(key, val []byte) bool) bool {
	return s.forEach(func(_ int, off uint32) bool { return fn(parseRecord(s.record(off))) })
}

// DropRange removes every pair in the slots of r and returns how many it removed, freeing
// their memory. It costs time proportional to r.Len() plus the pages freed.
func (t *Table) DropRange(r keyspace.Range) int {
	lo, hi := clampRange(r)
	n := 0
	for slot := lo; slot < hi; slot++ {
		s := t.reader(uint16(slot))
		if s == nil {
			continue
		}
		s.lockWrite()
		before := s.footprint()
		n += s.clear()
		t.account(s, before)
		s.unlockWrite()
	}
	return n
}

// Reset removes every pair.
func (t *Table) Reset() { t.DropRange(keyspace.All()) }

// clampRange returns r's bounds limited to the valid slots.
func clampRange(r keyspace.Range) (lo, hi int) {
	lo, hi = int(r.Lo), int(r.Hi)
	hi = min(hi, keyspace.NumSlots)
	if lo > hi {
		lo = hi
	}
	return lo, hi
}
