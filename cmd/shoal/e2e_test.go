package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/harness"
	"github.com/shoal-kv/shoal/internal/linearize"
	"github.com/shoal-kv/shoal/internal/linearize/redisstore"
)

// shoalExe is the binary the end-to-end tests run, built once by TestMain.
var shoalExe string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoal-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shoalExe = filepath.Join(dir, "shoal")
	out, err := exec.Command("go", "build", "-o", shoalExe, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build shoal: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startOwned starts every process of c and has the test stop them (by pid) when it ends,
// printing the tail of each process's log if the test failed.
func startOwned(t *testing.T, c *harness.Cluster) {
	t.Helper()
	t.Cleanup(func() {
		c.StopAll()
		if t.Failed() {
			for _, s := range c.Specs {
				if b, err := os.ReadFile(s.Log); err == nil {
					t.Logf("--- %s (last 2000 bytes):\n%s", s.Log, tail(b, 2000))
				}
			}
		}
	})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
}

// startGroup starts a 3-process group on free ports and stops it when the test ends.
func startGroup(t *testing.T) (*harness.Cluster, uint64) {
	t.Helper()
	c, err := harness.NewGroup(harness.Options{Exe: shoalExe, Dir: t.TempDir(), Replicas: 3,
		ExtraArgs: []string{"--tick", "50ms", "--snapshot-entries", "500"}})
	if err != nil {
		t.Fatal(err)
	}
	startOwned(t, c)
	leader, err := c.WaitLeader(t.Context(), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c, leader
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// plainClient talks to one node without cluster awareness and without retries, so that every
// outcome the test sees is the server's own.
func plainClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 8 * time.Second,
		WriteTimeout: 8 * time.Second, DialTimeout: time.Second, Protocol: 2})
}

// eventually retries f until it succeeds or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestKillLeaderKeepsAcknowledgedWrites(t *testing.T) {
	c, leader := startGroup(t)
	ctx := t.Context()
	acked := map[string]string{}
	lc := plainClient(c.Addr(leader))
	defer lc.Close()
	// Enough writes to cross several snapshots (--snapshot-entries 500), so recovery exercises
	// snapshot + WAL replay, not only the WAL.
	for i := range 1500 {
		k, v := fmt.Sprintf("key:%d", i), fmt.Sprintf("value:%d", i)
		if err := lc.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
		acked[k] = v
	}
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	newLeader, err := c.WaitLeader(ctx, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Fatalf("killed node %d still reported as leader", leader)
	}
	// Every acknowledged write is readable through every surviving node, and the group accepts
	// new writes.
	for _, s := range c.Specs {
		if s.ID == leader {
			continue
		}
		checkAll(t, s.ClientAddr, acked)
	}
	nc := plainClient(c.Addr(newLeader))
	defer nc.Close()
	for i := range 100 {
		k, v := fmt.Sprintf("after:%d", i), fmt.Sprintf("v%d", i)
		if err := nc.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatalf("set after failover: %v", err)
		}
		acked[k] = v
	}
	// The killed node comes back from its snapshot and WAL, catches up from its peers, and serves
	// everything, including the writes made while it was down.
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, func() error {
		_, err := harness.Call(c.Addr(leader), "GET", "after:99")
		return err
	})
	checkAll(t, c.Addr(leader), acked)
}

func checkAll(t *testing.T, addr string, want map[string]string) {
	t.Helper()
	cl := plainClient(addr)
	defer cl.Close()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 200)]
		keys = keys[len(batch):]
		var vals []any
		eventually(t, 15*time.Second, func() error {
			var err error
			vals, err = cl.MGet(t.Context(), batch...).Result()
			return err
		})
		for i, k := range batch {
			if vals[i] != want[k] {
				t.Fatalf("via %s: %s = %v, want %q", addr, k, vals[i], want[k])
			}
		}
	}
}

