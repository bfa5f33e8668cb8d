package migrate

import (
	"strings"
	"testing"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

func TestByOwnerSplitsRangeByPreviousOwner(t *testing.T) {
	prev := &controller.Config{Shards: []controller.Shard{
		{Range: keyspace.Range{Lo: 0, Hi: 100}, Group: 1},
		{Range: keyspace.Range{Lo: 100, Hi: 200}, Group: 2},
		{Range: keyspace.Range{Lo: 200, Hi: 16384}, Group: 1},
	}}
	got := byOwner(prev, keyspace.Range{Lo: 50, Hi: 250})
	want := []source{{1, keyspace.Range{Lo: 50, Hi: 100}}, {2, keyspace.Range{Lo: 100, Hi: 200}}, {1, keyspace.Range{Lo: 200, Hi: 250}}}
	if len(got) != len(want) {
		t.Fatalf("byOwner = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("byOwner = %v, want %v", got, want)
		}
	}
}

func TestProgressInfo(t *testing.T) {
	p := Progress{Config: 7, Done: false, SlotsPulling: 256, PairsMoved: 10, BytesMoved: 480, BytesPerSec: 1000}
	info := p.Info()
	for _, want := range []string{"migration_config:7\r\n", "migration_done:0\r\n", "migration_slots_pulling:256\r\n", "migration_pairs_moved:10\r\n", "migration_bytes_per_sec:1000\r\n"} {
		if !strings.Contains(info, want) {
			t.Errorf("Info() lacks %q:\n%s", want, info)
		}
	}
}
