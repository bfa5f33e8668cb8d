package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/harness"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Scaling is the scaling phase's result: one Shoal cluster (a shard controller and replica
// groups of Replicas processes) started with one group and grown a group at a time through the
// controller, GET and SET measured at every size with the same load.
type Scaling struct {
	Replicas int         `json:"replicas"`
	Clients  int         `json:"clients"`
	Steps    []ScaleStep `json:"steps"`
	// Err says why the phase stopped before its last step (the steps measured are kept).
	Err string `json:"error,omitempty"`
}

// ScaleStep is the cluster at one size: how it got there and what it measured.
type ScaleStep struct {
	Groups int    `json:"groups"`
	Config uint64 `json:"config"` // the controller's configuration number after the join
	// JoinSeconds is the join's rebalance time: from asking the controller to join the group
	// until every joined group reported that configuration applied with its hand-offs done.
	JoinSeconds float64 `json:"join_seconds"`
	// SlotsMoved counts slots whose owner the join changed (all of them for the first group,
	// which receives an empty keyspace); PairsMoved is the pairs the receiving groups installed
	// during the join, -1 when a node could not be asked.
	SlotsMoved int    `json:"slots_moved"`
	PairsMoved int64  `json:"pairs_moved"`
	Rows       []*Row `json:"rows"` // GET and SET at this size (Target TShoalScale)
}

// Row returns the step's row for op, or nil.
func (s *ScaleStep) Row(op string) *Row {
	for _, r := range s.Rows {
		if r.Op == op {
			return r
		}
	}
	return nil
}

// Base returns the one-group step's median throughput for op (0 when not measured), the
// denominator of the report's "ratio to 1 group".
func (sc *Scaling) Base(op string) float64 {
	for i := range sc.Steps {
		if sc.Steps[i].Groups != 1 {
			continue
		}
		if r := sc.Steps[i].Row(op); r != nil {
			return r.Throughput().Median
		}
	}
	return 0
}

// scaleOps are the operations measured at every size.
var scaleOps = []string{"GET", "SET"}

// scaleCluster is the phase's running cluster and who is in it so far.
type scaleCluster struct {
	c      *harness.Cluster
	ctl    *controller.Client
	joined []uint64
}

// runScale measures the throughput curve as groups are added: it starts a controller and one
// group with the settings of the shoal-3x3 target, preloads the keyspace, measures, then joins
// one more group at a time (waiting until every hand-off is done) and measures again, up to
// cfg.ScaleGroups. A failure ends the phase but not the run: it is recorded in res.Scaling so
// that the report still shows the other sections. Every process it started is stopped before
// it returns.
func runScale(ctx context.Context, cfg Config, dir string, res *Results, log *slog.Logger) error {
	groups := max(cfg.ScaleGroups, 1)
	clients := cfg.ScaleClients
	if clients <= 0 {
		clients = cfg.Fixed
	}
	sc := &Scaling{Replicas: 3, Clients: clients}
	res.Scaling = sc
	err := scaleSteps(ctx, cfg, filepath.Join(dir, TShoalScale), groups, sc, log)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		sc.Err = err.Error()
		// The run deletes its directory unless told to keep it, so only then can the note point at the logs.
		where := "run with --keep to keep its logs"
		if cfg.KeepDir {
			where = "logs in " + filepath.Join(dir, TShoalScale)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("the scaling phase stopped early: %v (%s)", err, where))
		log.Warn("scaling phase failed", "err", err)
	}
	return nil
}

func scaleSteps(ctx context.Context, cfg Config, dir string, groups int, sc *Scaling, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("scale dir: %w", err)
	}
	c, err := harness.NewCluster(harness.ClusterOptions{Exe: cfg.Exe, Dir: dir, Groups: groups, Replicas: sc.Replicas, Controllers: 1})
	if err != nil {
		return fmt.Errorf("scale cluster: %w", err)
	}
	c.Env = cfg.ServerEnv
	// Stops exactly the processes started below, by pid; nodes never started are skipped.
	defer c.StopAll()
	s := &scaleCluster{c: c, ctl: c.Access.ControllerClient(c.ControllerAddrs())}
	defer s.ctl.Close()
	if err := s.startGroup(0); err != nil {
		return err
	}
	t0 := time.Now()
	for i, gid := range c.GroupIDs() {
		step, err := s.join(ctx, gid)
		if err != nil {
			return err
		}
		log.Info("scale: group joined", "groups", step.Groups, "config", step.Config, "rebalance_s", round3(step.JoinSeconds),
			"slots_moved", step.SlotsMoved, "pairs_moved", step.PairsMoved)
		t := s.target()
		if err := waitServing(ctx, t); err != nil {
			return err
		}
		if i == 0 {
			if err := preload(ctx, t, cfg); err != nil {
				return fmt.Errorf("preload %s: %w", TShoalScale, err)
			}
			log.Info("scale: preloaded", "keys", cfg.Keyspace, "elapsed", time.Since(t0).Round(time.Millisecond))
		}
		for _, op := range scaleOps {
			step.Rows = append(step.Rows, &Row{Tool: ToolGo, Target: TShoalScale, Op: op, Dist: Uniform, Pipeline: 1, Clients: sc.Clients})
		}
		// The ops alternate within every repetition (GET SET GET SET ...) so that a slow phase of
		// the shared machine hits both, as the other rows interleave their targets.
		for run := range cfg.Runs {
			for oi, r := range step.Rows {
				l := Load{ReadFrac: readFrac(r.Op), Dist: Uniform, Keyspace: cfg.Keyspace, ValueSize: cfg.ValueSize,
					Pipeline: 1, Clients: sc.Clients, Duration: cfg.Duration, Seed: uint64(5000 + step.Groups*100 + oi*10 + run)}
				smp, err := measureGo(ctx, t, l)
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					log.Warn("measurement failed", "target", TShoalScale, "groups", step.Groups, "op", r.Op, "err", err)
				}
				r.Samples = append(r.Samples, smp)
				log.Info("scale", "groups", step.Groups, "op", r.Op, "c", sc.Clients, "run", run+1, "ops/s", math.Round(smp.OpsPerSec),
					"p50ms", round3(smp.P50Ms), "p99ms", round3(smp.P99Ms), "failed", smp.Failed)
			}
		}
		sc.Steps = append(sc.Steps, step)
	}
	return nil
}