// TestLinearizableUnderLeaderKill runs 5 clients doing GET/SET/APPEND on a few keys through
// random nodes while the leader is SIGKILLed and restarted, and checks the history with porcupine.
func TestLinearizableUnderLeaderKill(t *testing.T) {
	c, leader := startGroup(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	rec := linearize.NewRecorder()
	// Porcupine checks each key's history on its own, at a cost that grows fast with its length
	// (and APPEND values grow with it): with the group serving ~1000 ops/s, 3 keys made the check
	// outlast its timeout on a loaded CI machine; 12 keys keep 5 clients contending on each.
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stores []linearize.Store
	for _, s := range c.Specs {
		cl := plainClient(s.ClientAddr)
		defer cl.Close()
		stores = append(stores, redisstore.New(cl))
	}
	for client := range 5 {
		wg.Go(func() { linearize.RunClient(ctx, rec, client, 7, keys, stores, stop) })
	}
	time.Sleep(2 * time.Second)
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	ops := rec.Operations()
	var ok, unknown int
	for _, op := range ops {
		if op.Output.(linearize.Output).Unknown {
			unknown++
		} else {
			ok++
		}
	}
	t.Logf("history: %d operations completed, %d with unknown outcome", ok, unknown)
	if ok < 50 {
		t.Fatalf("only %d operations completed: the cluster did not serve", ok)
	}
	viz := filepath.Join(t.TempDir(), "history.html")
	start := time.Now()
	res, err := rec.Check(90*time.Second, viz)
	t.Logf("linearizability check took %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	switch res {
	case porcupine.Illegal:
		t.Fatalf("history is not linearizable (visualisation: %s)", viz)
	case porcupine.Unknown:
		t.Fatalf("linearizability check timed out")
	}
}

// TestClusterClientAndTools checks the wire contract with go-redis's ClusterClient, and with
// redis-cli and redis-benchmark when they are installed.
func TestClusterClientAndTools(t *testing.T) {
	c, _ := startGroup(t)
	ctx := t.Context()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Specs[1].ClientAddr}, Protocol: 2})
	defer cc.Close()
	for i := range 50 {
		if err := cc.Set(ctx, fmt.Sprintf("{user%d}.name", i), "n", 0).Err(); err != nil {
			t.Fatalf("cluster client set: %v", err)
		}
	}
	if v, err := cc.Get(ctx, "{user7}.name").Result(); err != nil || v != "n" {
		t.Fatalf("cluster client get = %q, %v", v, err)
	}
	if n, err := cc.Incr(ctx, "counter").Result(); err != nil || n != 1 {
		t.Fatalf("incr = %d, %v", n, err)
	}
	if cli, err := exec.LookPath("redis-cli"); err == nil {
		host, port, _ := strings.Cut(c.Specs[2].ClientAddr, ":")
		out, err := exec.CommandContext(ctx, cli, "-c", "-h", host, "-p", port, "set", "tool", "42").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Fatalf("redis-cli set: %v %s", err, out)
		}
		for _, s := range c.Specs {
			host, port, _ := strings.Cut(s.ClientAddr, ":")
			out, err := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "get", "tool").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "42" {
				t.Fatalf("redis-cli get via node %d: %v %s", s.ID, err, out)
			}
		}
	} else {
		t.Log("redis-cli not installed; .ci/run installs it")
	}
	if bench, err := exec.LookPath("redis-benchmark"); err == nil {
		host, port, _ := strings.Cut(c.Specs[0].ClientAddr, ":")
		out, err := exec.CommandContext(ctx, bench, "-h", host, "-p", port, "-t", "set,get", "-n", "5000", "-c", "20", "-q").CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "error") {
			t.Fatalf("redis-benchmark: %v\n%s", err, out)
		}
		t.Logf("redis-benchmark: %s", strings.TrimSpace(string(out)))
	} else {
		t.Log("redis-benchmark not installed; .ci/run installs it")
	}
}
