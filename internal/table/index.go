package table

import (
	"encoding/binary"
	"math/bits"
)

// The per-slot index is a small Swiss-style open-addressing table: a control byte per entry
// (7 hash bits, or empty/deleted) and a parallel uint32 record address per entry. Entries form
// groups of 8 whose control bytes are read as one uint64 and matched with SWAR tricks, so a
// lookup usually inspects a single 8-byte word and then one record.

const (
	groupSize   = 8
	ctrlEmpty   = 0x80 // 0b1000_0000
	ctrlDeleted = 0xFE // 0b1111_1110
	bitsetLSB   = 0x0101010101010101
	bitsetMSB   = 0x8080808080808080
	// maxLoadNum/maxLoadDen is the highest fill (live entries plus tombstones) of an index.
	maxLoadNum, maxLoadDen = 7, 8
)

// ctrlWord loads the 8 control bytes of group g.
func ctrlWord(ctrl []byte, g uint64) uint64 {
	return binary.LittleEndian.Uint64(ctrl[g*groupSize : g*groupSize+groupSize])
}

// matchH2 returns a bitset (high bit of each byte) of the entries whose control byte equals h2.
// It may report false positives next to a true match (the classic SWAR borrow); callers compare
// keys anyway, so that only costs a key comparison.
func matchH2(w, h2 uint64) uint64 {
	v := w ^ (bitsetLSB * h2)
	return ((v - bitsetLSB) &^ v) & bitsetMSB
}

// matchEmpty returns the entries that are empty (not deleted, not full).
func matchEmpty(w uint64) uint64 {
	// empty 1000_0000 and deleted 1111_1110 both have the high bit set; only empty has bit 1 clear.
	return (w &^ (w << 6)) & bitsetMSB
}

// matchEmptyOrDeleted returns the entries that are not full.
func matchEmptyOrDeleted(w uint64) uint64 { return w & bitsetMSB }

// firstMatch converts the lowest bit of a match bitset to an entry index within the group.
func firstMatch(m uint64) uint64 { return uint64(bits.TrailingZeros64(m) >> 3) }

// splitHash splits a 64-bit hash into the group-selecting part h1 and the 7-bit tag h2.
func splitHash(h uint64) (h1, h2 uint64) { return h >> 7, h & 0x7f }

// newCtrl returns n control bytes, all empty.
func newCtrl(n int) []byte {
	c := make([]byte, n)
	for i := range c {
		c[i] = ctrlEmpty
	}
	return c
}

// growthFor is the number of entries an index of capacity c may hold (live plus tombstones).
func growthFor(c int) int { return c * maxLoadNum / maxLoadDen }
