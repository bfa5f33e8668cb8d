package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// WriteReport writes out/BENCHMARKS.md, out/bench/*.png and out/bench/results.json (every
// repetition, for anyone who wants to recompute).
func WriteReport(out string, res *Results) error {
	plotDir := filepath.Join(out, "bench")
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	plots, err := WritePlots(plotDir, res)
	if err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(filepath.Join(plotDir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var b strings.Builder
	RenderMarkdown(&b, res, plots)
	// Figures measured by other commands (the table's and the client's Go benchmarks) are kept
	// by hand in bench/appendix.md and carried into every regenerated report.
	if extra, err := os.ReadFile(filepath.Join(plotDir, "appendix.md")); err == nil {
		b.WriteString("\n")
		b.Write(extra)
	}
	if err := os.WriteFile(filepath.Join(out, "BENCHMARKS.md"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// RenderMarkdown writes the report. plots are file names relative to the report's bench/
// directory, embedded in order.
func RenderMarkdown(w io.Writer, res *Results, plots []string) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# Benchmarks: Shoal side by side with Redis, Redis Cluster and etcd\n\n")
	p("Measured %s, all systems on one machine, started and stopped by the same command:\n\n", res.Date.Format("2006-01-02 15:04 MST"))
	p("```sh\nscripts/bench.sh            # installs redis-server, redis-tools, etcd-server, etcd-client if missing, then:\n%s\n```\n\n", res.Command)
	if res.Quick {
		p("**This is a `--quick` run** (small sizes, one repetition): for iterating, not for quoting.\n\n")
	}
	m := res.Machine
	p("Machine: %s, %d CPUs (nproc), %s RAM, %s, %s. Peers: %s; %s.\n", m.CPUModel, m.NumCPU, m.MemTotal, m.Kernel, m.GoVer,
		orNA(m.Versions["redis-server"]), orNA(m.Versions["etcd"]))
	p("The machine is **shared with other work and noisy**, and every server and the load generator share its %d cores: "+
		"absolute numbers are low and vary from run to run; the ratios, measured in the same run with targets interleaved "+
		"(A B C A B C ...), are what to read. Each figure is the median of %d repetitions, with the spread (min-max) beside it.\n\n",
		m.NumCPU, res.Runs)

	p("## Targets\n\n| name | what |\n| --- | --- |\n")
	for _, t := range res.Targets {
		p("| `%s` | %s |\n", t.Name, t.Desc)
	}
	p("\nEvery Shoal row is compared with a peer measured in the same run: `shoal-1` with `redis` (single node vs single node), " +
		"`shoal-3` with `etcd-3` (3 replicas, fsync on a majority, linearizable reads) where etcd can run the workload, " +
		"else with `redis`; `shoal-3x3` with `redis-cluster`. *ratio* is Shoal's median throughput divided by the peer's " +
		"(above 1: Shoal is faster).\n\n")

	p("## Headline\n\n")
	renderHeadline(w, res)

	p("\nWhat the comparisons mean: Redis here keeps no persistence while every Shoal write is fsynced to its WAL (on a majority " +
		"for `shoal-3`/`shoal-3x3`) before it is acknowledged, so SET rows against Redis measure the price of durability and " +
		"consensus, not only implementation speed; `etcd-3` is the like-for-like peer for replicated writes and linearizable reads. " +
		"etcd is driven through its own Go client (`go.etcd.io/etcd/client/v3`, gRPC), one client with its own connection per " +
		"worker and one request in flight per connection, so etcd has no pipelined rows.\n")
	p("\n## Workloads\n\n")
	p("Keys are 16 bytes (`key:` and 12 digits, redis-benchmark's `key:__rand_int__`), values %d bytes, drawn from %d preloaded keys. "+
		"**Go generator** (`internal/bench`): fixed-duration runs (%v each) of N clients, one connection each; RESP targets are driven "+
		"cluster-aware (CLUSTER SLOTS, each key to its slot's master, which for Shoal is the group's raft leader); etcd through its own "+
		"Go client, clientv3 over gRPC (`Put`, linearizable `Get`; one client and connection per worker), workers spread over "+
		"the 3 members. Latency is per operation from an HDR-style histogram (a pipelined batch's latency counts for each of its operations). Zipfian keys use YCSB's theta %.2f. "+
		"**redis-benchmark**: `-t set|get -c %d -d %d -r %d [-P 16] --csv`, with `--cluster` for the two cluster targets; `shoal-3` is driven at its raft leader without `--cluster` (redis-benchmark refuses a one-master cluster); "+
		"-n is sized from the Go generator's throughput so that each invocation lasts about the same time.\n\n",
		res.ValueSize, res.Keyspace, res.Duration, ZipfTheta, res.RBClients, res.ValueSize, res.Keyspace)

	for _, sec := range []struct {
		title string
		keep  func(*Row) bool
	}{
		{"Concurrency sweep (Go generator, uniform keys, no pipelining)", func(r *Row) bool {
			return r.Tool == ToolGo && r.Dist == Uniform && r.Pipeline == 1 && r.Op != "90/10"
		}},
		{fmt.Sprintf("Skew, mix and pipelining (Go generator, %d clients)", res.Fixed), func(r *Row) bool {
			return r.Tool == ToolGo && !(r.Dist == Uniform && r.Pipeline == 1 && r.Op != "90/10")
		}},
		{"redis-benchmark", func(r *Row) bool { return r.Tool == ToolRB }},
	} {
		p("### %s\n\n", sec.title)
		renderRows(w, res, sec.keep)
		p("\n")
	}

	p("## Memory per pair\n\n")
	if len(res.Mem) > 0 {
		p("%d new pairs (`mem:` keys, 16-byte keys, %d-byte values; measured after a warm-up load of 1%% as many over the same connections, so connection buffers are in the baseline) loaded once into each target (SETs over 256 connections, 4-deep pipelines; etcd: puts in transactions of 128 over 32 connections). "+
			"*RSS/pair* is the growth of VmRSS (`/proc/<pid>/status`) summed over the target's data processes, divided by pairs and by "+
			"copies (replicas); *engine/pair* is the store's own accounting (Redis `used_memory`, Shoal's table index+slab bytes from "+
			"`INFO memory`). The raw data is %d bytes/pair. Measured once, not repeated.\n\n", res.Mem[0].Pairs, res.ValueSize, KeyLen+res.ValueSize)
	}
	p("| target | copies | RSS before | RSS after | RSS/pair | engine/pair | load time | ratio (RSS) |\n")
	p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, mr := range res.Mem {
		if mr.Err != "" {
			p("| `%s` | %d | | | error: %s | | | |\n", mr.Target, mr.Copies, mdEscape(mr.Err))
			continue
		}
		eng := "n/a"
		if mr.EngineName != "" {
			eng = fmt.Sprintf("%.0f B (%s)", mr.EnginePerPair(), mr.EngineName)
		}
		ratio := ""
		if r := res.MemRatio(mr); r > 0 {
			ratio = fmt.Sprintf("%.2fx vs `%s`", r, mr.Peer)
		}
		p("| `%s` | %d | %s | %s | %.0f B | %s | %.1f s | %s |\n", mr.Target, mr.Copies, mib(mr.RSSBefore), mib(mr.RSSAfter),
			mr.RSSPerPair(), eng, mr.LoadSeconds, ratio)
	}
	p("\n")

	if res.Scaling != nil {
		p("## Throughput as groups are added\n\n")
		renderScaling(w, res, slices.Contains(plots, scalingPlot))
	}
	if len(plots) > 0 {
		p("## Plots\n\n")
		for _, f := range plots {
			if f == scalingPlot {
				continue // shown in its own section
			}
			p("![%s](bench/%s)\n\n", strings.TrimSuffix(f, ".png"), f)
		}
	}
	if len(res.Notes) > 0 {
		p("## Notes from the run\n\n")
		for _, n := range res.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	p("## Raw numbers\n\n")
	p("Every repetition, in the order measured (ops/s; p50/p99 in ms)")
	if res.Scaling != nil {
		p("; `%s:N` is the scaling phase at N groups", TShoalScale)
	}
	p(". The same data, with failures, is in `bench/results.json`.\n\n")
	p("```\n")
	raw := func(target string, r *Row) {
		p("%-15s %-13s %-5s %-7s P%-2d c%-3d", r.Tool, target, r.Op, r.Dist, r.Pipeline, r.Clients)
		for _, s := range r.Samples {
			if s.Err != "" {
				p("  [error]")
				continue
			}
			p("  %.0f (%.3f/%.3f)", s.OpsPerSec, s.P50Ms, s.P99Ms)
		}
		p("\n")
	}
	for _, r := range res.Rows {
		raw(r.Target, r)
	}
	if sc := res.Scaling; sc != nil {
		for _, st := range sc.Steps {
			for _, r := range st.Rows {
				raw(fmt.Sprintf("%s:%d", r.Target, st.Groups), r)
			}
		}
	}
	p("```\n\nTotal run time: %s.\n", res.Elapsed.Round(1e9))
}

// renderHeadline lists the ratios the issue asks for, one line each.
func renderHeadline(w io.Writer, res *Results) {
	// versus prints target's median against peer's ("" = the row's own peer).
	versus := func(label, tool, target, peerName, op string, dist Dist, pipe, clients int) {
		like := &Row{Tool: tool, Op: op, Dist: dist, Pipeline: pipe, Clients: clients}
		r := res.Find(target, like)
		if r == nil {
			return
		}
		if peerName == "" {
			peerName = r.Peer
		}
		peer := res.Find(peerName, like)
		if peer == nil || peer.Throughput().Median == 0 {
			fmt.Fprintf(w, "| %s | n/a | | |\n", label)
			return
		}
		ratio := r.Throughput().Median / peer.Throughput().Median
		fmt.Fprintf(w, "| %s | **%.2fx** | %s | %s |\n", label, ratio, ops(r.Throughput().Median), ops(peer.Throughput().Median))
	}
	line := func(label, tool, target, op string, dist Dist, pipe, clients int) {
		versus(label, tool, target, "", op, dist, pipe, clients)
	}
	fmt.Fprintf(w, "| comparison (same run) | ratio | Shoal ops/s | peer ops/s |\n| --- | ---: | ---: | ---: |\n")
	c := res.Fixed
	line(fmt.Sprintf("GET, `shoal-1` vs `redis` (Go, %d clients)", c), ToolGo, TShoal1, "GET", Uniform, 1, c)
	line(fmt.Sprintf("GET, `shoal-1` vs `redis` (redis-benchmark, %d clients)", res.RBClients), ToolRB, TShoal1, "GET", Uniform, 1, res.RBClients)
	line(fmt.Sprintf("SET, `shoal-1` vs `redis` (Go, %d clients)", c), ToolGo, TShoal1, "SET", Uniform, 1, c)
	line(fmt.Sprintf("replicated SET, `shoal-3` vs `etcd-3` put (Go, %d clients)", c), ToolGo, TShoal3, "SET", Uniform, 1, c)
	line(fmt.Sprintf("linearizable GET, `shoal-3` vs `etcd-3` range (Go, %d clients)", c), ToolGo, TShoal3, "GET", Uniform, 1, c)
	versus(fmt.Sprintf("linearizable GET, `shoal-3` vs one `redis` (Go, %d clients)", c), ToolGo, TShoal3, TRedis, "GET", Uniform, 1, c)
	versus(fmt.Sprintf("linearizable GET, `shoal-3` vs one `redis` (redis-benchmark, %d clients)", res.RBClients), ToolRB, TShoal3, TRedis, "GET", Uniform, 1, res.RBClients)
	line(fmt.Sprintf("GET, `shoal-3x3` vs `redis-cluster` (Go, %d clients)", c), ToolGo, TShoalCluster, "GET", Uniform, 1, c)
	line(fmt.Sprintf("SET, `shoal-3x3` vs `redis-cluster` (Go, %d clients)", c), ToolGo, TShoalCluster, "SET", Uniform, 1, c)
	line(fmt.Sprintf("GET -P %d, `shoal-1` vs `redis` (redis-benchmark)", 16), ToolRB, TShoal1, "GET", Uniform, 16, res.RBClients)
	line(fmt.Sprintf("SET -P %d, `shoal-1` vs `redis` (redis-benchmark)", 16), ToolRB, TShoal1, "SET", Uniform, 16, res.RBClients)
	for _, m := range res.Mem {
		if r := res.MemRatio(m); r > 0 {
			fmt.Fprintf(w, "| memory per pair (RSS), `%s` vs `%s` | **%.2fx** | %.0f B | %.0f B |\n", m.Target, m.Peer, r, m.RSSPerPair(),
				m.RSSPerPair()/r)
		}
	}
	fmt.Fprintf(w, "\nFor memory, a ratio above 1 means Shoal uses more.\n")
}

// renderRows writes one table of the rows keep selects, grouped by op and configuration.
func renderRows(w io.Writer, res *Results, keep func(*Row) bool) {
	var rows []*Row
	for _, r := range res.Rows {
		if keep(r) {
			rows = append(rows, r)
		}
	}
	// Order: op, dist, pipeline, clients, then the targets in start order.
	order := map[string]int{}
	for i, t := range res.Targets {
		order[t.Name] = i
	}
	slices.SortStableFunc(rows, func(a, b *Row) int {
		if c := strings.Compare(a.Op, b.Op); c != 0 {
			return c
		}
		if c := strings.Compare(string(a.Dist), string(b.Dist)); c != 0 {
			return c
		}
		if a.Pipeline != b.Pipeline {
			return a.Pipeline - b.Pipeline
		}
		if a.Clients != b.Clients {
			return a.Clients - b.Clients
		}
		return order[a.Target] - order[b.Target]
	})
	fmt.Fprintf(w, "| op | keys | P | clients | target | ops/s (median) | spread (min-max) | p50 ms | p99 ms | ratio vs peer |\n")
	fmt.Fprintf(w, "| --- | --- | ---: | ---: | --- | ---: | --- | ---: | ---: | --- |\n")
	for _, r := range rows {
		th := r.Throughput()
		if th.N == 0 {
			fmt.Fprintf(w, "| %s | %s | %d | %d | `%s` | error | %s | | | |\n", r.Op, r.Dist, r.Pipeline, r.Clients, r.Target,
				mdEscape(strings.Join(r.Errors(), "; ")))
			continue
		}
		ratio := ""
		if x := res.Ratio(r); x > 0 {
			ratio = fmt.Sprintf("**%.2fx** vs `%s`", x, r.Peer)
		}
		name := "`" + r.Target + "`"
		if r.Peer != "" {
			name = "**" + name + "**"
		}
		spread := fmt.Sprintf("%s-%s", ops(th.Min), ops(th.Max))
		if errs := r.Errors(); len(errs) > 0 {
			spread += fmt.Sprintf(" (%d failed)", len(r.Samples)-th.N)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %s | %.3f | %.3f | %s |\n", r.Op, r.Dist, r.Pipeline, r.Clients, name,
			ops(th.Median), spread, r.P50().Median, r.P99().Median, ratio)
	}
}

// ops formats a throughput with thousands separators.
func ops(x float64) string {
	n := int64(x + 0.5)
	s := fmt.Sprint(n)
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return string(b)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

// mdEscape keeps an error text from breaking a table row.
func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// LoadResults reads a results.json written by WriteReport, to render the report again without
// measuring.
func LoadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load results: %w", err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("load results %s: %w", path, err)
	}
	return &res, nil
}

// renderScaling writes the scaling phase's section: how it ran, the curve (one row per size and
// op) and what each join cost. figure embeds bench/scaling.png after the tables.
func renderScaling(w io.Writer, res *Results, figure bool) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	sc := res.Scaling
	p("One Shoal cluster (`%s`: 1 shard controller and replica groups of %d processes, the settings of `%s`) is started "+
		"with one group and preloaded with the %d keys, then grown one group at a time through the controller (`CTL JOIN`, "+
		"as `shoal ctl join` does). Before each measurement the run waits until every joined group reports the new "+
		"configuration applied with all its hand-offs done (`INFO migration`). Go generator, uniform keys, no pipelining, "+
		"%d clients, %v per measurement, median of %d repetitions (GET and SET alternating). *ratio to 1 group* divides the "+
		"median by the one-group median of the same op; the last column is `%s` on the same op and clients in this run's "+
		"concurrency sweep, for reference.\n\n",
		TShoalScale, sc.Replicas, TShoalCluster, res.Keyspace, sc.Clients, res.Duration, res.Runs, TRedisCluster)
	p("Every process shares this machine's %d cores, so each group added also adds %d processes competing for the same "+
		"CPUs: the curve shows what sharding costs and gains on one machine, not what groups on their own machines would give. "+
		"The sizes are measured one after another (they cannot be interleaved), so noise between them is not cancelled "+
		"as it is in the rows above.\n\n", res.Machine.NumCPU, sc.Replicas)
	p("| groups | op | ops/s (median) | spread (min-max) | p50 ms | p99 ms | ratio to 1 group | `%s` ops/s (same run) |\n", TRedisCluster)
	p("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |\n")
	for _, op := range scaleOps {
		ref := "n/a"
		if r := res.Find(TRedisCluster, &Row{Tool: ToolGo, Op: op, Dist: Uniform, Pipeline: 1, Clients: sc.Clients}); r != nil && r.Throughput().N > 0 {
			ref = ops(r.Throughput().Median)
		}
		base := sc.Base(op)
		for i := range sc.Steps {
			st := &sc.Steps[i]
			r := st.Row(op)
			if r == nil {
				continue
			}
			th := r.Throughput()
			if th.N == 0 {
				p("| %d | %s | error | %s | | | | %s |\n", st.Groups, op, mdEscape(strings.Join(r.Errors(), "; ")), ref)
				continue
			}
			spread := fmt.Sprintf("%s-%s", ops(th.Min), ops(th.Max))
			if len(r.Errors()) > 0 {
				spread += fmt.Sprintf(" (%d failed)", len(r.Samples)-th.N)
			}
			ratio := "n/a"
			if base > 0 {
				ratio = fmt.Sprintf("**%.2fx**", th.Median/base)
			}
			p("| %d | %s | %s | %s | %.3f | %.3f | %s | %s |\n", st.Groups, op, ops(th.Median), spread, r.P50().Median,
				r.P99().Median, ratio, ref)
		}
	}
	var same []string
	for _, op := range scaleOps {
		if r := res.Find(TShoalCluster, &Row{Tool: ToolGo, Op: op, Dist: Uniform, Pipeline: 1, Clients: sc.Clients}); r != nil && r.Throughput().N > 0 {
			same = append(same, fmt.Sprintf("%s %s", op, ops(r.Throughput().Median)))
		}
	}
	if len(same) > 0 {
		p("\nFor comparison, `%s` (the same settings with its 3 groups joined from the start) measured %s ops/s in this run.\n",
			TShoalCluster, strings.Join(same, ", "))
	}
	p("\nWhat each join took to rebalance: *rebalance time* runs from the controller's join to every joined group reporting " +
		"the new configuration applied with its hand-offs done, with no client load; *slots moved* changed owner, *pairs moved* " +
		"were installed by the receiving groups. The first join assigns every slot to the first group of an empty cluster, " +
		"so nothing moves.\n\n")
	p("| join | groups after | configuration | slots moved | pairs moved | rebalance time |\n")
	p("| ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for i, st := range sc.Steps {
		pairs := "n/a"
		if st.PairsMoved >= 0 {
			pairs = ops(float64(st.PairsMoved))
		}
		slots := ops(float64(st.SlotsMoved))
		if st.Groups == 1 {
			slots += " (assigned)"
		}
		p("| %d | %d | %d | %s | %s | %.2f s |\n", i+1, st.Groups, st.Config, slots, pairs, st.JoinSeconds)
	}
	if sc.Err != "" {
		p("\nThe phase stopped early: %s\n", mdEscape(sc.Err))
	}
	if figure {
		p("\n![scaling](bench/%s)\n", scalingPlot)
	}
	p("\n")
}
