package node_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// TestKeysExpireThroughNodes writes keys with short expiries through one node of a cluster of
// two groups of three (so that half are forwarded to the other group), by SET ... PX, PSETEX
// and PEXPIRE, and checks through every node that they live until their time and are gone
// after it, while a key with a long expiry stays.
func TestKeysExpireThroughNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := nodetest.NewCluster(t, 2, 3)
	c.WaitSettled(c.JoinAll().Num)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	via := plain(c.GroupAddrs(1)[0])
	defer via.Close()
	var clients []*redis.Client
	for _, a := range c.Addrs() {
		cl := plain(a)
		defer cl.Close()
		clients = append(clients, cl)
	}
	const ttl = 200 // milliseconds
	for _, gid := range []uint64{1, 2} {
		keys := c.KeysOwnedBy(gid, 4, "exp")
		short, long := keys[:3], keys[3]
		if err := via.Do(ctx, "SET", long, "v", "EX", "100").Err(); err != nil {
			t.Fatal(err)
		}
		if err := via.Do(ctx, "SET", short[2], "v").Err(); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range [][]any{
			{"SET", short[0], "v", "PX", ttl}, {"PSETEX", short[1], ttl, "v"}, {"PEXPIRE", short[2], ttl},
		} {
			if err := via.Do(ctx, cmd...).Err(); err != nil {
				t.Fatalf("%v: %v", cmd, err)
			}
		}
		// Every expiry was computed from the node's clock when its command arrived, which is
		// before now: by now+ttl every one has passed.
		gone := time.Now().Add(ttl * time.Millisecond)
		for _, cl := range clients {
			for _, k := range short {
				pttl, err := cl.PTTL(ctx, k).Result()
				if err != nil || pttl > ttl*time.Millisecond || pttl == -1*time.Nanosecond {
					t.Fatalf("group %d: PTTL %s = %v, %v; want at most %d ms", gid, k, pttl, err, ttl)
				}
			}
		}
		if time.Until(gone) > ttl/4*time.Millisecond { // skipped on a machine too slow to tell
			for _, k := range short {
				if v, err := via.Get(ctx, k).Result(); err != nil || v != "v" {
					t.Fatalf("group %d: %s = %q, %v before its expiry", gid, k, v, err)
				}
			}
		}
		time.Sleep(time.Until(gone) + time.Millisecond)
		for i, cl := range clients {
			for _, k := range short {
				if v, err := cl.Get(ctx, k).Result(); !errors.Is(err, redis.Nil) {
					t.Fatalf("group %d, node %d: %s = %q, %v after its expiry", gid, i, k, v, err)
				}
				if n, err := cl.Exists(ctx, k).Result(); err != nil || n != 0 {
					t.Fatalf("group %d, node %d: EXISTS %s = %d, %v after its expiry", gid, i, k, n, err)
				}
				if d, err := cl.PTTL(ctx, k).Result(); err != nil || d != -2*time.Nanosecond {
					t.Fatalf("group %d, node %d: PTTL %s = %v, %v after its expiry", gid, i, k, d, err)
				}
			}
			if d, err := cl.TTL(ctx, long).Result(); err != nil || d < 99*time.Second {
				t.Fatalf("group %d, node %d: TTL %s = %v, %v", gid, i, long, d, err)
			}
		}
		// An expired key is absent to writes too.
		if ok, err := via.SetNX(ctx, short[0], "again", 0).Result(); err != nil || !ok {
			t.Fatalf("group %d: SETNX on an expired key = %v, %v", gid, ok, err)
		}
		if n, err := via.Expire(ctx, short[1], time.Minute).Result(); err != nil || n {
			t.Fatalf("group %d: EXPIRE on an expired key = %v, %v", gid, n, err)
		}
	}
}
