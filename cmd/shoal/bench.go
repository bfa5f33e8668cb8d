package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/bench"
)

// runBench measures Shoal side by side with redis-server, Redis Cluster and etcd, all started
// here on 127.0.0.1, and writes <out>/BENCHMARKS.md and <out>/bench/*.png.
func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes and one repetition (about 3 minutes), for iterating")
	runs := fs.Int("runs", 0, "repetitions of every measurement (default 3, or 1 with --quick)")
	out := fs.String("out", "docs", "directory receiving BENCHMARKS.md and bench/*.png")
	duration := fs.Duration("duration", 0, "length of one Go-generator measurement (default 2s, or 1s with --quick)")
	clients := fs.String("clients", "", "concurrency sweep, comma-separated (default 1,8,32,64, or 1,32 with --quick)")
	memPairs := fs.Uint64("mem-pairs", 0, "pairs loaded for memory per pair (default 1000000, or 100000 with --quick)")
	keep := fs.Bool("keep", false, "keep the temporary directory with the servers' data and logs")
	verbose := fs.Bool("v", false, "debug logging (process starts and stops)")
	from := fs.String("from", "", "render the report again from a results.json instead of measuring")
	targets := fs.String("targets", "", "run only these targets, comma-separated (e.g. redis,shoal-1; default: all of "+
		strings.Join(bench.TargetNames, ",")+"); "+bench.TShoalScale+" is the scaling phase (its own cluster grown from 1 to 3 groups, "+
		"measured at each size), which runs with the full set, with "+bench.TShoalCluster+" or when named")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from != "" {
		res, err := bench.LoadResults(*from)
		if err != nil {
			return err
		}
		return bench.WriteReport(*out, res)
	}
	cfg := bench.DefaultConfig(*quick)
	if *runs > 0 {
		cfg.Runs = *runs
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	if *memPairs > 0 {
		cfg.MemPairs = *memPairs
	}
	if *clients != "" {
		cfg.Clients = nil
		for _, s := range splitList(*clients) {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("--clients: bad count %q", s)
			}
			cfg.Clients = append(cfg.Clients, n)
		}
	}
	cfg.Targets = splitList(*targets)
	if err := bench.CheckTargets(cfg.Targets); err != nil {
		return fmt.Errorf("--targets: %w", err)
	}
	cfg.Out = *out
	cfg.KeepDir = *keep
	cfg.Command = strings.TrimSpace("go run ./cmd/shoal bench " + strings.Join(args, " "))
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	for _, bin := range []string{"redis-server", "redis-cli", "redis-benchmark", "etcd"} {
		if bin == "etcd" && len(cfg.Targets) > 0 && !slices.Contains(cfg.Targets, bench.TEtcd) {
			continue // only the etcd target needs it
		}
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found (run scripts/install-bench-deps.sh): %w", bin, err)
		}
	}
	// The servers run a copy of this binary: `go run` builds into a temporary directory that
	// may be cleaned while they still need it.
	binDir, err := os.MkdirTemp("", "shoal-bench-bin-*")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(binDir)
	if cfg.Exe, err = installBinary(binDir); err != nil {
		return fmt.Errorf("bench: copy binary: %w", err)
	}
	start := time.Now()
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted; every process started was stopped")
		}
		return err
	}
	if err := bench.WriteReport(cfg.Out, res); err != nil {
		return err
	}
	fmt.Printf("wrote %s and %s in %v\n", filepath.Join(cfg.Out, "BENCHMARKS.md"), filepath.Join(cfg.Out, "bench"),
		time.Since(start).Round(time.Second))
	return nil
}
