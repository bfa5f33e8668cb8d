package table

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// stressValue returns the value written to key in version ver: the version, the key and a
// filler whose length varies with the version, so that overwrites happen in place, relocate
// records (making garbage and compactions) and cross into large records.
func stressValue(key string, ver int) []byte {
	n := 900 // most overwrites keep the size and rewrite the record in place
	switch ver % 8 {
	case 0:
		n = (ver * 37) % 90
	case 1:
		n = 3000 // a large record with a page of its own, also rewritten in place
	case 2:
		n = 1100 + ver%700
	}
	v := fmt.Appendf(nil, "%d|%s|", ver, key)
	return append(v, bytes.Repeat([]byte{byte('a' + ver%26)}, n)...)
}

// checkStressValue reports whether v is stressValue(key, ver) for some ver.
func checkStressValue(key string, v []byte) bool {
	i := bytes.IndexByte(v, '|')
	if i < 0 {
		return false
	}
	ver, err := strconv.Atoi(string(v[:i]))
	return err == nil && bytes.Equal(v, stressValue(key, ver))
}

// TestLockFreeReadStress runs lock-free readers against writers that overwrite (in place and
// relocating), replace through CompareAndSwap, delete, recreate and drop slots, so that
// readers meet every kind of concurrent change: index growth and shrinkage, compaction,
// page 0 growth, page list reallocation, large pages freed and reused. Every value a reader
// returns must be one that was written whole.
// Without the race detector this exercises the optimistic path (read.go); with it, Get takes
// the read lock and the test checks the writers' locking instead.
func TestLockFreeReadStress(t *testing.T) {
	tb := New()
	// 16-byte keys without a hash tag (the lookup's fast path) that share one slot.
	var keys []string
	hot := keyspace.Slot([]byte("hotkey:000000000"))
	for i := 0; len(keys) < 12; i++ {
		if k := fmt.Sprintf("hotkey:%09d", i); keyspace.Slot([]byte(k)) == hot {
			keys = append(keys, k)
		}
	}
	for i := range 28 {
		switch i % 3 {
		case 0:
			keys = append(keys, fmt.Sprintf("{hot}%d", i)) // one slot that grows and shrinks
		case 1:
			keys = append(keys, fmt.Sprintf("{warm%d}%d", i%5, i))
		default:
			keys = append(keys, fmt.Sprintf("k%d", i))
		}
	}
	ops := 60000
	if testing.Short() {
		ops = 10000
	}
	var stop atomic.Bool
	var readers, writers sync.WaitGroup
	var hits atomic.Int64
	for r := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			buf := make([]byte, 0, 4096)
			for !stop.Load() {
				k := keys[rng.IntN(len(keys))]
				var ok bool
				buf, ok = tb.Get([]byte(k), buf[:0])
				if ok {
					hits.Add(1)
					if !checkStressValue(k, buf) {
						t.Errorf("Get(%q) returned a value never written: %q", k, buf)
						return
					}
				} else if len(buf) != 0 {
					t.Errorf("Get(%q) missed but changed dst to %q", k, buf)
					return
				}
				tb.Has([]byte(k))
			}
		}()
	}
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			for i := range ops {
				k := keys[rng.IntN(len(keys))]
				switch x := rng.IntN(100); {
				case x < 70:
					tb.Set([]byte(k), stressValue(k, i))
				case x < 90:
					tb.Delete([]byte(k))
				case x < 99:
					old, ok := tb.Get([]byte(k), nil)
					tb.CompareAndSwap([]byte(k), old, stressValue(k, i+1), ok)
				default:
					tb.DropRange(keyspace.SlotRange(keyspace.Slot([]byte(k))))
				}
			}
		}()
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	if hits.Load() == 0 {
		t.Fatal("readers never found a key")
	}
	checkInvariants(t, tb)
}

// TestPoolReusesReleasedChunks checks that chunks released when a slot empties are reused
// before any new mapping, so the address space kept for lock-free readers stays bounded by
// the peak.
func TestPoolReusesReleasedChunks(t *testing.T) {
	tb := New()
	fill := func() {
		for i := range 30000 {
			tb.Set(fmt.Appendf(nil, "{same}%d", i), []byte("some value bytes"))
		}
	}
	fill()
	peak := tb.pool.mappings
	if peak == 0 {
		t.Skip("no chunk was mapped (heap fallback)")
	}
	for round := range 3 {
		tb.Reset()
		if held, _ := tb.pool.stats(); held != 0 {
			t.Fatalf("round %d: after Reset the pool holds %d bytes", round, held)
		}
		fill()
		if tb.pool.mappings > peak {
			t.Fatalf("round %d: %d chunks mapped, peak was %d", round, tb.pool.mappings, peak)
		}
	}
	checkInvariants(t, tb)
}

// TestGetAllocs checks that Get allocates nothing when dst has room for the value.
func TestGetAllocs(t *testing.T) {
	tb := New()
	keys := benchKeys(1000)
	for _, k := range keys {
		tb.Set(k, []byte(benchVal))
	}
	dst := make([]byte, 0, 64)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		var ok bool
		dst, ok = tb.Get(keys[i%len(keys)], dst[:0])
		if !ok {
			t.Fatal("key missing")
		}
		tb.Has(keys[i%len(keys)])
		i++
	})
	if allocs != 0 {
		t.Fatalf("Get allocates %v times per call", allocs)
	}
}

