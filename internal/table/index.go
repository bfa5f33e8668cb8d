package table

import (
	"math/bits"
	"unsafe"
)

// The per-slot index is a Swiss-style open-addressing table made of 64-byte groups, one cache
// line each, of 12 entries:
//
//	word 0      control bytes of entries 0-7
//	word 1      control bytes of entries 8-11 (low half); high half unused
//	words 2-7   record addresses, two uint32 per word (entry j in word 2+j/2, half j%2)
//
// A control byte is 7 bits of the key's hash, or empty/deleted. A lookup reads one group (one
// cache miss), matches its control bytes with SWAR arithmetic and finds the candidate's address
// in the same line. 12 entries cost 64 bytes: 5.33 bytes per entry.
//
// An entry is named by its position g<<4 | j (group g, entry j < 12).

const (
	groupEntries = 12
	groupWords   = 8
	posShift     = 4    // position = group<<posShift | entry
	ctrlEmpty    = 0x80 // 0b1000_0000
	ctrlDeleted  = 0xFE // 0b1111_1110
	bitsetLSB    = 0x0101010101010101
	bitsetMSB    = 0x8080808080808080
	hiMSB        = 0x0000000080808080 // the 4 valid control bytes of word 1
	// maxLoadNum/maxLoadDen is the highest fill (live entries plus tombstones) of an index.
	maxLoadNum, maxLoadDen = 7, 8
)

// index is the group array of one slot: len is groupWords times a power of two.
type index []uint64

// newIndex returns an index of ngroups groups with every entry empty. The array is 64-byte
// aligned, so that each group is one cache line and slotRef can tag its address. Go's
// allocator already aligns power-of-two sizes of 64 bytes and more; the check makes sure.
func newIndex(ngroups int) index {
	x := make(index, ngroups*groupWords)
	if a := uintptr(unsafe.Pointer(&x[0])); a%64 != 0 {
		x = make(index, (ngroups+1)*groupWords)
		skip := (64 - uintptr(unsafe.Pointer(&x[0]))%64) / 8
		x = x[skip : skip+uintptr(ngroups*groupWords)]
	}
	for g := 0; g < len(x); g += groupWords {
		x[g] = bitsetMSB
		x[g+1] = bitsetMSB
	}
	return x
}

func (x index) groups() int { return len(x) / groupWords }

// ctrl returns the control words of group g; lo holds entries 0-7, hi entries 8-11.
func (x index) ctrl(g uint64) (lo, hi uint64) {
	w := x[g*groupWords : g*groupWords+2]
	return w[0], w[1]
}

// ctrlAt returns the control byte at position p.
func (x index) ctrlAt(p int) byte {
	j := p & 15
	return byte(x[(p>>posShift)*groupWords+j/8] >> (8 * (j % 8)))
}

// setCtrl sets the control byte at position p.
func (x index) setCtrl(p int, c byte) {
	j := p & 15
	w := &x[(p>>posShift)*groupWords+j/8]
	sh := 8 * (j % 8)
	*w = *w&^(0xFF<<sh) | uint64(c)<<sh
}

// off returns the record address at position p.
func (x index) off(p int) uint32 {
	j := p & 15
	return uint32(x[(p>>posShift)*groupWords+2+j/2] >> (32 * (j & 1)))
}

// setOff sets the record address at position p.
func (x index) setOff(p int, off uint32) {
	j := p & 15
	w := &x[(p>>posShift)*groupWords+2+j/2]
	sh := 32 * (j & 1)
	*w = *w&^(0xFFFFFFFF<<sh) | uint64(off)<<sh
}

// pack gathers the high bit of each byte of m into an 8-bit mask (byte k -> bit k).
func pack(m uint64) uint32 { return uint32(((m >> 7) * 0x0102040810204080) >> 56) }

// matchH2 returns a 12-bit mask of the entries whose control byte equals h2. It may report
// false positives next to a true match (the SWAR borrow); callers compare keys anyway.
func matchH2(lo, hi, h2 uint64) uint32 {
	b := bitsetLSB * h2
	vl, vh := lo^b, hi^b
	return pack(((vl-bitsetLSB)&^vl)&bitsetMSB) | pack(((vh-bitsetLSB)&^vh)&hiMSB)<<8
}

// matchEmpty returns the entries that are empty (not deleted, not full): empty 1000_0000 and
// deleted 1111_1110 both have the high bit set; only empty has bit 1 clear.
func matchEmpty(lo, hi uint64) uint32 {
	return pack((lo&^(lo<<6))&bitsetMSB) | pack((hi&^(hi<<6))&hiMSB)<<8
}

// matchEmptyOrDeleted returns the entries that are not full.
func matchEmptyOrDeleted(lo, hi uint64) uint32 {
	return pack(lo&bitsetMSB) | pack(hi&hiMSB)<<8
}

// matchFull returns the entries holding a key.
func matchFull(lo, hi uint64) uint32 { return ^matchEmptyOrDeleted(lo, hi) & 0xFFF }

// firstMatch returns the entry number of the lowest bit of a match mask.
func firstMatch(m uint32) int { return bits.TrailingZeros32(m) }

// splitHash splits a 64-bit hash into the group-selecting part h1 and the 7-bit tag h2.
func splitHash(h uint64) (h1, h2 uint64) { return h >> 7, h & 0x7f }

// growthFor is the number of entries an index of ngroups groups may hold (live plus
// tombstones).
func growthFor(ngroups int) int { return ngroups * groupEntries * maxLoadNum / maxLoadDen }
