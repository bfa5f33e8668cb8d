package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/shoal-kv/shoal/internal/harness"
)

// Config is one benchmark run's parameters.
type Config struct {
	Exe       string        // the shoal binary the Shoal targets run
	Out       string        // directory receiving BENCHMARKS.md and bench/*.png
	Runs      int           // repetitions of every measurement
	Quick     bool          // small sizes, for iterating (recorded in the report)
	Duration  time.Duration // length of one Go-generator measurement
	Clients   []int         // concurrency sweep of the Go generator
	Fixed     int           // concurrency of the non-sweep Go rows (zipf, mix, pipelined)
	Keyspace  uint64        // keys the workloads draw from (preloaded)
	ValueSize int
	Pipeline  int     // depth of the pipelined rows
	RBClients int     // redis-benchmark -c
	RBSeconds float64 // target length of one redis-benchmark invocation, sizing its -n
	MemPairs  uint64  // pairs loaded for memory per pair
	Command   string  // how the run was invoked, for the report
	KeepDir   bool    // keep the temporary directory (data, logs) after the run
	// ScaleGroups is how many groups the scaling phase grows its cluster to, one at a time.
	ScaleGroups int
	// ScaleClients is the scaling phase's concurrency (Fixed when zero).
	ScaleClients int
	// ServerEnv is added to the environment of every server process of every target, Shoal's
	// and the peers' alike (e.g. GOMAXPROCS=1); the report shows it in its command line.
	ServerEnv []string
	// Targets restricts the run to these targets (names as in TargetNames); empty runs all.
	// Shoal rows whose peer is left out are reported without a ratio.
	Targets []string
	Log     *slog.Logger
}

// DefaultConfig returns the full run's parameters, or the quick ones.
func DefaultConfig(quick bool) Config {
	c := Config{Runs: 3, Duration: 2 * time.Second, Clients: []int{1, 8, 32, 64}, Fixed: 32, Keyspace: 100_000,
		ValueSize: 32, Pipeline: 16, RBClients: 50, RBSeconds: 2, MemPairs: 1_000_000, Out: "docs",
		ScaleGroups: 3}
	if quick {
		c.Quick = true
		c.Runs = 1
		c.Duration = time.Second
		c.Clients = []int{1, 32}
		c.Keyspace = 10_000
		c.RBSeconds = 0.7
		c.MemPairs = 100_000
	}
	return c
}

// point is one Go-generator configuration run on every applicable target.
type point struct {
	op       string
	read     float64
	dist     Dist
	pipeline int
	clients  int
}

