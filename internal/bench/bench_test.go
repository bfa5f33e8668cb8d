package bench

import (
	"bytes"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0.999, 9990 * time.Microsecond}} {
		got := h.Percentile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 0.04 {
			t.Errorf("p%v = %v, want %v within 4%%", c.q*100, got, c.want)
		}
	}
	if h.Percentile(1) != 10000*time.Microsecond || h.Percentile(0) != time.Microsecond {
		t.Errorf("p0/p100 = %v/%v, want the observed min and max", h.Percentile(0), h.Percentile(1))
	}
	if h.Count() != 10000 {
		t.Errorf("count %d", h.Count())
	}
	if m := h.Mean(); m < 5000*time.Microsecond || m > 5001*time.Microsecond {
		t.Errorf("mean %v", m)
	}
}

func TestHistogramMergeAndRecordN(t *testing.T) {
	var a, b, all Histogram
	a.RecordN(time.Millisecond, 90)
	b.RecordN(100*time.Millisecond, 10)
	a.Merge(&b)
	all.Merge(&a)
	if all.Count() != 100 {
		t.Fatalf("count %d", all.Count())
	}
	if p := all.Percentile(0.5); p < 970*time.Microsecond || p > 1030*time.Microsecond {
		t.Errorf("p50 %v, want ~1ms", p)
	}
	if p := all.Percentile(0.99); p < 97*time.Millisecond || p > 100*time.Millisecond {
		t.Errorf("p99 %v, want ~100ms", p)
	}
	var empty Histogram
	if empty.Percentile(0.5) != 0 {
		t.Error("empty histogram percentile not 0")
	}
}

func TestBucketsCoverValues(t *testing.T) {
	for _, v := range []int64{0, 1, 31, 32, 33, 63, 64, 1000, 123456789, math.MaxInt64} {
		i := bucketOf(v)
		lo, hi := bucketBounds(i)
		if v < lo || (v >= hi && hi > lo && hi > 0) {
			t.Errorf("value %d in bucket %d [%d,%d)", v, i, lo, hi)
		}
		if i >= numBuckets {
			t.Errorf("value %d: bucket %d out of range", v, i)
		}
	}
}

func TestZipf(t *testing.T) {
	const n = 1000
	z := NewZipf(n, ZipfTheta)
	r := rand.New(rand.NewPCG(1, 2))
	counts := make([]int, n)
	const draws = 200000
	for range draws {
		k := z.Next(r)
		if k >= n {
			t.Fatalf("rank %d out of [0,%d)", k, n)
		}
		counts[k]++
	}
	// With theta 0.99 over 1000 items, rank 0 takes about 1/H(1000, 0.99) ~ 13% and rank 1 about half of that.
	p0 := float64(counts[0]) / draws
	if p0 < 0.10 || p0 > 0.17 {
		t.Errorf("rank 0 frequency %.3f, want ~0.13", p0)
	}
	if counts[1] > counts[0] || counts[10] > counts[1] || counts[100] > counts[10] {
		t.Errorf("frequencies not decreasing: %d %d %d %d", counts[0], counts[1], counts[10], counts[100])
	}
	top := 0
	for _, c := range counts[:100] {
		top += c
	}
	if f := float64(top) / draws; f < 0.55 {
		t.Errorf("top 10%% of keys take %.2f of draws, want a skewed majority", f)
	}
	// Same seed, same sequence: runs are reproducible.
	k1 := NewKeyChooser(Zipfian, n, z, 7)
	k2 := NewKeyChooser(Zipfian, n, z, 7)
	for range 100 {
		if k1.Next() != k2.Next() {
			t.Fatal("same seed gave different keys")
		}
	}
	u := NewKeyChooser(Uniform, 10, nil, 3)
	for range 1000 {
		if k := u.Next(); k >= 10 {
			t.Fatalf("uniform key %d out of range", k)
		}
	}
}

func TestAppendKey(t *testing.T) {
	k := AppendKey(nil, "key:", 42)
	if string(k) != "key:000000000042" || len(k) != KeyLen {
		t.Errorf("key %q", k)
	}
}

