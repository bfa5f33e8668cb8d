package check

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/harness"
	"github.com/shoal-kv/shoal/internal/resp"
)

// cluster is the system under test as the checker sees it: the harness's description of the
// processes, whether the checker owns them, and the proxies in front of their peer ports.
type cluster struct {
	h *harness.Cluster
	// specs is a copy of the harness's node descriptions taken before any process (re)start:
	// the harness updates pids in place while the nemesis restarts nodes, and everything the
	// checker needs (ids, groups, addresses) never changes.
	specs []harness.NodeSpec
	owned bool     // started by the checker, which may kill, restart and stop them
	net   *Network // nil when peer links are not proxied
	ctl   *controller.Client
	log   *slog.Logger
	dir   string // the directory the checker created for an owned cluster
}

// earlyExit waits for d and reports a process of c that exited meanwhile: one that could not
// bind its port, typically.
func earlyExit(c *harness.Cluster, d time.Duration) (uint64, bool) {
	deadline := time.After(d)
	for {
		for _, s := range c.Specs {
			select {
			case <-c.Exited(s.ID):
				return s.ID, true
			default:
			}
		}
		select {
		case <-deadline:
			return 0, false
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// raftID is a node's id inside its raft group: harness ids are unique across the cluster, raft
// ids only within a group.
func raftID(s harness.NodeSpec) uint64 {
	if s.RaftID != 0 {
		return s.RaftID
	}
	return s.ID
}

// startCluster starts a fresh cluster in a new directory: controllers, groups, proxies in front
// of every peer port when partitions are wanted, and every group joined.
func startCluster(ctx context.Context, cfg *Config, proxied bool) (c *cluster, err error) {
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("check: find the shoal binary: %w", err)
		}
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "shoal-check-"); err != nil {
			return nil, fmt.Errorf("check: %w", err)
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	// Free ports are picked before the processes bind them, so another process on a busy
	// machine can take one in between: start again on new ports when a process dies at once.
	for attempt := 1; ; attempt++ {
		if c, err = startProcesses(dir, exe, cfg, proxied); err != nil {
			if attempt == 3 {
				return nil, err
			}
			cfg.Logger.Warn("cluster start failed; starting again on new ports", "err", err)
			continue
		}
		id, died := earlyExit(c.h, 2*time.Second)
		if !died {
			break
		}
		c.close()
		if attempt == 3 {
			return nil, fmt.Errorf("check: node %d exited at start; see its log in %s", id, dir)
		}
		cfg.Logger.Warn("a node exited at start (port taken?); starting again on new ports", "node", id)
		for _, s := range c.specs {
			_ = os.RemoveAll(s.Dir)
		}
	}
	h := c.h
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	c.ctl = controller.NewClient(h.ControllerAddrs())
	if err := h.JoinAll(ctx, 90*time.Second); err != nil {
		return nil, fmt.Errorf("check: join groups (logs in %s): %w", dir, err)
	}
	return c, nil
}

// startProcesses describes a fresh cluster in dir, starts the proxies (when proxied) and then
// every process.
func startProcesses(dir, exe string, cfg *Config, proxied bool) (*cluster, error) {
	var serverArgs []string
	if slices.Contains(cfg.Faults, FaultDisk) {
		serverArgs = []string{"--fault-injection"} // servers watch DiskFaultFile
	}
	h, err := harness.NewCluster(harness.ClusterOptions{
		Exe: exe, Dir: dir, Groups: cfg.Groups, Replicas: cfg.Replicas, Controllers: cfg.Controllers,
		// Frequent snapshots so that kills exercise recovery from snapshot plus WAL, and lagging
		// nodes catch up by snapshot, not only by log.
		ExtraArgs: []string{"--snapshot-entries", "2000"}, PrivatePeers: proxied, ServerArgs: serverArgs,
	})
	if err != nil {
		return nil, fmt.Errorf("check: describe cluster: %w", err)
	}
	c := &cluster{h: h, specs: slices.Clone(h.Specs), owned: true, log: cfg.Logger, dir: dir}
	if proxied {
		c.net = NewNetwork(cfg.Logger)
		for _, s := range c.specs {
			group := s.Group
			sender := func(rid uint64) (uint64, bool) {
				for _, o := range c.specs {
					if o.Group == group && raftID(o) == rid {
						return o.ID, true
					}
				}
				return 0, false
			}
			if err := c.net.Listen(s.ID, s.PeerAddr, h.PeerListenAddr(s.ID), sender); err != nil {
				c.close()
				return nil, err
			}
		}
	}
	if err := h.StartAll(); err != nil {
		c.close()
		return nil, fmt.Errorf("check: start cluster: %w", err)
	}
	return c, nil
}

// loadCluster describes a running cluster from its nodes.json (one `shoal demo` started). The
// checker does not own its processes, so it neither kills nor stops them.
func loadCluster(path string, logger *slog.Logger) (*cluster, error) {
	dir := path
	if strings.HasSuffix(path, ".json") {
		dir = filepath.Dir(path)
	}
	h, err := harness.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	if len(h.ControllerAddrs()) == 0 || len(h.GroupIDs()) == 0 {
		return nil, fmt.Errorf("check: %s describes no sharded cluster (controllers and groups)", path)
	}
	for _, s := range h.Specs {
		if s.PID <= 0 || syscall.Kill(s.PID, 0) != nil {
			return nil, fmt.Errorf("check: node %d (pid %d) of %s is not running", s.ID, s.PID, path)
		}
	}
	return &cluster{h: h, specs: slices.Clone(h.Specs), log: logger, ctl: controller.NewClient(h.ControllerAddrs())}, nil
}

// close stops what the checker started: its processes (by pid, through the harness) and its
// proxies.
func (c *cluster) close() {
	if c.owned {
		c.h.StopAll()
	}
	if c.net != nil {
		_ = c.net.Close()
	}
	if c.ctl != nil {
		_ = c.ctl.Close()
	}
}

// dataAddrs returns every data node's client address.
func (c *cluster) dataAddrs() []string {
	var out []string
	for _, s := range c.specs {
		if s.Group != 0 {
			out = append(out, s.ClientAddr)
		}
	}
	return out
}

// groupIDs returns the data groups' ids.
func (c *cluster) groupIDs() []uint64 {
	var out []uint64
	for _, s := range c.specs {
		if s.Group != 0 && !slices.Contains(out, s.Group) {
			out = append(out, s.Group)
		}
	}
	return out
}

// groupNodes returns group gid's nodes as the controller knows them.
func (c *cluster) groupNodes(gid uint64) []controller.Node {
	var out []controller.Node
	for _, s := range c.specs {
		if s.Group == gid {
			out = append(out, controller.Node{ID: raftID(s), Addr: s.ClientAddr})
		}
	}
	return out
}

// members returns the harness ids of group gid's nodes (0: the controllers).
func (c *cluster) members(gid uint64) []uint64 {
	var out []uint64
	for _, s := range c.specs {
		if s.Group == gid {
			out = append(out, s.ID)
		}
	}
	return out
}

func (c *cluster) spec(id uint64) harness.NodeSpec {
	for _, s := range c.specs {
		if s.ID == id {
			return s
		}
	}
	return harness.NodeSpec{}
}

// signal sends sig to node id: through the harness for processes the checker owns, by the pid
// in nodes.json otherwise.
func (c *cluster) signal(id uint64, sig syscall.Signal) error {
	if c.owned {
		return c.h.Signal(id, sig)
	}
	pid := c.spec(id).PID
	if pid <= 0 {
		return fmt.Errorf("check: node %d has no pid", id)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("check: signal node %d (pid %d): %w", id, pid, err)
	}
	return nil
}

// leader returns group gid's leader (harness id), asking the nodes themselves: a data node's
// INFO raft, the controller's status for gid 0. It returns 0 when no leader answers.
func (c *cluster) leader(ctx context.Context, gid uint64) uint64 {
	if gid == 0 {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		st, err := c.ctl.Status(cctx)
		if err != nil {
			return 0
		}
		for _, s := range c.specs {
			if s.Group == 0 && raftID(s) == st.Node.Leader {
				return s.ID
			}
		}
		return 0
	}
	for _, s := range c.specs {
		if s.Group != gid {
			continue
		}
		v, err := call(ctx, s.ClientAddr, time.Second, "INFO", "raft")
		if err == nil && harness.InfoField(string(v.Str), "raft_state") == "StateLeader" {
			return s.ID
		}
	}
	return 0
}

// pick returns a random member of group gid: its leader when wantLeader, a follower otherwise
// (any member when the leader is unknown).
func (c *cluster) pick(ctx context.Context, rng *rand.Rand, gid uint64, wantLeader bool) uint64 {
	ms := c.members(gid)
	if len(ms) == 0 {
		return 0
	}
	l := c.leader(ctx, gid)
	if wantLeader && l != 0 {
		return l
	}
	var others []uint64
	for _, id := range ms {
		if id != l {
			others = append(others, id)
		}
	}
	if len(others) == 0 {
		others = ms
	}
	return others[rng.IntN(len(others))]
}

// call sends one command on a fresh connection bounded by timeout and ctx; an error reply is an
// error. Unlike harness.Call it never waits long on a paused process.
func call(ctx context.Context, addr string, timeout time.Duration, args ...string) (resp.Value, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return resp.Value{}, err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	if _, err := conn.Write(resp.AppendCommand(nil, bargs...)); err != nil {
		return resp.Value{}, err
	}
	v, err := resp.NewReader(conn, resp.DefaultLimits()).ReadValue()
	if err != nil {
		return resp.Value{}, err
	}
	if v.Type == '-' {
		return v, fmt.Errorf("%s: %s", addr, v.Str)
	}
	return v, nil
}

// settle joins again the groups that a Leave removed (so a shared cluster is left as it was
// found) and waits until every group has applied the latest configuration.
func (c *cluster) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		cfg, err := c.ctl.Query(cctx, -1)
		if err == nil {
			missing := missingGroups(c.groupIDs(), cfg)
			if len(missing) == 0 {
				ccancel()
				return c.h.WaitConfig(ctx, cfg.Num)
			}
			_, err = c.ctl.Join(cctx, missing[0], c.groupNodes(missing[0]))
		}
		ccancel()
		if err != nil {
			if ctx.Err() != nil {
				return errors.Join(fmt.Errorf("check: settle configuration: %w", err), ctx.Err())
			}
			c.log.Warn("settling the configuration; retrying", "err", err)
			waitCtx(ctx, time.Second)
		}
	}
}