// Run starts every target in a temporary directory, measures, stops exactly the processes it
// started (also when ctx is cancelled or a step fails) and returns the results. Failed
// measurements are recorded in their row rather than ending the run, so one misbehaving target
// still leaves a report of the others.
func Run(ctx context.Context, cfg Config) (_ *Results, err error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	cfg.Runs = max(cfg.Runs, 1)
	t0 := time.Now()
	dir, err := os.MkdirTemp("", "shoal-bench-*")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	procs := NewProcs(log)
	procs.Env = cfg.ServerEnv
	defer procs.StopAll()
	log.Info("starting targets", "dir", dir)
	env, err := StartEnv(ctx, cfg.Exe, dir, procs, cfg.Targets)
	if err != nil {
		return nil, fmt.Errorf("%w (logs kept in %s)", err, dir)
	}
	defer func() {
		env.Stop()
		if cfg.KeepDir || err != nil {
			log.Info("data and logs kept", "dir", dir)
			return
		}
		_ = os.RemoveAll(dir)
	}()
	log.Info("targets up", "elapsed", time.Since(t0).Round(time.Millisecond))

	res := &Results{Date: t0.UTC(), Command: cfg.Command, Quick: cfg.Quick, Runs: cfg.Runs, Duration: cfg.Duration,
		Keyspace: cfg.Keyspace, Clients: cfg.Clients, Fixed: cfg.Fixed, RBClients: cfg.RBClients, ValueSize: cfg.ValueSize,
		Machine: DescribeMachine(ctx)}
	for _, t := range env.Targets {
		res.Targets = append(res.Targets, TargetInfo{t.Name, t.Desc})
	}
	for _, t := range env.Targets {
		if err := preload(ctx, t, cfg); err != nil {
			return nil, fmt.Errorf("preload %s: %w", t.Name, err)
		}
	}
	log.Info("preloaded", "keys", cfg.Keyspace, "elapsed", time.Since(t0).Round(time.Millisecond))
	if err := runGo(ctx, cfg, env, res, log); err != nil {
		return nil, err
	}
	if err := runRB(ctx, cfg, env, res, log); err != nil {
		return nil, err
	}
	// The scaling phase runs before the memory phase so that the other targets sit idle with only
	// the preloaded keyspace while it measures, rather than compacting a million-pair load.
	if ScaleSelected(cfg.Targets) {
		if err := runScale(ctx, cfg, dir, res, log); err != nil {
			return nil, err
		}
	}
	if err := runMemory(ctx, cfg, env, res, log); err != nil {
		return nil, err
	}
	for _, t := range env.Targets {
		for _, n := range t.Nodes {
			if _, err := ReadRSS(n.PID); err != nil {
				res.Notes = append(res.Notes, fmt.Sprintf("%s process %d (%s) was no longer running at the end of the run", t.Name, n.PID, n.Addr))
			}
		}
	}
	res.Elapsed = time.Since(t0)
	return res, nil
}

// peerOf names the peer a Shoal row is compared with: the single redis-server for the single
// node; etcd for the replicated group where etcd can run the same workload (it cannot
// pipeline), else the single redis-server; Redis Cluster for Shoal's cluster.
func peerOf(target string, pipeline int, tool string) string {
	switch target {
	case TShoal1:
		return TRedis
	case TShoal3:
		if tool == ToolGo && pipeline == 1 {
			return TEtcd
		}
		return TRedis
	case TShoalCluster:
		return TRedisCluster
	}
	return ""
}

// fillShape returns the clients and batch size for bulk loads. Shoal executes a connection's
// pipelined writes one after another (each waits for its raft commit), so its load speed comes
// from many connections, not deep pipelines; etcd gets transactions of 128 puts.
func fillShape(t *Target) (clients, pipeline int) {
	if t.Proto == ProtoEtcd {
		return 32, etcdMaxTxnOps
	}
	return 256, 4
}

func preload(ctx context.Context, t *Target, cfg Config) error {
	clients, pipe := fillShape(t)
	r, err := RunLoad(ctx, t.Factory(), Load{Fill: true, Keyspace: cfg.Keyspace, ValueSize: cfg.ValueSize, Pipeline: pipe, Clients: clients})
	if err == nil && r.Failed > 0 {
		err = fmt.Errorf("%d writes refused", r.Failed)
	}
	return err
}

