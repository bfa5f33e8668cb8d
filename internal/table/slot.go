package table

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Arena geometry. A record address is a uint32: page number in the slot's page list (high 20
// bits) and byte offset in the page (low 12 bits).
const (
	pageShift = 12
	maxPage   = 1 << pageShift // size of a full arena page
	pageMask  = maxPage - 1
	minPage   = 256 // first page of a slot; pages double up to maxPage
	maxPages  = 1 << (32 - pageShift)
	// Records longer than largeRecord get a page of their own (address offset 0) so that no
	// small page wastes more than a quarter of its bytes on a record that does not fit.
	largeRecord = maxPage / 4
	// compactMinGarbage avoids rewriting tiny slots for a few dead bytes.
	compactMinGarbage = 128
)

// slotTable holds the pairs of one hash slot: an index and an arena of pages, all guarded by
// mu. Invariants (under mu):
//   - every full index entry i addresses a live record whose key hashes to ctrl[i]'s tag;
//   - a record longer than largeRecord is alone at offset 0 of its own page, whose len is the
//     record's size; all other records live in small pages (len <= maxPage);
//   - n == count == number of full entries; live is the sum of their record sizes;
//   - garbage is the bytes of dead or shrunk records inside small pages.
type slotTable struct {
	mu    sync.RWMutex
	count atomic.Int64 // n, readable without mu for Len/SlotLen

	seed maphash.Seed
	pool *pagePool

	idx        index // nil when the slot is empty
	n          int   // full entries
	tombs      int   // deleted entries
	growthLeft int   // empty entries that may still be filled before a rehash

	pages     [][]byte
	holes     []uint32 // indexes of nil entries in pages, reused first
	tail      int      // page being filled with small records, or -1
	tailOff   int      // fill of the tail page
	smallCap  int64    // total len of small pages
	largeCap  int64    // total cap of large pages
	smallLive int64    // bytes of live small records
	live      int64    // bytes of all live records
	garbage   int64    // dead bytes inside small pages
	keyBytes  int64
	valBytes  int64
}

func newSlotTable(seed maphash.Seed, pool *pagePool) *slotTable {
	return &slotTable{seed: seed, pool: pool, tail: -1}
}

func (s *slotTable) hash(key []byte) uint64 { return maphash.Bytes(s.seed, key) }

// record returns the arena bytes starting at address off (the record and possibly more).
func (s *slotTable) record(off uint32) []byte {
	return s.pages[off>>pageShift][off&pageMask:]
}

// find returns the position of the entry holding key and its value (aliasing the arena), or
// -1. The key comparison reads the record header inline: this is the hot path of every
// operation.
func (s *slotTable) find(key []byte, h uint64) (int, []byte) {
	x := s.idx
	if len(x) == 0 {
		return -1, nil
	}
	h1, h2 := splitHash(h)
	gmask := uint64(x.groups() - 1)
	g := h1 & gmask
	for i := uint64(1); ; i++ {
		lo, hi := x.ctrl(g)
		for m := matchH2(lo, hi, h2); m != 0; m &= m - 1 {
			p := int(g)<<posShift | firstMatch(m)
			off := x.off(p)
			rec := s.pages[off>>pageShift][off&pageMask:]
			if kl, vl := int(rec[0]), int(rec[1]); kl < 0x80 && vl < 0x80 {
				if kl == len(key) && string(rec[2:2+kl]) == string(key) {
					return p, rec[2+kl : 2+kl+vl : 2+kl+vl]
				}
				continue
			}
			if k, v := parseRecord(rec); bytes.Equal(k, key) {
				return p, v
			}
		}
		if matchEmpty(lo, hi) != 0 {
			return -1, nil
		}
		g = (g + i) & gmask
	}
}

