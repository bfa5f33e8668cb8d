package table

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"unsafe"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// A key is hashed twice: CRC-16 picks its slot (Redis Cluster's contract, keyspace.Slot) and
// a 64-bit seeded hash places it in the slot's index. Both are computed here in one pass, and
// without calls for keys of 8 to 16 bytes, the common size: keyspace.Slot scans for a hash
// tag byte by byte and runs its CRC four bytes per dependent step, and maphash costs a call
// chain; together they cost about as much as a whole Go map lookup.

// hashKey is a Table's secret for its index hash. It is random so that clients cannot choose
// keys that collide in an index (hash flooding).
type hashKey struct{ seed, k1, k2, k3 uint64 }

func newHashKey() hashKey {
	// Odd values, as in the Go runtime's hash keys, so that no multiplier is zero.
	return hashKey{rand.Uint64() | 1, rand.Uint64() | 1, rand.Uint64() | 1, rand.Uint64() | 1}
}

const m5 = 0x1d8e4e27c47d124f

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func r4(b []byte) uint64 { return uint64(binary.LittleEndian.Uint32(b)) }
func r8(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

// hash returns the index hash of key: wyhash as the Go runtime uses it for maps on hardware
// without AES instructions (runtime.memhashFallback), keyed by k.
func (k *hashKey) hash(key []byte) uint64 {
	s := len(key)
	seed := k.seed
	var a, b uint64
	switch {
	case s == 0:
		return seed
	case s < 4:
		a = uint64(key[0]) | uint64(key[s>>1])<<8 | uint64(key[s-1])<<16
	case s == 4:
		a = r4(key)
		b = a
	case s < 8:
		a = r4(key)
		b = r4(key[s-4:])
	case s == 8:
		a = r8(key)
		b = a
	case s <= 16:
		a = r8(key)
		b = r8(key[s-8:])
	default:
		p := key
		if len(p) > 48 {
			seed1, seed2 := seed, seed
			for ; len(p) > 48; p = p[48:] {
				seed = mix(r8(p)^k.k1, r8(p[8:])^seed)
				seed1 = mix(r8(p[16:])^k.k2, r8(p[24:])^seed1)
				seed2 = mix(r8(p[32:])^k.k3, r8(p[40:])^seed2)
			}
			seed ^= seed1 ^ seed2
		}
		for ; len(p) > 16; p = p[16:] {
			seed = mix(r8(p)^k.k1, r8(p[8:])^seed)
		}
		a = r8(key[s-16:])
		b = r8(key[s-8:])
	}
	return mix(m5^uint64(s), mix(a^k.k1, b^seed))
}

// locate returns the hash slot of key (keyspace.Slot) and its index hash (hashKey.hash).
// A key containing a '{' has its slot computed by keyspace.Slot, which alone knows hash tags.
// TestLocate checks both results against the reference functions.
func (t *Table) locate(key []byte) (slot uint16, h uint64) {
	const (
		lsb    = 0x0101010101010101
		msb    = 0x8080808080808080
		braces = '{' * lsb
	)
	if n := len(key); n >= 8 && n <= 16 {
		a, b := r8(key), r8(key[n-8:]) // together they cover the key
		// The classic has-zero-byte test on w^braces: nonzero iff some byte of w is '{'.
		if x, y := a^braces, b^braces; ((x-lsb)&^x|(y-lsb)&^y)&msb == 0 {
			k := &t.hk
			crc := crc16Short(unsafe.Pointer(unsafe.SliceData(key)), uintptr(n))
			return crc & (keyspace.NumSlots - 1), mix(m5^uint64(n), mix(a^k.k1, b^k.seed))
		}
	}
	crc, brace := crc16NoBrace(key)
	if brace {
		slot = keyspace.Slot(key)
	} else {
		slot = crc & (keyspace.NumSlots - 1)
	}
	return slot, t.hk.hash(key)
}

// crc16Short returns CRC-16/XMODEM of the n bytes at p, 8 <= n <= 16: one table entry per
// byte (see crc16Rows), none depending on another, summed as a balanced tree.
func crc16Short(p unsafe.Pointer, n uintptr) uint16 {
	f, e := (*[8]byte)(p), (*[8]byte)(unsafe.Add(p, n-8))
	tb := unsafe.Pointer(crc16RowsPtr)
	r := unsafe.Add(tb, n*512) // rows n..n+7, 16 <= n+7 <= 23
	c0 := (crcRow(r, 7, f[0]) ^ crcRow(r, 6, f[1])) ^ (crcRow(r, 5, f[2]) ^ crcRow(r, 4, f[3]))
	c1 := (crcRow(r, 3, f[4]) ^ crcRow(r, 2, f[5])) ^ (crcRow(r, 1, f[6]) ^ crcRow(r, 0, f[7]))
	c2 := (crcRow(tb, 7, e[0]) ^ crcRow(tb, 6, e[1])) ^ (crcRow(tb, 5, e[2]) ^ crcRow(tb, 4, e[3]))
	c3 := (crcRow(tb, 3, e[4]) ^ crcRow(tb, 2, e[5])) ^ (crcRow(tb, 1, e[6]) ^ crcRow(tb, 0, e[7]))
	return (c0 ^ c1) ^ (c2 ^ c3)
}

// crcRow returns entry b of row k of the CRC tables at rows: with rows in a register and k
// constant, one load instruction (indexing a [24][256]uint16 by a computed row instead makes
// the compiler rebuild the row address for every entry).
func crcRow(rows unsafe.Pointer, k uintptr, b byte) uint16 {
	return *(*uint16)(unsafe.Add(rows, k*512+uintptr(b)*2))
}

// crc16NoBrace returns CRC-16/XMODEM of b (Redis Cluster's key hash), and whether b contains
// a '{', in which case the CRC is meaningless (the slot may depend on a hash tag). It takes
// eight bytes per step (slicing-by-8).
func crc16NoBrace(b []byte) (crc uint16, brace bool) {
	const (
		lsb    = 0x0101010101010101
		msb    = 0x8080808080808080
		braces = '{' * lsb
	)
	t := &crc16Tables
	for len(b) >= 8 {
		w := r8(b)
		if x := w ^ braces; (x-lsb)&^x&msb != 0 {
			return 0, true
		}
		crc = t[7][byte(crc>>8)^byte(w)] ^ t[6][byte(crc)^byte(w>>8)] ^
			t[5][byte(w>>16)] ^ t[4][byte(w>>24)] ^ t[3][byte(w>>32)] ^
			t[2][byte(w>>40)] ^ t[1][byte(w>>48)] ^ t[0][byte(w>>56)]
		b = b[8:]
	}
	for _, c := range b {
		if c == '{' {
			return 0, true
		}
		crc = crc<<8 ^ t[0][byte(crc>>8)^c]
	}
	return crc, false
}

// crc16Rows arranges the tables for keys of 8 to 16 bytes read as two 8-byte windows, the
// first and the last 8 bytes (see probeKey): rows 0-7 are crc16Tables[0-7], for the last
// window; rows 8-15 are zero and rows 16-23 are crc16Tables[8-15], so that for a key of n
// bytes the first window's byte i uses row n+7-i, which is zero exactly for the bytes the
// last window already counts.
var crc16Rows = func() (r [24][256]uint16) {
	copy(r[0:8], crc16Tables[0:8])
	copy(r[16:24], crc16Tables[8:16])
	return r
}()

// crc16RowsPtr is &crc16Rows, loaded from a variable so that the compiler addresses the rows
// from one register (one instruction per lookup) rather than materialising each row's
// address from the symbol (two).
var crc16RowsPtr = &crc16Rows

// crc16Tables[k][x] is the CRC-16/XMODEM register (polynomial 0x1021, MSB first, initial 0)
// after byte x followed by k zero bytes.
var crc16Tables = func() (t [16][256]uint16) {
	for x := range 256 {
		c := uint16(x) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[0][x] = c
	}
	for k := 1; k < len(t); k++ {
		for x := range 256 {
			p := t[k-1][x]
			t[k][x] = p<<8 ^ t[0][byte(p>>8)]
		}
	}
	return t
}()
