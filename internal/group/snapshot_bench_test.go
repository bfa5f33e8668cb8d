package group

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/shoal-kv/shoal/internal/table"
)

// BenchmarkSnapshot measures how long serialising the state machine takes. The raft loop runs
// it in line today, so this is also how long writes are held up while a snapshot is taken.
// SHOAL_BENCH_PAIRS sets the pair count (default 1M; 10M for the figure).
func BenchmarkSnapshot(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("SHOAL_BENCH_PAIRS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	g := New(Config{GroupID: 1, Table: table.New()})
	val := make([]byte, 32)
	for i := range n {
		g.Table().Set(fmt.Appendf(nil, "key:%012d", i), val)
	}
	b.ResetTimer()
	var size int
	for b.Loop() {
		data, err := g.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
	}
	b.ReportMetric(float64(size)/float64(n), "bytes/pair")
	b.ReportMetric(float64(n), "pairs")
}
