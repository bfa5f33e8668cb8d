package raftnode

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/freeport"
)

// listSM is a state machine that keeps every applied payload, so replicas can be compared.
type listSM struct {
	mu   sync.Mutex
	data []string
}

func (s *listSM) Apply(_ uint64, d []byte) {
	s.mu.Lock()
	s.data = append(s.data, string(d))
	s.mu.Unlock()
}

func (s *listSM) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for _, d := range s.data {
		b = binary.AppendUvarint(b, uint64(len(d)))
		b = append(b, d...)
	}
	return b, nil
}

func (s *listSM) Restore(b []byte) error {
	var out []string
	for len(b) > 0 {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return fmt.Errorf("corrupt snapshot")
		}
		out = append(out, string(b[n:n+int(l)]))
		b = b[n+int(l):]
	}
	s.mu.Lock()
	s.data = out
	s.mu.Unlock()
	return nil
}

func (s *listSM) snapshotOf() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.data...)
}

type testCluster struct {
	t     *testing.T
	dir   string
	peers map[uint64]string
	nodes map[uint64]*Node
	sms   map[uint64]*listSM
	// configure, when set, adjusts every node's configuration before it starts.
	configure func(*Config)
}

// freeAddr returns a free 127.0.0.1 address; pass one Picker for all the addresses of a cluster
// so that none repeats (nil: a single address).
func freeAddr(t testing.TB, pk *freeport.Picker) string {
	if pk == nil {
		pk = new(freeport.Picker)
	}
	a, err := pk.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newTestCluster(t *testing.T, n int, configure ...func(*Config)) *testCluster {
	c := &testCluster{t: t, dir: t.TempDir(), peers: map[uint64]string{}, nodes: map[uint64]*Node{}, sms: map[uint64]*listSM{}}
	if len(configure) > 0 {
		c.configure = configure[0]
	}
	var pk freeport.Picker
	for i := 1; i <= n; i++ {
		c.peers[uint64(i)] = freeAddr(t, &pk)
	}
	for id := range c.peers {
		c.start(id)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Stop()
		}
	})
	return c
}

func (c *testCluster) start(id uint64) {
	sm := &listSM{}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := Config{ID: id, Peers: c.peers, Dir: filepath.Join(c.dir, fmt.Sprint(id)),
		TickInterval: 20 * time.Millisecond, SnapshotEntries: 100, CatchUpEntries: 20, Logger: logger}
	if c.configure != nil {
		c.configure(&cfg)
	}
	n, err := New(cfg, sm)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id], c.sms[id] = n, sm
}

func (c *testCluster) stop(id uint64) {
	c.nodes[id].Stop()
	delete(c.nodes, id)
}

