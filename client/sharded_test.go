package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/client"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// shardedClient starts 3 groups of 3 in-process nodes, joins them, and connects a client.
func shardedClient(t *testing.T) (*nodetest.Cluster, *client.Client) {
	t.Helper()
	c := nodetest.NewCluster(t, 3, 3)
	c.JoinAll()
	cl, err := client.New(context.Background(), client.Options{Seeds: c.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}

// TestFollowsShardMoves keeps reading and writing through the client while groups leave and
// join: the client follows MOVED (and waits out slots in flight) with no error reaching the
// caller, and every acknowledged write is read back.
func TestFollowsShardMoves(t *testing.T) {
	c, cl := shardedClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var kvs []client.KV
	for i := range 500 {
		kvs = append(kvs, client.KV{Key: fmt.Sprintf("mv:%d", i), Value: []byte(fmt.Sprint(i))})
	}
	if err := cl.PutMany(ctx, kvs); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops, errs atomic.Int64
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("mv:%d", (i*7+w)%500)
				v := fmt.Sprintf("w%d-%d", w, i)
				if err := cl.Put(ctx, k, []byte(v)); err != nil {
					errs.Add(1)
					t.Errorf("put %s during moves: %v", k, err)
					return
				}
				got, err := cl.Get(ctx, k)
				if err != nil || (string(got) != v && got[0] != 'w') {
					errs.Add(1)
					t.Errorf("get %s after put = %q, %v", k, got, err)
					return
				}
				ops.Add(1)
			}
		})
	}
	for _, change := range []func(){func() { c.Leave(1) }, func() { c.Join(1) }, func() { c.Leave(2) }, func() { c.Join(2) }} {
		time.Sleep(400 * time.Millisecond)
		change()
	}
	cfg, _ := c.Ctrl.Query(ctx, -1)
	c.WaitSettled(cfg.Num)
	close(stop)
	wg.Wait()
	if errs.Load() > 0 {
		t.FailNow()
	}
	t.Logf("%d put+get pairs during 4 reconfigurations", ops.Load())
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprintf("mv:%d", i)
	}
	items, err := cl.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if !it.Found {
			t.Fatalf("%s lost across shard moves", it.Key)
		}
	}
}

// TestScanWhileShardsMove: a walk that starts before shards move and ends after returns every
// key present for the whole walk at least once.
func TestScanWhileShardsMove(t *testing.T) {
	c, cl := shardedClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var kvs []client.KV
	for i := range 2000 {
		kvs = append(kvs, client.KV{Key: fmt.Sprintf("sc:%d", i), Value: []byte("v")})
	}
	if err := cl.PutMany(ctx, kvs); err != nil {
		t.Fatal(err)
	}
	seq, errf := cl.Scan(ctx, client.ScanOptions{PageSize: 50})
	seen := map[string]int{}
	n := 0
	for k := range seq {
		seen[k]++
		n++
		switch n {
		case 300:
			c.Leave(1)
		case 900:
			c.Join(1)
		case 1400:
			c.Leave(3)
		}
	}
	if err := errf(); err != nil {
		t.Fatal(err)
	}
	for _, kv := range kvs {
		if seen[kv.Key] == 0 {
			t.Fatalf("scan missed %s (saw %d distinct keys)", kv.Key, len(seen))
		}
	}
	t.Logf("scan returned %d keys, %d distinct", n, len(seen))
}

// TestBulkDuringFailover: a PutMany that runs while a group's leader stops completes, and every
// pair is stored.
func TestBulkDuringFailover(t *testing.T) {
	c, cl := shardedClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var kvs []client.KV
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprintf("fo:%d", i)
		kvs = append(kvs, client.KV{Key: keys[i], Value: []byte(keys[i])})
	}
	done := make(chan error, 1)
	go func() { done <- cl.PutMany(ctx, kvs) }()
	time.Sleep(50 * time.Millisecond)
	if l := c.Leader(2); l != 0 {
		c.Stop(2, l)
	}
	if err := <-done; err != nil {
		t.Fatalf("PutMany across a failover: %v", err)
	}
	items, err := cl.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if !it.Found || string(it.Value) != it.Key {
			t.Fatalf("%s = %q, %v after failover", it.Key, it.Value, it.Found)
		}
	}
}
