package table

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// checkInvariants recomputes every slot's accounting from its index and arena.
func checkInvariants(t testing.TB, tb *Table) {
	t.Helper()
	for slot := range tb.dir {
		s := tb.reader(uint16(slot))
		if s == nil {
			continue
		}
		s.mu.RLock()
		var n, kb, vb, live, smallLive, tombs int64
		for g := 0; g < s.idx.groups(); g++ {
			for j := 0; j < groupEntries; j++ {
				i := g<<posShift | j
				cb := s.idx.ctrlAt(i)
				if cb == ctrlDeleted {
					tombs++
				}
				if cb&0x80 != 0 {
					continue
				}
				off := s.idx.off(i)
				rec := s.record(off)
				k, v := parseRecord(rec)
				size := int64(recordSize(rec))
				if keyspace.Slot(k) != uint16(slot) {
					t.Fatalf("slot %d holds key %q of slot %d", slot, k, keyspace.Slot(k))
				}
				if _, h2 := splitHash(s.hash(k)); byte(h2) != cb {
					t.Fatalf("slot %d entry %d: tag %x, want %x", slot, i, cb, h2)
				}
				if p, _ := s.find(k, s.hash(k)); p != i {
					t.Fatalf("slot %d: key %q not found at its entry", slot, k)
				}
				if size > largeRecord {
					pg := s.large[off&^largeBit]
					if off&largeBit == 0 || int64(pg.size) < size {
						t.Fatalf("slot %d: large record not alone in a large page", slot)
					}
				} else {
					smallLive += size
					pi, o := off>>pageShift, int(off&pageMask)
					if off&largeBit != 0 || int(pi) >= len(s.small) || o+int(size) > len(s.smallPage(pi)) {
						t.Fatalf("slot %d: small record at %#x outside the small pages", slot, off)
					}
					if int(pi) == len(s.small)-1 && o+int(size) > s.tailOff {
						t.Fatalf("slot %d: record at %#x beyond the tail %d", slot, off, s.tailOff)
					}
				}
				n++
				kb += int64(len(k))
				vb += int64(len(v))
				live += size
			}
		}
		var smallCap, largeCap int64
		for i := range s.small {
			smallCap += int64(len(s.smallPage(uint32(i))))
		}
		if len(s.small) > 1 && s.size0 != maxPage {
			t.Fatalf("slot %d: %d small pages but page 0 has %d bytes", slot, len(s.small), s.size0)
		}
		free := 0
		for _, p := range s.large {
			if p.base == nil {
				free++
			}
			largeCap += int64(p.size)
		}
		if free != len(s.holes) {
			t.Fatalf("slot %d: %d free large entries, %d holes", slot, free, len(s.holes))
		}
		checkHead(t, s)
		if n != int64(s.n) || n != s.count.Load() || kb != s.keyBytes || vb != s.valBytes ||
			live != s.live || smallLive != s.smallLive || tombs != int64(s.tombs) {
			t.Fatalf("slot %d accounting: n %d/%d/%d keys %d/%d vals %d/%d live %d/%d small %d/%d tombs %d/%d",
				slot, n, s.n, s.count.Load(), kb, s.keyBytes, vb, s.valBytes, live, s.live,
				smallLive, s.smallLive, tombs, s.tombs)
		}
		if smallCap != s.smallCap || largeCap != s.largeCap {
			t.Fatalf("slot %d pages: small %d/%d large %d/%d", slot, smallCap, s.smallCap, largeCap, s.largeCap)
		}
		if smallLive+s.garbage > smallCap {
			t.Fatalf("slot %d: live %d + garbage %d > capacity %d", slot, smallLive, s.garbage, smallCap)
		}
		if len(s.idx) > 0 && int(n)+int(tombs)+s.growthLeft != growthFor(s.idx.groups()) {
			t.Fatalf("slot %d: growthLeft %d with n %d tombs %d groups %d", slot, s.growthLeft, n, tombs, s.idx.groups())
		}
		s.mu.RUnlock()
	}
}

