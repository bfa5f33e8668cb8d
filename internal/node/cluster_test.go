package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/migrate"
)

// memController is an in-memory stand-in for the replicated controller service: the same
// deterministic State, behind a mutex.
type memController struct {
	mu sync.Mutex
	st *controller.State
}

func (m *memController) Query(_ context.Context, num int64) (*controller.Config, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.st.Query(num)
	return &c, nil
}

func (m *memController) do(t *testing.T, f func(st *controller.State) (controller.Config, error)) controller.Config {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := f(m.st)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type testGroup struct {
	gid   uint64
	dir   string
	mem   map[uint64]Member
	nodes map[uint64]*Node
}

type testCluster struct {
	t      *testing.T
	ctrl   *memController
	groups map[uint64]*testGroup
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newTestCluster(t *testing.T, groups, replicas int) *testCluster {
	c := &testCluster{t: t, ctrl: &memController{st: controller.NewState()}, groups: map[uint64]*testGroup{}}
	for g := 1; g <= groups; g++ {
		tg := &testGroup{gid: uint64(g), dir: t.TempDir(), mem: map[uint64]Member{}, nodes: map[uint64]*Node{}}
		for id := 1; id <= replicas; id++ {
			tg.mem[uint64(id)] = Member{ClientAddr: freePort(t), PeerAddr: freePort(t)}
		}
		c.groups[tg.gid] = tg
		for id := range tg.mem {
			c.start(tg.gid, id)
		}
	}
	t.Cleanup(func() {
		for _, g := range c.groups {
			for _, n := range g.nodes {
				n.Close()
			}
		}
	})
	return c
}

func (c *testCluster) start(gid, id uint64) {
	g := c.groups[gid]
	lvl := slog.LevelWarn
	if os.Getenv("SHOAL_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("g", gid, "n", id)
	n, err := Start(context.Background(), Config{
		ID: id, GroupID: gid, Dir: filepath.Join(g.dir, fmt.Sprint(id)), Members: g.mem,
		TickInterval: 20 * time.Millisecond, SnapshotEntries: 300, Controller: []string{"mem"},
		NewController: func([]string) migrate.Controller { return c.ctrl }, Logger: logger,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	g.nodes[id] = n
}

func (c *testCluster) join(gid uint64) controller.Config {
	g := c.groups[gid]
	var nodes []controller.Node
	for id := uint64(1); id <= uint64(len(g.mem)); id++ {
		nodes = append(nodes, controller.Node{ID: id, Addr: g.mem[id].ClientAddr})
	}
	return c.ctrl.do(c.t, func(st *controller.State) (controller.Config, error) { return st.Join(gid, nodes) })
}

func (c *testCluster) leave(gid uint64) controller.Config {
	return c.ctrl.do(c.t, func(st *controller.State) (controller.Config, error) { return st.Leave(gid) })
}

// waitSettled waits until every running node's group has applied configuration num and
// finished its hand-offs.
func (c *testCluster) waitSettled(num uint64) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ok := true
		for _, g := range c.groups {
			for _, n := range g.nodes {
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

func (c *testCluster) addrs() []string {
	var out []string
	for _, g := range c.groups {
		for id := uint64(1); id <= uint64(len(g.mem)); id++ {
			if g.nodes[id] != nil {
				out = append(out, g.mem[id].ClientAddr)
			}
		}
	}
	return out
}

func plain(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: 5, ContextTimeoutEnabled: true,
		ReadTimeout: 10 * time.Second, MinRetryBackoff: 20 * time.Millisecond})
}

// TestJoinLeaveMovesDataAndForwards loads keys through plain clients (which need forwarding),
// moves every shard around with joins and leaves, and checks that every pair survives, that
// given-away shards are deleted, and that go-redis's ClusterClient works throughout.
func TestJoinLeaveMovesDataAndForwards(t *testing.T) {
	c := newTestCluster(t, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cfg := c.join(1)
	c.waitSettled(cfg.Num)
	addrs := c.addrs()
	want := map[string]string{}
	put := func(prefix string, n int) {
		for i := range n {
			k, v := fmt.Sprintf("%s:%d", prefix, i), fmt.Sprintf("v%d", i)
			cl := plain(addrs[i%len(addrs)])
			if err := cl.Set(ctx, k, v, 0).Err(); err != nil {
				t.Fatalf("set %s via %s: %v", k, addrs[i%len(addrs)], err)
			}
			cl.Close()
			want[k] = v
		}
	}
	check := func() {
		t.Helper()
		for i, a := range addrs {
			cl := plain(a)
			for k, v := range want {
				got, err := cl.Get(ctx, k).Result()
				if err != nil || got != v {
					t.Fatalf("via node %d (%s): %s = %q, %v; want %q", i, a, k, got, err, v)
				}
			}
			cl.Close()
		}
	}
	put("a", 300)
	cfg = c.join(2)
	put("b", 100) // writes while shards move
	cfg = c.join(3)
	c.waitSettled(cfg.Num)
	check()
	// Every group holds about a third of the keys, and no group keeps copies of what it gave
	// away.
	total := 0
	for gid, g := range c.groups {
		n := g.nodes[1].Group().Table().Len()
		if n == 0 || n == len(want) {
			t.Fatalf("group %d holds %d of %d keys after rebalancing", gid, n, len(want))
		}
		total += n
	}
	if total != len(want) {
		t.Fatalf("groups hold %d pairs in all, want exactly %d (given-away shards must be deleted)", total, len(want))
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs[:1], Protocol: 2})
	defer cc.Close()
	for k, v := range want {
		if got, err := cc.Get(ctx, k).Result(); err != nil || got != v {
			t.Fatalf("cluster client: %s = %q, %v", k, got, err)
		}
	}
	cfg = c.leave(1)
	put("c", 100)
	c.waitSettled(cfg.Num)
	if n := c.groups[1].nodes[1].Group().Table().Len(); n != 0 {
		t.Fatalf("group 1 left but still holds %d pairs", n)
	}
	check()
	// A multi-key command spanning groups is fanned out by the server instead of CROSSSLOT.
	cl := plain(addrs[0])
	defer cl.Close()
	if err := cl.MSet(ctx, "x1", "1", "x2", "2", "x3", "3", "x4", "4").Err(); err != nil {
		t.Fatalf("cross-group MSET: %v", err)
	}
	vals, err := cl.MGet(ctx, "x1", "x2", "x3", "x4", "missing").Result()
	if err != nil || fmt.Sprint(vals) != "[1 2 3 4 <nil>]" {
		t.Fatalf("cross-group MGET = %v, %v", vals, err)
	}
	if n, err := cl.Del(ctx, "x1", "x2", "x3", "x4").Result(); err != nil || n != 4 {
		t.Fatalf("cross-group DEL = %d, %v", n, err)
	}
	// SCAN through one node walks the whole cluster.
	seen := map[string]bool{}
	var cursor uint64
	for {
		keys, next, err := cl.Scan(ctx, cursor, "", 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			seen[k] = true
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	for k := range want {
		if !seen[k] {
			t.Fatalf("cluster-wide SCAN missed %s (saw %d keys)", k, len(seen))
		}
	}
}
