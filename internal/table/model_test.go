package table

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// modelRunner applies operations to a Table and to a reference map side by side.
type modelRunner struct {
	t  testing.TB
	tb *Table
	m  map[string]string
}

func newModelRunner(t testing.TB) *modelRunner {
	return &modelRunner{t: t, tb: New(), m: map[string]string{}}
}

func (r *modelRunner) set(k, v string) {
	_, had := r.m[k]
	if got := r.tb.Set([]byte(k), []byte(v)); got != had {
		r.t.Fatalf("Set(%q) replaced=%v, want %v", k, got, had)
	}
	r.m[k] = v
}

func (r *modelRunner) get(k string) {
	want, had := r.m[k]
	got, ok := r.tb.Get([]byte(k), nil)
	if ok != had || string(got) != want {
		r.t.Fatalf("Get(%q) = %q %v, want %q %v", k, got, ok, want, had)
	}
}

func (r *modelRunner) del(k string) {
	_, had := r.m[k]
	if got := r.tb.Delete([]byte(k)); got != had {
		r.t.Fatalf("Delete(%q) = %v, want %v", k, got, had)
	}
	delete(r.m, k)
}

func (r *modelRunner) append(k, suf string) {
	r.m[k] += suf
	if got := r.tb.Append([]byte(k), []byte(suf)); got != len(r.m[k]) {
		r.t.Fatalf("Append(%q) = %d, want %d", k, got, len(r.m[k]))
	}
}

func (r *modelRunner) cas(k, old, nv string, oldPresent bool) {
	cur, had := r.m[k]
	want := (oldPresent && had && cur == old) || (!oldPresent && !had)
	if got := r.tb.CompareAndSwap([]byte(k), []byte(old), []byte(nv), oldPresent); got != want {
		r.t.Fatalf("CAS(%q,%q,%q,%v) = %v, want %v", k, old, nv, oldPresent, got, want)
	}
	if want {
		r.m[k] = nv
	}
}

func (r *modelRunner) dropRange(rg keyspace.Range) {
	want := 0
	for k := range r.m {
		if rg.Contains(keyspace.Slot([]byte(k))) {
			delete(r.m, k)
			want++
		}
	}
	if got := r.tb.DropRange(rg); got != want {
		r.t.Fatalf("DropRange(%v) = %d, want %d", rg, got, want)
	}
}

func (r *modelRunner) roundTrip() {
	var buf bytes.Buffer
	if _, err := r.tb.Export(&buf, keyspace.All()); err != nil {
		r.t.Fatal(err)
	}
	fresh := New()
	if n, err := fresh.Import(&buf); err != nil || n != len(r.m) {
		r.t.Fatalf("Import = %d, %v; want %d", n, err, len(r.m))
	}
	checkModel(r.t, fresh, r.m)
	r.tb = fresh
}

func (r *modelRunner) scanAll() {
	seen := map[string]bool{}
	cur := uint64(0)
	for {
		cur = r.tb.Scan(cur, 13, func(k []byte) { seen[string(k)] = true })
		if cur == 0 {
			break
		}
	}
	if len(seen) != len(r.m) {
		r.t.Fatalf("Scan saw %d keys, want %d", len(seen), len(r.m))
	}
	for k := range r.m {
		if !seen[k] {
			r.t.Fatalf("Scan missed %q", k)
		}
	}
}

// TestModel runs random operations against a reference map through phases: growth,
// overwrite-heavy churn with changing sizes (compaction), deletes (shrink), range drops and
// Export/Import round trips.
func TestModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	r := newModelRunner(t)
	key := func(space int) string {
		i := rng.IntN(space)
		switch i % 10 {
		case 0, 1, 2:
			return fmt.Sprintf("{hot%d}:%d", i%2, i) // two busy slots with big indexes
		default:
			return fmt.Sprintf("key:%d", i)
		}
	}
	val := func(maxLen int) string {
		n := rng.IntN(maxLen + 1)
		if rng.IntN(200) == 0 {
			n = 1000 + rng.IntN(5000) // large records
		}
		return strings.Repeat(string(rune('a'+rng.IntN(26))), n)
	}
	phases := []struct {
		ops, space, maxVal   int
		set, del, app, casOp int // weights; the rest are gets
	}{
		{20000, 20000, 40, 70, 0, 5, 5},    // growth
		{30000, 5000, 90, 60, 5, 10, 10},   // overwrite-heavy, sizes changing
		{20000, 20000, 10, 10, 60, 5, 5},   // deletes, indexes shrink
		{20000, 30000, 200, 50, 20, 10, 5}, // mixed, long values
	}
	for pi, ph := range phases {
		for i := range ph.ops {
			k := key(ph.space)
			switch x := rng.IntN(100); {
			case x < ph.set:
				r.set(k, val(ph.maxVal))
			case x < ph.set+ph.del:
				r.del(k)
			case x < ph.set+ph.del+ph.app:
				r.append(k, val(ph.maxVal/4))
			case x < ph.set+ph.del+ph.app+ph.casOp:
				old := r.m[k]
				if rng.IntN(3) == 0 {
					old += "x"
				}
				r.cas(k, old, val(ph.maxVal), rng.IntN(4) != 0)
			default:
				r.get(k)
			}
			if i%5000 == 4999 {
				checkInvariants(t, r.tb)
			}
		}
		checkModel(t, r.tb, r.m)
		r.scanAll()
		lo := uint16(rng.IntN(keyspace.NumSlots))
		r.dropRange(keyspace.Range{Lo: lo, Hi: min(lo+uint16(rng.IntN(3000)), keyspace.NumSlots)})
		r.dropRange(keyspace.SlotRange(keyspace.Slot([]byte(fmt.Sprintf("{hot%d}", pi%2)))))
		checkModel(t, r.tb, r.m)
		r.roundTrip()
	}
}

