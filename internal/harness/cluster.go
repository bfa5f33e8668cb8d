package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/node"
)

// ClusterOptions describe a sharded cluster: a controller group and data groups.
type ClusterOptions struct {
	Exe         string
	Dir         string
	Groups      int
	Replicas    int
	Controllers int
	// BasePort numbers client ports consecutively from it (groups first, then the
	// controller), peers 10000 above; 0 picks free ports.
	BasePort  int
	ExtraArgs []string // passed to every server and controller
	// ServerArgs are passed to every server (data group member) after ExtraArgs.
	ServerArgs []string
	// PrivatePeers makes every process listen for raft peers on a private free port
	// (--peer-listen) while the others keep dialing its advertised peer address, so that a
	// fault-injecting proxy can sit in between (see PeerListenAddr).
	PrivatePeers bool
}

// NewCluster describes a fresh sharded cluster (not started yet). Controller nodes have group 0
// and role "controller" in nodes.json.
func NewCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.Groups < 1 || opts.Replicas < 1 || opts.Controllers < 1 {
		return nil, errors.New("harness: groups, replicas and controllers must be >= 1")
	}
	next := opts.BasePort
	pk := new(freeport.Picker)
	port := func() (int, int, error) {
		if opts.BasePort == 0 {
			cp, err := pk.Port()
			if err != nil {
				return 0, 0, err
			}
			pp, err := pk.Port()
			return cp, pp, err
		}
		p := next
		next++
		if p+10000 > 65535 {
			return 0, 0, fmt.Errorf("harness: port %d leaves no room for its peer port", p)
		}
		return p, p + 10000, nil
	}
	members := func(n int) (map[uint64]node.Member, error) {
		m := make(map[uint64]node.Member, n)
		for i := range n {
			cp, pp, err := port()
			if err != nil {
				return nil, err
			}
			m[uint64(i+1)] = node.Member{ClientAddr: "127.0.0.1:" + strconv.Itoa(cp), PeerAddr: "127.0.0.1:" + strconv.Itoa(pp)}
		}
		return m, nil
	}
	groups := make([]map[uint64]node.Member, opts.Groups)
	for g := range groups {
		var err error
		if groups[g], err = members(opts.Replicas); err != nil {
			return nil, err
		}
	}
	ctl, err := members(opts.Controllers)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: opts.Dir, procs: make(map[uint64]*proc), ports: pk}
	var ctlAddrs []string
	for id := uint64(1); id <= uint64(opts.Controllers); id++ {
		ctlAddrs = append(ctlAddrs, ctl[id].ClientAddr)
	}
	ctlPeers := node.FormatMembers(ctl)
	// Process ids in nodes.json are unique across the cluster: controllers first, then each
	// group's replicas; the raft id within a group stays 1..R (in --id).
	pid := uint64(0)
	for id := uint64(1); id <= uint64(opts.Controllers); id++ {
		pid++
		dir := filepath.Join(opts.Dir, fmt.Sprintf("controller%d", id))
		argv := append([]string{opts.Exe, "controller", "--id", strconv.FormatUint(id, 10), "--dir", dir, "--peers", ctlPeers}, opts.ExtraArgs...)
		c.Specs = append(c.Specs, NodeSpec{ID: pid, Group: 0, Role: "controller", ClientAddr: ctl[id].ClientAddr,
			PeerAddr: ctl[id].PeerAddr, Dir: dir, Log: filepath.Join(opts.Dir, fmt.Sprintf("controller%d.log", id)), Argv: argv})
	}
	for g, m := range groups {
		gid := uint64(g + 1)
		peers := node.FormatMembers(m)
		for id := uint64(1); id <= uint64(opts.Replicas); id++ {
			pid++
			dir := filepath.Join(opts.Dir, fmt.Sprintf("group%d-node%d", gid, id))
			argv := append([]string{opts.Exe, "server", "--id", strconv.FormatUint(id, 10), "--group", strconv.FormatUint(gid, 10),
				"--dir", dir, "--peers", peers, "--controller", strings.Join(ctlAddrs, ",")}, opts.ExtraArgs...)
			argv = append(argv, opts.ServerArgs...)
			c.Specs = append(c.Specs, NodeSpec{ID: pid, Group: gid, RaftID: id, ClientAddr: m[id].ClientAddr, PeerAddr: m[id].PeerAddr,
				Dir: dir, Log: filepath.Join(opts.Dir, fmt.Sprintf("group%d-node%d.log", gid, id)), Argv: argv})
		}
	}
	if opts.PrivatePeers {
		if err := c.usePrivatePeers(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// ControllerAddrs returns the controller replicas' client addresses.
func (c *Cluster) ControllerAddrs() []string {
	var out []string
	for _, s := range c.Specs {
		if s.Role == "controller" {
			out = append(out, s.ClientAddr)
		}
	}
	return out
}

// GroupIDs returns the data groups' ids.
func (c *Cluster) GroupIDs() []uint64 {
	var out []uint64
	for _, s := range c.Specs {
		if s.Group != 0 && (len(out) == 0 || out[len(out)-1] != s.Group) {
			out = append(out, s.Group)
		}
	}
	return out
}

// GroupNodes returns the controller's description of group gid.
func (c *Cluster) GroupNodes(gid uint64) []controller.Node {
	var out []controller.Node
	for _, s := range c.Specs {
		if s.Group == gid && gid != 0 {
			out = append(out, controller.Node{ID: s.RaftID, Addr: s.ClientAddr})
		}
	}
	return out
}

// JoinAll joins every data group that the controller does not know yet, and waits until the
// groups have applied the resulting configuration.
func (c *Cluster) JoinAll(ctx context.Context, timeout time.Duration) error {
	cl := c.Access.ControllerClient(c.ControllerAddrs())
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg, err := cl.Query(ctx, -1)
	if err != nil {
		return fmt.Errorf("harness: controller: %w", err)
	}
	num := cfg.Num
	for _, gid := range c.GroupIDs() {
		if _, ok := cfg.Groups[gid]; ok {
			continue
		}
		if num, err = cl.Join(ctx, gid, c.GroupNodes(gid)); err != nil {
			return fmt.Errorf("harness: join group %d: %w", gid, err)
		}
	}
	return c.WaitConfig(ctx, num)
}

// WaitConfig waits until one node of every data group reports configuration num applied with
// its hand-offs done.
func (c *Cluster) WaitConfig(ctx context.Context, num uint64) error {
	for _, gid := range c.GroupIDs() {
		for {
			if c.groupAt(gid, num) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("harness: group %d did not reach configuration %d: %w", gid, num, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func (c *Cluster) groupAt(gid, num uint64) bool {
	for _, s := range c.Specs {
		if s.Group != gid {
			continue
		}
		v, err := c.Access.Call(s.ClientAddr, "INFO", "migration")
		if err != nil {
			continue
		}
		info := string(v.Str)
		n, _ := strconv.ParseUint(InfoField(info, "migration_config"), 10, 64)
		if n >= num && InfoField(info, "migration_done") == "1" {
			return true
		}
	}
	return false
}
