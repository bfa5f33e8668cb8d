// Package check is Shoal's fault-injection checker: it runs concurrent clients doing GET, SET,
// APPEND and DEL on a few keys against a real cluster of `shoal server` and `shoal controller`
// processes while a nemesis kills, pauses and partitions nodes and moves shards, records every
// operation with its invocation and completion times, and then checks the history for
// linearizability with porcupine (one key at a time) and reads every key back to count
// acknowledged writes that were lost.
//
// `shoal check` is its command-line front end; TestCheckShort runs it in CI.
package check

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shoal-kv/shoal/internal/linearize"
)

// Config configures a run. Zero fields take the defaults documented on each.
type Config struct {
	// Duration is how long clients run and faults are injected (default 30 s).
	Duration time.Duration
	// Clients is the number of concurrent clients (default 5), each with its own session.
	Clients int
	// Keys is the number of keys the clients share at a time (default 5).
	Keys int
	// KeyEpoch is how long the clients use one set of keys before moving to fresh ones
	// (default 30 s), which bounds each key's history for the checker.
	KeyEpoch time.Duration
	// Faults lists the fault kinds to inject (when nil: AllFaults(), or pause and move with Nodes;
	// empty non-nil: none).
	Faults []string
	// Seed seeds every random choice of the workload and the nemesis.
	Seed uint64

	// Nodes, when set, is the nodes.json of a running cluster (`shoal demo`) to test instead of
	// starting one. The checker does not own its processes, so only the pause and move faults
	// apply.
	Nodes string
	// Groups, Replicas and Controllers shape the cluster the checker starts (defaults 2, 3, 1).
	Groups, Replicas, Controllers int
	// Exe is the shoal binary to start (default: the running executable).
	Exe string
	// Dir holds the started cluster's data and logs (default: a new temporary directory, removed
	// after a run that passed).
	Dir string

	// VizPath is where the HTML visualisation of a non-linearizable history is written
	// (default: shoal-check-<seed>.html in the temporary directory).
	VizPath string
	// CheckTimeout bounds porcupine (default 5 min); a check that times out is a failure.
	CheckTimeout time.Duration
	// OpTimeout bounds one client operation, retries included (default 20 s). An operation that
	// runs out of time has an unknown outcome.
	OpTimeout time.Duration
	// Logger receives progress and fault events (default: discarded).
	Logger *slog.Logger
}

