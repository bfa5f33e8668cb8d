// Command shoal-bench measures Shoal side by side with redis-server, Redis Cluster and etcd, all
// started on 127.0.0.1 and stopped again by it, and writes docs/BENCHMARKS.md and
// docs/bench/*.png (scripts/bench.sh installs the peers first):
//
//	go run ./cmd/shoal-bench [--quick] [--runs N] [--targets redis,shoal-3,...]
//
// It is a command of its own rather than a subcommand of shoal because its etcd rows use etcd's
// Go client (gRPC, protobuf, zap), which the server binary has no use for.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-kv/shoal/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "shoal-bench: %v\n", err)
		os.Exit(1)
	}
}

// run measures and writes <out>/BENCHMARKS.md and <out>/bench/*.png.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("shoal-bench", flag.ContinueOnError)
	serverProcs := fs.Int("server-gomaxprocs", 0, "GOMAXPROCS of every server process, Shoal's and etcd's alike (0: the runtime's default); e.g. 1 gives each of 3 co-located replicas one core's worth on a 2-core machine")
	shoalBin := fs.String("shoal", "", "the shoal binary the Shoal targets run (default: built from this module with go build)")
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
		for _, s := range strings.FieldsFunc(*clients, func(r rune) bool { return r == ',' }) {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("--clients: bad count %q", s)
			}
			cfg.Clients = append(cfg.Clients, n)
		}
	}
	cfg.Targets = strings.FieldsFunc(*targets, func(r rune) bool { return r == ',' })
	if err := bench.CheckTargets(cfg.Targets); err != nil {
		return fmt.Errorf("--targets: %w", err)
	}
	cfg.Out = *out
	if *serverProcs > 0 {
		cfg.ServerEnv = []string{"GOMAXPROCS=" + strconv.Itoa(*serverProcs)}
	}
	cfg.KeepDir = *keep
	cfg.Command = strings.TrimSpace("go run ./cmd/shoal-bench " + strings.Join(args, " "))
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
	cfg.Exe = *shoalBin
	if cfg.Exe == "" {
		binDir, err := os.MkdirTemp("", "shoal-bench-bin-*")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(binDir)
		if cfg.Exe, err = buildShoal(ctx, binDir); err != nil {
			return err
		}
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

// buildShoal builds the shoal server binary into dir with the go command (shoal-bench runs from a
// checkout of the module, usually through go run) and returns its path.
func buildShoal(ctx context.Context, dir string) (string, error) {
	exe := filepath.Join(dir, "shoal")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", exe, "github.com/shoal-kv/shoal/cmd/shoal")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build shoal (or pass --shoal): %w", err)
	}
	return exe, nil
}