func runGo(ctx context.Context, cfg Config, env *Env, res *Results, log *slog.Logger) error {
	var points []point
	for _, op := range []string{"GET", "SET"} {
		for _, c := range cfg.Clients {
			points = append(points, point{op: op, read: readFrac(op), dist: Uniform, pipeline: 1, clients: c})
		}
	}
	for _, op := range []string{"GET", "SET", "90/10"} {
		points = append(points, point{op: op, read: readFrac(op), dist: Zipfian, pipeline: 1, clients: cfg.Fixed})
	}
	points = append(points, point{op: "90/10", read: readFrac("90/10"), dist: Uniform, pipeline: 1, clients: cfg.Fixed})
	for _, op := range []string{"GET", "SET"} {
		points = append(points, point{op: op, read: readFrac(op), dist: Uniform, pipeline: cfg.Pipeline, clients: cfg.Fixed})
	}
	for pi, p := range points {
		var rows []*Row
		for _, t := range env.Targets {
			if t.Proto == ProtoEtcd && p.pipeline > 1 {
				continue // the etcd driver does not pipeline: a clientv3 call blocks until its answer
			}
			r := &Row{Tool: ToolGo, Target: t.Name, Op: p.op, Dist: p.dist, Pipeline: p.pipeline, Clients: p.clients,
				Peer: peerOf(t.Name, p.pipeline, ToolGo)}
			rows = append(rows, r)
			res.Rows = append(res.Rows, r)
		}
		// Repetitions interleave the targets (A B C A B C ...) so that a slow phase of the
		// shared machine hits every target, not only one, and the ratios stay honest.
		for run := range cfg.Runs {
			for _, t := range env.Targets {
				r := findRow(rows, t.Name)
				if r == nil {
					continue
				}
				l := Load{ReadFrac: p.read, Dist: p.dist, Keyspace: cfg.Keyspace, ValueSize: cfg.ValueSize,
					Pipeline: p.pipeline, Clients: p.clients, Duration: cfg.Duration, Seed: uint64(pi*100 + run)}
				s, err := measureGo(ctx, t, l)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					log.Warn("measurement failed", "target", t.Name, "op", p.op, "clients", p.clients, "err", err)
				}
				r.Samples = append(r.Samples, s)
				log.Info("go", "target", t.Name, "op", p.op, "dist", p.dist, "P", p.pipeline, "c", p.clients, "run", run+1,
					"ops/s", math.Round(s.OpsPerSec), "p50ms", round3(s.P50Ms), "p99ms", round3(s.P99Ms), "failed", s.Failed)
			}
		}
	}
	return nil
}

// measureGo runs one Go-generator load on t and returns it as a Sample; a failure is both
// returned and recorded in the Sample, so that the row keeps it.
func measureGo(ctx context.Context, t *Target, l Load) (Sample, error) {
	lr, err := RunLoad(ctx, t.Factory(), l)
	s := Sample{OpsPerSec: lr.Throughput(), Failed: lr.Failed}
	if lr.Hist != nil {
		s.P50Ms = ms(lr.Hist.Percentile(0.50))
		s.P99Ms = ms(lr.Hist.Percentile(0.99))
	}
	if err != nil {
		s.Err = err.Error()
	}
	return s, err
}

func findRow(rows []*Row, target string) *Row {
	for _, r := range rows {
		if r.Target == target {
			return r
		}
	}
	return nil
}

func readFrac(op string) float64 {
	switch op {
	case "GET":
		return 1
	case "SET":
		return 0
	}
	return 0.9
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// runRB runs redis-benchmark against every RESP target, one test per invocation so that each
// gets its own -n, sized from the Go generator's throughput on the same target to last about
// RBSeconds: a fixed -n would take a second on Redis and minutes on a replicated store.
func runRB(ctx context.Context, cfg Config, env *Env, res *Results, log *slog.Logger) error {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		res.Notes = append(res.Notes, "redis-benchmark not installed: its rows are missing")
		return nil
	}
	for _, pipe := range []int{1, cfg.Pipeline} {
		for _, op := range []string{"SET", "GET"} {
			var rows []*Row
			for _, t := range env.Targets {
				if t.Proto != ProtoRESP {
					continue
				}
				r := &Row{Tool: ToolRB, Target: t.Name, Op: op, Dist: Uniform, Pipeline: pipe, Clients: cfg.RBClients,
					Peer: peerOf(t.Name, pipe, ToolRB)}
				rows = append(rows, r)
				res.Rows = append(res.Rows, r)
			}
			for run := range cfg.Runs {
				for _, r := range rows {
					t := env.Target(r.Target)
					n := rbRequests(res, r, cfg)
					s, err := redisBenchmark(ctx, t, op, n, cfg.RBClients, pipe, cfg)
					if ctx.Err() != nil {
						return ctx.Err()
					}
					if err != nil {
						s.Err = err.Error()
						log.Warn("redis-benchmark failed", "target", t.Name, "op", op, "err", err)
					}
					r.Samples = append(r.Samples, s)
					log.Info("redis-benchmark", "target", t.Name, "op", op, "P", pipe, "n", n, "run", run+1,
						"rps", math.Round(s.OpsPerSec), "p50ms", s.P50Ms, "p99ms", s.P99Ms)
				}
			}
		}
	}
	return nil
}

