package table

import "unsafe"

// A slot's arena holds its records, [uvarint klen][uvarint vlen][key][val], in two kinds of
// memory:
//
//   - Small pages, for records up to largeRecord bytes, filled in order. A slot starts with a
//     single page of minPage bytes, page 0, which doubles (copying its used bytes, so record
//     addresses stay valid) until it reaches maxPage; only then are further pages, all of
//     maxPage bytes, added. Most slots therefore have one page, whose address, tagged with
//     its size, sits in the first line of the slot table (read.go): a lookup finds the
//     record without a page-table hop. Every small page but page 0 has exactly maxPage
//     bytes, which is what lets lock-free readers bound an offset into a page they may be
//     reading stale.
//   - Large pages, one per record longer than largeRecord, so that no small page wastes more
//     than a quarter of its bytes on a record that does not fit. A large page's size is its
//     capacity (appends leave headroom); the record's header gives its length.
//
// A record address is a uint32. For a small record: page number (bits 12-30) and offset in
// the page (low 12 bits). For a large record: largeBit plus its number in the large list.
//
// maxPage pages come from the Table's pool of mapped chunks (mem.go); smaller small pages
// and large pages are ordinary pointer-free heap slices.
const (
	pageShift     = 12
	maxPage       = 1 << pageShift // size of a full small page
	pageMask      = maxPage - 1
	minPage       = 256 // first size of page 0
	largeBit      = 1 << 31
	maxSmallPages = largeBit >> pageShift
	maxLarge      = largeBit
	// Records longer than largeRecord get a page of their own.
	largeRecord = maxPage / 4
	// compactMinGarbage avoids rewriting tiny slots for a few dead bytes.
	compactMinGarbage = 128
)

// page is a large page: its base address and size. base keeps the heap slice alive. Both
// words are read by lock-free readers, which validate seq before dereferencing base.
type page struct {
	base unsafe.Pointer
	size uintptr
}

// bytes returns the page's memory (nil for a free entry).
func (p page) bytes() []byte { return unsafe.Slice((*byte)(p.base), p.size) }

// smallPage returns small page i.
func (s *slotTable) smallPage(i uint32) []byte {
	size := maxPage
	if i == 0 {
		size = s.size0
	}
	return unsafe.Slice((*byte)(s.small[i]), size)
}

// record returns the arena bytes starting at address off: the record and possibly more.
func (s *slotTable) record(off uint32) []byte {
	if off&largeBit != 0 {
		return s.large[off&^largeBit].bytes()
	}
	return s.smallPage(off >> pageShift)[off&pageMask:]
}

// pageSizeFor picks a small page size for about hint bytes: the next power of two, between
// minPage and maxPage.
func pageSizeFor(hint int64) int {
	size := minPage
	for int64(size) < hint && size < maxPage {
		size <<= 1
	}
	return size
}

// newSmallPage returns a small page of size bytes: from the pool when full-size, else from
// the heap.
func (s *slotTable) newSmallPage(size int) unsafe.Pointer {
	var p []byte
	if size == maxPage {
		p = s.pool.get()
	} else {
		p = make([]byte, size)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(p)))%uintptr(size) != 0 {
		// Go's size classes align power-of-two sizes up to 8 KiB to their size, and pool
		// pages are maxPage-aligned: page0Tag relies on it.
		panic("table: small page not aligned to its size")
	}
	return unsafe.Pointer(unsafe.SliceData(p))
}

// freeSmallPage returns a small page to where it came from.
func (s *slotTable) freeSmallPage(p unsafe.Pointer, size int) {
	if size == maxPage {
		s.pool.put(unsafe.Slice((*byte)(p), maxPage))
	}
}

// alloc reserves n bytes for a record and returns their address. Small records are appended
// to the last small page; hint is the number of small-record bytes about to be stored, which
// sizes page 0 when the arena is empty (compaction knows how much it will copy).
func (s *slotTable) alloc(n int, hint int64) (uint32, []byte) {
	if n > largeRecord {
		return s.allocLarge(n, n)
	}
	if last := len(s.small) - 1; last >= 0 {
		size := maxPage
		if last == 0 {
			size = s.size0
			if s.tailOff+n > size && size < maxPage {
				s.growPage0(s.tailOff + n)
				size = s.size0
			}
		}
		if s.tailOff+n <= size {
			off := uint32(last)<<pageShift | uint32(s.tailOff)
			s.tailOff += n
			return off, s.smallPage(uint32(last))[s.tailOff-n : s.tailOff]
		}
	}
	if len(s.small) >= maxSmallPages {
		panic("table: slot arena exceeds 2^19 small pages")
	}
	size := maxPage
	if len(s.small) == 0 {
		size = pageSizeFor(max(hint, int64(n)))
		s.size0 = size
	}
	s.small = append(s.small, s.newSmallPage(size))
	s.smallCap += int64(size)
	s.tailOff = n
	i := uint32(len(s.small) - 1)
	return i << pageShift, s.smallPage(i)[:n]
}

