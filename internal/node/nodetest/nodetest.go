// Package nodetest runs sharded Shoal clusters inside a test process: real nodes (raft, WAL,
// RESP server) on real TCP ports of 127.0.0.1, with an in-memory shard controller, so tests of
// the node, the client and the tools can exercise joins, leaves, moves and failures quickly.
package nodetest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/migrate"
	"github.com/shoal-kv/shoal/internal/node"
)

// MemController is an in-memory stand-in for the replicated controller service: the same
// deterministic controller.State, behind a mutex.
type MemController struct {
	mu sync.Mutex
	st *controller.State
}

// Query implements migrate.Controller.
func (m *MemController) Query(_ context.Context, num int64) (*controller.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.st.Query(num)
	return &c, nil
}

// Report records a group's load report, as the controller service does.
func (m *MemController) Report(_ context.Context, r controller.Report) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Report(r)
}

// Do applies one change to the controller state.
func (m *MemController) Do(t testing.TB, f func(st *controller.State) (controller.Config, error)) controller.Config {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := f(m.st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Group is one replica group of a test cluster.
type Group struct {
	ID      uint64
	Dir     string
	Members map[uint64]node.Member
	Nodes   map[uint64]*node.Node // running nodes
}

// Cluster is a set of groups under one in-memory controller. Its nodes are closed when the test
// ends.
type Cluster struct {
	t      testing.TB
	Ctrl   *MemController
	Groups map[uint64]*Group
	// Tick is the raft tick of nodes started from now on.
	Tick time.Duration
	// WrapPeerConn, when set, wraps every raft peer connection (fault injection).
	WrapPeerConn func(net.Conn) net.Conn
	// Configure, when set, adjusts every node's configuration before it starts (TLS, users,
	// limits).
	Configure func(*node.Config)
}

// Options configure NewClusterWith.
type Options struct {
	Groups, Replicas int
	// WrapPeerConn wraps every raft peer connection, e.g. to drop and delay traffic.
	WrapPeerConn func(net.Conn) net.Conn
	// Configure adjusts every node's configuration before it starts.
	Configure func(*node.Config)
}

// FreeAddrs returns n free 127.0.0.1 addresses outside the ephemeral range, all different (see
// freeport).
func FreeAddrs(t testing.TB, n int) []string {
	var pk freeport.Picker
	addrs := make([]string, n)
	for i := range addrs {
		a, err := pk.Addr()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = a
	}
	return addrs
}

// NewCluster starts groups x replicas nodes; no group has joined the controller yet.
func NewCluster(t testing.TB, groups, replicas int) *Cluster {
	return NewClusterWith(t, Options{Groups: groups, Replicas: replicas})
}

// NewClusterWith starts a cluster as opts describe; no group has joined the controller yet.
func NewClusterWith(t testing.TB, opts Options) *Cluster {
	c := &Cluster{t: t, Ctrl: &MemController{st: controller.NewState()}, Groups: map[uint64]*Group{},
		Tick: 20 * time.Millisecond, WrapPeerConn: opts.WrapPeerConn, Configure: opts.Configure}
	addrs := FreeAddrs(t, 2*opts.Groups*opts.Replicas) // all at once: no two members share a port
	addr := func() string {
		a := addrs[0]
		addrs = addrs[1:]
		return a
	}
	for g := 1; g <= opts.Groups; g++ {
		tg := &Group{ID: uint64(g), Dir: t.TempDir(), Members: map[uint64]node.Member{}, Nodes: map[uint64]*node.Node{}}
		for id := 1; id <= opts.Replicas; id++ {
			tg.Members[uint64(id)] = node.Member{ClientAddr: addr(), PeerAddr: addr()}
		}
		c.Groups[tg.ID] = tg
		for id := range tg.Members {
			c.Start(tg.ID, id)
		}
	}
	t.Cleanup(func() {
		for _, g := range c.Groups {
			for _, n := range g.Nodes {
				n.Close()
			}
		}
	})
	return c
}

// Start starts (or restarts) one node.
func (c *Cluster) Start(gid, id uint64) {
	g := c.Groups[gid]
	lvl := slog.LevelWarn
	if os.Getenv("SHOAL_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("g", gid, "n", id)
	cfg := node.Config{
		ID: id, GroupID: gid, Dir: filepath.Join(g.Dir, fmt.Sprint(id)), Members: g.Members,
		TickInterval: c.Tick, SnapshotEntries: 300, Controller: []string{"in-memory"},
		NewController: func([]string) migrate.Controller { return c.Ctrl }, Logger: logger,
		WrapPeerConn: c.WrapPeerConn,
	}
	if c.Configure != nil {
		c.Configure(&cfg)
	}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	g.Nodes[id] = n
}

// Stop closes one node (a clean stop; its data stays).
func (c *Cluster) Stop(gid, id uint64) {
	if n := c.Groups[gid].Nodes[id]; n != nil {
		n.Close()
		delete(c.Groups[gid].Nodes, id)
	}
}

// StopGroup stops every node of a group.
func (c *Cluster) StopGroup(gid uint64) {
	for id := range c.Groups[gid].Members {
		c.Stop(gid, id)
	}
}

// StartGroup starts every node of a group.
func (c *Cluster) StartGroup(gid uint64) {
	for id := range c.Groups[gid].Members {
		c.Start(gid, id)
	}
}

// Join joins group gid to the controller.
func (c *Cluster) Join(gid uint64) controller.Config {
	g := c.Groups[gid]
	var nodes []controller.Node
	for id := uint64(1); id <= uint64(len(g.Members)); id++ {
		nodes = append(nodes, controller.Node{ID: id, Addr: g.Members[id].ClientAddr})
	}
	return c.Ctrl.Do(c.t, func(st *controller.State) (controller.Config, error) { return st.Join(gid, nodes) })
}

// Leave removes group gid from the controller's configuration.
func (c *Cluster) Leave(gid uint64) controller.Config {
	return c.Ctrl.Do(c.t, func(st *controller.State) (controller.Config, error) { return st.Leave(gid) })
}

// JoinAll joins every group and waits until the cluster settles.
func (c *Cluster) JoinAll() controller.Config {
	var cfg controller.Config
	for _, gid := range c.GroupIDs() {
		cfg = c.Join(gid)
	}
	c.WaitSettled(cfg.Num)
	return cfg
}

// GroupIDs returns the group ids in order.
func (c *Cluster) GroupIDs() []uint64 {
	var ids []uint64
	for gid := range c.Groups {
		ids = append(ids, gid)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// WaitSettled waits until every running node's group has applied configuration num and
// finished its hand-offs.
func (c *Cluster) WaitSettled(num uint64) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, g := range c.Groups {
			for _, n := range g.Nodes {
				ms := n.Group().Migration()
				if ms.Config == nil || ms.Config.Num < num || !ms.Done {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not settle on configuration %d", num)
}

// Addrs returns the client addresses of every running node.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, gid := range c.GroupIDs() {
		out = append(out, c.GroupAddrs(gid)...)
	}
	return out
}

// GroupAddrs returns the client addresses of one group's running nodes, in id order.
func (c *Cluster) GroupAddrs(gid uint64) []string {
	g := c.Groups[gid]
	var out []string
	for id := uint64(1); id <= uint64(len(g.Members)); id++ {
		if g.Nodes[id] != nil {
			out = append(out, g.Members[id].ClientAddr)
		}
	}
	return out
}

// KeysOwnedBy returns n keys "prefix:i" whose slots group gid owns in the latest configuration.
func (c *Cluster) KeysOwnedBy(gid uint64, n int, prefix string) []string {
	cfg, _ := c.Ctrl.Query(context.Background(), -1)
	var out []string
	for i := 0; len(out) < n && i < 1_000_000; i++ {
		k := fmt.Sprintf("%s:%d", prefix, i)
		if cfg.Owner(keyspace.SlotString(k)) == gid {
			out = append(out, k)
		}
	}
	return out
}

// Leader returns the id of group gid's leader among its running nodes, or 0.
func (c *Cluster) Leader(gid uint64) uint64 {
	for id, n := range c.Groups[gid].Nodes {
		if n.Raft().IsLeader() {
			return id
		}
	}
	return 0
}
