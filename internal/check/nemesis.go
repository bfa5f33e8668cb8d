package check

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Fault kinds, as --faults names them.
const (
	FaultKill      = "kill"      // SIGKILL a node (leader, follower or controller), restart it
	FaultPause     = "pause"     // SIGSTOP a node for longer than an election timeout, SIGCONT
	FaultPartition = "partition" // cut or slow raft links between nodes of a group
	FaultMove      = "move"      // move shards, make groups leave and join again
	FaultDisk      = "disk"      // make a data node's WAL fsyncs slow, or stall them
)

// AllFaults returns every fault kind.
func AllFaults() []string {
	return []string{FaultKill, FaultPause, FaultPartition, FaultDisk, FaultMove}
}

// DiskFaultFile is the file in a server's data directory that, when the server runs with
// --fault-injection, holds a duration added to every fsync of its WAL (absent: none).
const DiskFaultFile = "fault-fsync-delay"

// Timing of the nemesis. Pauses and partitions last longer than the election timeout (10 ticks
// of 100 ms by default, randomised up to twice that), so that they cause elections.
const (
	minGap, maxGap             = 1 * time.Second, 3 * time.Second
	minDown, maxDown           = 500 * time.Millisecond, 2500 * time.Millisecond
	minPause, maxPause         = 2 * time.Second, 4 * time.Second
	minPartition, maxPartition = 2 * time.Second, 5 * time.Second
	minMoveGap, maxMoveGap     = 1500 * time.Millisecond, 4 * time.Second
)

// FaultCounts counts the faults injected, per kind.
type FaultCounts struct {
	Kill, Pause, Partition, Disk, Move int64
}

// nemesis injects faults into a cluster while the workload runs. Process and network faults are
// injected one at a time by one goroutine, so at most one node of the cluster is down, paused or
// cut off at any moment and every group keeps a majority most of the time; configuration changes
// run concurrently from a second goroutine, so shards move while those faults happen.
type nemesis struct {
	c     *cluster
	kinds map[string]bool
	seed  uint64
	keys  func() []string // the workload's current keys, whose shards moves pick
	log   *slog.Logger

	kill, pause, partition, disk, move atomic.Int64

	mu     sync.Mutex
	paused map[uint64]bool // SIGSTOPped, awaiting SIGCONT
	killed map[uint64]bool // SIGKILLed, awaiting restart
}

func newNemesis(c *cluster, kinds []string, seed uint64, keys func() []string, logger *slog.Logger) *nemesis {
	n := &nemesis{c: c, kinds: map[string]bool{}, seed: seed, keys: keys, log: logger,
		paused: map[uint64]bool{}, killed: map[uint64]bool{}}
	for _, k := range kinds {
		n.kinds[k] = true
	}
	return n
}

// counts returns the faults injected so far.
func (n *nemesis) counts() FaultCounts {
	return FaultCounts{Kill: n.kill.Load(), Pause: n.pause.Load(), Partition: n.partition.Load(), Disk: n.disk.Load(),
		Move: n.move.Load()}
}

// run injects faults until stop is closed or ctx ends, then repairs everything it broke (every
// paused node continued, every killed node restarted, every link healed) before returning.
func (n *nemesis) run(ctx context.Context, stop <-chan struct{}) {
	var wg sync.WaitGroup
	if n.kinds[FaultMove] {
		wg.Go(func() { n.runMoves(ctx, stop) })
	}
	var procKinds []string
	for _, k := range []string{FaultKill, FaultPause, FaultPartition, FaultDisk} {
		if n.kinds[k] {
			procKinds = append(procKinds, k)
		}
	}
	if len(procKinds) > 0 {
		wg.Go(func() { n.runFaults(ctx, stop, procKinds) })
	}
	wg.Wait()
}

// sleep waits for d, or less when stop closes or ctx ends; it reports whether d passed.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
	case <-ctx.Done():
	}
	return false
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// runFaults cycles through the process and network fault kinds in a fresh random order each
// round, so every enabled kind is injected as soon as the run is long enough for one round.
func (n *nemesis) runFaults(ctx context.Context, stop <-chan struct{}, kinds []string) {
	rng := rand.New(rand.NewPCG(n.seed, 1))
	defer n.repair(context.WithoutCancel(ctx))
	for {
		order := slices.Clone(kinds)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, k := range order {
			if !sleep(ctx, stop, between(rng, minGap, maxGap)) {
				return
			}
			switch k {
			case FaultKill:
				n.doKill(ctx, stop, rng)
			case FaultPause:
				n.doPause(ctx, stop, rng)
			case FaultPartition:
				n.doPartition(ctx, stop, rng)
			case FaultDisk:
				n.doDisk(ctx, stop, rng)
			}
		}
	}
}

// victim chooses a node for a process fault: a data group's leader or follower, or a
// controller replica.
func (n *nemesis) victim(ctx context.Context, rng *rand.Rand) (uint64, string) {
	gids := n.c.groupIDs()
	switch r := rng.IntN(10); {
	case r < 4:
		gid := gids[rng.IntN(len(gids))]
		return n.c.pick(ctx, rng, gid, true), fmt.Sprintf("leader of group %d", gid)
	case r < 8:
		gid := gids[rng.IntN(len(gids))]
		return n.c.pick(ctx, rng, gid, false), fmt.Sprintf("follower of group %d", gid)
	default:
		return n.c.pick(ctx, rng, 0, rng.IntN(2) == 0), "controller"
	}
}

