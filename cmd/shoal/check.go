package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shoal-kv/shoal/internal/check"
)

// runCheck runs concurrent clients against a cluster while injecting faults, checks the history
// for linearizability and acknowledged-write loss, prints one summary line, and fails when
// anything is wrong.
func runCheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	duration := fs.Duration("duration", 30*time.Second, "how long clients run and faults are injected")
	clients := fs.Int("clients", 5, "concurrent clients, each with its own session")
	keys := fs.Int("keys", 5, "keys the clients share at a time")
	keyEpoch := fs.Duration("key-epoch", 30*time.Second, "how long clients use one set of keys before moving to fresh ones (bounds each key's history for the checker)")
	faults := fs.String("faults", "kill,pause,partition,disk,move", "fault kinds to inject (comma-separated; empty: none); with --nodes the default is pause,move")
	seed := fs.Uint64("seed", 0, "seed of the workload's and the nemesis's random choices (0: from the clock)")
	nodes := fs.String("nodes", "", "nodes.json of a running cluster (shoal demo) to check instead of starting one; allows pause,move only")
	groups := fs.Int("groups", 2, "replica groups of the cluster the checker starts")
	replicas := fs.Int("replicas", 3, "replicas per group")
	controllers := fs.Int("controllers", 1, "shard controller replicas")
	dir := fs.String("dir", "", "directory for the started cluster's data and logs (default: a temporary one, removed after a clean run)")
	viz := fs.String("viz", "", "where to write the HTML visualisation of a non-linearizable history (default: in the temp dir)")
	checkTimeout := fs.Duration("check-timeout", 5*time.Minute, "bound on the linearizability check")
	verbose := fs.Bool("v", false, "log every fault and repair to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	lvl := slog.LevelWarn
	if *verbose {
		lvl = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	kinds := splitList(*faults)
	if kinds == nil {
		kinds = []string{} // none, rather than the default
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "faults" })
	if !set {
		kinds = nil // the default for the kind of cluster: all, or what applies to --nodes
	}
	fmt.Fprintf(os.Stderr, "shoal check: seed %d\n", *seed)
	if *clients > 6 {
		// Concurrent appends to one key can be ordered in factorially many ways, each a
		// different value: porcupine's search explodes when many clients stall on one key
		// during a fault and then complete together.
		fmt.Fprintf(os.Stderr, "shoal check: warning: with more than 6 clients the linearizability check may time out\n")
	}
	res, err := check.Run(ctx, check.Config{
		Duration: *duration, Clients: *clients, Keys: *keys, KeyEpoch: *keyEpoch, Faults: kinds, Seed: *seed,
		Nodes: *nodes, Groups: *groups, Replicas: *replicas, Controllers: *controllers, Dir: *dir,
		VizPath: *viz, CheckTimeout: *checkTimeout, Logger: logger,
	})
	if err != nil {
		if res.Dir != "" {
			return fmt.Errorf("%w (seed %d; logs in %s)", err, *seed, res.Dir)
		}
		return fmt.Errorf("%w (seed %d)", err, *seed)
	}
	fmt.Println(res.Summary())
	if res.Passed() {
		return nil
	}
	if len(res.BadKeys) > 0 {
		fmt.Fprintf(os.Stderr, "keys not found linearizable: %v (histories: %s.<key>.json)\n", res.BadKeys, res.VizPath)
	}
	for _, d := range res.LostDetail {
		fmt.Fprintln(os.Stderr, "lost:", d)
	}
	if res.Check == porcupine.Illegal {
		fmt.Fprintf(os.Stderr, "history visualisation: %s\n", res.VizPath)
	}
	if res.Dir != "" {
		fmt.Fprintf(os.Stderr, "cluster logs: %s\n", res.Dir)
	}
	switch {
	case res.Check == porcupine.Unknown:
		return fmt.Errorf("the linearizability check timed out (seed %d): shorten --key-epoch or raise --check-timeout", *seed)
	case res.Lost > 0:
		return fmt.Errorf("%d acknowledged writes lost (seed %d)", res.Lost, *seed)
	}
	return fmt.Errorf("the history is not linearizable (seed %d)", *seed)
}