// rbRequests sizes -n from the Go generator's throughput for the same target, op and depth.
func rbRequests(res *Results, r *Row, cfg Config) int {
	est := 0.0
	for _, g := range res.Rows {
		if g.Tool == ToolGo && g.Target == r.Target && g.Op == r.Op && g.Dist == Uniform && g.Pipeline == r.Pipeline {
			if th := g.Throughput(); th.N > 0 && th.Median > est {
				est = th.Median
			}
		}
	}
	if est == 0 {
		return 20_000
	}
	n := int(est * cfg.RBSeconds)
	return min(max(n, 2_000), 5_000_000)
}

func redisBenchmark(ctx context.Context, t *Target, op string, n, clients, pipe int, cfg Config) (Sample, error) {
	addr := t.Endpoints[0]
	if t.IsShoal() && !t.Cluster {
		// redis-benchmark --cluster refuses a cluster of one master ("Invalid cluster: 1
		// node(s)"), so a single group is driven without it, at its leader, which is where a
		// cluster-aware client would send every key.
		var err error
		if addr, err = slotMaster(ctx, addr); err != nil {
			return Sample{}, err
		}
	}
	host, port, _ := cutHostPort(addr)
	args := []string{"-h", host, "-p", port, "-t", op, "-n", strconv.Itoa(n), "-c", strconv.Itoa(clients),
		"-d", strconv.Itoa(cfg.ValueSize), "-r", strconv.FormatUint(cfg.Keyspace, 10), "-P", strconv.Itoa(pipe), "--csv"}
	if t.Cluster {
		args = append(args, "--cluster")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, "redis-benchmark", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return Sample{}, fmt.Errorf("redis-benchmark %v: %w: %s", args, err, lastLine(stderr.String()))
	}
	rows, err := ParseRedisBenchmarkCSV(&stdout)
	if err != nil {
		return Sample{}, fmt.Errorf("%w (stderr: %s)", err, lastLine(stderr.String()))
	}
	for _, r := range rows {
		if r.Test == op {
			return Sample{OpsPerSec: r.RPS, P50Ms: r.P50Ms, P99Ms: r.P99Ms}, nil
		}
	}
	return Sample{}, fmt.Errorf("redis-benchmark printed no %s line", op)
}

func cutHostPort(addr string) (host, port string, ok bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexAny([]byte(s), "\r\n"); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// runMemory loads MemPairs new pairs ("mem:" keys) into each target once and measures the
// growth of its processes' resident memory and of the engine's own accounting.
func runMemory(ctx context.Context, cfg Config, env *Env, res *Results, log *slog.Logger) error {
	for _, t := range env.Targets {
		m := MemRow{Target: t.Name, Pairs: cfg.MemPairs, Copies: t.Copies}
		switch {
		case t.IsShoal():
			m.Peer = TRedis
			if t.Name == TShoalCluster {
				m.Peer = TRedisCluster
			}
		}
		err := measureMemory(ctx, t, cfg, &m)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			m.Err = err.Error()
			log.Warn("memory measurement failed", "target", t.Name, "err", err)
		}
		res.Mem = append(res.Mem, m)
		log.Info("memory", "target", t.Name, "pairs", m.Pairs, "rss/pair", math.Round(m.RSSPerPair()),
			"engine/pair", math.Round(m.EnginePerPair()), "load_s", round3(m.LoadSeconds))
	}
	return nil
}