// checkHead checks that the slot's directory entry and reader mirrors publish its current
// index and pages; s.mu must be held.
func checkHead(t testing.TB, s *slotTable) {
	t.Helper()
	if s.seq.Load()&1 != 0 {
		t.Fatalf("seq %d odd outside a write", s.seq.Load())
	}
	if x := s.ref.loadIndex(); len(x) != len(s.idx) || len(x) > 0 && &x[0] != &s.idx[0] {
		t.Fatal("directory entry does not publish the index")
	}
	if int(s.nsmall.Load()) != len(s.small) || s.rsmall.Load() != unsafe.SliceData(s.small) ||
		len(s.small) > 0 && s.page0 != page0Tag(s.small[0], s.size0) || len(s.small) == 0 && s.page0 != nil {
		t.Fatal("slot does not publish the small pages")
	}
	if int(s.nlarge.Load()) != len(s.large) || s.rlarge.Load() != unsafe.SliceData(s.large) {
		t.Fatal("slot does not publish the large pages")
	}
}

// checkModel verifies that tb holds exactly the pairs of m.
func checkModel(t testing.TB, tb *Table, m map[string]string) {
	t.Helper()
	checkInvariants(t, tb)
	if tb.Len() != len(m) {
		t.Fatalf("Len %d, model %d", tb.Len(), len(m))
	}
	for k, v := range m {
		got, ok := tb.Get([]byte(k), nil)
		if !ok || string(got) != v {
			t.Fatalf("Get(%q) = %q %v, want %q", k, got, ok, v)
		}
	}
	seen := 0
	tb.Range(keyspace.All(), func(k, v []byte) bool {
		seen++
		if mv, ok := m[string(k)]; !ok || mv != string(v) {
			t.Fatalf("Range yielded %q=%q, model has %q %v", k, v, mv, ok)
		}
		return true
	})
	if seen != len(m) {
		t.Fatalf("Range yielded %d pairs, want %d", seen, len(m))
	}
	st := tb.Stats()
	var kb, vb int64
	for k, v := range m {
		kb += int64(len(k))
		vb += int64(len(v))
	}
	if st.Pairs != int64(len(m)) || st.KeyBytes != kb || st.ValueBytes != vb {
		t.Fatalf("Stats %+v, want pairs %d keys %d values %d", st, len(m), kb, vb)
	}
}

func TestBasic(t *testing.T) {
	tb := New()
	if v, ok := tb.Get([]byte("a"), []byte("x")); ok || string(v) != "x" {
		t.Fatalf("Get on empty = %q %v", v, ok)
	}
	if tb.Set([]byte("a"), []byte("1")) {
		t.Fatal("Set of new key reported replaced")
	}
	if !tb.Set([]byte("a"), []byte("22")) {
		t.Fatal("Set of existing key did not report replaced")
	}
	if v, ok := tb.Get([]byte("a"), []byte("pre:")); !ok || string(v) != "pre:22" {
		t.Fatalf("Get appends: %q %v", v, ok)
	}
	if !tb.Has([]byte("a")) || tb.Has([]byte("b")) {
		t.Fatal("Has")
	}
	tb.Set([]byte(""), nil)
	if v, ok := tb.Get(nil, nil); !ok || len(v) != 0 {
		t.Fatalf("empty key: %q %v", v, ok)
	}
	if tb.Len() != 2 {
		t.Fatalf("Len %d", tb.Len())
	}
	if !tb.Delete([]byte("a")) || tb.Delete([]byte("a")) || tb.Delete([]byte("zz")) {
		t.Fatal("Delete results")
	}
	if _, ok := tb.Get([]byte("a"), nil); ok {
		t.Fatal("deleted key still present")
	}
	checkModel(t, tb, map[string]string{"": ""})
}

