package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/harness"
)

// TestClusterLeaveJoinUnderLoad is the operator's scenario over real processes: a controller
// and three groups; pairs loaded through go-redis's ClusterClient; `shoal ctl leave` and `join`
// while a ClusterClient keeps writing and reading; every pair stays readable and the clients see
// no error (redirects and retries are theirs to absorb).
func TestClusterLeaveJoinUnderLoad(t *testing.T) {
	c, err := harness.NewCluster(harness.ClusterOptions{Exe: shoalExe, Dir: t.TempDir(), Groups: 3, Replicas: 3,
		Controllers: 1, ExtraArgs: []string{"--tick", "50ms"}})
	if err != nil {
		t.Fatal(err)
	}
	startOwned(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	if err := c.JoinAll(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	var seeds []string
	for _, s := range c.Specs {
		if s.Group != 0 {
			seeds = append(seeds, s.ClientAddr)
		}
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds[:2], Protocol: 2, MaxRedirects: 8, ReadTimeout: 10 * time.Second})
	defer cc.Close()
	want := map[string]string{}
	for i := range 1000 {
		k, v := fmt.Sprintf("load:%d", i), fmt.Sprintf("v%d", i)
		if err := cc.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatalf("load %s: %v", k, err)
		}
		want[k] = v
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	var mu sync.Mutex
	written := map[string]string{}
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("live:%d:%d", w, i%200), fmt.Sprintf("%d", i)
				if err := cc.Set(ctx, k, v, 0).Err(); err != nil {
					t.Errorf("set %s during reconfiguration: %v", k, err)
					return
				}
				if got, err := cc.Get(ctx, k).Result(); err != nil || got != v {
					t.Errorf("get %s during reconfiguration = %q, %v; want %q", k, got, err, v)
					return
				}
				mu.Lock()
				written[k] = v
				mu.Unlock()
				ops.Add(1)
			}
		})
	}
	ctlAddr := strings.Join(c.ControllerAddrs(), ",")
	ctl := func(args ...string) string {
		out, err := exec.CommandContext(ctx, shoalExe, append([]string{"ctl", "--addr", ctlAddr}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("shoal ctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	time.Sleep(500 * time.Millisecond)
	out := ctl("leave", "1")
	if !strings.Contains(out, "all hand-offs done") {
		t.Fatalf("ctl leave did not follow the hand-offs to the end:\n%s", out)
	}
	var nodes []string
	for _, n := range c.GroupNodes(1) {
		nodes = append(nodes, fmt.Sprintf("%d=%s", n.ID, n.Addr))
	}
	out = ctl("join", "1", strings.Join(nodes, ","))
	if !strings.Contains(out, "all hand-offs done") {
		t.Fatalf("ctl join did not follow the hand-offs to the end:\n%s", out)
	}
	status := ctl("status")
	for _, g := range []string{"group 1:", "group 2:", "group 3:"} {
		if !strings.Contains(status, g) {
			t.Fatalf("ctl status lacks %q:\n%s", g, status)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d set+get pairs by the ClusterClient during leave and join", ops.Load())
	for k, v := range written {
		want[k] = v
	}
	// Every pair is readable through the ClusterClient and through a plain client on any node.
	plain := plainClient(seeds[len(seeds)-1])
	defer plain.Close()
	for k, v := range want {
		if got, err := cc.Get(ctx, k).Result(); err != nil || got != v {
			t.Fatalf("after reconfiguration %s = %q, %v; want %q", k, got, err, v)
		}
		if got, err := plain.Get(ctx, k).Result(); err != nil || got != v {
			t.Fatalf("plain client: %s = %q, %v; want %q", k, got, err, v)
		}
	}
}
