package table

import (
	"fmt"
	"testing"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// sumFootprints recomputes Bytes the slow way.
func sumFootprints(t *Table) int64 {
	var n int64
	for i := range t.dir {
		if s := t.reader(uint16(i)); s != nil {
			s.mu.RLock()
			n += s.footprint()
			s.mu.RUnlock()
		}
	}
	return n
}

func TestBytesTracksFootprint(t *testing.T) {
	tab := New()
	if tab.Bytes() != 0 {
		t.Fatalf("empty table: Bytes = %d", tab.Bytes())
	}
	check := func(step string) {
		t.Helper()
		if got, want := tab.Bytes(), sumFootprints(tab); got != want {
			t.Fatalf("%s: Bytes = %d, footprints sum to %d", step, got, want)
		}
	}
	big := make([]byte, 5000) // a large record with its own page
	for i := range 20000 {
		k := []byte(fmt.Sprintf("key:%d", i))
		if i%100 == 0 {
			tab.Set(k, big)
		} else {
			tab.Set(k, []byte("value"))
		}
	}
	check("after sets")
	if tab.Bytes() < 20000*10 {
		t.Fatalf("Bytes = %d, implausibly small for 20000 pairs", tab.Bytes())
	}
	for i := range 20000 {
		k := []byte(fmt.Sprintf("key:%d", i))
		switch i % 4 {
		case 0:
			tab.Delete(k)
		case 1:
			tab.Append(k, []byte("more-bytes-appended"))
		case 2:
			tab.CompareAndSwap(k, []byte("value"), []byte("v"), true)
		}
	}
	check("after mixed writes")
	tab.DropRange(keyspace.Range{Lo: 0, Hi: 8000})
	check("after DropRange")
	tab.Reset()
	check("after Reset")
	if tab.Bytes() != 0 {
		t.Fatalf("after Reset: Bytes = %d", tab.Bytes())
	}
}
