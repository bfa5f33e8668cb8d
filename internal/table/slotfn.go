package table

import "bytes"

// slotOf returns keyspace.Slot(key) — CRC16-XMODEM of the key's hash tag, 14 bits — computed
// four bytes per step. The byte-at-a-time CRC is a serial chain of table lookups and took
// about a third of a cache-hot Get; slicing-by-4 breaks the chain into independent lookups.
// TestSlotOf checks it against keyspace.Slot.
func slotOf(key []byte) uint16 {
	if i := bytes.IndexByte(key, '{'); i >= 0 {
		// Only the first '{' counts, with the first '}' after it and something between.
		if j := bytes.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) & (1<<14 - 1)
}

// crc16 is CRC-16/XMODEM (poly 0x1021, init 0), slicing by 4.
func crc16(b []byte) uint16 {
	t := &crcSlices
	var crc uint16
	for len(b) >= 4 {
		crc = t[3][byte(crc>>8)^b[0]] ^ t[2][byte(crc)^b[1]] ^ t[1][b[2]] ^ t[0][b[3]]
		b = b[4:]
	}
	for _, c := range b {
		crc = crc<<8 ^ t[0][byte(crc>>8)^c]
	}
	return crc
}

// crcSlices[k][x] is the CRC register after byte x followed by k zero bytes. Read-only after
// package initialisation.
var crcSlices = func() (t [4][256]uint16) {
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
	for k := 1; k < 4; k++ {
		for x := range 256 {
			p := t[k-1][x]
			t[k][x] = p<<8 ^ t[0][byte(p>>8)]
		}
	}
	return t
}()
