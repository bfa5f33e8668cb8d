package controller

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/resp"
)

type testReplica struct {
	svc *Service
	srv *Server
}

type testCluster struct {
	t        *testing.T
	dir      string
	peers    map[uint64]string
	addrs    map[uint64]string // RESP addresses, fixed across restarts
	replicas map[uint64]*testReplica
	auto     time.Duration
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

// newTestCluster starts 3 replicas on fresh ports. A port picked by freeAddr can be taken by
// someone else before the replica binds it (the picking listener is closed first), so a start
// that fails to bind is retried on new ports.
func newTestCluster(t *testing.T, auto time.Duration) *testCluster {
	for attempt := 0; ; attempt++ {
		c := &testCluster{t: t, dir: t.TempDir(), peers: map[uint64]string{}, addrs: map[uint64]string{},
			replicas: map[uint64]*testReplica{}, auto: auto}
		var pk freeport.Picker
		for id := uint64(1); id <= 3; id++ {
			c.peers[id], c.addrs[id] = freeAddr(t, &pk), freeAddr(t, &pk)
		}
		var err error
		for id := uint64(1); id <= 3 && err == nil; id++ {
			err = c.tryStart(id)
		}
		if err != nil {
			for id := range c.replicas {
				c.stop(id)
			}
			if attempt < 5 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			t.Fatal(err)
		}
		t.Cleanup(func() {
			for id := range c.replicas {
				c.stop(id)
			}
		})
		return c
	}
}

// start (re)starts replica id on its fixed addresses, retrying briefly while a port is busy.
func (c *testCluster) start(id uint64) {
	for attempt := 0; ; attempt++ {
		err := c.tryStart(id)
		if err == nil {
			return
		}
		if attempt >= 50 || !strings.Contains(err.Error(), "address already in use") {
			c.t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) tryStart(id uint64) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc, err := StartService(context.Background(), ServiceConfig{ID: id, Peers: c.peers,
		Dir: filepath.Join(c.dir, fmt.Sprint(id)), TickInterval: 20 * time.Millisecond,
		SnapshotEntries: 10, AutoInterval: c.auto, Logger: logger})
	if err != nil {
		return err
	}
	srv := NewServer(ServerConfig{Addr: c.addrs[id], Backend: svc, RequestTimeout: time.Second, Logger: logger})
	if err := srv.Start(context.Background()); err != nil {
		svc.Close()
		return err
	}
	c.replicas[id] = &testReplica{svc: svc, srv: srv}
	return nil
}

func (c *testCluster) stop(id uint64) {
	r := c.replicas[id]
	r.srv.Close()
	r.svc.Close()
	delete(c.replicas, id)
}

func (c *testCluster) client() *Client {
	var addrs []string
	for id := uint64(1); id <= 3; id++ {
		addrs = append(addrs, c.addrs[id])
	}
	cl := NewClient(addrs)
	cl.AttemptTimeout = 1500 * time.Millisecond
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func (c *testCluster) leader() uint64 {
	for {
		for id, r := range c.replicas {
			if r.svc.Node().IsLeader() {
				return id
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raw sends one command to one replica and returns the reply.
func raw(t *testing.T, addr string, args ...string) resp.Value {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	cmd := make([][]byte, len(args))
	for i, a := range args {
		cmd[i] = []byte(a)
	}
	if _, err := conn.Write(resp.AppendCommand(nil, cmd...)); err != nil {
		t.Fatal(err)
	}
	v, err := resp.NewReader(bufio.NewReader(conn), resp.Limits{}).ReadValue()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestServiceOperations(t *testing.T) {
	c := newTestCluster(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.client()

	if v := raw(t, c.addrs[2], "PING"); string(v.Str) != "PONG" {
		t.Fatalf("PING: %+v", v)
	}
	for gid := uint64(1); gid <= 3; gid++ {
		num, err := cl.Join(ctx, gid, nodes(gid))
		if err != nil || num != gid {
			t.Fatalf("join %d: num %d err %v", gid, num, err)
		}
	}
	cfg, err := cl.Query(ctx, -1)
	if err != nil || cfg.Num != 3 || len(cfg.Groups) != 3 || cfg.Validate() != nil {
		t.Fatalf("query: %+v %v", cfg.Num, err)
	}
	checkBalanced(t, cfg, map[uint64]bool{1: true, 2: true, 3: true})
	if !reflect.DeepEqual(cfg.Groups[2].Nodes, nodes(2)) {
		t.Fatalf("nodes of group 2: %+v", cfg.Groups[2].Nodes)
	}
	num, err := cl.Move(ctx, rg(0, 10), 3)
	if err != nil || num != 4 {
		t.Fatalf("move: %d %v", num, err)
	}
	if num, err = cl.Split(ctx, rg(10, 256), 100); err != nil || num != 5 {
		t.Fatalf("split: %d %v", num, err)
	}
	owner := cfg.Owner(10)
	if num, err = cl.Merge(ctx, rg(100, 256), rg(10, 100)); err != nil || num != 6 {
		t.Fatalf("merge: %d %v", num, err)
	}
	// Refused operations: *OpError with the reason, and no new configuration.
	var oe *OpError
	if _, err := cl.Leave(ctx, 42); !errors.As(err, &oe) || !strings.Contains(oe.Msg, "unknown group 42") {
		t.Fatalf("leave unknown: %v", err)
	}
	if _, err := cl.Merge(ctx, rg(0, 10), rg(10, 256)); !errors.As(err, &oe) {
		t.Fatalf("merge of different groups: %v", err)
	}
	if v := raw(t, c.addrs[1], "CTL", "MOVE", "5", "3", "1"); v.Type != '-' || !strings.HasPrefix(string(v.Str), "ERR bad slot range") {
		t.Fatalf("bad range reply: %q", v.Str)
	}
	if v := raw(t, c.addrs[1], "CTL", "FROB"); v.Type != '-' || !strings.HasPrefix(string(v.Str), "ERR unknown CTL subcommand") {
		t.Fatalf("unknown subcommand reply: %q", v.Str)
	}
	if v := raw(t, c.addrs[1], "CTL", "JOIN", "9", "x"); v.Type != '-' || !strings.Contains(string(v.Str), "want id=addr") {
		t.Fatalf("bad nodes reply: %q", v.Str)
	}
	// Every replica answers every query, linearizably: all see config 6 and identical history.
	for id := uint64(1); id <= 3; id++ {
		one := NewClient([]string{c.addrs[id]})
		for n := int64(0); n <= 6; n++ {
			got, err := one.Query(ctx, n)
			want, _ := cl.Query(ctx, n)
			if err != nil || got.Num != uint64(n) || !reflect.DeepEqual(got, want) {
				t.Fatalf("replica %d config %d: %v", id, n, err)
			}
		}
		one.Close()
	}
	last, _ := cl.Query(ctx, 6)
	if last.Owner(10) != owner || last.exactShard(rg(10, 256)) < 0 {
		t.Fatalf("merge result: %v", last.Shards[:3])
	}

	// Load: group 1's first shard is hot; rebalance splits and moves it.
	hot := last.Shards[last.shardIndex(8000)]
	rep := Report{Group: hot.Group, Shards: []ShardLoad{{Range: hot.Range, OpsPerSec: 5000, Bytes: 1 << 20, Keys: 1000}}}
	if err := cl.Report(ctx, rep); err != nil {
		t.Fatal(err)
	}
	if err := cl.Report(ctx, Report{Group: 77}); !errors.As(err, &oe) {
		t.Fatalf("report of unknown group: %v", err)
	}
	num, err = cl.Rebalance(ctx)
	if err != nil || num != 7 {
		t.Fatalf("rebalance: %d %v", num, err)
	}
	st, err := cl.Status(ctx)
	if err != nil || st.Config.Num != 7 || len(st.Reports) != 1 || st.Auto || st.Node.Leader == 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if after, _ := cl.Query(ctx, -1); after.Owner(hot.Range.Lo) == after.Owner(hot.Range.Hi-1) {
		t.Fatalf("hot shard not spread: %v", hot)
	}
	if err := cl.SetAuto(ctx, true); err != nil {
		t.Fatal(err)
	}
	if st, _ := cl.Status(ctx); !st.Auto {
		t.Fatal("auto not set")
	}
}

func TestServiceDeduplicates(t *testing.T) {
	c := newTestCluster(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.client()
	if _, err := cl.Join(ctx, 1, nodes(1)); err != nil {
		t.Fatal(err)
	}
	// The same request (client 5, seq 1) sent to different replicas executes once.
	join := []string{"CTL", "JOIN", "2", "1=a:1", "SEQ", "5", "1"}
	var nums []int64
	for _, id := range []uint64{1, 2, 3, 1} {
		v := raw(t, c.addrs[id], join...)
		if v.Type != ':' {
			t.Fatalf("reply %q", v.Str)
		}
		nums = append(nums, v.Int)
	}
	if !reflect.DeepEqual(nums, []int64{2, 2, 2, 2}) {
		t.Fatalf("config numbers %v", nums)
	}
	// Leave then a retry of the earlier join: it must not re-join the group.
	if v := raw(t, c.addrs[2], "CTL", "LEAVE", "2", "SEQ", "5", "2"); v.Int != 3 {
		t.Fatalf("leave: %+v", v)
	}
	if v := raw(t, c.addrs[3], join...); v.Type != '-' || !strings.Contains(string(v.Str), "stale request") {
		t.Fatalf("stale retry: %q %d", v.Str, v.Int)
	}
	cfg, _ := cl.Query(ctx, -1)
	if cfg.Num != 3 || len(cfg.Groups) != 1 {
		t.Fatalf("after dedup: num %d groups %v", cfg.Num, cfg.GroupIDs())
	}
}

func TestServiceFailoverAndRestart(t *testing.T) {
	c := newTestCluster(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	cl := c.client()
	for gid := uint64(1); gid <= 4; gid++ {
		if _, err := cl.Join(ctx, gid, nodes(gid)); err != nil {
			t.Fatal(err)
		}
	}
	// Enough entries for snapshots (SnapshotEntries 10) and compaction.
	for i := range 15 {
		rep := Report{Group: 1, Shards: []ShardLoad{{Range: rg(0, 256), OpsPerSec: float64(i)}}}
		if err := cl.Report(ctx, rep); err != nil {
			t.Fatal(err)
		}
	}
	want, _ := cl.Query(ctx, -1)
	lead := c.leader()
	c.stop(lead)
	// The survivors elect a leader; the client finds it through any replica.
	num, err := cl.Leave(ctx, 2)
	if err != nil || num != want.Num+1 {
		t.Fatalf("leave after leader loss: %d %v", num, err)
	}
	c.start(lead)
	one := NewClient([]string{c.addrs[lead]})
	defer one.Close()
	got, err := one.Query(ctx, int64(num))
	if err != nil || got.Num != num || len(got.Groups) != 3 {
		t.Fatalf("restarted replica: %+v %v", got.Num, err)
	}
	// A full restart recovers everything from snapshots and WALs.
	st1, _ := cl.Status(ctx)
	for id := uint64(1); id <= 3; id++ {
		c.stop(id)
	}
	for id := uint64(1); id <= 3; id++ {
		c.start(id)
	}
	st2, err := cl.Status(ctx)
	if err != nil || !reflect.DeepEqual(st1.Config, st2.Config) || !reflect.DeepEqual(st1.Reports, st2.Reports) {
		t.Fatalf("after full restart: %v", err)
	}
	if st2.Reports[0].Shards[0].OpsPerSec != 14 {
		t.Fatalf("latest report lost: %+v", st2.Reports)
	}
}

func TestServiceConcurrentClients(t *testing.T) {
	c := newTestCluster(t, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for i := range 5 {
		cl := c.client()
		wg.Go(func() {
			base := uint64(100 * (i + 1))
			for j := range uint64(4) {
				if _, err := cl.Join(ctx, base+j, nodes(base+j)); err != nil {
					errs <- err
					return
				}
			}
			if _, err := cl.Leave(ctx, base); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cl := c.client()
	last, _ := cl.Query(ctx, -1)
	if last.Num != 25 || len(last.Groups) != 15 {
		t.Fatalf("num %d groups %d", last.Num, len(last.Groups))
	}
	// Every configuration of the sequence is valid and each one differs from its predecessor by
	// exactly one join or leave.
	prev, _ := cl.Query(ctx, 0)
	for n := int64(1); n <= 25; n++ {
		cur, err := cl.Query(ctx, n)
		if err != nil || cur.Validate() != nil || abs(len(cur.Groups)-len(prev.Groups)) != 1 {
			t.Fatalf("config %d: %v", n, err)
		}
		live := map[uint64]bool{}
		for _, id := range cur.GroupIDs() {
			live[id] = true
		}
		checkBalanced(t, cur, live)
		prev = cur
	}
}

func TestServiceAutoRebalance(t *testing.T) {
	c := newTestCluster(t, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.client()
	cl.Join(ctx, 1, nodes(1))
	cl.Join(ctx, 2, nodes(2))
	cfg, _ := cl.Query(ctx, -1)
	hot := cfg.Shards[0]
	if err := cl.Report(ctx, Report{Group: hot.Group, Shards: []ShardLoad{{Range: hot.Range, OpsPerSec: 1000}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if now, _ := cl.Query(ctx, -1); now.Num != cfg.Num {
		t.Fatal("rebalanced while auto is off")
	}
	if err := cl.SetAuto(ctx, true); err != nil {
		t.Fatal(err)
	}
	for {
		now, err := cl.Query(ctx, -1)
		if err != nil {
			t.Fatal(err)
		}
		if now.Num > cfg.Num {
			if now.Owner(hot.Range.Lo) == now.Owner(hot.Range.Hi-1) {
				t.Fatalf("auto rebalance did not spread the hot shard")
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}
