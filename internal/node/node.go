// Package node assembles one Shoal server process: the table, the group state machine, its raft
// node and the RESP front end, wired in the direction data flows (RESP -> group -> raft).
package node

import (
	"cmp"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/migrate"
	"github.com/shoal-kv/shoal/internal/raftnode"
	"github.com/shoal-kv/shoal/internal/router"
	"github.com/shoal-kv/shoal/internal/rpc"
	"github.com/shoal-kv/shoal/internal/server"
	"github.com/shoal-kv/shoal/internal/table"
)

// Member is one replica of the group as the others know it.
type Member struct {
	ClientAddr string // RESP address
	PeerAddr   string // raft transport address
}

// Config configures a server process.
type Config struct {
	ID      uint64
	GroupID uint64
	Dir     string
	// Members lists every replica of the group, this one included.
	Members map[uint64]Member
	// ClientListen and PeerListen override where this node listens (default: its Member
	// addresses); tests use them to put a proxy in front of a node.
	ClientListen, PeerListen string
	TickInterval             time.Duration
	SnapshotEntries          uint64
	// ProposeWindow spaces proposals under load (see group.Config.Window); groups of one
	// replica ignore it: with no follower messages to share, waiting only delays the fsync
	// (20-30% fewer SETs measured with a 1 ms window).
	ProposeWindow time.Duration
	WrapPeerConn  func(net.Conn) net.Conn
	// BeforeWALSync runs before every WAL fdatasync (fault injection in tests: a slow disk).
	BeforeWALSync func()
	// Controller lists the shard controller's client addresses. Without it the group is
	// standalone and serves every slot.
	Controller []string
	// NewController builds the controller client from Controller (set by the binary; tests
	// may substitute one).
	NewController func(addrs []string) migrate.Controller
	// MigrateRate caps the bytes per second this group pulls during hand-offs (0: unlimited).
	MigrateRate int64
	Logger      *slog.Logger

	// Auth holds the users clients authenticate as (nil: no access control).
	Auth *auth.Store
	// InternalUser and InternalPassword authenticate this node's own connections to other
	// nodes (forwarding, shard hand-off); a user with every right. Empty password: no AUTH.
	InternalUser, InternalPassword string
	// ClientTLS, when set, serves the client port over TLS.
	ClientTLS *tls.Config
	// PeerTLS, when set, secures raft peer links with mutual TLS.
	PeerTLS *tls.Config
	// DialTLS, when set, is used to dial other nodes' client ports (forwarding, hand-off).
	DialTLS *tls.Config
	// MaxMemory, when positive, refuses data-adding writes with OOM once the table holds this
	// many bytes (see table.Table.Bytes).
	MaxMemory int64
	// MaxClients and IdleTimeout are passed to the RESP server (see server.Config).
	MaxClients  int
	IdleTimeout time.Duration
	// Clock is this node's wall clock, by which it stamps writes, judges expiry and adds
	// relative expiry times (nil: time.Now). Tests skew it.
	Clock func() time.Time
	// SweepInterval spaces the leader's sweeps for expired keys nothing reads (0: 100 ms;
	// negative: none, for tests of what reads alone guarantee).
	SweepInterval time.Duration
}