func TestParseRedisBenchmarkCSV(t *testing.T) {
	in := `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","26420.08","0.206","0.040","0.127","0.319","2.975","5.551"
"GET","24660.91","0.214","0.040","0.135","0.367","2.495","5.559"
`
	rows, err := ParseRedisBenchmarkCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Test != "SET" || rows[0].RPS != 26420.08 || rows[0].P50Ms != 0.127 || rows[0].P99Ms != 2.975 ||
		rows[1].Test != "GET" || rows[1].MaxMs != 5.559 {
		t.Errorf("rows %+v", rows)
	}
	// --cluster prints the masters first; Redis 6 prints no header and no latencies.
	cluster := "Cluster has 3 master nodes:\n\nMaster 0: 3a14 127.0.0.1:17001\n\n" + in
	if rows, err := ParseRedisBenchmarkCSV(strings.NewReader(cluster)); err != nil || len(rows) != 2 {
		t.Errorf("cluster preamble: %v %+v", err, rows)
	}
	if rows, err := ParseRedisBenchmarkCSV(strings.NewReader("\"SET\",\"1000.00\"\n")); err != nil || rows[0].RPS != 1000 || rows[0].P50Ms != 0 {
		t.Errorf("old format: %v %+v", err, rows)
	}
	if _, err := ParseRedisBenchmarkCSV(strings.NewReader("")); err == nil {
		t.Error("empty output parsed")
	}
	if _, err := ParseRedisBenchmarkCSV(strings.NewReader("\"SET\",\"fast\"\n")); err == nil {
		t.Error("non-numeric rps parsed")
	}
}

