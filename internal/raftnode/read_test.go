package raftnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/freeport"
)

// isolatable makes every peer connection of a node fail while cut is set, so the node keeps
// running but hears from no one and reaches no one.
type isolatable struct {
	net.Conn
	cut *atomic.Bool
}

var errCut = errors.New("test: node isolated")

func (c isolatable) Read(p []byte) (int, error) {
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Read(p)
}

func (c isolatable) Write(p []byte) (int, error) {
	if c.cut.Load() {
		c.Conn.Close()
		return 0, errCut
	}
	return c.Conn.Write(p)
}

// startLeaseCluster starts three nodes with 100 ms ticks (a lease of about 0.8 s) whose peer
// links can be cut one node at a time.
func startLeaseCluster(t *testing.T) (map[uint64]*Node, map[uint64]*atomic.Bool) {
	dir := t.TempDir()
	var pk freeport.Picker
	peers := map[uint64]string{1: freeAddr(t, &pk), 2: freeAddr(t, &pk), 3: freeAddr(t, &pk)}
	nodes, cuts := map[uint64]*Node{}, map[uint64]*atomic.Bool{}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	for id := range peers {
		cut := &atomic.Bool{}
		n, err := New(Config{ID: id, Peers: peers, Dir: filepath.Join(dir, fmt.Sprint(id)), Logger: logger,
			WrapConn: func(c net.Conn) net.Conn { return isolatable{Conn: c, cut: cut} }}, &listSM{})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		nodes[id], cuts[id] = n, cut
		t.Cleanup(n.Stop)
	}
	return nodes, cuts
}

func waitLeader(t *testing.T, nodes map[uint64]*Node, except uint64) *Node {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for id, n := range nodes {
			if id != except && n.IsLeader() {
				return n
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no leader elected")
	return nil
}

func TestLeaseReadsSkipReadIndexRounds(t *testing.T) {
	nodes, _ := startLeaseCluster(t)
	leader := waitLeader(t, nodes, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := leader.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	before, start := leader.reads.rounds.Load(), time.Now()
	const reads = 2000
	for range reads {
		if err := leader.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Renewals run once half a lease has passed, so the rounds are bounded by time, not by reads.
	rounds := leader.reads.rounds.Load() - before
	limit := 2 + 4*uint64(time.Since(start)/leader.leaseDuration())
	if rounds > limit {
		t.Fatalf("%d reads took %d read index rounds in %v, want at most %d", reads, rounds, time.Since(start), limit)
	}
	// A follower has no lease: each of its barriers asks the leader.
	var follower *Node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	before = follower.reads.rounds.Load()
	for range 5 {
		if err := follower.ReadBarrier(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := follower.reads.rounds.Load() - before; got < 5 {
		t.Fatalf("follower made %d rounds for 5 sequential barriers, want 5", got)
	}
}

// TestLeaseEndsBeforeAnotherLeaderIsElected isolates a leader holding a lease and checks that the
// rest elect a new leader only after that lease ran out, and that the old leader then refuses
// reads instead of serving its stale state.
func TestLeaseEndsBeforeAnotherLeaderIsElected(t *testing.T) {
	nodes, cuts := startLeaseCluster(t)
	old := waitLeader(t, nodes, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := old.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	cuts[old.ID()].Store(true)
	if !old.leaseRead() {
		t.Fatal("leader holds no lease right after a confirmed read")
	}
	leaseEnd := old.reads.epoch.Add(time.Duration(old.reads.leaseUntil.Load()))
	next := waitLeader(t, nodes, old.ID())
	if elected := time.Now(); !elected.After(leaseEnd) {
		t.Fatalf("node %d became leader %v before the old leader's lease ended", next.ID(), leaseEnd.Sub(elected))
	}
	if old.leaseRead() {
		t.Fatal("isolated old leader still uses its lease after a new leader was elected")
	}
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer rcancel()
	if err := old.ReadBarrier(rctx); err == nil {
		t.Fatal("isolated old leader confirmed a read")
	}
	if err := next.ReadBarrier(ctx); err != nil {
		t.Fatalf("new leader cannot read: %v", err)
	}
}

func TestRestartedNodeWithholdsVotesForALease(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.propose(ctx, 1, "x")
	vote := raftpb.Message{Type: raftpb.MsgVote}
	if c.nodes[2].dropVote(vote) {
		t.Fatal("a node that never stopped withholds its vote")
	}
	c.stop(2)
	c.start(2)
	n := c.nodes[2]
	if !n.dropVote(vote) || !n.dropVote(raftpb.Message{Type: raftpb.MsgPreVote}) {
		t.Fatal("a restarted node answers vote requests at once")
	}
	if n.dropVote(raftpb.Message{Type: raftpb.MsgApp}) {
		t.Fatal("a restarted node drops log appends")
	}
	time.Sleep(time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval)
	if n.dropVote(vote) {
		t.Fatal("a restarted node still withholds votes after a full election timeout")
	}
	c.waitLen(ctx, 2, 1)
}
