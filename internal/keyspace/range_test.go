package keyspace

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestRangeMethods(t *testing.T) {
	r := Range{10, 20}
	if !r.Contains(10) || !r.Contains(19) || r.Contains(20) || r.Contains(9) {
		t.Error("Contains is not half-open")
	}
	if r.Len() != 10 || r.Empty() {
		t.Errorf("Len/Empty of %v wrong", r)
	}
	for _, e := range []Range{{}, {5, 5}, {7, 3}} {
		if !e.Empty() || e.Len() != 0 || e.Contains(e.Lo) {
			t.Errorf("%v should be empty", e)
		}
	}
	if All() != (Range{0, NumSlots}) || All().Len() != NumSlots || All().String() != "[0,16384)" {
		t.Errorf("All() = %v", All())
	}
	if !All().Contains(NumSlots-1) || SlotRange(7) != (Range{7, 8}) {
		t.Error("All/SlotRange wrong")
	}
	if !(Range{0, 16384}).Valid() || (Range{0, 16385}).Valid() || (Range{3, 2}).Valid() {
		t.Error("Valid wrong")
	}

	overlaps := []struct {
		a, b Range
		want bool
		x    Range
	}{
		{Range{0, 10}, Range{10, 20}, false, Range{}},
		{Range{0, 11}, Range{10, 20}, true, Range{10, 11}},
		{Range{12, 15}, Range{10, 20}, true, Range{12, 15}},
		{Range{0, 100}, Range{5, 5}, false, Range{}},
		{Range{30, 40}, Range{10, 20}, false, Range{}},
		{All(), Range{100, 200}, true, Range{100, 200}},
	}
	for _, tc := range overlaps {
		if got := tc.a.Overlaps(tc.b); got != tc.want {
			t.Errorf("%v.Overlaps(%v) = %v", tc.a, tc.b, got)
		}
		if got := tc.b.Overlaps(tc.a); got != tc.want {
			t.Errorf("%v.Overlaps(%v) = %v", tc.b, tc.a, got)
		}
		if got := tc.a.Intersect(tc.b); got != tc.x {
			t.Errorf("%v.Intersect(%v) = %v, want %v", tc.a, tc.b, got, tc.x)
		}
	}

	splits := []struct {
		r      Range
		at     uint16
		lo, hi Range
	}{
		{Range{10, 20}, 15, Range{10, 15}, Range{15, 20}},
		{Range{10, 20}, 10, Range{10, 10}, Range{10, 20}},
		{Range{10, 20}, 20, Range{10, 20}, Range{20, 20}},
		{Range{10, 20}, 5, Range{10, 10}, Range{10, 20}},
		{Range{10, 20}, 500, Range{10, 20}, Range{20, 20}},
		{All(), 8192, Range{0, 8192}, Range{8192, 16384}},
	}
	for _, tc := range splits {
		lo, hi := tc.r.Split(tc.at)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("%v.Split(%d) = %v, %v; want %v, %v", tc.r, tc.at, lo, hi, tc.lo, tc.hi)
		}
		if lo.Len()+hi.Len() != tc.r.Len() {
			t.Errorf("%v.Split(%d) does not partition", tc.r, tc.at)
		}
	}
}

