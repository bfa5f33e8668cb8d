// Package node assembles one Shoal server process: the table, the group state machine, its raft
// node and the RESP front end, wired in the direction data flows (RESP -> group -> raft).
package node

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/raftnode"
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
	WrapPeerConn             func(net.Conn) net.Conn
	Logger                   *slog.Logger
}

// Node is a running server process.
type Node struct {
	cfg   Config
	log   *slog.Logger
	group *group.Group
	raft  *raftnode.Node
	srv   *server.Server
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
	n.group = group.New(group.Config{GroupID: cfg.GroupID, Table: table.New(), Logger: cfg.Logger})
	peers := make(map[uint64]string, len(cfg.Members))
	for id, m := range cfg.Members {
		peers[id] = m.PeerAddr
	}
	var err error
	n.raft, err = raftnode.New(raftnode.Config{
		ID: cfg.ID, Peers: peers, ListenAddr: cfg.PeerListen, Dir: cfg.Dir,
		TickInterval: cfg.TickInterval, SnapshotEntries: cfg.SnapshotEntries,
		WrapConn: cfg.WrapPeerConn, Logger: cfg.Logger,
	}, n.group)
	if err != nil {
		return nil, err
	}
	n.group.Bind(n.raft)
	if err := n.raft.Start(ctx); err != nil {
		return nil, err
	}
	n.srv = server.New(server.Config{
		Addr: cfg.ClientListen, Backend: n.group, Topology: n, Logger: cfg.Logger,
		NodeID: NodeID(cfg.GroupID, cfg.ID),
	})
	if err := n.srv.Start(ctx); err != nil {
		n.raft.Stop()
		return nil, err
	}
	return n, nil
}

// Close stops serving and releases the data directory.
func (n *Node) Close() error {
	err := n.srv.Close()
	n.raft.Stop()
	return err
}

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

// View implements server.Topology: the one group serves every slot; its leader is the master.
func (n *Node) View() server.ClusterView {
	st := n.raft.Status()
	ids := make([]uint64, 0, len(n.cfg.Members))
	for id := range n.cfg.Members {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	// Leader first: clients take the first node of a range as its master.
	slices.SortStableFunc(ids, func(a, b uint64) int {
		if a == st.Leader {
			return -1
		}
		if b == st.Leader {
			return 1
		}
		return 0
	})
	shard := server.ShardView{Ranges: []keyspace.Range{keyspace.All()}}
	for _, id := range ids {
		shard.Nodes = append(shard.Nodes, server.NodeView{
			ID: NodeID(n.cfg.GroupID, id), Addr: n.cfg.Members[id].ClientAddr,
			Leader: id == st.Leader, Healthy: true, Myself: id == n.cfg.ID,
		})
	}
	return server.ClusterView{Epoch: st.Term, Shards: []server.ShardView{shard}}
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