func TestAppend(t *testing.T) {
	tb := New()
	m := map[string]string{}
	if n := tb.Append([]byte("k"), []byte("ab")); n != 2 {
		t.Fatalf("Append new = %d", n)
	}
	m["k"] = "ab"
	// Grow through the small -> large boundary and through header-size changes (127/128).
	var want strings.Builder
	want.WriteString("ab")
	for i := range 300 {
		suf := strings.Repeat(string(rune('a'+i%26)), 1+i%37)
		want.WriteString(suf)
		if n := tb.Append([]byte("k"), []byte(suf)); n != want.Len() {
			t.Fatalf("Append %d = %d, want %d", i, n, want.Len())
		}
	}
	m["k"] = want.String()
	long := strings.Repeat("K", 200) // key needing a 2-byte length
	tb.Append([]byte(long), []byte("x"))
	tb.Append([]byte(long), []byte(strings.Repeat("y", 130)))
	m[long] = "x" + strings.Repeat("y", 130)
	tb.Append([]byte("e"), nil)
	m["e"] = ""
	checkModel(t, tb, m)
}

func TestCompareAndSwap(t *testing.T) {
	tb := New()
	k := []byte("k")
	if tb.CompareAndSwap(k, []byte("x"), []byte("y"), true) {
		t.Fatal("CAS on absent key with oldPresent succeeded")
	}
	if !tb.CompareAndSwap(k, nil, []byte("v1"), false) {
		t.Fatal("CAS create failed")
	}
	if tb.CompareAndSwap(k, nil, []byte("v2"), false) {
		t.Fatal("CAS create on present key succeeded")
	}
	if tb.CompareAndSwap(k, []byte("nope"), []byte("v2"), true) {
		t.Fatal("CAS with wrong old succeeded")
	}
	if !tb.CompareAndSwap(k, []byte("v1"), []byte("v2"), true) {
		t.Fatal("CAS with right old failed")
	}
	checkModel(t, tb, map[string]string{"k": "v2"})
}

func TestLargeValues(t *testing.T) {
	tb := New()
	m := map[string]string{}
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 100, 1000, 1020, 1030, 2000, 4096, 5000, 70000, 1 << 20}
	for round := range 5 {
		for i := range 40 {
			k := fmt.Sprintf("{tag}k%d", i) // one slot
			v := strings.Repeat(string(rune('a'+round)), sizes[rng.IntN(len(sizes))])
			tb.Set([]byte(k), []byte(v))
			m[k] = v
		}
		checkModel(t, tb, m)
	}
	for i := range 40 {
		if i%2 == 0 {
			k := fmt.Sprintf("{tag}k%d", i)
			tb.Delete([]byte(k))
			delete(m, k)
		}
	}
	checkModel(t, tb, m)
}

func TestSlotsAndRanges(t *testing.T) {
	tb := New()
	m := map[string]string{}
	for i := range 5000 {
		k := fmt.Sprintf("key:%d", i)
		tb.Set([]byte(k), []byte(k))
		m[k] = k
	}
	perSlot := make([]int, keyspace.NumSlots)
	for k := range m {
		perSlot[keyspace.Slot([]byte(k))]++
	}
	for slot := range keyspace.NumSlots {
		if got := tb.SlotLen(uint16(slot)); got != perSlot[slot] {
			t.Fatalf("SlotLen(%d) = %d, want %d", slot, got, perSlot[slot])
		}
	}
	if tb.SlotLen(keyspace.NumSlots) != 0 {
		t.Fatal("SlotLen out of range")
	}
	r := keyspace.Range{Lo: 1000, Hi: 9000}
	want := 0
	for s := r.Lo; s < r.Hi; s++ {
		want += perSlot[s]
	}
	if got := tb.RangeLen(r); got != want {
		t.Fatalf("RangeLen = %d, want %d", got, want)
	}
	if tb.RangeLen(keyspace.Range{Lo: 5, Hi: 5}) != 0 || tb.RangeLen(keyspace.Range{Lo: 9, Hi: 2}) != 0 {
		t.Fatal("RangeLen of empty range")
	}
	// Range visits only r and stops when asked.
	n := 0
	tb.Range(r, func(k, v []byte) bool {
		if !r.Contains(keyspace.Slot(k)) {
			t.Fatalf("Range yielded key of slot %d", keyspace.Slot(k))
		}
		n++
		return true
	})
	if n != want {
		t.Fatalf("Range yielded %d, want %d", n, want)
	}
	n = 0
	tb.Range(r, func(k, v []byte) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("Range did not stop: %d", n)
	}
	if got := tb.DropRange(r); got != want {
		t.Fatalf("DropRange = %d, want %d", got, want)
	}
	for k := range m {
		if r.Contains(keyspace.Slot([]byte(k))) {
			delete(m, k)
		}
	}
	checkModel(t, tb, m)
	tb.Reset()
	checkModel(t, tb, map[string]string{})
	if st := tb.Stats(); st.SlabBytes != 0 || st.IndexBytes != 0 {
		t.Fatalf("after Reset: %+v", st)
	}
	if held, _ := tb.pool.stats(); held != 0 {
		t.Fatalf("after Reset the pool still holds %d bytes", held)
	}
}