func TestParseVmRSS(t *testing.T) {
	st := "Name:\tredis-server\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nThreads:\t5\n"
	if n, err := parseVmRSS([]byte(st)); err != nil || n != 12345*1024 {
		t.Errorf("rss %d %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("missing VmRSS accepted")
	}
	if m := cpuModel([]byte("processor\t: 0\nmodel name\t: AMD EPYC\n")); m != "AMD EPYC" {
		t.Errorf("cpu model %q", m)
	}
}

func TestSummarize(t *testing.T) {
	if s := Summarize([]float64{3, 1, 2}); s.Median != 2 || s.Min != 1 || s.Max != 3 || s.N != 3 {
		t.Errorf("%+v", s)
	}
	if s := Summarize([]float64{4, 1, 2, 3}); s.Median != 2.5 {
		t.Errorf("even median %+v", s)
	}
}

// sampleResults builds a small result set covering every section of the report.
func sampleResults() *Results {
	res := &Results{Date: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Command: "go run ./cmd/shoal-bench", Runs: 3,
		Duration: 2 * time.Second, Keyspace: 100000, Clients: []int{1, 32}, Fixed: 32, RBClients: 50, ValueSize: 32,
		Machine: Machine{CPUModel: "Test CPU", NumCPU: 2, Versions: map[string]string{"redis-server": "Redis server v=7"}}}
	for _, n := range []string{TRedis, TRedisCluster, TEtcd, TShoal1, TShoal3, TShoalCluster} {
		res.Targets = append(res.Targets, TargetInfo{n, "desc of " + n})
	}
	speed := map[string]float64{TRedis: 40000, TRedisCluster: 30000, TEtcd: 1000, TShoal1: 20000, TShoal3: 5000, TShoalCluster: 8000}
	for _, op := range []string{"GET", "SET"} {
		for _, c := range res.Clients {
			for _, ti := range res.Targets {
				r := &Row{Tool: ToolGo, Target: ti.Name, Op: op, Dist: Uniform, Pipeline: 1, Clients: c, Peer: peerOf(ti.Name, 1, ToolGo)}
				for i := range 3 {
					r.Samples = append(r.Samples, Sample{OpsPerSec: speed[ti.Name] * float64(c) / 32 * (1 + 0.1*float64(i)), P50Ms: 0.5, P99Ms: 3})
				}
				res.Rows = append(res.Rows, r)
			}
		}
	}
	res.Rows = append(res.Rows, &Row{Tool: ToolRB, Target: TShoal1, Op: "GET", Dist: Uniform, Pipeline: 1, Clients: 50, Peer: TRedis,
		Samples: []Sample{{Err: "redis-benchmark exploded | badly"}}})
	res.Mem = []MemRow{
		{Target: TRedis, Pairs: 1000, Copies: 1, RSSBefore: 1 << 20, RSSAfter: 1<<20 + 148000, EngineName: "used_memory", EngineAfter: 137000},
		{Target: TShoal1, Pairs: 1000, Copies: 1, RSSBefore: 1 << 20, RSSAfter: 1<<20 + 296000, Peer: TRedis},
		{Target: TEtcd, Pairs: 1000, Copies: 3, Err: "etcd down"},
	}
	return res
}

func TestRenderMarkdown(t *testing.T) {
	res := sampleResults()
	var b bytes.Buffer
	RenderMarkdown(&b, res, []string{"throughput-get.png"})
	out := b.String()
	for _, want := range []string{
		"# Benchmarks", "go run ./cmd/shoal-bench", "Test CPU, 2 CPUs", "noisy",
		"**0.50x** vs `redis`",  // shoal-1 20000 vs redis 40000
		"**5.00x** vs `etcd-3`", // shoal-3 5000 vs etcd 1000
		"memory per pair (RSS), `shoal-1` vs `redis` | **2.00x**",
		"redis-benchmark exploded \\| badly", "error: etcd down", "![throughput-get](bench/throughput-get.png)",
		"## Raw numbers",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestChartPNG(t *testing.T) {
	for _, ch := range []*Chart{
		{Title: "GET throughput", XLabel: "clients", YLabel: "ops/s", Categories: []string{"1", "8", "32"},
			Series: []Series{{Name: "redis", Y: []float64{10, 80, math.NaN()}, Color: targetColor(TRedis)}}},
		{Title: "latency", YLabel: "ms", Bars: true, LogY: true, Categories: []string{"a", "b"},
			Series: []Series{{Name: "p50", Y: []float64{0.2, 30}}, {Name: "p99", Y: []float64{1, 400}}}},
		{Title: "empty", Categories: nil},
	} {
		img := ch.Render()
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			t.Fatal(err)
		}
		dec, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("%s: %v", ch.Title, err)
		}
		if b := dec.Bounds(); b.Dx() != 900 || b.Dy() != 540 {
			t.Errorf("%s: size %v", ch.Title, b)
		}
		// Something besides the white background was drawn.
		dark := 0
		for y := 0; y < 540; y += 2 {
			for x := 0; x < 900; x += 2 {
				if r, _, _, _ := dec.At(x, y).RGBA(); r < 0x8000 {
					dark++
				}
			}
		}
		if dark < 100 {
			t.Errorf("%s: only %d dark pixels", ch.Title, dark)
		}
	}
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	if err := WriteReport(dir, sampleResults()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"BENCHMARKS.md", "bench/results.json", "bench/throughput-get.png", "bench/throughput-set.png",
		"bench/latency-get.png", "bench/latency-set.png", "bench/memory.png"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".png") {
			if _, err := png.Decode(bytes.NewReader(b)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}

func TestFontCoversReportText(t *testing.T) {
	f := newFont()
	for _, r := range "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,-/:%()=_+[]<>*? abcxyz" {
		if _, ok := f.glyph(r); !ok {
			t.Errorf("no glyph for %q", r)
		}
	}
	if fmtAxis(250000) != "250k" || fmtAxis(1.5e6) != "1.5M" || fmtAxis(0.1) != "0.1" {
		t.Errorf("axis labels %s %s %s", fmtAxis(250000), fmtAxis(1.5e6), fmtAxis(0.1))
	}
}

func TestLoadResultsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if err := WriteReport(dir, sampleResults()); err != nil {
		t.Fatal(err)
	}
	res, err := LoadResults(filepath.Join(dir, "bench", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != len(sampleResults().Rows) || res.Duration != 2*time.Second || res.Rows[0].Throughput().N != 3 {
		t.Errorf("round trip lost data: %d rows, duration %v", len(res.Rows), res.Duration)
	}
}

// withScaling adds a scaling phase to res: GET doubling and SET growing by half per group.
func withScaling(res *Results) *Results {
	sc := &Scaling{Replicas: 3, Clients: 32}
	for g := 1; g <= 3; g++ {
		st := ScaleStep{Groups: g, Config: uint64(g), JoinSeconds: 0.5 * float64(g-1), SlotsMoved: 16384 / g, PairsMoved: int64(1000 * (g - 1))}
		for _, op := range []string{"GET", "SET"} {
			base := map[string]float64{"GET": 10000, "SET": 2000}[op]
			factor := map[string]float64{"GET": float64(g), "SET": 1 + 0.5*float64(g-1)}[op]
			r := &Row{Tool: ToolGo, Target: TShoalScale, Op: op, Dist: Uniform, Pipeline: 1, Clients: 32}
			for i := range 3 {
				r.Samples = append(r.Samples, Sample{OpsPerSec: base * factor * (0.9 + 0.1*float64(i)), P50Ms: 1, P99Ms: 4})
			}
			st.Rows = append(st.Rows, r)
		}
		sc.Steps = append(sc.Steps, st)
	}
	// A failed repetition at 3 groups must not count in the median.
	sc.Steps[2].Rows[1].Samples = append(sc.Steps[2].Rows[1].Samples, Sample{Err: "connection reset"})
	res.Scaling = sc
	return res
}

func TestRenderScaling(t *testing.T) {
	res := withScaling(sampleResults())
	var b bytes.Buffer
	RenderMarkdown(&b, res, []string{"throughput-get.png", scalingPlot})
	out := b.String()
	for _, want := range []string{
		"## Throughput as groups are added",
		"| groups | op | ops/s (median) | spread (min-max) | p50 ms | p99 ms | ratio to 1 group | `redis-cluster` ops/s (same run) |",
		"| 1 | GET | 10,000 | 9,000-11,000 | 1.000 | 4.000 | **1.00x** | 33,000 |", // redis-cluster GET at 32 clients in sampleResults: median 33,000
		"| 3 | GET | 30,000 | 27,000-33,000 | 1.000 | 4.000 | **3.00x** | 33,000 |",
		"| 3 | SET | 4,000 | 3,600-4,400 (1 failed) | 1.000 | 4.000 | **2.00x** | 33,000 |",
		"`shoal-3x3` (the same settings with its 3 groups joined from the start) measured GET 8,800, SET 8,800 ops/s",
		"| 2 | 2 | 2 | 8,192 | 1,000 | 0.50 s |",
		"| 3 | 3 | 3 | 5,461 | 2,000 | 1.00 s |",
		"![scaling](bench/scaling.png)",
		"shoal-scale:3 GET   uniform P1  c32",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The figure is shown in its section, not again under Plots.
	if n := strings.Count(out, "bench/scaling.png"); n != 1 {
		t.Errorf("scaling.png embedded %d times", n)
	}
	// Without Redis Cluster in the run, the reference column says so; without the phase, the
	// section is absent (results.json files from before the phase existed).
	res.Rows = slices.DeleteFunc(res.Rows, func(r *Row) bool { return r.Target == TRedisCluster })
	b.Reset()
	RenderMarkdown(&b, res, nil)
	if !strings.Contains(b.String(), "| 1 | GET | 10,000 | 9,000-11,000 | 1.000 | 4.000 | **1.00x** | n/a |") {
		t.Error("missing redis-cluster reference not rendered as n/a")
	}
	b.Reset()
	RenderMarkdown(&b, sampleResults(), nil)
	if strings.Contains(b.String(), "groups are added") {
		t.Error("scaling section rendered without a scaling phase")
	}
}

func TestRenderScalingError(t *testing.T) {
	res := sampleResults()
	res.Scaling = &Scaling{Replicas: 3, Clients: 32, Err: "join group 2: controller | down",
		Steps: []ScaleStep{{Groups: 1, Config: 1, SlotsMoved: 16384, Rows: []*Row{
			{Tool: ToolGo, Target: TShoalScale, Op: "GET", Dist: Uniform, Pipeline: 1, Clients: 32, Samples: []Sample{{Err: "refused"}}}}}}}
	var b bytes.Buffer
	RenderMarkdown(&b, res, nil)
	for _, want := range []string{"| 1 | GET | error | refused |", "The phase stopped early: join group 2: controller \\| down"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if ch := scalingChart(res); ch == nil || len(ch.Series) != 2 || !math.IsNaN(ch.Series[0].Y[0]) {
		t.Errorf("chart of a failed step: %+v", ch)
	}
}

func TestScalingChartAndJSON(t *testing.T) {
	if scalingChart(sampleResults()) != nil {
		t.Error("chart drawn without a scaling phase")
	}
	ch := scalingChart(withScaling(sampleResults()))
	if ch == nil || !slices.Equal(ch.Categories, []string{"1", "2", "3"}) || len(ch.Series) != 2 ||
		ch.Series[0].Name != "GET" || ch.Series[0].Y[2] != 30000 || ch.Series[1].Y[2] != 4000 {
		t.Fatalf("chart %+v", ch)
	}
	dir := t.TempDir()
	if err := WriteReport(dir, withScaling(sampleResults())); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bench", scalingPlot))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(bytes.NewReader(b)); err != nil {
		t.Errorf("%s: %v", scalingPlot, err)
	}
	res, err := LoadResults(filepath.Join(dir, "bench", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc := res.Scaling
	if sc == nil || len(sc.Steps) != 3 || sc.Steps[1].JoinSeconds != 0.5 || sc.Steps[2].PairsMoved != 2000 ||
		sc.Steps[2].Row("SET").Throughput().N != 3 || sc.Base("GET") != 10000 {
		t.Errorf("scaling lost in the round trip: %+v", sc)
	}
}

// TestLoadOldResults renders the committed results.json, written before the scaling phase
// existed: `--from docs/bench/results.json` must keep working.
func TestLoadOldResults(t *testing.T) {
	res, err := LoadResults(filepath.Join("..", "..", "docs", "bench", "results.json"))
	if err != nil {
		t.Skipf("no committed results: %v", err)
	}
	if len(res.Rows) == 0 {
		t.Fatal("no rows loaded")
	}
	dir := t.TempDir()
	if err := WriteReport(dir, res); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "BENCHMARKS.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "## Headline") {
		t.Error("report of old results lacks its headline")
	}
	if _, err := os.Stat(filepath.Join(dir, "bench", scalingPlot)); res.Scaling == nil && err == nil {
		t.Error("scaling plot drawn for results without a scaling phase")
	}
}

func TestCheckTargetsScale(t *testing.T) {
	if err := CheckTargets([]string{TShoalScale, TRedis}); err != nil {
		t.Errorf("%s refused: %v", TShoalScale, err)
	}
	if err := CheckTargets([]string{"shoal-9"}); err == nil || !strings.Contains(err.Error(), TShoalScale) {
		t.Errorf("unknown target: %v", err)
	}
	for _, c := range []struct {
		only []string
		want bool
	}{{nil, true}, {[]string{TRedis}, false}, {[]string{TRedisCluster, TShoalCluster}, true}, {[]string{TShoalScale}, true}} {
		if got := ScaleSelected(c.only); got != c.want {
			t.Errorf("ScaleSelected(%v) = %v", c.only, got)
		}
	}
}

// TestPlotsWithoutTargets covers a run of the scaling phase alone: no target rows, so only the
// scaling chart is drawn, and an empty log-scale chart still renders (it used to loop forever
// from an axis starting at 0).
func TestPlotsWithoutTargets(t *testing.T) {
	ch := &Chart{Title: "empty log", LogY: true, Bars: true, Series: []Series{{Name: "p50", Y: []float64{math.NaN()}}}}
	if img := ch.Render(); img.Bounds().Dx() != 900 {
		t.Errorf("size %v", img.Bounds())
	}
	res := withScaling(sampleResults())
	res.Targets, res.Rows, res.Mem = nil, nil, nil
	files, err := WritePlots(t.TempDir(), res)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(files, []string{scalingPlot}) {
		t.Errorf("plots %v, want only %s", files, scalingPlot)
	}
}