func TestParseRange(t *testing.T) {
	good := []struct {
		in   string
		want Range
	}{
		{"[0,16384)", All()},
		{"0-16383", All()},
		{"[5,5)", Range{5, 5}},
		{"[10,20)", Range{10, 20}},
		{"10-20", Range{10, 21}},
		{"42", Range{42, 43}},
		{"16383", Range{16383, 16384}},
		{" 1-2 ", Range{1, 3}},
	}
	for _, tc := range good {
		got, err := ParseRange(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRange(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	bad := []string{"", "-", "[0,16385)", "0-16384", "16384", "[3,2)", "3-2",
		"[1,2]", "[1 2)", "a", "1-", "-1", "+1", "1-2-3", "[,1)", "[1,)", "1 - 2", "99999999999"}
	for _, in := range bad {
		if r, err := ParseRange(in); err == nil {
			t.Errorf("ParseRange(%q) = %v, want error", in, r)
		} else if !errors.Is(err, ErrBadRange) {
			t.Errorf("ParseRange(%q) error %v does not wrap ErrBadRange", in, err)
		}
	}
	// String and ParseRange round-trip.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		r := randRange(rng)
		if got, err := ParseRange(r.String()); err != nil || got != r {
			t.Fatalf("ParseRange(%q) = %v, %v", r.String(), got, err)
		}
	}
}

// randRange returns a valid, possibly empty, range; short ranges and ranges
// at the ends of the keyspace are favoured to exercise the edges.
func randRange(rng *rand.Rand) Range {
	lo := uint16(rng.IntN(NumSlots + 1))
	var hi uint16
	switch rng.IntN(4) {
	case 0:
		hi = lo + uint16(rng.IntN(4))
	case 1:
		hi = lo + uint16(rng.IntN(200))
	case 2:
		lo = uint16(rng.IntN(3))
		hi = uint16(NumSlots - rng.IntN(3))
	default:
		hi = uint16(rng.IntN(NumSlots + 1))
	}
	hi = min(hi, NumSlots)
	if lo > hi {
		lo, hi = hi, lo
	}
	return Range{lo, hi}
}

func TestRangeMapBasic(t *testing.T) {
	var m RangeMap[string]
	if _, _, ok := m.Lookup(0); ok || m.Len() != 0 {
		t.Fatal("zero RangeMap not empty")
	}
	m.Set(All(), "a")
	m.Set(Range{100, 200}, "b") // splits a
	m.Set(Range{150, 300}, "c") // cuts b, a
	m.Delete(Range{0, 50})
	m.Set(Range{7, 7}, "empty") // no-op
	want := []struct {
		r Range
		v string
	}{
		{Range{50, 100}, "a"},
		{Range{100, 150}, "b"},
		{Range{150, 300}, "c"},
		{Range{300, 16384}, "a"},
	}
	if m.Len() != len(want) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(want))
	}
	i := 0
	for r, v := range m.All() {
		if r != want[i].r || v != want[i].v {
			t.Errorf("entry %d = %v %q, want %v %q", i, r, v, want[i].r, want[i].v)
		}
		i++
	}
	lookups := []struct {
		slot uint16
		v    string
		r    Range
		ok   bool
	}{
		{0, "", Range{}, false},
		{49, "", Range{}, false},
		{50, "a", Range{50, 100}, true},
		{149, "b", Range{100, 150}, true},
		{150, "c", Range{150, 300}, true},
		{16383, "a", Range{300, 16384}, true},
		{16384, "", Range{}, false},
		{65535, "", Range{}, false},
	}
	for _, tc := range lookups {
		v, r, ok := m.Lookup(tc.slot)
		if v != tc.v || r != tc.r || ok != tc.ok {
			t.Errorf("Lookup(%d) = %q %v %v, want %q %v %v", tc.slot, v, r, ok, tc.v, tc.r, tc.ok)
		}
	}
	// Early break from All.
	n := 0
	for range m.All() {
		n++
		break
	}
	if n != 1 {
		t.Error("All does not stop")
	}
	// Clone is independent.
	c := m.Clone()
	c.Set(All(), "z")
	if v, _, _ := m.Lookup(200); v != "c" || c.Len() != 1 || m.Len() != 4 {
		t.Error("Clone shares state")
	}
	m.Delete(All())
	if m.Len() != 0 {
		t.Error("Delete(All()) left entries")
	}
}

func TestRangeMapPanicsOnInvalid(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Set of [0,16385) did not panic")
		}
	}()
	var m RangeMap[int]
	m.Set(Range{0, NumSlots + 1}, 1)
}

// TestRangeMapModel checks RangeMap against a per-slot array under random
// Set and Delete operations.
func TestRangeMapModel(t *testing.T) {
	type cell struct {
		v  int
		ok bool
	}
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 99))
		var model [NumSlots]cell
		var m RangeMap[int]
		for op := range 600 {
			r := randRange(rng)
			if rng.IntN(3) == 0 {
				m.Delete(r)
				for s := int(r.Lo); s < int(r.Hi); s++ {
					model[s] = cell{}
				}
			} else {
				v := op + 1
				m.Set(r, v)
				for s := int(r.Lo); s < int(r.Hi); s++ {
					model[s] = cell{v, true}
				}
			}

			// Invariants, and All agrees with the model: every yielded slot
			// holds the value, gaps are unmapped.
			n, next := 0, 0
			for er, ev := range m.All() {
				if er.Empty() || !er.Valid() || int(er.Lo) < next {
					t.Fatalf("seed %d op %d: bad or unsorted entry %v", seed, op, er)
				}
				for s := next; s < int(er.Lo); s++ {
					if model[s].ok {
						t.Fatalf("seed %d op %d: slot %d missing", seed, op, s)
					}
				}
				for s := int(er.Lo); s < int(er.Hi); s++ {
					if model[s] != (cell{ev, true}) {
						t.Fatalf("seed %d op %d: slot %d = %d, model %+v", seed, op, s, ev, model[s])
					}
				}
				next = int(er.Hi)
				n++
			}
			for s := next; s < NumSlots; s++ {
				if model[s].ok {
					t.Fatalf("seed %d op %d: slot %d missing at end", seed, op, s)
				}
			}
			if n != m.Len() {
				t.Fatalf("seed %d op %d: Len %d, All yielded %d", seed, op, m.Len(), n)
			}

			// Lookup agrees with the model, on a sample of slots each op and
			// on every slot now and then.
			check := func(s uint16) {
				v, er, ok := m.Lookup(s)
				if ok != model[s].ok || v != model[s].v || ok != er.Contains(s) {
					t.Fatalf("seed %d op %d: Lookup(%d) = %d %v %v, model %+v", seed, op, s, v, er, ok, model[s])
				}
			}
			if op%50 == 0 {
				for s := range uint16(NumSlots) {
					check(s)
				}
			} else {
				for range 64 {
					check(uint16(rng.IntN(NumSlots)))
				}
				check(r.Lo)
				check(max(r.Hi, 1) - 1)
			}
		}
	}
}

func BenchmarkRangeMapLookup(b *testing.B) {
	var m RangeMap[int]
	for i := range 64 {
		m.Set(Range{uint16(i * 256), uint16(i*256 + 256)}, i)
	}
	var s uint16
	for b.Loop() {
		m.Lookup(s & (NumSlots - 1))
		s += 97
	}
}