func (n *nemesis) doKill(ctx context.Context, stop <-chan struct{}, rng *rand.Rand) {
	id, what := n.victim(ctx, rng)
	if id == 0 {
		return
	}
	n.log.Info("nemesis: kill", "node", id, "role", what)
	n.mu.Lock()
	n.killed[id] = true
	n.mu.Unlock()
	if err := n.c.h.Kill(id); err != nil {
		n.log.Warn("nemesis: kill failed", "node", id, "err", err)
	}
	n.kill.Add(1)
	sleep(ctx, stop, between(rng, minDown, maxDown))
	n.restart(context.WithoutCancel(ctx), id)
}

// restart starts a killed node again, retrying briefly (its ports may linger for a moment).
func (n *nemesis) restart(ctx context.Context, id uint64) {
	for attempt := 0; ; attempt++ {
		err := n.c.h.Start(id)
		if err == nil {
			n.log.Info("nemesis: restarted", "node", id)
			n.mu.Lock()
			delete(n.killed, id)
			n.mu.Unlock()
			return
		}
		if attempt == 20 {
			n.log.Error("nemesis: cannot restart node", "node", id, "err", err)
			return
		}
		waitCtx(ctx, 250*time.Millisecond)
	}
}

func (n *nemesis) doPause(ctx context.Context, stop <-chan struct{}, rng *rand.Rand) {
	id, what := n.victim(ctx, rng)
	if id == 0 {
		return
	}
	n.log.Info("nemesis: pause", "node", id, "role", what)
	n.mu.Lock()
	n.paused[id] = true
	n.mu.Unlock()
	if err := n.c.signal(id, syscall.SIGSTOP); err != nil {
		n.log.Warn("nemesis: pause failed", "node", id, "err", err)
	}
	n.pause.Add(1)
	sleep(ctx, stop, between(rng, minPause, maxPause))
	n.resume(id)
}

func (n *nemesis) resume(id uint64) {
	if err := n.c.signal(id, syscall.SIGCONT); err != nil {
		n.log.Warn("nemesis: resume failed", "node", id, "err", err)
	}
	n.log.Info("nemesis: resumed", "node", id)
	n.mu.Lock()
	delete(n.paused, id)
	n.mu.Unlock()
}

// doPartition cuts or slows the raft links of one group (a data group or the controllers, when
// they are replicated) in one of several shapes, for a few seconds.
func (n *nemesis) doPartition(ctx context.Context, stop <-chan struct{}, rng *rand.Rand) {
	var gids []uint64
	for _, g := range append([]uint64{0}, n.c.groupIDs()...) {
		if len(n.c.members(g)) > 1 {
			gids = append(gids, g)
		}
	}
	if len(gids) == 0 || n.c.net == nil {
		return
	}
	gid := gids[rng.IntN(len(gids))]
	ms := n.c.members(gid)
	leader := n.c.leader(ctx, gid)
	if leader == 0 {
		leader = ms[rng.IntN(len(ms))]
	}
	var shape string
	switch rng.IntN(5) {
	case 0:
		shape = "isolate leader"
		n.isolate(leader, ms)
	case 1:
		victim := ms[rng.IntN(len(ms))]
		shape = fmt.Sprintf("isolate node %d", victim)
		n.isolate(victim, ms)
	case 2:
		// The leader still hears its followers but cannot reach them: they elect a new leader
		// while the old one believes it still leads.
		shape = "leader cannot send"
		for _, m := range ms {
			if m != leader {
				n.c.net.Block(leader, m)
			}
		}
	case 3:
		// The leader's heartbeats arrive, so nobody campaigns, but no acknowledgement comes
		// back: nothing can commit and a stale leader must not answer reads.
		shape = "leader cannot hear"
		for _, m := range ms {
			if m != leader {
				n.c.net.Block(m, leader)
			}
		}
	default:
		d := between(rng, 20*time.Millisecond, 150*time.Millisecond)
		shape = fmt.Sprintf("slow links (%v)", d)
		for _, a := range ms {
			for _, b := range ms {
				if a != b {
					n.c.net.Delay(a, b, d)
				}
			}
		}
	}
	n.log.Info("nemesis: partition", "group", gid, "leader", leader, "shape", shape)
	n.partition.Add(1)
	sleep(ctx, stop, between(rng, minPartition, maxPartition))
	n.c.net.Heal()
	n.log.Info("nemesis: healed", "group", gid)
}

