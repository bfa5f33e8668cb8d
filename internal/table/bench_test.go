package table

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks compare the table with a Go map[string][]byte on the workload of the memory
// target: 16-byte keys and 32-byte values. Set SHOAL_BENCH_10M=1 to add the 10M-pair variants
// (several GiB of memory and about a minute).

const benchVal = "0123456789abcdef0123456789abcdef" // 32 bytes

// benchKey writes the i-th 16-byte key into dst.
func benchKey(dst []byte, i int) []byte {
	dst = append(dst[:0], "key:000000000000"...)
	s := strconv.AppendInt(make([]byte, 0, 20), int64(i), 10)
	copy(dst[16-len(s):], s)
	return dst
}

func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = benchKey(make([]byte, 0, 16), i)
	}
	return keys
}

func benchSizes() []int {
	sizes := []int{1 << 10, 1 << 20}
	if os.Getenv("SHOAL_BENCH_10M") != "" {
		sizes = append(sizes, 10<<20)
	}
	return sizes
}

// sizeName names a size for sub-benchmarks.
func sizeName(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%dK", n>>10)
	}
	return fmt.Sprintf("%dM", n>>20)
}

// benchOrder returns a random permutation of [0,n): benchmarks visit keys in this order so
// that neither structure profits from insertion-order locality (a Go map's keys and values
// are allocated in insertion order, so a strided walk would run through memory linearly).
func benchOrder(n int) []int { return rand.New(rand.NewPCG(1, 1)).Perm(n) }

// loadBoth fills a table and a Go map with the same keys, each mapped to benchVal.
func loadBoth(keys [][]byte) (*Table, map[string][]byte) {
	tb := New()
	m := make(map[string][]byte)
	for _, k := range keys {
		tb.Set(k, []byte(benchVal))
		m[string(k)] = []byte(benchVal)
	}
	return tb, m
}

func BenchmarkGet(b *testing.B) {
	for _, n := range benchSizes() {
		keys := benchKeys(n)
		order := benchOrder(n)
		tb, m := loadBoth(keys)
		b.Run("table/"+sizeName(n), func(b *testing.B) {
			var dst []byte
			for i := 0; i < b.N; i++ {
				dst, _ = tb.Get(keys[order[i%n]], dst[:0])
			}
		})
		b.Run("gomap/"+sizeName(n), func(b *testing.B) {
			var dst []byte
			for i := 0; i < b.N; i++ {
				dst = append(dst[:0], m[string(keys[order[i%n]])]...)
			}
		})
		b.Run("table-parallel/"+sizeName(n), func(b *testing.B) {
			var seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 1000003 % n
				var dst []byte
				for pb.Next() {
					dst, _ = tb.Get(keys[order[i%n]], dst[:0])
					i++
				}
			})
		})
		// Concurrent readers of a map need no lock as long as nobody writes.
		b.Run("gomap-parallel/"+sizeName(n), func(b *testing.B) {
			var seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 1000003 % n
				var dst []byte
				for pb.Next() {
					dst = append(dst[:0], m[string(keys[order[i%n]])]...)
					i++
				}
			})
		})
		runtime.KeepAlive(m)
	}
}