// claim reserves an entry for a new key with hash h (known to be absent), rehashing or
// growing the index when it is full, and returns its position.
func (s *slotTable) claim(h uint64) int {
	if len(s.idx) == 0 {
		s.resize(1)
	}
	h1, h2 := splitHash(h)
	for {
		x := s.idx
		gmask := uint64(x.groups() - 1)
		g := h1 & gmask
		for i := uint64(1); ; i++ {
			m := matchEmptyOrDeleted(x.ctrl(g))
			if m == 0 {
				g = (g + i) & gmask
				continue
			}
			p := int(g)<<posShift | firstMatch(m)
			if x.ctrlAt(p) == ctrlDeleted {
				s.tombs--
			} else if s.growthLeft > 0 {
				s.growthLeft--
			} else {
				break
			}
			x.setCtrl(p, byte(h2))
			return p
		}
		// Full (counting tombstones): double if live entries fill more than half of the
		// allowed load, else rehash in place to drop the tombstones.
		ng := x.groups()
		if 2*(s.n+1) > growthFor(ng) {
			ng *= 2
		}
		s.resize(ng)
	}
}

// resize rebuilds the index with ngroups groups. Record addresses are unchanged. The full hash
// is not stored, so each key is rehashed; the slot's arena is small and usually cached.
func (s *slotTable) resize(ngroups int) {
	old := s.idx
	x := newIndex(ngroups)
	s.idx = x
	s.growthLeft = growthFor(ngroups)
	s.tombs = 0
	gmask := uint64(ngroups - 1)
	for og := 0; og < old.groups(); og++ {
		for m := matchFull(old.ctrl(uint64(og))); m != 0; m &= m - 1 {
			off := old.off(og<<posShift | firstMatch(m))
			h1, h2 := splitHash(s.hash(recordKey(s.record(off))))
			g := h1 & gmask
			for j := uint64(1); ; j++ {
				if e := matchEmpty(x.ctrl(g)); e != 0 {
					p := int(g)<<posShift | firstMatch(e)
					x.setCtrl(p, byte(h2))
					x.setOff(p, off)
					s.growthLeft--
					break
				}
				g = (g + j) & gmask
			}
		}
	}
}

// removeEntry frees the entry at position p. A group that still has an empty entry never
// stopped a probe, so the entry can become empty again instead of a tombstone.
func (s *slotTable) removeEntry(p int) {
	if matchEmpty(s.idx.ctrl(uint64(p>>posShift))) != 0 {
		s.idx.setCtrl(p, ctrlEmpty)
		s.growthLeft++
	} else {
		s.idx.setCtrl(p, ctrlDeleted)
		s.tombs++
	}
	s.n--
	s.count.Store(int64(s.n))
}

// forEach calls fn with the position and record address of every full entry.
func (s *slotTable) forEach(fn func(p int, off uint32) bool) bool {
	x := s.idx
	for g := 0; g < x.groups(); g++ {
		for m := matchFull(x.ctrl(uint64(g))); m != 0; m &= m - 1 {
			p := g<<posShift | firstMatch(m)
			if !fn(p, x.off(p)) {
				return false
			}
		}
	}
	return true
}

// pageSizeFor picks a small page size for about hint more bytes: the next power of two,
// between minPage and maxPage.
func pageSizeFor(hint int64) int {
	size := minPage
	for int64(size) < hint && size < maxPage {
		size <<= 1
	}
	return size
}

// addPage stores p in the page list (reusing a hole) and returns its number.
func (s *slotTable) addPage(p []byte) uint32 {
	if n := len(s.holes); n > 0 {
		i := s.holes[n-1]
		s.holes = s.holes[:n-1]
		s.pages[i] = p
		return i
	}
	if len(s.pages) >= maxPages {
		panic("table: slot arena exceeds 2^20 pages")
	}
	s.pages = append(s.pages, p)
	return uint32(len(s.pages) - 1)
}

// allocLarge places a record of n bytes (n > largeRecord) in its own page with capacity c.
func (s *slotTable) allocLarge(n, c int) (uint32, []byte) {
	p := make([]byte, n, c)
	s.largeCap += int64(cap(p))
	return s.addPage(p) << pageShift, p
}