// TestParseRecordChecked feeds random and truncated records to the torn-read parser: it must
// never panic, and must agree with parseRecord on every well-formed record.
func TestParseRecordChecked(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		parseRecordChecked(b)
	}
	for _, kl := range []int{0, 1, 127, 128, 300} {
		for _, vl := range []int{0, 5, 127, 128, 20000} {
			key, val := bytes.Repeat([]byte("k"), kl), bytes.Repeat([]byte("v"), vl)
			rec := make([]byte, recLen(kl, vl))
			putRecord(rec, key, val)
			k, v, ok := parseRecordChecked(append(rec, "trailing"...))
			if !ok || !bytes.Equal(k, key) || !bytes.Equal(v, val) {
				t.Fatalf("kl %d vl %d: ok %v", kl, vl, ok)
			}
			for cut := range len(rec) {
				if _, _, ok := parseRecordChecked(rec[:cut]); ok {
					t.Fatalf("kl %d vl %d: record cut at %d parsed", kl, vl, cut)
				}
			}
		}
	}
}

// TestLocate checks the table's own slot computation against keyspace.Slot: every length
// around the 8-byte steps, random bytes, braces anywhere, and the CRC check value.
func TestLocate(t *testing.T) {
	if crc, brace := crc16NoBrace([]byte("123456789")); brace || crc != 0x31C3 {
		t.Fatalf("CRC16(123456789) = %#x %v, want 0x31c3", crc, brace)
	}
	tb := New()
	rng := rand.New(rand.NewPCG(4, 4))
	alphabet := []byte("ab{}\x00\xff{")
	for n := range 120 {
		for range 300 {
			key := make([]byte, n)
			for i := range key {
				if rng.IntN(4) == 0 {
					key[i] = alphabet[rng.IntN(len(alphabet))]
				} else {
					key[i] = byte(rng.Uint32())
				}
			}
			if slot, h := tb.locate(key); slot != keyspace.Slot(key) || h != tb.hk.hash(key) {
				t.Fatalf("locate(%q) = %d %#x, want %d %#x", key, slot, h, keyspace.Slot(key), tb.hk.hash(key))
			}
		}
	}
	for _, k := range []string{"", "{", "}", "{}", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}",
		"{user1000}.following", "12345678{", "123456789{a}", "key:000000000042"} {
		if slot, _ := tb.locate([]byte(k)); slot != keyspace.Slot([]byte(k)) {
			t.Fatalf("locate(%q) slot %d, keyspace.Slot %d", k, slot, keyspace.Slot([]byte(k)))
		}
	}
}

// TestLayout checks the cache-line layout the lock-free reader counts on: directory entries
// of 16 bytes, aligned; slot tables whose first line holds the readers' fields.
func TestLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("layout sized for 64-bit platforms")
	}
	if sz := unsafe.Sizeof(slotRef{}); sz != 16 {
		t.Fatalf("slotRef is %d bytes, want 16", sz)
	}
	tb := New()
	if a := uintptr(unsafe.Pointer(&tb.dir[0])); a%64 != 0 {
		t.Fatalf("directory at %#x is not 64-byte aligned", a)
	}
	if sz := unsafe.Sizeof(slotTable{}); sz != 320 {
		t.Fatalf("slotTable is %d bytes, want 320 (a size class of 64-byte aligned objects)", sz)
	}
	if off := unsafe.Offsetof(slotTable{}.ref); off >= 64 {
		t.Fatalf("the readers' fields end at %d, beyond the first cache line", off)
	}
	for i := range 100 {
		tb.Set(fmt.Appendf(nil, "k%d", i), []byte("v"))
	}
	for i := range tb.dir {
		if s := tb.reader(uint16(i)); s != nil && uintptr(unsafe.Pointer(s))%64 != 0 {
			t.Fatalf("slot table %d at %p is not 64-byte aligned", i, s)
		}
	}
	for _, n := range []int{1, 2, 4, 64, 1024} {
		if x := newIndex(n); uintptr(unsafe.Pointer(&x[0]))%64 != 0 || len(x) != n*groupWords {
			t.Fatalf("newIndex(%d) at %p, %d words", n, &x[0], len(x))
		}
	}
}

// TestHashSpread checks that the index hash spreads similar keys: the 7-bit tags and the
// group bits of 64K sequential keys fill their buckets evenly, keys that differ only by
// leading zero bytes or length differ, and two tables use different secrets.
func TestHashSpread(t *testing.T) {
	tb := New()
	const n = 1 << 16
	var tags [128]int
	groups := make([]int, 1024)
	seen := make(map[uint64]bool, n)
	for i := range n {
		_, h := tb.locate(benchKey(nil, i))
		tags[h&0x7f]++
		groups[(h>>7)&1023]++
		seen[h] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct hashes for %d keys", len(seen), n)
	}
	for tag, c := range tags {
		if want := n / 128; c < want*3/4 || c > want*5/4 {
			t.Fatalf("tag %d: %d keys, want about %d", tag, c, want)
		}
	}
	for g, c := range groups {
		if want := n / 1024; c < want/2 || c > want*2 {
			t.Fatalf("group %d: %d keys, want about %d", g, c, want)
		}
	}
	_, h1 := tb.locate([]byte("ab"))
	_, h2 := tb.locate([]byte("\x00ab"))
	_, h3 := tb.locate([]byte("\x00\x00\x00\x00\x00\x00ab"))
	_, h4 := tb.locate([]byte("\x00\x00\x00\x00\x00\x00\x00ab"))
	if h1 == h2 || h3 == h4 {
		t.Fatal("keys differing by a leading zero byte hash alike")
	}
	if _, o := New().locate([]byte("ab")); o == h1 {
		t.Fatal("two tables hash alike")
	}
}
