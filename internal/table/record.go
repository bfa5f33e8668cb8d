package table

import "encoding/binary"

// A record is [uvarint klen][uvarint vlen][key][val]. For the common small pair both lengths
// are a single byte, so the header costs 2 bytes per pair.

// uvarintLen is the encoded size of v as a uvarint.
func uvarintLen(v int) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// recLen is the size of the record holding a key of kl bytes and a value of vl bytes.
func recLen(kl, vl int) int {
	if kl < 0x80 && vl < 0x80 {
		return 2 + kl + vl
	}
	return uvarintLen(kl) + uvarintLen(vl) + kl + vl
}

// putRecord writes the record of key and val into b, which must be exactly recLen long.
func putRecord(b, key, val []byte) {
	var n int
	if len(key) < 0x80 && len(val) < 0x80 {
		b[0], b[1] = byte(len(key)), byte(len(val))
		n = 2
	} else {
		n = binary.PutUvarint(b, uint64(len(key)))
		n += binary.PutUvarint(b[n:], uint64(len(val)))
	}
	n += copy(b[n:], key)
	copy(b[n:], val)
}

// recHeader decodes the lengths at the start of a record and the header size.
func recHeader(b []byte) (kl, vl, hdr int) {
	if b[0] < 0x80 && b[1] < 0x80 {
		return int(b[0]), int(b[1]), 2
	}
	k, n1 := binary.Uvarint(b)
	v, n2 := binary.Uvarint(b[n1:])
	return int(k), int(v), n1 + n2
}

// parseRecord returns the key and value of the record at the start of b. The slices alias b.
func parseRecord(b []byte) (key, val []byte) {
	kl, vl, h := recHeader(b)
	return b[h : h+kl : h+kl], b[h+kl : h+kl+vl : h+kl+vl]
}

// recordKey returns the key of the record at the start of b.
func recordKey(b []byte) []byte {
	kl, _, h := recHeader(b)
	return b[h : h+kl : h+kl]
}

// recordSize returns the total size of the record at the start of b.
func recordSize(b []byte) int {
	kl, vl, h := recHeader(b)
	return h + kl + vl
}