func BenchmarkSet(b *testing.B) {
	for _, n := range benchSizes() {
		keys := benchKeys(n)
		order := benchOrder(n)
		val := []byte(benchVal)
		// Overwrite: the steady state of a full table.
		tb, m := loadBoth(keys)
		b.Run("table-overwrite/"+sizeName(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				tb.Set(keys[order[i%n]], val)
			}
		})
		// A map stores the caller's slice; a store must copy it, as the table does.
		b.Run("gomap-overwrite/"+sizeName(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				m[string(keys[order[i%n]])] = slices.Clone(val)
			}
		})
		b.Run("table-overwrite-parallel/"+sizeName(n), func(b *testing.B) {
			var seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 1000003 % n
				for pb.Next() {
					tb.Set(keys[order[i%n]], val)
					i++
				}
			})
		})
		var mu sync.Mutex
		b.Run("gomap-overwrite-parallel/"+sizeName(n), func(b *testing.B) {
			var seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1)) * 1000003 % n
				for pb.Next() {
					v := slices.Clone(val)
					mu.Lock()
					m[string(keys[order[i%n]])] = v
					mu.Unlock()
					i++
				}
			})
		})
		tb, m = nil, nil
		runtime.GC()
		// Insert: a growing table (keys cycle when b.N exceeds n, then it overwrites).
		b.Run("table-insert/"+sizeName(n), func(b *testing.B) {
			t := New()
			for i := 0; i < b.N; i++ {
				t.Set(keys[i%n], val)
			}
		})
		b.Run("gomap-insert/"+sizeName(n), func(b *testing.B) {
			mm := make(map[string][]byte)
			for i := 0; i < b.N; i++ {
				mm[string(keys[i%n])] = slices.Clone(val)
			}
		})
	}
}

// rss returns the resident set size of the process from /proc/self/statm (0 if unavailable).
func rss() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// settle collects garbage and returns freed heap to the OS so RSS reflects live memory.
func settle() (heapInuse, rssBytes int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), rss()
}

// BenchmarkMemory builds n pairs and reports overhead bytes per pair beyond the raw 48 bytes:
// from the table's own accounting (table-stats), from Go heap in use, and from RSS. The heap
// figure of the table excludes its mmap'd pages by design; RSS includes everything.
func BenchmarkMemory(b *testing.B) {
	for _, n := range benchSizes()[1:] { // 1M and up
		raw := float64(16 + len(benchVal))
		// Each run builds the table once whatever b.N is: the metrics, not ns/op, are the result.
		b.Run("table/"+sizeName(n), func(b *testing.B) {
			{
				h0, r0 := settle()
				tb := New()
				var k []byte
				for i := range n {
					k = benchKey(k, i)
					tb.Set(k, []byte(benchVal))
				}
				h1, r1 := settle()
				st := tb.Stats()
				b.ReportMetric(st.OverheadPerPair, "stats-B/pair")
				b.ReportMetric(float64(h1-h0)/float64(n), "heap-part-B/pair") // index, small pages
				b.ReportMetric(float64(r1-r0)/float64(n)-raw, "rss-overhead-B/pair")
				runtime.KeepAlive(tb)
				tb.Reset()
			}
		})
		b.Run("gomap/"+sizeName(n), func(b *testing.B) {
			{
				h0, r0 := settle()
				m := make(map[string][]byte)
				var k []byte
				for i := range n {
					k = benchKey(k, i)
					m[string(k)] = []byte(benchVal)
				}
				h1, r1 := settle()
				b.ReportMetric(float64(h1-h0)/float64(n)-raw, "heap-overhead-B/pair")
				b.ReportMetric(float64(r1-r0)/float64(n)-raw, "rss-overhead-B/pair")
				runtime.KeepAlive(m)
			}
		})
	}
}

// BenchmarkGrowthLatency times every Set while a table grows from n/10 to n pairs and reports
// the latency percentiles: growth is per slot, so p99 must stay near the median.
func BenchmarkGrowthLatency(b *testing.B) {
	for _, n := range benchSizes()[1:] { // 1M and up
		b.Run(sizeName(n), func(b *testing.B) {
			{ // once per run, whatever b.N is
				tb := New()
				var k []byte
				for i := range n / 10 {
					k = benchKey(k, i)
					tb.Set(k, []byte(benchVal))
				}
				lat := make([]int64, 0, n-n/10)
				for i := n / 10; i < n; i++ {
					k = benchKey(k, i)
					t0 := time.Now()
					tb.Set(k, []byte(benchVal))
					lat = append(lat, int64(time.Since(t0)))
				}
				slices.Sort(lat)
				p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) }
				b.ReportMetric(p(0.5), "p50-ns")
				b.ReportMetric(p(0.99), "p99-ns")
				b.ReportMetric(p(0.999), "p999-ns")
				b.ReportMetric(p(0.99)/p(0.5), "p99/p50")
				tb.Reset()
			}
		})
	}
}