// startGroup starts group gid's processes (gid 0: the controller).
func (s *scaleCluster) startGroup(gid uint64) error {
	for _, sp := range s.c.Specs {
		if sp.Group == gid {
			if err := s.c.Start(sp.ID); err != nil {
				return fmt.Errorf("scale: start group %d: %w", gid, err)
			}
		}
	}
	return nil
}

// join starts group gid, waits for its raft leader (so that the time measured is the
// rebalance's, not an election's), joins it through the controller as `shoal ctl join` does and
// waits until the new configuration is applied and every hand-off finished in every joined group.
func (s *scaleCluster) join(ctx context.Context, gid uint64) (ScaleStep, error) {
	if err := s.startGroup(gid); err != nil {
		return ScaleStep{}, err
	}
	if err := waitFor(ctx, 30*time.Second, fmt.Sprintf("%s group %d leader", TShoalScale, gid), func() error {
		return s.groupLeader(gid)
	}); err != nil {
		return ScaleStep{}, err
	}
	jctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	prev, err := s.ctl.Query(jctx, -1)
	if err != nil {
		return ScaleStep{}, fmt.Errorf("scale: controller: %w", err)
	}
	moved0, movedErr := s.pairsMoved()
	start := time.Now()
	num, err := s.ctl.Join(jctx, gid, s.c.GroupNodes(gid))
	if err != nil {
		return ScaleStep{}, fmt.Errorf("scale: join group %d: %w", gid, err)
	}
	s.joined = append(s.joined, gid)
	if err := waitFor(jctx, 5*time.Minute, fmt.Sprintf("%s configuration %d with hand-offs done", TShoalScale, num), func() error {
		return s.settled(num)
	}); err != nil {
		return ScaleStep{}, err
	}
	step := ScaleStep{Groups: len(s.joined), Config: num, JoinSeconds: time.Since(start).Seconds(), PairsMoved: -1}
	if next, err := s.ctl.Query(jctx, int64(num)); err == nil {
		step.SlotsMoved = slotsMoved(prev, next)
	}
	if moved1, err := s.pairsMoved(); err == nil && movedErr == nil {
		step.PairsMoved = moved1 - moved0
	}
	return step, nil
}

// groupLeader returns nil once a node of group gid reports itself raft leader.
func (s *scaleCluster) groupLeader(gid uint64) error {
	for _, sp := range s.c.Specs {
		if sp.Group != gid {
			continue
		}
		v, err := s.c.Access.Call(sp.ClientAddr, "INFO", "raft")
		if err == nil && harness.InfoField(string(v.Str), "raft_state") == "StateLeader" {
			return nil
		}
	}
	return errors.New("no leader yet")
}

// settled returns nil once every joined group has a node reporting configuration num (or later)
// applied with its hand-offs done, the test harness.Cluster.WaitConfig applies to all groups
// (which cannot be used here: the groups not started yet would never answer).
func (s *scaleCluster) settled(num uint64) error {
	for _, gid := range s.joined {
		ok := false
		for _, sp := range s.c.Specs {
			if sp.Group != gid {
				continue
			}
			v, err := s.c.Access.Call(sp.ClientAddr, "INFO", "migration")
			if err != nil {
				continue
			}
			info := string(v.Str)
			n, _ := strconv.ParseUint(harness.InfoField(info, "migration_config"), 10, 64)
			if n >= num && harness.InfoField(info, "migration_done") == "1" {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("group %d not at configuration %d with hand-offs done", gid, num)
		}
	}
	return nil
}

// pairsMoved sums INFO migration's pairs installed over every started data node (only a
// group's leader pulls, so the sum counts each pair once).
func (s *scaleCluster) pairsMoved() (int64, error) {
	var sum int64
	for _, sp := range s.c.Specs {
		if sp.Group == 0 || s.c.Exited(sp.ID) == nil {
			continue
		}
		v, err := s.c.Access.Call(sp.ClientAddr, "INFO", "migration")
		if err != nil {
			return 0, fmt.Errorf("pairs moved: %w", err)
		}
		n, err := strconv.ParseInt(harness.InfoField(string(v.Str), "migration_pairs_moved"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("pairs moved: %s: %w", sp.ClientAddr, err)
		}
		sum += n
	}
	return sum, nil
}

// target describes the joined groups' servers as a cluster target of the Go generator.
func (s *scaleCluster) target() *Target {
	t := &Target{Name: TShoalScale, Desc: "Shoal, 1 shard controller + groups of 3 processes, joined one at a time",
		Proto: ProtoRESP, Cluster: true, Copies: 3}
	for _, sp := range s.c.Specs {
		for _, gid := range s.joined {
			if sp.Group == gid {
				t.Nodes = append(t.Nodes, ServerProc{sp.ClientAddr, sp.PID})
				t.Endpoints = append(t.Endpoints, sp.ClientAddr)
			}
		}
	}
	return t
}

// slotsMoved counts the slots whose owning group differs between two configurations.
func slotsMoved(a, b controller.Config) int {
	n := 0
	for slot := range keyspace.NumSlots {
		if a.Owner(uint16(slot)) != b.Owner(uint16(slot)) {
			n++
		}
	}
	return n
}
