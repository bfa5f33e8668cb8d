package keyspace

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCRC16(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"", 0x0000},
		{"123456789", 0x31C3},
		{"A", 0x58e5},
	}
	for _, tc := range tests {
		if got := CRC16([]byte(tc.in)); got != tc.want {
			t.Errorf("CRC16(%q) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
}

// TestCRCTable recomputes the literal table bit by bit.
func TestCRCTable(t *testing.T) {
	for i := range 256 {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		if crcTable[i] != c {
			t.Fatalf("crcTable[%d] = %#04x, want %#04x", i, crcTable[i], c)
		}
	}
}

func TestHashTag(t *testing.T) {
	tests := []struct{ key, want string }{
		{"", ""},
		{"foo", "foo"},
		{"{user1000}.following", "user1000"},
		{"{user1000}.followers", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{bar}{zap}", "bar"},
		{"{}foo", "{}foo"},
		{"{}", "{}"},
		{"{", "{"},
		{"}", "}"},
		{"foo{bar", "foo{bar"},
		{"foo}bar{", "foo}bar{"},
		{"}{a}", "a"},
		{"a{b}", "b"},
		{"{a}", "a"},
		{"{{}}", "{"},
	}
	for _, tc := range tests {
		if got := string(HashTag([]byte(tc.key))); got != tc.want {
			t.Errorf("HashTag(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestSlot(t *testing.T) {
	tests := []struct {
		key  string
		want uint16
	}{
		{"", 0},
		{"foo", 12182},
		{"123456789", 0x31C3 & 0x3FFF},
		{"somekey", 11058},             // redis.io CLUSTER KEYSLOT example
		{"foo{hash_tag}", 2515},        // redis.io CLUSTER KEYSLOT example
		{"bar{hash_tag}", 2515},        // same tag, same slot
		{"{foo}bar", 12182},            // tag "foo"
		{"foo{}{bar}", 8363},           // empty first tag: whole key
		{"foo{bar}{zap}", 5061},        // tag "bar"
		{"{user1000}.following", 3443}, // tag "user1000"
	}
	for _, tc := range tests {
		if got := Slot([]byte(tc.key)); got != tc.want {
			t.Errorf("Slot(%q) = %d, want %d", tc.key, got, tc.want)
		}
		if got := SlotString(tc.key); got != tc.want {
			t.Errorf("SlotString(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	if Slot([]byte("{user1000}.following")) != Slot([]byte("{user1000}.followers")) {
		t.Error("{user1000}.following and {user1000}.followers differ in slot")
	}
	if Slot([]byte("foo{bar}{zap}")) != SlotString("bar") {
		t.Error("foo{bar}{zap} does not hash as bar")
	}
	if Slot([]byte("foo{{bar}}zap")) != SlotString("{bar") {
		t.Error("foo{{bar}}zap does not hash as {bar")
	}
}

func TestSlotStringNoAlloc(t *testing.T) {
	key := strings.Repeat("k", 40) + "{tag}"
	var sink uint16
	n := testing.AllocsPerRun(100, func() { sink += SlotString(key) })
	if n != 0 {
		t.Errorf("SlotString allocates %v times per call", n)
	}
	b := []byte(key)
	n = testing.AllocsPerRun(100, func() { sink += Slot(b) })
	if n != 0 {
		t.Errorf("Slot allocates %v times per call", n)
	}
	_ = sink
}

// naiveHashTag is the spec's rule written with the standard library.
func naiveHashTag(key []byte) []byte {
	s := bytes.IndexByte(key, '{')
	if s < 0 {
		return key
	}
	e := bytes.IndexByte(key[s+1:], '}')
	if e <= 0 {
		return key
	}
	return key[s+1 : s+1+e]
}

func FuzzSlot(f *testing.F) {
	for _, s := range []string{"", "foo", "{user1000}.following", "foo{}{bar}",
		"foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "}{a}", "\xff{\x00}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		tag := HashTag(key)
		if want := naiveHashTag(key); !bytes.Equal(tag, want) {
			t.Fatalf("HashTag(%q) = %q, want %q", key, tag, want)
		}
		// The tag is a subslice of key: HashTag never copies.
		if len(tag) > 0 && !bytes.Contains(key, tag) {
			t.Fatalf("HashTag(%q) = %q is not part of the key", key, tag)
		}
		s := Slot(key)
		if s >= NumSlots {
			t.Fatalf("Slot(%q) = %d out of range", key, s)
		}
		// A tag holds no '}', so it has no tag of its own and hashes to the
		// same slot as the key.
		if got := Slot(tag); got != s {
			t.Fatalf("Slot(HashTag(%q)) = %d, Slot = %d", key, got, s)
		}
		if got := CRC16(tag) & 0x3FFF; got != s {
			t.Fatalf("CRC16(HashTag(%q)) & 0x3FFF = %d, Slot = %d", key, got, s)
		}
		if got := SlotString(string(key)); got != s {
			t.Fatalf("SlotString(%q) = %d, Slot = %d", key, got, s)
		}
		// Wrapping a '{'-free, '}'-free non-empty key as a tag keeps its slot.
		if len(key) > 0 && !bytes.ContainsAny(key, "{}") {
			wrapped := append(append([]byte("x{"), key...), "}y{z}"...)
			if got := Slot(wrapped); got != s {
				t.Fatalf("Slot(%q) = %d, want %d", wrapped, got, s)
			}
		}
	})
}

func BenchmarkSlotString(b *testing.B) {
	key := "user:1000:profile"
	for b.Loop() {
		SlotString(key)
	}
}

// crc16Bytewise is the plain byte-at-a-time CRC, the reference for the sliced crc16.
func crc16Bytewise(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^c]
	}
	return crc
}

// TestSlicedCRCMatchesBytewise checks the four-bytes-per-step CRC (and so Slot)
// against the byte-at-a-time definition, on hash-tag shapes and random keys.
func TestSlicedCRCMatchesBytewise(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cases := []string{"", "a", "123456789", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "{}x", "{", "}", "{a", "a}", "x{y}"}
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = "ab{}xyz\x00\xff"[rng.IntN(9)]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := crc16([]byte(c)), crc16Bytewise([]byte(c)); got != want {
			t.Fatalf("crc16(%q) = %#x, want %#x", c, got, want)
		}
		tag := HashTag([]byte(c))
		if got, want := Slot([]byte(c)), crc16Bytewise(tag)&slotMask; got != want {
			t.Fatalf("Slot(%q) = %d, want %d", c, got, want)
		}
		if SlotString(c) != Slot([]byte(c)) {
			t.Fatalf("SlotString(%q) differs from Slot", c)
		}
	}
}
