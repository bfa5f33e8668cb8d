// Package keyspace maps Redis keys to the 16384 Redis Cluster hash slots and
// provides slot ranges and a map from slot ranges to owners.
//
// Key to slot follows the Redis Cluster specification exactly (CRC16-XMODEM of
// the key or of its hash tag, masked to 14 bits) so that cluster-aware clients
// compute the same slot as the server. The package imports only the standard
// library and has no mutable package state.
package keyspace

// NumSlots is the number of hash slots, as in Redis Cluster.
const NumSlots = 16384

// slotMask keeps the low 14 bits of the CRC: NumSlots is a power of two, so
// masking equals "mod NumSlots" as the Redis spec states it.
const slotMask = NumSlots - 1

// CRC16 returns the CRC-16/XMODEM checksum of b (poly 0x1021, init 0, no
// reflection, no final xor), the variant Redis Cluster uses:
// CRC16([]byte("123456789")) == 0x31C3.
func CRC16(b []byte) uint16 { return crc16(b) }

// crc16 is generic so that SlotString can hash a string without converting
// it to a []byte (which could allocate). It consumes four bytes per step
// (slicing-by-4): the byte-at-a-time CRC is a serial chain of table lookups
// and was about a third of a cache-hot table Get; four independent lookups per
// step break the chain.
func crc16[S ~string | ~[]byte](b S) uint16 {
	t := &crcSlices
	var crc uint16
	i := 0
	for ; i+4 <= len(b); i += 4 {
		crc = t[3][byte(crc>>8)^b[i]] ^ t[2][byte(crc)^b[i+1]] ^ t[1][b[i+2]] ^ t[0][b[i+3]]
	}
	for ; i < len(b); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^b[i]]
	}
	return crc
}

// crcSlices[k][x] is the CRC register after byte x followed by k zero bytes
// (crcSlices[0] is crcTable). Computed once at initialisation, read-only after.
var crcSlices = func() (t [4][256]uint16) {
	t[0] = crcTable
	for k := 1; k < 4; k++ {
		for x := range 256 {
			p := t[k-1][x]
			t[k][x] = p<<8 ^ t[0][byte(p>>8)]
		}
	}
	return t
}()

// tagBounds returns the half-open byte interval of key that is hashed: the
// bytes between the first '{' and the first '}' after it when that interval is
// non-empty, else the whole key.
func tagBounds[S ~string | ~[]byte](key S) (lo, hi int) {
	for i := 0; i < len(key); i++ {
		if key[i] != '{' {
			continue
		}
		// Only the first '{' counts; "foo{}{bar}" hashes the whole key.
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return 0, len(key)
				}
				return i + 1, j
			}
		}
		return 0, len(key)
	}
	return 0, len(key)
}

// HashTag returns the part of key that Redis Cluster hashes: if key contains
// a '{' and a '}' after it with at least one byte between the first '{' and
// the first '}' following it, that substring; otherwise key itself. The result
// aliases key. Keys sharing a hash tag ("{user1000}.following",
// "{user1000}.followers") always map to the same slot, which is what lets
// multi-key commands address them together.
func HashTag(key []byte) []byte {
	lo, hi := tagBounds(key)
	return key[lo:hi]
}

// Slot returns the hash slot of key: CRC16(HashTag(key)) mod NumSlots.
// The empty key maps to slot 0 (deterministically, unlike some clients).
func Slot(key []byte) uint16 {
	lo, hi := tagBounds(key)
	return crc16(key[lo:hi]) & slotMask
}

// SlotString is Slot for a string key; it does not allocate.
func SlotString(key string) uint16 {
	lo, hi := tagBounds(key)
	return crc16(key[lo:hi]) & slotMask
}

// crcTable is the byte-at-a-time CRC-16/XMODEM table (entry i is the CRC of
// the single byte i). It is a literal so no code ever writes it; the tests
// recompute it bitwise.
var crcTable = [256]uint16{
	0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
	0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
	0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
	0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
	0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
	0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
	0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
	0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
	0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
	0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
	0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
	0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
	0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
	0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
	0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
	0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
	0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
	0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
	0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
	0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
	0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
	0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
	0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
	0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
	0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
	0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
	0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
	0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
	0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
	0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
	0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
	0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
}