// TestConcurrent hammers overlapping keys from several goroutines; run with -race. Each
// goroutine owns a disjoint key set for exact checks, and all share a contended key set.
func TestConcurrent(t *testing.T) {
	tb := New()
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			own := map[string]string{}
			var buf []byte
			for i := range 4000 {
				shared := fmt.Sprintf("shared:%d", rng.IntN(64))
				if rng.IntN(4) == 0 {
					shared = fmt.Sprintf("{s}%d", rng.IntN(64))
				}
				switch rng.IntN(6) {
				case 0:
					tb.Set([]byte(shared), bytes.Repeat([]byte{'a' + byte(w)}, rng.IntN(60)))
				case 1:
					tb.Delete([]byte(shared))
				case 2:
					tb.Append([]byte(shared), []byte("xy"))
				case 3:
					buf, _ = tb.Get([]byte(shared), buf[:0])
				case 4:
					tb.CompareAndSwap([]byte(shared), buf, []byte("cas"), true)
				case 5:
					if i%500 == 0 {
						tb.Scan(0, 50, func([]byte) {})
						tb.Stats()
						tb.Len()
					}
				}
				k := fmt.Sprintf("own%d:%d", w, rng.IntN(300))
				v := strings.Repeat("v", rng.IntN(80))
				tb.Set([]byte(k), []byte(v))
				own[k] = v
				if got, ok := tb.Get([]byte(k), nil); !ok || string(got) != v {
					t.Errorf("worker %d: Get(%q) = %q %v, want %q", w, k, got, ok, v)
					return
				}
			}
			for k, v := range own {
				if got, ok := tb.Get([]byte(k), nil); !ok || string(got) != v {
					t.Errorf("worker %d: final Get(%q) = %q %v, want %q", w, k, got, ok, v)
					return
				}
			}
		}()
	}
	// A concurrent exporter and range reader.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			var buf bytes.Buffer
			if _, err := tb.Export(&buf, keyspace.All()); err != nil {
				t.Error(err)
			}
			tb.Range(keyspace.Range{Lo: 0, Hi: 8000}, func(k, v []byte) bool { return true })
		}
	}()
	wg.Wait()
	checkInvariants(t, tb)
}

// FuzzOps decodes the input as an operation sequence over a small key space and checks the
// table against a map after every operation.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 5, 1, 1, 0, 2, 1, 3, 3, 1, 2})
	f.Add([]byte("\x00\x01\xff\x00\x02\xf0\x02\x01\x10\x04\x00\x00\x05\x03\x06\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newModelRunner(t)
		for len(data) >= 3 {
			op, kb, vb := data[0], data[1], data[2]
			data = data[3:]
			k := fmt.Sprintf("k%d", kb%32)
			if kb&0x20 != 0 {
				k = fmt.Sprintf("{t}%d", kb%32) // same slot
			}
			v := strings.Repeat(string(rune('a'+vb%26)), int(vb)*int(vb)/32) // 0..2032 bytes
			switch op % 8 {
			case 0:
				r.set(k, v)
			case 1:
				r.get(k)
			case 2:
				r.del(k)
			case 3:
				r.append(k, v)
			case 4:
				r.cas(k, r.m[k], v, vb&1 == 0)
			case 5:
				lo := uint16(vb) * 64
				r.dropRange(keyspace.Range{Lo: lo, Hi: lo + uint16(op)*8})
			case 6:
				r.roundTrip()
			case 7:
				r.scanAll()
			}
		}
		checkModel(t, r.tb, r.m)
	})
}