func TestScanSimple(t *testing.T) {
	tb := New()
	if tb.Scan(0, 10, func([]byte) { t.Fatal("key in empty table") }) != 0 {
		t.Fatal("scan of empty table did not end")
	}
	m := map[string]bool{}
	for i := range 3000 {
		k := fmt.Sprintf("s%d", i)
		if i%3 == 0 {
			k = fmt.Sprintf("{hot}%d", i)
		}
		tb.Set([]byte(k), nil)
		m[k] = false
	}
	cur, calls := uint64(0), 0
	for {
		cur = tb.Scan(cur, 7, func(k []byte) {
			if _, ok := m[string(k)]; !ok {
				t.Fatalf("unknown key %q", k)
			}
			m[string(k)] = true
		})
		calls++
		if cur == 0 {
			break
		}
	}
	for k, seen := range m {
		if !seen {
			t.Fatalf("key %q not scanned", k)
		}
	}
	if calls < 3000/7/4 {
		t.Fatalf("only %d calls: pages are not bounded", calls)
	}
	// ScanRange stays in its range.
	r := keyspace.Range{Lo: 100, Hi: 200}
	cur = 0
	got := 0
	for {
		cur = tb.ScanRange(r, cur, 5, func(k []byte) {
			if !r.Contains(keyspace.Slot(k)) {
				t.Fatalf("ScanRange yielded slot %d", keyspace.Slot(k))
			}
			got++
		})
		if cur == 0 {
			break
		}
	}
	if want := tb.RangeLen(r); got != want {
		t.Fatalf("ScanRange yielded %d, want %d", got, want)
	}
	if tb.ScanRange(keyspace.Range{Lo: 3, Hi: 3}, 0, 10, func([]byte) {}) != 0 {
		t.Fatal("empty range scan")
	}
}

// TestScanDuringGrowth checks the SCAN guarantee: keys present for the whole scan are all
// returned, while other keys are added (growing indexes) and removed (shrinking them).
func TestScanDuringGrowth(t *testing.T) {
	for _, hot := range []bool{false, true} {
		tb := New()
		rng := rand.New(rand.NewPCG(3, 4))
		key := func(prefix string, i int) string {
			if hot && i%2 == 0 {
				return fmt.Sprintf("{h%d}%s%d", i%3, prefix, i)
			}
			return fmt.Sprintf("%s%d", prefix, i)
		}
		stable := map[string]bool{}
		for i := range 2000 {
			k := key("stable", i)
			tb.Set([]byte(k), []byte("v"))
			stable[k] = false
		}
		var churn []string
		for i := range 1000 {
			k := key("churn", i)
			tb.Set([]byte(k), []byte("v"))
			churn = append(churn, k)
		}
		cur, next := uint64(0), 1000
		for {
			cur = tb.Scan(cur, 1+rng.IntN(20), func(k []byte) {
				if _, ok := stable[string(k)]; ok {
					stable[string(k)] = true
				}
			})
			if cur == 0 {
				break
			}
			// Between pages: add many keys (growth) or delete churn keys (shrink).
			if rng.IntN(3) == 0 && len(churn) > 0 {
				for range min(len(churn), 200) {
					j := rng.IntN(len(churn))
					tb.Delete([]byte(churn[j]))
					churn = slices.Delete(churn, j, j+1)
				}
			} else {
				for range 50 {
					k := key("churn", next)
					next++
					tb.Set([]byte(k), []byte("v"))
					churn = append(churn, k)
				}
			}
		}
		for k, seen := range stable {
			if !seen {
				t.Fatalf("hot=%v: stable key %q not returned", hot, k)
			}
		}
		checkInvariants(t, tb)
	}
}