// propose retries until the payload is applied on node via. Raft may drop a proposal silently
// (no leader, or a follower forwarding to a leader that just died), so a re-proposal can apply the
// same payload twice; the test compares replicas with each other, which must agree regardless.
func (c *testCluster) propose(ctx context.Context, via uint64, data string) {
	for {
		if err := c.nodes[via].Propose(ctx, []byte(data)); err == nil {
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				d := c.sms[via].snapshotOf()
				if len(d) > 0 && slices.Contains(d[max(0, len(d)-50):], data) {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		if ctx.Err() != nil {
			c.t.Fatalf("propose %q: %v", data, ctx.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// warmLeader commits a first entry through node 1 and returns the leader node 1 then knows.
func (c *testCluster) warmLeader(ctx context.Context) uint64 {
	c.propose(ctx, 1, "warm")
	for {
		if lead := c.nodes[1].Leader(); lead != 0 {
			return lead
		}
		if ctx.Err() != nil {
			c.t.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLen waits until node id's barrier confirms it has applied at least n payloads.
func (c *testCluster) waitLen(ctx context.Context, id uint64, n int) []string {
	for {
		if err := c.nodes[id].ReadBarrier(ctx); err == nil {
			if d := c.sms[id].snapshotOf(); len(d) >= n {
				return d
			}
		}
		if ctx.Err() != nil {
			c.t.Fatalf("node %d: applied %d of %d", id, len(c.sms[id].snapshotOf()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReplicateSnapshotAndCatchUp(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 300 {
		c.propose(ctx, uint64(i%3+1), fmt.Sprintf("a%d", i))
	}
	want := c.waitLen(ctx, 1, 300)
	for id := range c.nodes {
		if got := c.waitLen(ctx, id, 300); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("node %d diverged", id)
		}
	}
	// Node 3 misses many entries; the others snapshot and compact past them, so it must catch up
	// from a snapshot sent by the leader.
	c.stop(3)
	for i := range 400 {
		c.propose(ctx, uint64(i%2+1), fmt.Sprintf("b%d", i))
	}
	want = c.waitLen(ctx, 1, 700)
	if got := c.waitLen(ctx, 2, len(want)); fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("nodes 1 and 2 diverged")
	}
	if st := c.nodes[1].Status(); st.SnapshotIndex == 0 {
		t.Fatalf("no snapshot taken after 700 entries: %+v", st)
	}
	c.start(3)
	if got := c.waitLen(ctx, 3, len(want)); fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("node 3 caught up to a different log")
	}
	// A full restart of every node recovers from snapshot + WAL alone.
	for id := range c.peers {
		c.stop(id)
	}
	for id := range c.peers {
		c.start(id)
	}
	for id := range c.peers {
		if got := c.waitLen(ctx, id, len(want)); fmt.Sprint(got[:len(want)]) != fmt.Sprint(want) {
			t.Fatalf("node %d recovered a different log", id)
		}
	}
}

func TestReadBarrierWithoutQuorumTimesOut(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.propose(ctx, 1, "x")
	c.waitLen(ctx, 1, 1)
	c.stop(2)
	c.stop(3)
	// A lease taken before the others stopped may still be valid (no other leader can exist
	// yet): wait it out.
	time.Sleep(c.nodes[1].leaseDuration())
	// With two of three replicas gone no read can be proven current: the barrier must fail rather
	// than serve a possibly stale value.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	if err := c.nodes[1].ReadBarrier(rctx); err == nil {
		t.Fatal("read barrier succeeded without a quorum")
	}
}

// The leader drops commit notices to followers that wait for nothing (commitOnly), but a
// follower whose own proposals raft forwarded must still learn each commit at once, not from the
// next heartbeat: with heartbeats half a second apart, twenty writes through a follower would
// take seconds.
func TestForwardedProposalsApplyWithoutWaitingForHeartbeats(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.HeartbeatTicks, cfg.ElectionTicks = 25, 50 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	follower := c.warmLeader(ctx)%3 + 1
	start := time.Now()
	for i := range 20 {
		n0 := len(c.sms[follower].snapshotOf())
		if err := c.nodes[follower].Propose(ctx, []byte(fmt.Sprint("f", i))); err != nil {
			t.Fatal(err)
		}
		for len(c.sms[follower].snapshotOf()) == n0 {
			if ctx.Err() != nil {
				t.Fatal("forwarded proposal never applied on its follower")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("20 forwarded proposals took %v: the follower waited for heartbeats to learn commits", took)
	}
}

// Writes proposed on the leader reach followers that forwarded nothing without a commit notice
// each: the leader drops those (commitOnly), and the followers still converge (from later appends
// and heartbeats).
func TestLeaderDropsCommitNoticesToIdleFollowers(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lead := c.warmLeader(ctx)
	// The warm-up may have been forwarded by a follower: wait until no follower counts as
	// waiting any more, so that every notice from here on is one the rule applies to.
	time.Sleep(c.nodes[lead].waitingFor() + 50*time.Millisecond)
	before := c.nodes[lead].Status().NoticesDropped
	for i := range 20 {
		c.propose(ctx, lead, fmt.Sprint("w", i))
	}
	if got := c.nodes[lead].Status().NoticesDropped - before; got < 20 {
		t.Fatalf("leader dropped %d commit notices over 20 sequential writes to 2 idle followers; want most of 40", got)
	}
	for id := range c.nodes {
		c.waitLen(ctx, id, 21)
	}
}

// A restarted node reports the term and commit index it recovered, before raft has any reason
// to report a new HardState.
func TestStatusAfterRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.propose(ctx, 1, "x")
	c.waitLen(ctx, 2, 1)
	before := c.nodes[2].Status()
	if before.Term == 0 || before.Commit == 0 {
		t.Fatalf("status before restart: %+v", before)
	}
	c.stop(2)
	c.start(2)
	if got := c.nodes[2].Status(); got.Term < before.Term || got.Commit == 0 {
		t.Fatalf("restarted node reports term %d commit %d, had term %d commit %d",
			got.Term, got.Commit, before.Term, before.Commit)
	}
}
