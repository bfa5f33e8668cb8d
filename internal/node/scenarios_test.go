package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/linearize"
	"github.com/shoal-kv/shoal/internal/linearize/redisstore"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// TestStaticShardsOneGroupDown: with one group down, exactly its keys stop being served; after
// it restarts every key reads its value.
func TestStaticShardsOneGroupDown(t *testing.T) {
	c := nodetest.NewCluster(t, 2, 3)
	ctx := context.Background()
	c.Join(1)
	cfg := c.Join(2)
	c.WaitSettled(cfg.Num)
	k1, k2 := c.KeysOwnedBy(1, 5, "k"), c.KeysOwnedBy(2, 5, "k")
	cl := plain(c.GroupAddrs(1)[0])
	defer cl.Close()
	for _, k := range append(append([]string{}, k1...), k2...) {
		if err := cl.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.StopGroup(2)
	for _, k := range k1 {
		if v, err := cl.Get(ctx, k).Result(); err != nil || v != "v-"+k {
			t.Fatalf("group 1's key %s with group 2 down: %q, %v", k, v, err)
		}
	}
	for _, k := range k2 {
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := cl.Get(sctx, k).Result()
		cancel()
		if err == nil {
			t.Fatalf("group 2's key %s answered with group 2 down", k)
		}
	}
	c.StartGroup(2)
	for _, k := range k2 {
		var v string
		deadline := time.Now().Add(20 * time.Second)
		for {
			var err error
			if v, err = cl.Get(ctx, k).Result(); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if v != "v-"+k {
			t.Fatalf("after restart %s = %q", k, v)
		}
	}
}

// TestServesArrivedShardsWhileOthersAreStuck: one configuration gives group 3 every slot, so it
// gains shards from groups 1 and 2 at once; group 1 is dead, so only group 2's can arrive. Group 3 serves those at once, and group 3's own
// shards never stop serving.
func TestServesArrivedShardsWhileOthersAreStuck(t *testing.T) {
	c := nodetest.NewCluster(t, 3, 3)
	ctx := context.Background()
	c.Join(1)
	c.Join(2)
	cfg := c.Join(3)
	c.WaitSettled(cfg.Num)
	k1, k2, k3 := c.KeysOwnedBy(1, 5, "p"), c.KeysOwnedBy(2, 5, "p"), c.KeysOwnedBy(3, 5, "p")
	cl := plain(c.GroupAddrs(3)[0])
	defer cl.Close()
	for _, k := range append(append(append([]string{}, k1...), k2...), k3...) {
		if err := cl.Set(ctx, k, "v-"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.StopGroup(1)
	c.Ctrl.Do(t, func(st *controller.State) (controller.Config, error) { return st.Move(keyspace.All(), 3) })
	g3 := c.Groups[3].Nodes[1].Group()
	deadline := time.Now().Add(30 * time.Second)
	for _, k := range k2 {
		for !g3.Serves(keyspace.SlotString(k)) {
			if time.Now().After(deadline) {
				t.Fatalf("group 3 never received %s's slot from group 2", k)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, k := range k1 {
		if g3.Serves(keyspace.SlotString(k)) {
			t.Fatalf("group 3 serves %s's slot, which only the dead group 1 has", k)
		}
	}
	for _, k := range append(append([]string{}, k2...), k3...) {
		if v, err := cl.Get(ctx, k).Result(); err != nil || v != "v-"+k {
			t.Fatalf("%s = %q, %v: group 3 should serve its own and group 2's former keys", k, v, err)
		}
	}
	for _, k := range k1 {
		sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err := cl.Get(sctx, k).Result()
		cancel()
		if err == nil {
			t.Fatalf("key %s of the dead group answered", k)
		}
	}
	if err := cl.Set(ctx, k3[0], "new", 0).Err(); err != nil {
		t.Fatalf("write to group 3's own shard while another is stuck: %v", err)
	}
}

// TestNodeMissesConfigurations: a replica down across several configuration changes catches up
// from its peers and serves everything after restart.
func TestNodeMissesConfigurations(t *testing.T) {
	c := nodetest.NewCluster(t, 3, 3)
	ctx := context.Background()
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	cl := plain(c.GroupAddrs(1)[0])
	defer cl.Close()
	for i := range 200 {
		if err := cl.Set(ctx, fmt.Sprintf("m:%d", i), fmt.Sprint(i), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.Stop(2, 3)
	c.Join(2)
	c.Join(3)
	c.Leave(1)
	cfg = c.Join(1)
	c.WaitSettled(cfg.Num)
	c.Start(2, 3)
	c.WaitSettled(cfg.Num)
	lag := plain(c.Groups[2].Members[3].ClientAddr)
	defer lag.Close()
	for i := range 200 {
		if v, err := lag.Get(ctx, fmt.Sprintf("m:%d", i)).Result(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("via the lagging node: m:%d = %q, %v", i, v, err)
		}
	}
}

// TestLinearizableDuringReconfiguration runs concurrent clients doing GET/SET/APPEND through
// random nodes (so requests are forwarded) while groups join and leave, and checks the history.
func TestLinearizableDuringReconfiguration(t *testing.T) {
	c := nodetest.NewCluster(t, 3, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	checkLinearizable(t, ctx, c.Addrs(), func(*linearize.Recorder) {
		for _, change := range []func(){func() { c.Join(2) }, func() { c.Join(3) }, func() { c.Leave(1) }, func() { c.Join(1) }, func() { c.Leave(2) }} {
			time.Sleep(700 * time.Millisecond)
			change()
		}
		time.Sleep(time.Second)
	})
}

// checkLinearizable runs 5 clients doing GET/SET/APPEND through random nodes of addrs while
// during runs (faults, reconfigurations), then checks the history with porcupine. It requires
// 100 operations with a known outcome and returns the history.
func checkLinearizable(t *testing.T, ctx context.Context, addrs []string, during func(rec *linearize.Recorder)) []porcupine.Operation {
	t.Helper()
	rec := linearize.NewRecorder()
	// Enough keys that porcupine's per-key search stays short (see TestLinearizableUnderLeaderKill).
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "{a}x"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stores []linearize.Store
	for _, a := range addrs {
		cl := redis.NewClient(&redis.Options{Addr: a, Protocol: 2, MaxRetries: -1, ReadTimeout: 10 * time.Second})
		defer cl.Close()
		stores = append(stores, redisstore.New(cl))
	}
	for client := range 5 {
		wg.Go(func() { linearize.RunClient(ctx, rec, client, 11, keys, stores, stop) })
	}
	during(rec)
	close(stop)
	wg.Wait()
	ops := rec.Operations()
	unknown := 0
	for _, op := range ops {
		if op.Output.(linearize.Output).Unknown {
			unknown++
		}
	}
	t.Logf("%d operations, %d with unknown outcome", len(ops), unknown)
	if len(ops)-unknown < 100 {
		t.Fatalf("only %d operations completed", len(ops)-unknown)
	}
	viz := filepath.Join(t.TempDir(), "history.html")
	start := time.Now()
	res, err := rec.Check(90*time.Second, viz)
	t.Logf("linearizability check took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if res != porcupine.Ok {
		t.Fatalf("history not linearizable (%v); visualisation at %s", res, viz)
	}
	return ops
}

// TestSnapshotsAndFullRestart: with small snapshot intervals, shards move back and forth, then
// every node of every group restarts from its snapshots and WAL; all values survive exactly.
func TestSnapshotsAndFullRestart(t *testing.T) {
	c := nodetest.NewCluster(t, 3, 3)
	ctx := context.Background()
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	cl := plain(c.Addrs()[0])
	defer cl.Close()
	want := map[string]string{}
	write := func(round int) {
		for i := range 300 {
			k := fmt.Sprintf("s:%d", i)
			if err := cl.Append(ctx, k, fmt.Sprintf("%d,", round)).Err(); err != nil {
				t.Fatal(err)
			}
			want[k] += fmt.Sprintf("%d,", round)
		}
	}
	write(0)
	c.Join(2)
	write(1)
	c.Leave(1)
	write(2)
	c.Join(3)
	cfg = c.Join(1)
	write(3)
	c.WaitSettled(cfg.Num)
	snapshotted := 0
	for _, gid := range c.GroupIDs() {
		if st := c.Groups[gid].Nodes[1].Raft().Status(); st.SnapshotIndex > 0 {
			snapshotted++
		}
	}
	if snapshotted < 2 {
		t.Fatalf("only %d groups took a snapshot: the restart would not exercise snapshot recovery", snapshotted)
	}
	for _, gid := range c.GroupIDs() {
		c.StopGroup(gid)
	}
	for _, gid := range c.GroupIDs() {
		c.StartGroup(gid)
	}
	cl2 := plain(c.Addrs()[4])
	defer cl2.Close()
	for k, v := range want {
		if got, err := cl2.Get(ctx, k).Result(); err != nil || got != v {
			t.Fatalf("after full restart %s = %q, %v; want %q", k, got, err, v)
		}
	}
}

// TestLoadReportsDriveRebalance: one group's shards get all the traffic; the leaders' load
// reports reach the controller, and a load rebalance moves work off the busy group.
func TestLoadReportsDriveRebalance(t *testing.T) {
	c := nodetest.NewCluster(t, 2, 3)
	ctx := context.Background()
	c.JoinAll()
	hot := c.KeysOwnedBy(1, 50, "hot")
	cl := plain(c.GroupAddrs(1)[0])
	defer cl.Close()
	deadline := time.Now().Add(20 * time.Second)
	var loads map[uint64]float64
	for time.Now().Before(deadline) {
		for _, k := range hot {
			if err := cl.Set(ctx, k, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		loads = map[uint64]float64{}
		c.Ctrl.Do(t, func(st *controller.State) (controller.Config, error) {
			for _, l := range st.Reports() {
				for _, s := range l.Shards {
					loads[l.Group] += s.OpsPerSec
				}
			}
			return st.Latest(), nil
		})
		if loads[1] > 50 {
			break
		}
	}
	if loads[1] <= 50 {
		t.Fatalf("no load report shows group 1's traffic: %v", loads)
	}
	before, _ := c.Ctrl.Query(ctx, -1)
	after := c.Ctrl.Do(t, func(st *controller.State) (controller.Config, error) { return st.Rebalance() })
	if after.Num == before.Num {
		t.Fatalf("rebalance with group loads %v changed nothing", loads)
	}
	c.WaitSettled(after.Num)
	moved := 0
	for _, k := range hot {
		if after.Owner(keyspace.SlotString(k)) == 2 {
			moved++
		}
		if v, err := cl.Get(ctx, k).Result(); err != nil || v != "x" {
			t.Fatalf("%s after rebalance = %q, %v", k, v, err)
		}
	}
	if moved == 0 {
		t.Fatalf("rebalance moved none of the hot keys to the idle group")
	}
	t.Logf("loads %v; rebalance moved %d of %d hot keys to group 2", loads, moved, len(hot))
}
