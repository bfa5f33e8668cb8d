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

	ctrl       []byte   // len is 0 or a power of two >= groupSize
	offs       []uint32 // record address per entry
	n          int      // full entries
	tombs      int      // deleted entries
	growthLeft int      // empty entries that may still be filled before a rehash

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

// find returns the index entry holding key, or -1.
func (s *slotTable) find(key []byte, h uint64) int {
	if len(s.ctrl) == 0 {
		return -1
	}
	h1, h2 := splitHash(h)
	gmask := uint64(len(s.ctrl)/groupSize - 1)
	g := h1 & gmask
	for i := uint64(1); ; i++ {
		w := ctrlWord(s.ctrl, g)
		for m := matchH2(w, h2); m != 0; m &= m - 1 {
			idx := g*groupSize + firstMatch(m)
			if bytes.Equal(recordKey(s.record(s.offs[idx])), key) {
				return int(idx)
			}
		}
		if matchEmpty(w) != 0 {
			return -1
		}
		g = (g + i) & gmask
	}
}

// claim reserves an index entry for a new key with hash h (known to be absent), rehashing or
// growing the index when it is full.
func (s *slotTable) claim(h uint64) int {
	if len(s.ctrl) == 0 {
		s.resize(groupSize)
	}
	h1, h2 := splitHash(h)
	for {
		gmask := uint64(len(s.ctrl)/groupSize - 1)
		g := h1 & gmask
		for i := uint64(1); ; i++ {
			m := matchEmptyOrDeleted(ctrlWord(s.ctrl, g))
			if m == 0 {
				g = (g + i) & gmask
				continue
			}
			idx := g*groupSize + firstMatch(m)
			if s.ctrl[idx] == ctrlDeleted {
				s.tombs--
			} else if s.growthLeft > 0 {
				s.growthLeft--
			} else {
				break
			}
			s.ctrl[idx] = byte(h2)
			return int(idx)
		}
		// Full (counting tombstones): double if live entries fill more than half of the
		// allowed load, else rehash in place to drop the tombstones.
		c := len(s.ctrl)
		if 2*(s.n+1) > growthFor(c) {
			c *= 2
		}
		s.resize(c)
	}
}

// resize rebuilds the index with capacity c. Record addresses are unchanged. The full hash is
// not stored, so each key is rehashed; the slot's arena is small and usually cache-resident.
func (s *slotTable) resize(c int) {
	oldCtrl, oldOffs := s.ctrl, s.offs
	s.ctrl = newCtrl(c)
	s.offs = make([]uint32, c)
	s.growthLeft = growthFor(c)
	s.tombs = 0
	gmask := uint64(c/groupSize - 1)
	for i, cb := range oldCtrl {
		if cb&0x80 != 0 {
			continue
		}
		off := oldOffs[i]
		h1, h2 := splitHash(s.hash(recordKey(s.record(off))))
		g := h1 & gmask
		for j := uint64(1); ; j++ {
			if m := matchEmpty(ctrlWord(s.ctrl, g)); m != 0 {
				idx := g*groupSize + firstMatch(m)
				s.ctrl[idx] = byte(h2)
				s.offs[idx] = off
				s.growthLeft--
				break
			}
			g = (g + j) & gmask
		}
	}
}

// removeEntry marks index entry idx free. A group that still has an empty entry never stopped
// a probe, so the entry can become empty again instead of a tombstone.
func (s *slotTable) removeEntry(idx int) {
	g := uint64(idx) / groupSize
	if matchEmpty(ctrlWord(s.ctrl, g)) != 0 {
		s.ctrl[idx] = ctrlEmpty
		s.growthLeft++
	} else {
		s.ctrl[idx] = ctrlDeleted
		s.tombs++
	}
	s.n--
	s.count.Store(int64(s.n))
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
	idx := s.find(key, h)
	if idx < 0 {
		return dst, false
	}
	_, v := parseRecord(s.record(s.offs[idx]))
	return append(dst, v...), true
}

// insert adds a key known to be absent.
func (s *slotTable) insert(key, val []byte, h uint64) {
	idx := s.claim(h)
	off, b := s.newRecord(recLen(len(key), len(val)))
	putRecord(b, key, val)
	s.offs[idx] = off
	s.n++
	s.count.Store(int64(s.n))
	s.keyBytes += int64(len(key))
	s.valBytes += int64(len(val))
}

// overwrite replaces the value of entry idx, in place when the new record fits.
func (s *slotTable) overwrite(idx int, key, val []byte) {
	off := s.offs[idx]
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
	s.offs[idx] = noff
}

// appendTo appends suffix to the value of entry idx and returns the new value length.
func (s *slotTable) appendTo(idx int, suffix []byte) int {
	off := s.offs[idx]
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
	s.offs[idx] = noff
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

// remove deletes entry idx and its record, then shrinks or empties the slot if it got sparse.
func (s *slotTable) remove(idx int) {
	off := s.offs[idx]
	rec := s.record(off)
	kl, vl, hdr := recHeader(rec)
	s.keyBytes -= int64(kl)
	s.valBytes -= int64(vl)
	s.dropRecord(off, hdr+kl+vl)
	s.removeEntry(idx)
	if s.n == 0 {
		s.clear()
		return
	}
	if len(s.ctrl) > groupSize && s.n < len(s.ctrl)/8 {
		s.resize(len(s.ctrl) / 2)
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
	for i, cb := range s.ctrl {
		if cb&0x80 != 0 {
			continue
		}
		off := s.offs[i]
		rec := old[off>>pageShift][off&pageMask:]
		size := recordSize(rec)
		if size > largeRecord {
			s.offs[i] = s.addPage(old[off>>pageShift]) << pageShift
			old[off>>pageShift] = nil
			continue
		}
		noff, b := s.alloc(size, remaining)
		copy(b, rec[:size])
		s.offs[i] = noff
		remaining -= int64(size)
	}
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
	s.ctrl, s.offs = nil, nil
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