// BenchmarkVersus runs the table and a Go map in alternating blocks of operations, so that
// both see the same machine noise, and reports each one's ns/op and the map/table speed ratio
// (>= 1 means the table is at least as fast). The two take turns at going first in a block:
// whichever runs second finds the block's keys (the benchmark's own key slices) in cache.
func BenchmarkVersus(b *testing.B) {
	for _, n := range benchSizes() {
		keys := benchKeys(n)
		order := benchOrder(n)
		val := []byte(benchVal)
		tb, m := loadBoth(keys)
		type op struct {
			name       string
			table, gom func(i int)
		}
		var dst []byte
		ops := []op{
			{"get", func(i int) { dst, _ = tb.Get(keys[order[i%n]], dst[:0]) },
				func(i int) { dst = append(dst[:0], m[string(keys[order[i%n]])]...) }},
			{"set", func(i int) { tb.Set(keys[order[i%n]], val) },
				func(i int) { m[string(keys[order[i%n]])] = slices.Clone(val) }},
		}
		for _, o := range ops {
			b.Run(o.name+"/"+sizeName(n), func(b *testing.B) {
				const block = 10000
				var tt, tm time.Duration
				for done := 0; done < b.N; done += block {
					cnt := min(block, b.N-done)
					run := func(f func(int)) time.Duration {
						t0 := time.Now()
						for i := done; i < done+cnt; i++ {
							f(i)
						}
						return time.Since(t0)
					}
					if done/block%2 == 0 {
						tt += run(o.table)
						tm += run(o.gom)
					} else {
						tm += run(o.gom)
						tt += run(o.table)
					}
				}
				b.ReportMetric(float64(tt.Nanoseconds())/float64(b.N), "table-ns/op")
				b.ReportMetric(float64(tm.Nanoseconds())/float64(b.N), "map-ns/op")
				b.ReportMetric(float64(tm)/float64(tt), "map/table")
			})
		}
		runtime.KeepAlive(m)
	}
}

// BenchmarkVersusParallel is BenchmarkVersus for Get on all cores (b.RunParallel): each
// goroutine alternates blocks of table and map lookups, so that both see the same noise from
// the machine and from each other, and the metrics sum the time of all goroutines.
func BenchmarkVersusParallel(b *testing.B) {
	for _, n := range benchSizes() {
		keys := benchKeys(n)
		order := benchOrder(n)
		tb, m := loadBoth(keys)
		b.Run("get/"+sizeName(n), func(b *testing.B) {
			var tt, tm, seq atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				const block = 2000
				start := int(seq.Add(1)) * 1000003 % n
				var dst []byte
				run := func(i int, table bool) int64 {
					t0 := time.Now()
					for j := i; j < i+block; j++ {
						if table {
							dst, _ = tb.Get(keys[order[j%n]], dst[:0])
						} else {
							dst = append(dst[:0], m[string(keys[order[j%n]])]...)
						}
					}
					return int64(time.Since(t0))
				}
				for round, i := 0, start; ; round, i = round+1, i+block {
					if round%2 == 0 {
						tt.Add(run(i, true))
						tm.Add(run(i, false))
					} else {
						tm.Add(run(i, false))
						tt.Add(run(i, true))
					}
					// Each round does 2*block lookups and counts for block iterations.
					for range block {
						if !pb.Next() {
							return
						}
					}
				}
			})
			b.ReportMetric(float64(tt.Load())/float64(b.N), "table-ns/op")
			b.ReportMetric(float64(tm.Load())/float64(b.N), "map-ns/op")
			b.ReportMetric(float64(tm.Load())/float64(tt.Load()), "map/table")
		})
		runtime.KeepAlive(m)
	}
}