// Node is a running server process.
type Node struct {
	cfg    Config
	log    *slog.Logger
	group  *group.Group
	raft   *raftnode.Node
	srv    *server.Server
	router *router.Router
	peers  *rpc.Pool
	driver *migrate.Driver
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// backend is what the RESP server talks to: the router for data commands, the local group for
// slot hand-offs, and the driver's progress in INFO.
type backend struct {
	*router.Router
	g      *group.Group
	driver *migrate.Driver
}

func (b backend) Export(ctx context.Context, num uint64, r keyspace.Range, maxBytes int) ([]byte, uint16, int, error) {
	return b.g.Export(ctx, num, r, maxBytes)
}

func (b backend) DropGiven(ctx context.Context, num uint64, r keyspace.Range) error {
	return b.g.DropGiven(ctx, num, r)
}

func (b backend) Info(section string) string {
	if section == "migration" && b.driver != nil {
		return b.driver.Progress().Info()
	}
	return b.Router.Info(section)
}

// Start opens the data directory, recovers state and starts serving.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.GroupID == 0 {
		cfg.GroupID = 1
	}
	me, ok := cfg.Members[cfg.ID]
	if !ok {
		return nil, fmt.Errorf("node: members do not include id %d", cfg.ID)
	}
	if cfg.ClientListen == "" {
		cfg.ClientListen = me.ClientAddr
	}
	if cfg.PeerListen == "" {
		cfg.PeerListen = me.PeerAddr
	}
	n := &Node{cfg: cfg, log: cfg.Logger}
	controlled := len(cfg.Controller) > 0
	window := cfg.ProposeWindow
	if len(cfg.Members) < 2 {
		window = 0
	}
	tab := table.New()
	n.group = group.New(group.Config{GroupID: cfg.GroupID, Controlled: controlled, Table: tab, Logger: cfg.Logger, Window: window, Clock: cfg.Clock})
	peers := make(map[uint64]string, len(cfg.Members))
	for id, m := range cfg.Members {
		peers[id] = m.PeerAddr
	}
	var err error
	n.raft, err = raftnode.New(raftnode.Config{
		ID: cfg.ID, Peers: peers, ListenAddr: cfg.PeerListen, Dir: cfg.Dir,
		TickInterval: cfg.TickInterval, SnapshotEntries: cfg.SnapshotEntries,
		WrapConn: cfg.WrapPeerConn, Logger: cfg.Logger, PeerTLS: cfg.PeerTLS, BeforeWALSync: cfg.BeforeWALSync,
	}, n.group)
	if err != nil {
		return nil, err
	}
	n.group.Bind(n.raft)
	if err := n.raft.Start(ctx); err != nil {
		return nil, err
	}
	n.peers = rpc.NewPool(rpc.Options{MaxIdle: 8, TLS: cfg.DialTLS, Username: cfg.InternalUser, Password: cfg.InternalPassword})
	var refresh func()
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	if controlled {
		if cfg.NewController == nil {
			cancel()
			n.raft.Stop()
			return nil, errors.New("node: Controller set without NewController")
		}
		kick := make(chan struct{}, 1)
		refresh = func() {
			select {
			case kick <- struct{}{}:
			default:
			}
		}
		n.driver = migrate.New(migrate.Config{
			GroupID: cfg.GroupID, Group: n.group, IsLeader: n.raft.IsLeader,
			Controller: cfg.NewController(cfg.Controller), Peers: n.peers,
			Learn: func(c *controller.Config) { n.router.SetConfig(c) }, RateLimit: cfg.MigrateRate,
			LearnLeaders: func(m map[uint64]uint64) { n.router.SetLeaders(m) },
			Logger:       cfg.Logger, Kick: kick,
		})
	}
	n.router = router.New(router.Config{GroupID: cfg.GroupID, Local: n.group, Peers: n.peers, Refresh: refresh, Logger: cfg.Logger})
	if n.driver != nil {
		n.wg.Go(func() { n.driver.Run(runCtx) })
	}
	if cfg.SweepInterval >= 0 {
		n.wg.Go(func() { n.sweep(runCtx, cmp.Or(cfg.SweepInterval, sweepEvery)) })
	}
	n.srv = server.New(server.Config{
		Addr: cfg.ClientListen, Backend: backend{Router: n.router, g: n.group, driver: n.driver}, Topology: n,
		Router: n.router, Logger: cfg.Logger, NodeID: NodeID(cfg.GroupID, cfg.ID),
		Auth: cfg.Auth, TLS: cfg.ClientTLS, MaxMemory: cfg.MaxMemory, UsedMemory: tab.Bytes,
		MaxClients: cfg.MaxClients, IdleTimeout: cfg.IdleTimeout, Clock: cfg.Clock,
	})
	if err := n.srv.Start(ctx); err != nil {
		n.stopBackground()
		n.raft.Stop()
		return nil, err
	}
	return n, nil
}

func (n *Node) stopBackground() {
	n.cancel()
	n.wg.Wait()
	n.peers.Close()
}

// Close stops serving and releases the data directory.
func (n *Node) Close() error {
	err := n.srv.Close()
	n.stopBackground()
	n.raft.Stop()
	return err
}

// Failed is closed when the node's raft replica stopped on its own after a storage failure
// (a WAL write or fsync failed, e.g. a full disk): it can no longer acknowledge anything, so
// its process should exit and be restarted once the cause is fixed. FailErr says why.
func (n *Node) Failed() <-chan struct{} { return n.raft.Done() }

// FailErr returns the failure that stopped the raft replica, or nil.
func (n *Node) FailErr() error { return n.raft.Err() }

// Group exposes the node's group state machine (tests, INFO).
func (n *Node) Group() *group.Group { return n.group }

// ClientAddr returns the address the RESP server listens on.
func (n *Node) ClientAddr() string { return n.srv.Addr().String() }

// Raft exposes the raft node's status.
func (n *Node) Raft() *raftnode.Node { return n.raft }

// NodeID returns the 40-hex-character node id Redis Cluster clients expect, stable for a given
// group and replica id.
func NodeID(groupID, id uint64) string {
	sum := sha1.Sum([]byte("shoal:" + strconv.FormatUint(groupID, 10) + ":" + strconv.FormatUint(id, 10)))
	return hex.EncodeToString(sum[:])
}

