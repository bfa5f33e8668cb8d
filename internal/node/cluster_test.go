package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

func plain(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: 5, ContextTimeoutEnabled: true,
		ReadTimeout: 10 * time.Second, MinRetryBackoff: 20 * time.Millisecond})
}

// TestJoinLeaveMovesDataAndForwards loads keys through plain clients (which need forwarding),
// moves every shard around with joins and leaves, and checks that every pair survives, that
// given-away shards are deleted, and that go-redis's ClusterClient works throughout.
func TestJoinLeaveMovesDataAndForwards(t *testing.T) {
	c := nodetest.NewCluster(t, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	addrs := c.Addrs()
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
	cfg = c.Join(2)
	put("b", 100) // writes while shards move
	cfg = c.Join(3)
	c.WaitSettled(cfg.Num)
	check()
	// Every group holds about a third of the keys, and no group keeps copies of what it gave
	// away.
	total := 0
	for gid, g := range c.Groups {
		n := g.Nodes[1].Group().Table().Len()
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
	cfg = c.Leave(1)
	put("c", 100)
	c.WaitSettled(cfg.Num)
	if n := c.Groups[1].Nodes[1].Group().Table().Len(); n != 0 {
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
