package table

import (
	"encoding/binary"
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Lock-free reads.
//
// Get and Has do not take the slot's lock: a read-write mutex makes every reader write the
// lock's cache line twice, which costs two atomic instructions per lookup and, with readers
// on several cores, bounces that line between them. Instead each slot has a sequence counter
// (a seqlock): writers make it odd on entry and even on exit, and a reader (probeKey)
//
//  1. loads seq and gives up if it is odd (a writer is inside), and loads the slot's index
//     from its directory entry;
//  2. probes the index, loading control words and record addresses atomically;
//  3. for a candidate, finds the record: in page 0 through the slot's page-0 pointer, in
//     another page through the page list, after validating that seq is unchanged (the
//     list's address and length are separate words);
//  4. compares the key, with every length checked against the page;
//  5. on a miss, validates seq; on a hit, lets the caller copy the value out and then
//     validate seq. If no writer entered since step 1, everything read was a consistent
//     snapshot and the result stands; otherwise it is discarded and the lookup retried, and
//     after a few failures done under the read lock.
//
// Torn or stale data can only ever be discarded, never used to reach outside memory the
// reader holds: the index and page-0 pointers carry their own sizes in their low bits
// (slotRef, page0Tag), so any mix of old and new values stays in bounds; every small page
// but page 0 has maxPage bytes; other pointer-and-length pairs are validated before use;
// record lengths are checked against the page; probing stops after visiting every group.
// The memory itself stays readable for as long as a reader can hold a stale pointer: heap
// pages and old index or page-list arrays are kept alive by the reader's own references
// (tagged pointers still point into their object), and mapped chunks are never unmapped
// while their Table is reachable (see pagePool).
//
// Ordering: the loads that locate data (seq, index, control words, addresses, page
// pointers) are atomic loads, which the compiler keeps in program order, and the record
// loads before a validation feed a branch or a call (memequal, memmove) that precedes it.
// x86's total store order then keeps loads in program order and a writer's stores in
// program order (its seq increment is a locked instruction, a full barrier). Weaker memory
// models (arm64 and others) would need fences that Go does not offer; there, and in
// race-detector builds (the detector cannot know that racing reads are validated), Get and
// Has take the read lock instead.
const lockFreeReads = runtime.GOARCH == "amd64" && !raceEnabled

// readTries is how many more optimistic attempts a lookup makes, after its first, before
// taking the read lock. A failure means a writer was inside the slot; waiting on the lock
// then costs no more than spinning, and it bounds the work of a reader facing a stream of
// writers.
const readTries = 2

// slotRef is a slot's entry in the Table's directory: its index, tagged with the index's
// size, and its slot table. Sixteen bytes, so the directory of 16384 slots fills 256 KiB and
// tends to stay in the CPU's second-level cache. A lookup needs the index before anything
// else (the group address is the index address plus the key's hash masked by the size);
// the slot table, whose first line holds the sequence counter and the page list, is fetched
// in parallel with the index group, so a Get waits for three cache misses in a row (entry,
// group, record), the same chain as a Go map's.
type slotRef struct {
	// idx is &index[0] plus log2(groups): index arrays are 64-byte aligned (newIndex), so
	// the low 6 bits are free, and the tagged pointer still points into the array for the
	// garbage collector. Nil when the slot is empty.
	idx unsafe.Pointer
	st  atomic.Pointer[slotTable] // created on the slot's first write, never removed
}

// loadIndex returns the index words published in r (nil when the slot is empty).
func (r *slotRef) loadIndex() []uint64 {
	raw := atomic.LoadPointer(&r.idx)
	if raw == nil {
		return nil
	}
	tag := uintptr(raw) & 63
	return unsafe.Slice((*uint64)(unsafe.Add(raw, -int(tag))), groupWords<<tag)
}

// storeIndex publishes x in r.
func (r *slotRef) storeIndex(x index) {
	var raw unsafe.Pointer
	if len(x) > 0 {
		raw = unsafe.Add(unsafe.Pointer(&x[0]), bits.TrailingZeros(uint(x.groups())))
	}
	if atomic.LoadPointer(&r.idx) != raw {
		atomic.StorePointer(&r.idx, raw)
	}
}

// page0Tag returns page 0's address tagged with its size, log2(size/minPage) in the low bits:
// small pages are aligned to their power-of-two size (Go's size classes for heap pages, the
// pool for maxPage pages; newSmallPage checks), so the tag fits and the tagged pointer still
// points into the page.
func page0Tag(p unsafe.Pointer, size int) unsafe.Pointer {
	return unsafe.Add(p, bits.TrailingZeros(uint(size/minPage)))
}

// Results of probeKey.
const (
	probeTorn = iota // a writer was inside the slot: retry
	probeMiss        // the key is absent (validated)
	probeHit         // the value is at v; it is valid if seq still equals v0 once copied
)

// probeKey is one optimistic lookup of key: slot, hash, index probe and record, in one
// function. On probeHit the caller copies the value (vl bytes at v) and then checks that
// s.seq still equals v0: only then is the copy a consistent value.
//
// It is written for the CPU as much as for the reader. A lookup spends its time waiting for
// cache misses, and the fewer instructions it takes, the further the CPU can run ahead into
// the caller's next lookup and overlap its misses with this one's. So the common path (key of
// 8 to 16 bytes without a '{', record in page 0 with a 2-byte header) makes no call (Go's
// calling convention saves no register across a call, so each costs spills), keeps few
// values live, and compares with whole words.
func (t *Table) probeKey(key string) (s *slotTable, v unsafe.Pointer, vl uintptr, v0 uint64, res int) {
	const (
		lsb    = bitsetLSB
		msb    = bitsetMSB
		braces = '{' * lsb
	)
	n := uintptr(len(key))
	kd := unsafe.Pointer(unsafe.StringData(key))
	var slot uint16
	var h uint64
	if n-8 <= 8 { // 8 <= n <= 16
		a, b := *(*uint64)(kd), *(*uint64)(unsafe.Add(kd, n-8)) // together they cover the key
		if x, y := a^braces, b^braces; ((x-lsb)&^x|(y-lsb)&^y)&msb != 0 {
			slot, h = t.locate(unsafe.Slice((*byte)(kd), n)) // a '{': maybe a hash tag
		} else {
			slot = crc16Short(kd, n) & (keyspace.NumSlots - 1)
			k := &t.hk
			h = mix(m5^uint64(n), mix(a^k.k1, b^k.seed))
		}
	} else {
		slot, h = t.locate(unsafe.Slice((*byte)(kd), n))
	}
	ref := &t.dir[slot&(keyspace.NumSlots-1)]
	if s = ref.st.Load(); s == nil {
		return nil, nil, 0, 0, probeMiss
	}
	v0 = s.seq.Load()
	raw := atomic.LoadPointer(&ref.idx)
	if v0&1 != 0 {
		return s, nil, 0, v0, probeTorn
	}
	if raw == nil {
		return s, nil, 0, v0, probeMissIf(s.seq.Load() == v0)
	}
	// The tagged pointers (index, page 0) each describe their own size, so whatever mix of
	// old and new values this reads, every access below stays inside memory it points to.
	tag := uintptr(raw) & 63
	groups := unsafe.Add(raw, -int(tag))
	gmask := uintptr(1)<<tag - 1
	hb := lsb * (h & 0x7f)
	g := uintptr(h>>7) & gmask
	for i := uintptr(1); ; i++ {
		grp := unsafe.Add(groups, g*groupWords*8)
		lo := atomic.LoadUint64((*uint64)(grp))
		hi := atomic.LoadUint64((*uint64)(unsafe.Add(grp, 8)))
		// Candidates: bytes equal to the tag, as byte masks (bit 7 of each byte).
		x, y := lo^hb, hi^hb
		m, jb := (x-lsb)&^x&msb, uintptr(0)
		for {
			for ; m != 0; m &= m - 1 {
				j := jb + uintptr(bits.TrailingZeros64(m))/8
				off := uintptr(atomic.LoadUint32((*uint32)(unsafe.Add(grp, 16+4*j))))
				var rp unsafe.Pointer // the record
				var avail uintptr     // bytes readable from rp
				if off < maxPage {
					p := atomic.LoadPointer(&s.page0)
					t := uintptr(p) & 7
					size := uintptr(minPage) << t
					if p == nil || off+2 > size {
						return s, nil, 0, v0, probeTorn
					}
					rp, avail = unsafe.Add(p, off-t), size-off
				} else if rp, avail = s.recordSlow(uint32(off), v0); rp == nil {
					return s, nil, 0, v0, probeTorn
				}
				kl, vl := uintptr(*(*byte)(rp)), uintptr(*(*byte)(unsafe.Add(rp, 1)))
				if kl|vl >= 0x80 {
					vp, vn, match, good := matchLong(key, rp, avail)
					if !good {
						return s, nil, 0, v0, probeTorn
					}
					if match {
						return s, vp, vn, v0, probeHit
					}
					continue
				}
				if 2+kl+vl > avail {
					return s, nil, 0, v0, probeTorn
				}
				if kl != n {
					continue
				}
				kp := unsafe.Add(rp, 2)
				if n-8 <= 8 {
					// Two overlapping words compare the key without a call.
					if *(*uint64)(kp) != *(*uint64)(kd) ||
						*(*uint64)(unsafe.Add(kp, n-8)) != *(*uint64)(unsafe.Add(kd, n-8)) {
						continue
					}
				} else if unsafe.String((*byte)(kp), kl) != key {
					continue
				}
				return s, unsafe.Add(kp, kl), vl, v0, probeHit
			}
			if jb != 0 {
				break
			}
			m, jb = (y-lsb)&^y&hiMSB, 8
		}
		// Empty (not deleted) entries end the probe: 1000_0000 is the only control byte with
		// bit 7 set and bit 1 clear.
		if (lo&^(lo<<6))&msb|(hi&^(hi<<6))&hiMSB != 0 {
			return s, nil, 0, v0, probeMissIf(s.seq.Load() == v0)
		}
		if i > gmask {
			// Every group probed without meeting an empty entry: a consistent index always
			// has one (fill <= 7/8), so this was a torn read.
			return s, nil, 0, v0, probeTorn
		}
		g = (g + i) & gmask
	}
}

// probeMissIf returns probeMiss if valid, else probeTorn.
func probeMissIf(valid bool) int {
	if valid {
		return probeMiss
	}
	return probeTorn
}

// get is Get, Peek and Has (they copy at most limit bytes of the value) after a failed first
// attempt, or on platforms without lock-free reads: a few more optimistic attempts, then the
// read lock.
func (t *Table) get(key []byte, dst []byte, limit int) ([]byte, bool) {
	if lockFreeReads {
		for range readTries {
			s, v, vl, v0, res := t.probeKey(unsafe.String(unsafe.SliceData(key), len(key)))
			if res == probeMiss {
				return dst, false
			}
			if res == probeHit {
				val := append(dst, unsafe.Slice((*byte)(v), min(vl, uintptr(limit)))...)
				if s.seq.Load() == v0 {
					return val, true
				}
			}
		}
	}
	slot, h := t.locate(key)
	s := t.reader(slot)
	if s == nil {
		return dst, false
	}
	s.mu.RLock()
	p, v := s.find(key, h)
	if p >= 0 {
		dst = append(dst, v[:min(len(v), limit)]...)
	}
	s.mu.RUnlock()
	return dst, p >= 0
}

// matchLong compares key with the record at rp (avail bytes readable) whose header takes
// more than two bytes (a key or value of 128 bytes or more). good is false when the record is
// malformed (torn); otherwise match reports whether its key is key, and v, vl locate its
// value.
func matchLong(key string, rp unsafe.Pointer, avail uintptr) (v unsafe.Pointer, vl uintptr, match, good bool) {
	k, val, ok := parseRecordChecked(unsafe.Slice((*byte)(rp), avail))
	if !ok {
		return nil, 0, false, false
	}
	if string(k) != key {
		return nil, 0, false, true
	}
	return unsafe.Pointer(unsafe.SliceData(val)), uintptr(len(val)), true, true
}

// recordSlow returns the address of the record at off, outside page 0, and the bytes
// readable from there, for a reader that started at sequence v0; nil when a writer
// interfered. The page lists are validated before use: their length and array come from
// separate words.
func (s *slotTable) recordSlow(off uint32, v0 uint64) (unsafe.Pointer, uintptr) {
	if off&largeBit != 0 {
		lp, nl := s.rlarge.Load(), s.nlarge.Load()
		i := off &^ largeBit
		if s.seq.Load() != v0 || i >= nl {
			return nil, 0
		}
		pg := (*page)(unsafe.Add(unsafe.Pointer(lp), uintptr(i)*unsafe.Sizeof(page{})))
		base, size := atomic.LoadPointer(&pg.base), atomic.LoadUintptr(&pg.size)
		if s.seq.Load() != v0 || base == nil || size < 2 {
			return nil, 0
		}
		return base, size
	}
	sp, ns := s.rsmall.Load(), s.nsmall.Load()
	pi, o := off>>pageShift, uintptr(off&pageMask)
	if s.seq.Load() != v0 || pi >= ns {
		return nil, 0
	}
	// Every small page but page 0 has maxPage bytes, so a stale entry is as good as a fresh
	// one for bounds.
	p := atomic.LoadPointer((*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(sp), uintptr(pi)*8)))
	if p == nil || o+2 > maxPage {
		return nil, 0
	}
	return unsafe.Add(p, o), maxPage - o
}

// parseRecordChecked is parseRecord for bytes that may be torn: it reports false instead of
// panicking when the header is malformed or the lengths overrun b.
func parseRecordChecked(b []byte) (key, val []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	if kl, vl := uint(b[0]), uint(b[1]); kl < 0x80 && vl < 0x80 {
		if 2+kl+vl > uint(len(b)) {
			return nil, nil, false
		}
		return b[2 : 2+kl], b[2+kl : 2+kl+vl], true
	}
	kl, n1 := binary.Uvarint(b)
	if n1 <= 0 {
		return nil, nil, false
	}
	vl, n2 := binary.Uvarint(b[n1:])
	if n2 <= 0 {
		return nil, nil, false
	}
	rest := uint64(len(b) - n1 - n2)
	if kl > rest || vl > rest-kl {
		return nil, nil, false
	}
	b = b[n1+n2:]
	return b[:kl], b[kl : kl+vl], true
}