// growPage0 replaces page 0, the only small page, by one at least need bytes large (at most
// maxPage), copying its used bytes so that addresses into it stay valid.
func (s *slotTable) growPage0(need int) {
	size := s.size0 * 2
	for size < need {
		size *= 2
	}
	p := s.newSmallPage(size)
	copy(unsafe.Slice((*byte)(p), size), s.smallPage(0)[:s.tailOff])
	s.freeSmallPage(s.small[0], s.size0)
	s.small[0] = p
	s.smallCap += int64(size - s.size0)
	s.size0 = size
}

// allocLarge places a record of n bytes (n > largeRecord) in its own page with capacity c.
func (s *slotTable) allocLarge(n, c int) (uint32, []byte) {
	b := make([]byte, c)
	s.largeCap += int64(c)
	pg := page{unsafe.Pointer(unsafe.SliceData(b)), uintptr(c)}
	var i uint32
	if k := len(s.holes); k > 0 {
		i = s.holes[k-1]
		s.holes = s.holes[:k-1]
		s.large[i] = pg
	} else {
		if uint64(len(s.large)) >= maxLarge {
			panic("table: slot holds 2^31 large records")
		}
		s.large = append(s.large, pg)
		i = uint32(len(s.large) - 1)
	}
	return largeBit | i, b[:n]
}

// freeLarge drops large page i.
func (s *slotTable) freeLarge(i uint32) {
	s.largeCap -= int64(s.large[i].size)
	s.large[i] = page{}
	s.holes = append(s.holes, i)
}

// dropRecord accounts for the death of the record at off (size bytes).
func (s *slotTable) dropRecord(off uint32, size int) {
	s.live -= int64(size)
	if off&largeBit != 0 {
		s.freeLarge(off &^ largeBit)
		return
	}
	s.smallLive -= int64(size)
	s.garbage += int64(size)
}

// newRecord allocates and accounts a record of size bytes.
func (s *slotTable) newRecord(size int) (uint32, []byte) {
	off, b := s.alloc(size, 0)
	s.live += int64(size)
	if size <= largeRecord {
		s.smallLive += int64(size)
	}
	return off, b
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
// keep their pages. Index positions do not change, only addresses. The new page list is a new
// array: lock-free readers may still be reading the old one.
func (s *slotTable) compact() {
	old, oldSize0 := s.small, s.size0
	s.small = make([]unsafe.Pointer, 0, max(1, len(old)))
	s.size0, s.tailOff, s.smallCap = 0, 0, 0
	remaining := s.smallLive
	s.forEach(func(p int, off uint32) bool {
		if off&largeBit != 0 {
			return true
		}
		size := oldSize0
		if off>>pageShift != 0 {
			size = maxPage
		}
		rec := unsafe.Slice((*byte)(old[off>>pageShift]), size)[off&pageMask:]
		n := recordSize(rec)
		noff, b := s.alloc(n, remaining)
		copy(b, rec[:n])
		s.idx.setOff(p, noff)
		remaining -= int64(n)
		return true
	})
	for i, p := range old {
		if i == 0 {
			s.freeSmallPage(p, oldSize0)
		} else {
			s.freeSmallPage(p, maxPage)
		}
	}
	if len(s.small) == 0 {
		s.small = nil
	}
	s.garbage = 0
}

// freeArena frees every page of the slot and resets the arena's accounting.
func (s *slotTable) freeArena() {
	for i, p := range s.small {
		if i == 0 {
			s.freeSmallPage(p, s.size0)
		} else {
			s.freeSmallPage(p, maxPage)
		}
	}
	s.small, s.size0, s.tailOff = nil, 0, 0
	s.large, s.holes = nil, nil
	s.smallCap, s.largeCap, s.smallLive, s.live, s.garbage = 0, 0, 0, 0, 0
}

// reserve makes sure a write can add a small page, compacting first when the list is full.
func (s *slotTable) reserve() {
	if len(s.small) >= maxSmallPages-1 {
		s.compact()
	}
}