func (c *Config) fill() error {
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Clients <= 0 {
		c.Clients = 5
	}
	if c.Keys <= 0 {
		c.Keys = 5
	}
	if c.KeyEpoch <= 0 {
		c.KeyEpoch = 30 * time.Second
	}
	if c.Faults == nil {
		c.Faults = AllFaults()
		if c.Nodes != "" {
			c.Faults = []string{FaultPause, FaultMove}
		}
	}
	for _, f := range c.Faults {
		if !slices.Contains(AllFaults(), f) {
			return fmt.Errorf("check: unknown fault kind %q (known: %s)", f, strings.Join(AllFaults(), ","))
		}
		if c.Nodes != "" && (f == FaultKill || f == FaultPartition || f == FaultDisk) {
			return fmt.Errorf("check: fault %q needs a cluster the checker starts (restarting processes it does not own, "+
				"or proxying peer links it did not set up, is not possible): use --faults pause,move with --nodes", f)
		}
	}
	if c.Groups <= 0 {
		c.Groups = 2
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.Controllers <= 0 {
		c.Controllers = 1
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 5 * time.Minute
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = 20 * time.Second
	}
	if c.VizPath == "" {
		c.VizPath = filepath.Join(os.TempDir(), fmt.Sprintf("shoal-check-%d.html", c.Seed))
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Result is the outcome of a run.
type Result struct {
	// OK counts operations that completed; Failed, reads that failed (they had no effect and
	// are left out of the history); Unknown, writes whose outcome the client never learned.
	OK, Failed, Unknown int
	// Faults counts the faults injected.
	Faults FaultCounts
	// Lost counts acknowledged appends missing from the final value of their key although no
	// later overwrite can explain their absence.
	Lost int
	// LostDetail describes the first few lost appends.
	LostDetail []string
	// Check is porcupine's verdict: Ok, Illegal, or Unknown (timed out).
	Check porcupine.CheckResult
	// BadKeys lists the keys whose history is not linearizable, or could not be checked in time.
	BadKeys []string
	// VizPath is where the visualisation of an Illegal history was written ("" when the
	// history is linearizable). The histories of BadKeys are written next to it as JSON
	// (<VizPath>.<key>.json).

	VizPath string
	// Dir is the started cluster's directory, kept (with its logs) after a failed run.
	Dir string
}

// Linearizable reports whether porcupine found the history linearizable.
func (r Result) Linearizable() bool { return r.Check == porcupine.Ok }

// Passed reports whether the run found nothing wrong.
func (r Result) Passed() bool { return r.Linearizable() && r.Lost == 0 }

// Summary is the one-line report `shoal check` prints.
func (r Result) Summary() string {
	lin := "true"
	switch r.Check {
	case porcupine.Illegal:
		lin = "false"
	case porcupine.Unknown:
		lin = "unknown" // the checker timed out: treated as a failure
	}
	f := r.Faults
	return fmt.Sprintf("ops ok=%d failed=%d unknown=%d faults=kill:%d pause:%d partition:%d disk:%d move:%d lost=%d linearizable=%s",
		r.OK, r.Failed, r.Unknown, f.Kill, f.Pause, f.Partition, f.Disk, f.Move, r.Lost, lin)
}

// Run runs one check: it starts (or loads) the cluster, runs the workload and the nemesis for
// cfg.Duration, repairs every fault, settles the configuration, reads every key back, and
// checks the history. The error reports a run that could not be carried out (the cluster did
// not start, or did not recover after the faults); a completed run that found a violation
// returns a Result that did not pass and a nil error.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	if err := cfg.fill(); err != nil {
		return res, err
	}
	log := cfg.Logger
	var c *cluster
	if cfg.Nodes != "" {
		c, err = loadCluster(cfg.Nodes, log)
	} else {
		log.Info("starting cluster", "groups", cfg.Groups, "replicas", cfg.Replicas, "controllers", cfg.Controllers)
		c, err = startCluster(ctx, &cfg, slices.Contains(cfg.Faults, FaultPartition))
	}
	if err != nil {
		return res, err
	}
	res.Dir = c.dir
	defer func() {
		c.close()
		// A started cluster's directory goes away after a clean run; after anything else its
		// logs are what explains the failure.
		if c.owned && cfg.Dir == "" && err == nil && res.Passed() {
			_ = os.RemoveAll(c.dir)
			res.Dir = ""
		}
	}()

	w := newWorkload(&cfg, c.dataAddrs())
	nem := newNemesis(c, cfg.Faults, cfg.Seed, w.currentKeys, log)

	stopFaults, stopClients := make(chan struct{}), make(chan struct{})
	var nemWG, cliWG sync.WaitGroup
	cliWG.Go(func() { w.run(ctx, stopClients) })
	nemWG.Go(func() { nem.run(ctx, stopFaults) })
	log.Info("running", "duration", cfg.Duration, "clients", cfg.Clients, "keys", cfg.Keys, "faults", cfg.Faults, "seed", cfg.Seed)
	waitCtx(ctx, cfg.Duration)
	// Faults stop (and are repaired) first, so that the operations still in flight complete
	// against a healed cluster rather than time out.
	close(stopFaults)
	nemWG.Wait()
	close(stopClients)
	cliWG.Wait()
	res.Faults = nem.counts()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	log.Info("workload done; settling the configuration")
	if err := c.settle(ctx); err != nil {
		return res, fmt.Errorf("cluster did not recover after the faults: %w", err)
	}
	final, err := w.readBack(ctx)
	if err != nil {
		return res, fmt.Errorf("cluster did not recover after the faults: %w", err)
	}
	res.OK, res.Failed, res.Unknown = w.counts()
	res.Lost, res.LostDetail = w.lost(final)
	log.Info("checking the history", "operations", res.OK+res.Unknown)
	res.Check, res.BadKeys, err = checkKeys(w.rec.Operations(), cfg.CheckTimeout, cfg.VizPath)
	if err != nil {
		return res, err
	}
	if res.Check != porcupine.Ok {
		res.VizPath = cfg.VizPath
	}
	return res, nil
}

// checkKeys checks each key's history on its own (linearizability is compositional), each
// bounded by timeout, so that one key whose check explodes neither hides the verdict on the
// others nor goes unnamed. It writes the visualisation of the first illegal key to vizPath and
// the history of every key not found linearizable next to it as JSON.
func checkKeys(ops []porcupine.Operation, timeout time.Duration, vizPath string) (porcupine.CheckResult, []string, error) {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range ops {
		k := op.Input.(linearize.Input).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	verdict := porcupine.Ok
	var bad []string
	wroteViz := false
	for _, k := range keys {
		res, info := porcupine.CheckOperationsVerbose(linearize.Model(), byKey[k], timeout)
		if res == porcupine.Ok {
			continue
		}
		bad = append(bad, k)
		if res == porcupine.Illegal && !wroteViz {
			if err := porcupine.VisualizePath(linearize.Model(), info, vizPath); err != nil {
				return res, bad, fmt.Errorf("check: write visualisation: %w", err)
			}
			wroteViz = true
		}
		if verdict != porcupine.Illegal {
			verdict = res
		}
		if err := writeHistory(vizPath+"."+strings.ReplaceAll(k, ":", "_")+".json", byKey[k]); err != nil {
			return verdict, bad, err
		}
	}
	return verdict, bad, nil
}

// historyOp is one operation of a history as written to JSON.
type historyOp struct {
	Client int              `json:"client"`
	Input  linearize.Input  `json:"input"`
	Output linearize.Output `json:"output"`
	Call   int64            `json:"call_ns"`
	Return int64            `json:"return_ns"`
}

// writeHistory writes ops as JSON, for a look at a history that failed.
func writeHistory(path string, ops []porcupine.Operation) error {
	out := make([]historyOp, len(ops))
	for i, op := range ops {
		out[i] = historyOp{Client: op.ClientId, Input: op.Input.(linearize.Input), Output: op.Output.(linearize.Output), Call: op.Call, Return: op.Return}
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return fmt.Errorf("check: encode history: %w", err)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		return fmt.Errorf("check: write history: %w", err)
	}
	return nil
}