// alloc reserves n bytes for a record and returns their address. Small records are appended to
// the tail page; hint is the number of bytes likely to follow (sizes a new page).
func (s *slotTable) alloc(n int, hint int64) (uint32, []byte) {
	if n > largeRecord {
		return s.allocLarge(n, n)
	}
	if s.tail >= 0 {
		p := s.pages[s.tail]
		if s.tailOff+n <= len(p) {
			off := uint32(s.tail)<<pageShift | uint32(s.tailOff)
			s.tailOff += n
			return off, p[s.tailOff-n : s.tailOff]
		}
	}
	size := pageSizeFor(max(hint, int64(n)))
	var p []byte
	if size == maxPage {
		p = s.pool.get()
	} else {
		p = make([]byte, size)
	}
	s.smallCap += int64(size)
	i := s.addPage(p)
	s.tail, s.tailOff = int(i), n
	return i << pageShift, p[:n]
}

// freeLarge drops the dedicated page number i.
func (s *slotTable) freeLarge(i uint32) {
	s.largeCap -= int64(cap(s.pages[i]))
	s.pages[i] = nil
	s.holes = append(s.holes, i)
}

// freeSmallPage returns a small page to where it came from.
func (s *slotTable) freeSmallPage(p []byte) {
	if len(p) == maxPage {
		s.pool.put(p)
	}
}

// dropRecord accounts for the death of the record at off (size bytes).
func (s *slotTable) dropRecord(off uint32, size int) {
	s.live -= int64(size)
	if size > largeRecord {
		s.freeLarge(off >> pageShift)
		return
	}
	s.smallLive -= int64(size)
	s.garbage += int64(size)
}

// newRecord allocates and accounts a record of size bytes.
func (s *slotTable) newRecord(size int) (uint32, []byte) {
	off, b := s.alloc(size, s.smallCap)
	s.live += int64(size)
	if size <= largeRecord {
		s.smallLive += int64(size)
	}
	return off, b
}

// get appends the value of key to dst.
func (s *slotTable) get(key []byte, h uint64, dst []byte) ([]byte, bool) {
	p, v := s.find(key, h)
	if p < 0 {
		return dst, false
	}
	return append(dst, v...), true
}

// insert adds a key known to be absent.
func (s *slotTable) insert(key, val []byte, h uint64) {
	p := s.claim(h)
	off, b := s.newRecord(recLen(len(key), len(val)))
	putRecord(b, key, val)
	s.idx.setOff(p, off)
	s.n++
	s.count.Store(int64(s.n))
	s.keyBytes += int64(len(key))
	s.valBytes += int64(len(val))
}

// overwrite replaces the value of the entry at position p, in place when the new record fits.
func (s *slotTable) overwrite(p int, key, val []byte) {
	off := s.idx.off(p)
	old := s.record(off)
	_, oldVl, _ := recHeader(old)
	oldSize := recordSize(old)
	need := recLen(len(key), len(val))
	s.valBytes += int64(len(val) - oldVl)
	switch {
	case oldSize > largeRecord && need > largeRecord && need <= cap(s.pages[off>>pageShift]):
		pi := off >> pageShift
		p := s.pages[pi][:need]
		s.pages[pi] = p
		putRecord(p, key, val)
		s.live += int64(need - oldSize)
		return
	case oldSize <= largeRecord && need <= oldSize:
		putRecord(old[:need], key, val)
		d := int64(oldSize - need)
		s.live -= d
		s.smallLive -= d
		s.garbage += d
		return
	}
	s.dropRecord(off, oldSize)
	noff, b := s.newRecord(need)
	putRecord(b, key, val)
	s.idx.setOff(p, noff)
}

// appendTo appends suffix to the value of the entry at position pos and returns the new value
// length.
func (s *slotTable) appendTo(pos int, suffix []byte) int {
	off := s.idx.off(pos)
	old := s.record(off)
	kl, vl, hdr := recHeader(old)
	oldSize := hdr + kl + vl
	nvl := vl + len(suffix)
	need := recLen(kl, nvl)
	s.valBytes += int64(len(suffix))
	if oldSize > largeRecord && need <= cap(s.pages[off>>pageShift]) {
		// Grow inside the dedicated page; the header may gain a byte, shifting key and value.
		pi := off >> pageShift
		p := s.pages[pi][:need]
		nhdr := need - kl - nvl
		if nhdr != hdr {
			copy(p[nhdr:], p[hdr:oldSize])
		}
		putHeader(p, kl, nvl)
		copy(p[nhdr+kl+vl:], suffix)
		s.pages[pi] = p
		s.live += int64(need - oldSize)
		return nvl
	}
	var noff uint32
	var b []byte
	if need > largeRecord {
		// Values built by APPEND tend to keep growing: leave headroom so that the next appends
		// stay in place and the total copying stays linear.
		noff, b = s.allocLarge(need, need+need/4)
		s.live += int64(need)
	} else {
		noff, b = s.newRecord(need)
	}
	nhdr := putHeader(b, kl, nvl)
	copy(b[nhdr:], old[hdr:oldSize])
	copy(b[nhdr+kl+vl:], suffix)
	s.dropRecord(off, oldSize)
	s.idx.setOff(pos, noff)
	return nvl
}