func measureMemory(ctx context.Context, t *Target, cfg Config, m *MemRow) error {
	clients, pipe := fillShape(t)
	// Warm up with the first 1% of the pairs over the same connections before the baseline, so
	// that the growth measured is the pairs' and not that of 256 connections' buffers (which
	// would add ~25 B/pair to a 1M-pair load, more to a small one).
	warm := m.Pairs / 100
	r, err := RunLoad(ctx, t.Factory(), Load{Fill: true, Prefix: "mem:", Keyspace: warm, ValueSize: cfg.ValueSize,
		Pipeline: pipe, Clients: clients})
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	m.Pairs -= warm
	// Settle: let the previous phase's garbage be collected and queues drain, so the baseline
	// is the steady state rather than a peak.
	sleepCtx(ctx, time.Second)
	if m.RSSBefore, err = sumRSS(t); err != nil {
		return err
	}
	m.EngineName, m.EngineBefore, err = engineMemory(ctx, t)
	if err != nil {
		return err
	}
	r, err = RunLoad(ctx, t.Factory(), Load{Fill: true, Prefix: "mem:", Start: warm, Keyspace: cfg.MemPairs,
		ValueSize: cfg.ValueSize, Pipeline: pipe, Clients: clients})
	m.LoadSeconds = r.Elapsed.Seconds()
	if err != nil {
		return err
	}
	if r.Failed > 0 {
		return fmt.Errorf("%d of %d writes refused", r.Failed, m.Pairs)
	}
	if m.RSSAfter, err = settledRSS(ctx, t); err != nil {
		return err
	}
	_, m.EngineAfter, err = engineMemory(ctx, t)
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// settledRSS waits until the target's memory stops moving after a load (every system gets the
// same chance to finish background work such as Redis's lazy frees or Shoal's idle log
// compaction) and returns it: two readings 1 s apart within 1% of each other, or whatever the
// reading is after 20 s.
func settledRSS(ctx context.Context, t *Target) (int64, error) {
	prev, err := sumRSS(t)
	if err != nil {
		return 0, err
	}
	for range 20 {
		sleepCtx(ctx, time.Second)
		cur, err := sumRSS(t)
		if err != nil {
			return 0, err
		}
		if d := cur - prev; d*100 <= prev && -d*100 <= prev {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func sumRSS(t *Target) (int64, error) {
	var sum int64
	for _, n := range t.Nodes {
		rss, err := ReadRSS(n.PID)
		if err != nil {
			return 0, err
		}
		sum += rss
	}
	return sum, nil
}

// engineMemory sums the store's own memory accounting over the target's processes.
func engineMemory(ctx context.Context, t *Target) (name string, total int64, err error) {
	if t.Proto != ProtoRESP {
		return "", 0, nil
	}
	var errs []error
	for _, n := range t.Nodes {
		v, err := callOnce(ctx, n.Addr, "INFO", "memory")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		info := string(v.Str)
		if s := harness.InfoField(info, "used_memory"); s != "" {
			name = "used_memory"
			x, _ := strconv.ParseInt(s, 10, 64)
			total += x
			continue
		}
		idx, err1 := strconv.ParseInt(harness.InfoField(info, "table_index_bytes"), 10, 64)
		slab, err2 := strconv.ParseInt(harness.InfoField(info, "table_slab_bytes"), 10, 64)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("%s: INFO memory has neither used_memory nor table_*_bytes", n.Addr))
			continue
		}
		name = "table index+slab"
		total += idx + slab
	}
	return name, total, errors.Join(errs...)
}

// slotMaster returns the address CLUSTER SLOTS gives as master of slot 0.
func slotMaster(ctx context.Context, seed string) (string, error) {
	d, err := NewRESPDriver(ctx, seed)
	if err != nil {
		return "", err
	}
	defer d.Close()
	if d.owner == nil {
		return seed, nil
	}
	return d.addrs[d.owner[0]], nil
}