// doDisk makes a data node's disk slow (20-100 ms more per WAL fsync) or stall (1-3 s per fsync,
// past an election timeout: a stalled leader loses its leadership) for a while, through the file
// the server watches (DiskFaultFile).
func (n *nemesis) doDisk(ctx context.Context, stop <-chan struct{}, rng *rand.Rand) {
	gids := n.c.groupIDs()
	gid := gids[rng.IntN(len(gids))]
	leader := rng.IntN(2) == 0
	id := n.c.pick(ctx, rng, gid, leader)
	d, shape := between(rng, 20*time.Millisecond, 100*time.Millisecond), "slow"
	if rng.IntN(2) == 0 {
		d, shape = between(rng, time.Second, 3*time.Second), "stalled"
	}
	path := filepath.Join(n.c.spec(id).Dir, DiskFaultFile)
	if err := os.WriteFile(path, []byte(d.String()), 0o600); err != nil {
		n.log.Warn("nemesis: disk fault", "node", id, "err", err)
		return
	}
	n.log.Info("nemesis: disk "+shape, "node", id, "group", gid, "leader", leader, "fsync_delay", d)
	n.disk.Add(1)
	sleep(ctx, stop, between(rng, minPartition, maxPartition))
	n.clearDisk(id)
}

// clearDisk gives node id its disk's speed back.
func (n *nemesis) clearDisk(id uint64) {
	if err := os.Remove(filepath.Join(n.c.spec(id).Dir, DiskFaultFile)); err != nil && !os.IsNotExist(err) {
		n.log.Warn("nemesis: clear disk fault", "node", id, "err", err)
	}
	n.log.Info("nemesis: disk healed", "node", id)
}

// isolate cuts every link between node and the other members, both ways.
func (n *nemesis) isolate(node uint64, members []uint64) {
	for _, m := range members {
		if m != node {
			n.c.net.Block(node, m)
			n.c.net.Block(m, node)
		}
	}
}

// repair undoes every fault still in place.
func (n *nemesis) repair(ctx context.Context) {
	if n.c.net != nil {
		n.c.net.Heal()
	}
	if n.kinds[FaultDisk] {
		for _, s := range n.c.specs {
			if s.Group != 0 {
				_ = os.Remove(filepath.Join(s.Dir, DiskFaultFile))
			}
		}
	}
	n.mu.Lock()
	var paused, killed []uint64
	for id := range n.paused {
		paused = append(paused, id)
	}
	for id := range n.killed {
		killed = append(killed, id)
	}
	n.mu.Unlock()
	for _, id := range paused {
		n.resume(id)
	}
	for _, id := range killed {
		n.restart(ctx, id)
	}
}

// runMoves changes the configuration at random intervals: it moves the shard holding one of the
// workload's keys to another group, or makes a group leave, and later join again.
func (n *nemesis) runMoves(ctx context.Context, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(n.seed, 2))
	for sleep(ctx, stop, between(rng, minMoveGap, maxMoveGap)) {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		n.changeConfig(cctx, rng)
		cancel()
	}
}

func (n *nemesis) changeConfig(ctx context.Context, rng *rand.Rand) {
	cfg, err := n.c.ctl.Query(ctx, -1)
	if err != nil {
		n.log.Warn("nemesis: query configuration", "err", err)
		return
	}
	// Groups the configuration lacks were removed by a Leave, possibly one whose answer was lost.
	missing := missingGroups(n.c.groupIDs(), cfg)
	if len(missing) > 0 && rng.IntN(2) == 0 {
		gid := missing[0]
		num, err := n.c.ctl.Join(ctx, gid, n.c.groupNodes(gid))
		if err != nil {
			n.log.Warn("nemesis: join", "group", gid, "err", err)
			return
		}
		n.log.Info("nemesis: join", "group", gid, "config", num)
		n.move.Add(1)
		return
	}
	gids := cfg.GroupIDs()
	if len(gids) >= 2 && len(missing) == 0 && rng.IntN(4) == 0 {
		gid := gids[rng.IntN(len(gids))]
		num, err := n.c.ctl.Leave(ctx, gid)
		if err != nil {
			n.log.Warn("nemesis: leave", "group", gid, "err", err)
			return
		}
		n.log.Info("nemesis: leave", "group", gid, "config", num)
		n.move.Add(1)
		return
	}
	if len(gids) < 2 {
		return
	}
	keys := n.keys()
	key := keys[rng.IntN(len(keys))]
	slot := keyspace.SlotString(key)
	var sh controller.Shard
	for _, s := range cfg.Shards {
		if s.Range.Contains(slot) {
			sh = s
		}
	}
	var to []uint64
	for _, g := range gids {
		if g != sh.Group {
			to = append(to, g)
		}
	}
	gid := to[rng.IntN(len(to))]
	num, err := n.c.ctl.Move(ctx, sh.Range, gid)
	if err != nil {
		n.log.Warn("nemesis: move", "range", sh.Range, "group", gid, "err", err)
		return
	}
	n.log.Info("nemesis: move", "key", key, "range", sh.Range, "from", sh.Group, "to", gid, "config", num)
	n.move.Add(1)
}

// missingGroups returns the groups of the cluster that cfg does not include.
func missingGroups(all []uint64, cfg controller.Config) []uint64 {
	var out []uint64
	for _, g := range all {
		if _, ok := cfg.Groups[g]; !ok {
			out = append(out, g)
		}
	}
	return out
}
