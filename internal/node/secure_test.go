package node_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

const secureUsers = `
internal  int-pw  all
app       app-pw  read,write
reader    rd-pw   read
`

// secureConfig returns a Configure hook enabling TLS everywhere and access control, with the
// internal user for node-to-node traffic, and the TLS set the test's clients use.
func secureConfig(t *testing.T) (func(*node.Config), *tlsconf.Set) {
	t.Helper()
	set, err := tlsconf.DemoSet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	specs, err := auth.ParseUsers(strings.NewReader(secureUsers))
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore(specs)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *node.Config) {
		c.Auth, c.InternalUser, c.InternalPassword = st, "internal", "int-pw"
		c.ClientTLS, c.PeerTLS, c.DialTLS = set.Server, set.Peer, set.Client
	}, set
}

func tlsClient(addr string, cfg *tls.Config, user, pass string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, TLSConfig: tlsconf.ForAddr(cfg, addr),
		Username: user, Password: pass, MaxRetries: 5, ReadTimeout: 10 * time.Second,
		MinRetryBackoff: 20 * time.Millisecond})
}

// TestSecureCluster runs two groups with mutual TLS between replicas, TLS on client ports and
// access control: raft, forwarding between groups and shard hand-offs all keep working with
// the internal user's credentials, while clients get exactly their rights.
func TestSecureCluster(t *testing.T) {
	configure, set := secureConfig(t)
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 2, Replicas: 3, Configure: configure})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	addrs := c.Addrs()
	app := tlsClient(addrs[0], set.Client, "app", "app-pw")
	defer app.Close()
	for i := range 200 {
		if err := app.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("set k%d: %v", i, err)
		}
	}
	// Group 2 joins: half the shards move to it through SHOAL.PULL over TLS with AUTH.
	cfg = c.Join(2)
	c.WaitSettled(cfg.Num)
	if n := len(c.KeysOwnedBy(2, 1, "probe")); n == 0 {
		t.Fatal("group 2 owns nothing after joining")
	}
	// Every key is readable from every node: a node forwards keys of the other group.
	for _, a := range addrs {
		rd := tlsClient(a, set.Client, "reader", "rd-pw")
		for i := range 200 {
			if v, err := rd.Get(ctx, fmt.Sprintf("k%d", i)).Result(); err != nil || v != fmt.Sprint(i) {
				t.Fatalf("via %s: k%d = %q, %v", a, i, v, err)
			}
		}
		err := rd.Set(ctx, "k1", "x", 0).Err()
		if err == nil || err.Error() != "NOPERM User reader has no permissions to run the 'set' command" {
			t.Fatalf("reader SET via %s: %v", a, err)
		}
		rd.Close()
	}
	// Forwarded writes from a node of the other group.
	for _, k := range c.KeysOwnedBy(2, 20, "fw") {
		if err := app.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("forwarded set %s: %v", k, err)
		}
	}
	// Without credentials, or without TLS, nothing works.
	anon := tlsClient(addrs[1], set.Client, "", "")
	defer anon.Close()
	if err := anon.Get(ctx, "k1").Err(); err == nil || err.Error() != "NOAUTH Authentication required." {
		t.Fatalf("unauthenticated GET: %v", err)
	}
	plainCl := redis.NewClient(&redis.Options{Addr: addrs[1], Protocol: 2, Username: "app", Password: "app-pw",
		MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer plainCl.Close()
	if err := plainCl.Get(ctx, "k1").Err(); err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("plaintext client on a TLS port: %v", err)
	}
}

// TestMaxMemoryNode fills a node up to --maxmemory: writes then fail with Redis's OOM error
// while reads and DEL go on, and writes resume once deletes free memory.
func TestMaxMemoryNode(t *testing.T) {
	const limit = 4 << 20
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 1, Replicas: 1,
		Configure: func(cfg *node.Config) { cfg.MaxMemory = limit }})
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := plain(c.Addrs()[0])
	defer cl.Close()
	val := strings.Repeat("v", 8<<10)
	n := 0
	var err error
	for ; n < 10000; n++ {
		if err = cl.Set(ctx, fmt.Sprintf("m%d", n), val, 0).Err(); err != nil {
			break
		}
	}
	if err == nil || err.Error() != "OOM command not allowed when used memory > 'maxmemory'." {
		t.Fatalf("after %d writes of 8 KiB under a 4 MiB limit: %v", n, err)
	}
	if n < 200 {
		t.Fatalf("OOM after only %d writes of 8 KiB under a 4 MiB limit", n)
	}
	used := c.Groups[1].Nodes[1].Group().Table().Bytes()
	if used < limit || used > limit+limit/4 {
		t.Fatalf("table holds %d bytes at OOM, limit %d", used, limit)
	}
	// Every acknowledged write is there; the refused one is not.
	for i := range n {
		if v, err := cl.Get(ctx, fmt.Sprintf("m%d", i)).Result(); err != nil || len(v) != len(val) {
			t.Fatalf("m%d after OOM: %d bytes, %v", i, len(v), err)
		}
	}
	if err := cl.Get(ctx, fmt.Sprintf("m%d", n)).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("refused write is visible: %v", err)
	}
	if err := cl.Incr(ctx, "counter").Err(); err == nil {
		t.Fatal("INCR accepted over the limit")
	}
	for i := range n {
		if err := cl.Del(ctx, fmt.Sprintf("m%d", i)).Err(); err != nil {
			t.Fatalf("DEL over the limit: %v", err)
		}
	}
	if err := cl.Set(ctx, "after", "ok", 0).Err(); err != nil {
		t.Fatalf("write after deletes freed memory (table %d bytes): %v", c.Groups[1].Nodes[1].Group().Table().Bytes(), err)
	}
}