// putHeader writes a record header for the given lengths and returns its size.
func putHeader(b []byte, kl, vl int) int {
	if kl < 0x80 && vl < 0x80 {
		b[0], b[1] = byte(kl), byte(vl)
		return 2
	}
	n := putUvarint(b, kl)
	return n + putUvarint(b[n:], vl)
}

func putUvarint(b []byte, v int) int {
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// remove deletes the entry at position p and its record, then shrinks or empties the slot if
// it got sparse.
func (s *slotTable) remove(p int) {
	off := s.idx.off(p)
	rec := s.record(off)
	kl, vl, hdr := recHeader(rec)
	s.keyBytes -= int64(kl)
	s.valBytes -= int64(vl)
	s.dropRecord(off, hdr+kl+vl)
	s.removeEntry(p)
	if s.n == 0 {
		s.clear()
		return
	}
	if ng := s.idx.groups(); ng > 1 && s.n < ng*groupEntries/8 {
		s.resize(ng / 2)
	}
}

// maybeCompact rewrites the small pages once dead bytes exceed a fifth of their used bytes,
// bounding the arena at 1.25x its live bytes (plus page tails). The copy is proportional to
// the slot, which stays small when keys spread over slots, so no write waits for long.
func (s *slotTable) maybeCompact() {
	if s.garbage >= compactMinGarbage && s.garbage*4 >= s.smallLive {
		s.compact()
	}
}

// compact copies the live small records into fresh pages and frees the old ones; large records
// keep their pages. Index positions do not change, only addresses.
func (s *slotTable) compact() {
	old := s.pages
	s.pages = make([][]byte, 0, len(old))
	s.holes = s.holes[:0]
	s.tail, s.tailOff = -1, 0
	s.smallCap = 0
	remaining := s.smallLive
	s.forEach(func(p int, off uint32) bool {
		rec := old[off>>pageShift][off&pageMask:]
		size := recordSize(rec)
		if size > largeRecord {
			s.idx.setOff(p, s.addPage(old[off>>pageShift])<<pageShift)
			old[off>>pageShift] = nil
			return true
		}
		noff, b := s.alloc(size, remaining)
		copy(b, rec[:size])
		s.idx.setOff(p, noff)
		remaining -= int64(size)
		return true
	})
	for _, p := range old {
		if p != nil {
			s.freeSmallPage(p)
		}
	}
	s.garbage = 0
}

// clear frees everything the slot holds and returns the number of pairs it had. The caller
// holds mu.
func (s *slotTable) clear() int {
	n := s.n
	for _, p := range s.pages {
		if p != nil && s.isSmall(p) {
			s.freeSmallPage(p)
		}
	}
	s.idx = nil
	s.n, s.tombs, s.growthLeft = 0, 0, 0
	s.count.Store(0)
	s.pages, s.holes = nil, nil
	s.tail, s.tailOff = -1, 0
	s.smallCap, s.largeCap, s.smallLive, s.live, s.garbage = 0, 0, 0, 0, 0
	s.keyBytes, s.valBytes = 0, 0
	return n
}

// isSmall reports whether p is a small page (as opposed to a large record's page). Small pages
// have power-of-two sizes; a large record page might too, so the first record decides.
func (s *slotTable) isSmall(p []byte) bool {
	return recordSize(p) <= largeRecord
}

// reserve makes sure a write can add pages, compacting away holes first when needed.
func (s *slotTable) reserve() {
	if len(s.pages) >= maxPages-2 && len(s.holes) < 2 {
		s.compact()
	}
}
