package table

import (
	"bytes"
	"sync"
	"sync/atomic"
	"unsafe"
)

// slotTable holds the pairs of one hash slot: an index and an arena, all guarded by mu.
// Invariants (under mu):
//   - every full index entry i addresses a live record whose key hashes to ctrl[i]'s tag;
//   - a record longer than largeRecord lives alone at the start of an entry of large; all
//     other records live in small pages (see arena.go);
//   - n == count == number of full entries; live is the sum of their record sizes;
//   - garbage is the bytes of dead or shrunk records inside small pages.
//
// Writers hold mu exclusively and keep seq odd while they change anything (lockWrite,
// unlockWrite); Get and Has read the slot without any lock (see read.go).
type slotTable struct {
	// The first cache line is what lock-free readers need besides the index: the sequence
	// counter and mirrors of the page lists, published by unlockWrite and loaded atomically
	// (see read.go).
	//
	// seq is incremented on entry to and exit from every write: odd while one runs. 64 bits,
	// so that it cannot wrap around while a reader is descheduled between two loads.
	seq    atomic.Uint64
	nsmall atomic.Uint32                  // len(small)
	nlarge atomic.Uint32                  // len(large)
	page0  unsafe.Pointer                 // small page 0, tagged with its size (page0Tag); atomic
	rsmall atomic.Pointer[unsafe.Pointer] // &small[0] (of the whole backing array)
	rlarge atomic.Pointer[page]           // &large[0]
	count  atomic.Int64                   // n, readable without mu for Len/SlotLen
	ref    *slotRef                       // the slot's directory entry, which publishes idx

	mu   sync.RWMutex
	hk   *hashKey
	pool *pagePool

	idx        index // nil when the slot is empty
	n          int   // full entries
	tombs      int   // deleted entries
	growthLeft int   // empty entries that may still be filled before a rehash

	small     []unsafe.Pointer // small pages; page 0 has size0 bytes, every other maxPage
	size0     int
	tailOff   int      // fill of the last small page
	large     []page   // pages of large records, one record each; nil entries are free
	holes     []uint32 // indexes of nil entries in large, reused first
	smallCap  int64    // total size of small pages
	largeCap  int64    // total size of large pages
	smallLive int64    // bytes of live small records
	live      int64    // bytes of all live records
	garbage   int64    // dead bytes inside small pages
	keyBytes  int64
	valBytes  int64
	_         [slotTablePad]byte
}

// slotTablePad rounds slotTable up to 320 bytes, a size class whose objects are 64-byte
// aligned, so that the readers' fields share one cache line (TestLayout checks it).
const slotTablePad = 320 - 288

func newSlotTable(ref *slotRef, hk *hashKey, pool *pagePool) *slotTable {
	return &slotTable{ref: ref, hk: hk, pool: pool}
}

// lockWrite takes the slot for writing: it excludes other writers and readers holding mu,
// and makes seq odd so that lock-free readers running meanwhile discard what they read.
func (s *slotTable) lockWrite() {
	s.mu.Lock()
	s.seq.Add(1)
}

// unlockWrite publishes the new index and page lists to lock-free readers, makes seq even
// again and releases mu.
func (s *slotTable) unlockWrite() {
	s.publish()
	s.seq.Add(1)
	s.mu.Unlock()
}

// publish updates the readers' mirrors of idx, small and large. Stores are skipped when
// nothing changed: an atomic store is a locked instruction on amd64, and most writes change
// none of them.
func (s *slotTable) publish() {
	s.ref.storeIndex(s.idx)
	var p0 unsafe.Pointer
	if len(s.small) > 0 {
		p0 = page0Tag(s.small[0], s.size0)
	}
	if atomic.LoadPointer(&s.page0) != p0 {
		atomic.StorePointer(&s.page0, p0)
	}
	if sp := unsafe.SliceData(s.small); s.rsmall.Load() != sp {
		s.rsmall.Store(sp)
	}
	if n := uint32(len(s.small)); s.nsmall.Load() != n {
		s.nsmall.Store(n)
	}
	if lp := unsafe.SliceData(s.large); s.rlarge.Load() != lp {
		s.rlarge.Store(lp)
	}
	if n := uint32(len(s.large)); s.nlarge.Load() != n {
		s.nlarge.Store(n)
	}
}

func (s *slotTable) hash(key []byte) uint64 { return s.hk.hash(key) }

// find returns the position of the entry holding key and its value (aliasing the arena), or
// -1. The key comparison reads the record header inline: this is the hot path of every
// write.
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
			rec := s.record(x.off(p))
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
	case off&largeBit != 0 && need > largeRecord && need <= len(old):
		putRecord(old[:need], key, val)
		s.live += int64(need - oldSize)
		return
	case off&largeBit == 0 && need <= oldSize:
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
	if off&largeBit != 0 && need <= len(old) {
		// Grow inside the dedicated page; the header may gain a byte, shifting key and value.
		p := old[:need]
		nhdr := need - kl - nvl
		if nhdr != hdr {
			copy(p[nhdr:], p[hdr:oldSize])
		}
		putHeader(p, kl, nvl)
		copy(p[nhdr+kl+vl:], suffix)
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

// clear frees everything the slot holds and returns the number of pairs it had. The caller
// holds mu.
func (s *slotTable) clear() int {
	n := s.n
	s.freeArena()
	s.idx = nil
	s.n, s.tombs, s.growthLeft = 0, 0, 0
	s.count.Store(0)
	s.keyBytes, s.valBytes = 0, 0
	return n
}