// View implements server.Topology. Standalone, the one group serves every slot; under a
// controller, the view is the newest configuration this node knows. Within this node's group
// the raft leader is listed first (clients take the first node as master); other groups list
// their nodes in configuration order.
func (n *Node) View() server.ClusterView {
	st := n.raft.Status()
	c := n.router.Latest()
	if c == nil {
		ids := make([]uint64, 0, len(n.cfg.Members))
		for id := range n.cfg.Members {
			ids = append(ids, id)
		}
		shard := server.ShardView{Ranges: []keyspace.Range{keyspace.All()}, Nodes: n.groupNodes(n.cfg.GroupID, ids, st.Leader, func(id uint64) string {
			return n.cfg.Members[id].ClientAddr
		})}
		return server.ClusterView{Epoch: st.Term, Shards: []server.ShardView{shard}}
	}
	view := server.ClusterView{Epoch: c.Num}
	byGroup := map[uint64][]keyspace.Range{}
	for _, sh := range c.Shards {
		if sh.Group != 0 {
			byGroup[sh.Group] = append(byGroup[sh.Group], sh.Range)
		}
	}
	for _, gid := range c.GroupIDs() {
		g := c.Groups[gid]
		ids := make([]uint64, len(g.Nodes))
		addr := make(map[uint64]string, len(g.Nodes))
		for i, nd := range g.Nodes {
			ids[i] = nd.ID
			addr[nd.ID] = nd.Addr
		}
		leader := n.router.Leader(gid)
		if gid == n.cfg.GroupID {
			leader = st.Leader
		}
		view.Shards = append(view.Shards, server.ShardView{Ranges: mergeRanges(byGroup[gid]),
			Nodes: n.groupNodes(gid, ids, leader, func(id uint64) string { return addr[id] })})
	}
	return view
}

// groupNodes lists a group's nodes, the leader (when known) first.
func (n *Node) groupNodes(gid uint64, ids []uint64, leader uint64, addr func(uint64) string) []server.NodeView {
	slices.Sort(ids)
	slices.SortStableFunc(ids, func(a, b uint64) int {
		switch {
		case a == leader && b != leader:
			return -1
		case b == leader && a != leader:
			return 1
		}
		return 0
	})
	out := make([]server.NodeView, 0, len(ids))
	for i, id := range ids {
		out = append(out, server.NodeView{
			ID: NodeID(gid, id), Addr: addr(id), Leader: id == leader || (leader == 0 && i == 0),
			Healthy: true, Myself: gid == n.cfg.GroupID && id == n.cfg.ID,
		})
	}
	return out
}

// mergeRanges joins adjacent ranges so CLUSTER SLOTS lists each run once.
func mergeRanges(rs []keyspace.Range) []keyspace.Range {
	slices.SortFunc(rs, func(a, b keyspace.Range) int { return int(a.Lo) - int(b.Lo) })
	var out []keyspace.Range
	for _, r := range rs {
		if len(out) > 0 && out[len(out)-1].Hi == r.Lo {
			out[len(out)-1].Hi = r.Hi
			continue
		}
		out = append(out, r)
	}
	return out
}

// ParseMembers parses "id=clientAddr/peerAddr,..." as the server's --peers flag takes it.
func ParseMembers(s string) (map[uint64]Member, error) {
	out := make(map[uint64]Member)
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idStr, addrs, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("peer %q: want id=clientaddr/peeraddr", part)
		}
		id, err := strconv.ParseUint(idStr, 10, 64)
		if err != nil || id == 0 {
			return nil, fmt.Errorf("peer %q: id must be a positive integer", part)
		}
		client, peer, ok := strings.Cut(addrs, "/")
		if !ok || client == "" || peer == "" {
			return nil, fmt.Errorf("peer %q: want id=clientaddr/peeraddr", part)
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("peer id %d listed twice", id)
		}
		out[id] = Member{ClientAddr: client, PeerAddr: peer}
	}
	if len(out) == 0 {
		return nil, errors.New("no peers given")
	}
	return out, nil
}

// FormatMembers is the inverse of ParseMembers.
func FormatMembers(m map[uint64]Member) string {
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d=%s/%s", id, m[id].ClientAddr, m[id].PeerAddr)
	}
	return strings.Join(parts, ",")
}

// ctlClient adapts the controller client to what the migration driver consumes.
type ctlClient struct{ *controller.Client }

func (c ctlClient) Query(ctx context.Context, num int64) (*controller.Config, error) {
	cfg, err := c.Client.Query(ctx, num)
	if err != nil {
		return nil, err
	}
	return &cfg, nil
}

// ControllerClient connects to the shard controller at addrs.
func ControllerClient(addrs []string) migrate.Controller {
	return ctlClient{controller.NewClient(addrs)}
}

// ControllerClientWith returns a NewController that connects to the shard controller with
// TLS (when tlsCfg is set) and authenticates as user (when pass is set).
func ControllerClientWith(tlsCfg *tls.Config, user, pass string) func(addrs []string) migrate.Controller {
	return func(addrs []string) migrate.Controller {
		cl := controller.NewClient(addrs)
		cl.TLS, cl.Username, cl.Password = tlsCfg, user, pass
		return ctlClient{cl}
	}
}