func TestExportImport(t *testing.T) {
	tb := New()
	m := map[string]string{}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 3000 {
		k := fmt.Sprintf("k%d", i)
		v := strings.Repeat("v", rng.IntN(50))
		if i%100 == 0 {
			v = strings.Repeat("L", 3000)
		}
		tb.Set([]byte(k), []byte(v))
		m[k] = v
	}
	var buf bytes.Buffer
	n, err := tb.Export(&buf, keyspace.All())
	if err != nil || n != len(m) {
		t.Fatalf("Export = %d, %v", n, err)
	}
	buf.WriteString("trailer") // the stream is self-delimiting
	br := bufio.NewReader(&buf)
	fresh := New()
	if n, err := fresh.Import(br); err != nil || n != len(m) {
		t.Fatalf("Import = %d, %v", n, err)
	}
	rest, _ := br.ReadString(0)
	if rest != "trailer" {
		t.Fatalf("Import consumed past its end: rest %q", rest)
	}
	checkModel(t, fresh, m)

	// Range export.
	r := keyspace.Range{Lo: 0, Hi: 4000}
	buf.Reset()
	n, err = tb.Export(&buf, r)
	if err != nil || n != tb.RangeLen(r) {
		t.Fatalf("range Export = %d, %v; want %d", n, err, tb.RangeLen(r))
	}
	part := New()
	if _, err := part.Import(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	pm := map[string]string{}
	for k, v := range m {
		if r.Contains(keyspace.Slot([]byte(k))) {
			pm[k] = v
		}
	}
	checkModel(t, part, pm)

	// Empty export round-trips.
	buf.Reset()
	if n, err := New().Export(&buf, keyspace.All()); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := New().Import(&buf); n != 0 || err != nil {
		t.Fatal(n, err)
	}
}

func TestImportCorrupt(t *testing.T) {
	tb := New()
	for i := range 100 {
		tb.Set(fmt.Appendf(nil, "k%d", i), []byte("value"))
	}
	var buf bytes.Buffer
	tb.Export(&buf, keyspace.All())
	good := buf.Bytes()
	cases := map[string][]byte{
		"empty":     {},
		"magic":     append([]byte("XXXX"), good[4:]...),
		"version":   append(append([]byte("SHTB"), 9), good[5:]...),
		"truncated": good[:len(good)/2],
		"no crc":    good[:len(good)-2],
	}
	flip := slices.Clone(good)
	flip[len(flip)/2] ^= 0x40
	cases["bitflip"] = flip
	badCount := slices.Clone(good)
	// Rewrite the count (the byte after the 0 terminator) and keep the CRC: must fail.
	badCount[len(badCount)-5]++
	cases["count"] = badCount
	for name, data := range cases {
		if _, err := New().Import(bytes.NewReader(data)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err %v, want ErrCorrupt", name, err)
		}
	}
}

func TestStats(t *testing.T) {
	tb := New()
	if st := tb.Stats(); st.Pairs != 0 || st.OverheadPerPair != 0 {
		t.Fatalf("empty stats %+v", st)
	}
	for i := range 100000 {
		tb.Set(fmt.Appendf(nil, "key:%012d", i), []byte("0123456789abcdef0123456789abcdef"))
	}
	st := tb.Stats()
	if st.Pairs != 100000 || st.KeyBytes != 1600000 || st.ValueBytes != 3200000 {
		t.Fatalf("stats %+v", st)
	}
	if st.SlabLiveBytes != st.Pairs*50 || st.SlabBytes < st.SlabLiveBytes || st.IndexBytes == 0 || st.MetaBytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	if st.OverheadPerPair <= 2 || st.OverheadPerPair > 200 {
		t.Fatalf("overhead %v", st.OverheadPerPair)
	}
}

// TestReclaim checks that overwrites and deletes give memory back.
func TestReclaim(t *testing.T) {
	tb := New()
	const n = 20000
	val := func(round, i int) []byte {
		return []byte(strings.Repeat(string(rune('a'+round)), 20+(i+round)%25))
	}
	for i := range n {
		tb.Set(fmt.Appendf(nil, "k%d", i), val(0, i))
	}
	base := tb.Stats()
	for round := 1; round <= 10; round++ {
		for i := range n {
			tb.Set(fmt.Appendf(nil, "k%d", i), val(round, i))
		}
		if round%5 == 0 {
			checkInvariants(t, tb)
		}
	}
	after := tb.Stats()
	if float64(after.SlabBytes) > 1.3*float64(base.SlabBytes) {
		t.Fatalf("slab grew from %d to %d after overwrites", base.SlabBytes, after.SlabBytes)
	}
	for i := range n {
		tb.Delete(fmt.Appendf(nil, "k%d", i))
	}
	st := tb.Stats()
	if st.Pairs != 0 || st.SlabBytes != 0 || st.IndexBytes != 0 {
		t.Fatalf("after deleting all: %+v", st)
	}
	if held, _ := tb.pool.stats(); held != 0 {
		t.Fatalf("after deleting all the pool still holds %d bytes", held)
	}
}

func TestKeysSortedHelper(t *testing.T) {
	// Keys returned by Range are copies valid during the callback only; sorting a copied list
	// must give the inserted set.
	tb := New()
	want := []string{"a", "b", "c", "{x}1", "{x}2"}
	for _, k := range want {
		tb.Set([]byte(k), []byte(k))
	}
	var got []string
	tb.Range(keyspace.All(), func(k, v []byte) bool { got = append(got, string(k)); return true })
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
}

// TestPoolCleanup checks that an unreachable table's mapped chunks are released.
func TestPoolCleanup(t *testing.T) {
	tb := New()
	for i := range 20000 {
		tb.Set(fmt.Appendf(nil, "{same}%d", i), []byte("some value bytes"))
	}
	ps := tb.pool.poolState
	if held, _ := ps.stats(); held == 0 {
		t.Skip("no chunk was mapped (heap fallback)")
	}
	tb = nil
	for range 200 {
		runtime.GC()
		ps.mu.Lock()
		mappings := ps.mappings
		ps.mu.Unlock()
		if mappings == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("chunks of an unreachable table were not unmapped")
}

// TestAppendWithin: an append that would pass the limit changes nothing and reports the
// current length; one that reaches it exactly is made.
func TestAppendWithin(t *testing.T) {
	tb := New()
	if n, ok := tb.AppendWithin([]byte("k"), []byte("abcdef"), 5); ok || n != 0 || tb.Has([]byte("k")) {
		t.Fatalf("append of 6 to an absent key within 5 = %d, %v; want 0, false and no key", n, ok)
	}
	if n, ok := tb.AppendWithin([]byte("k"), []byte("abc"), 5); !ok || n != 3 {
		t.Fatalf("first append = %d, %v", n, ok)
	}
	if n, ok := tb.AppendWithin([]byte("k"), []byte("xyz"), 5); ok || n != 3 {
		t.Fatalf("append past the limit = %d, %v; want 3, false", n, ok)
	}
	if n, ok := tb.AppendWithin([]byte("k"), []byte("de"), 5); !ok || n != 5 {
		t.Fatalf("append up to the limit = %d, %v; want 5, true", n, ok)
	}
	if v, _ := tb.Get([]byte("k"), nil); string(v) != "abcde" {
		t.Fatalf("value %q, want abcde", v)
	}
}

func TestPeekCopiesAtMostN(t *testing.T) {
	tab := New()
	tab.Set([]byte("k"), []byte("hello"))
	for _, c := range []struct {
		n    int
		want string
	}{{0, ""}, {1, "h"}, {5, "hello"}, {9, "hello"}, {-1, ""}} {
		got, ok := tab.Peek([]byte("k"), []byte("x"), c.n)
		if !ok || string(got) != "x"+c.want {
			t.Errorf("Peek(k, %d) = %q, %v; want %q, true", c.n, got, ok, "x"+c.want)
		}
	}
	if got, ok := tab.Peek([]byte("absent"), nil, 4); ok || len(got) != 0 {
		t.Errorf("Peek(absent) = %q, %v", got, ok)
	}
}
