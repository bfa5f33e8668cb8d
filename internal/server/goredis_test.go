package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/resp"
)

func TestGoRedisClient(t *testing.T) {
	e := startServer(t, nil)
	ctx := context.Background()
	// Protocol 3 is go-redis's default: HELLO 3 must fail so that it falls back to RESP2.
	rdb := redis.NewClient(&redis.Options{Addr: e.addr, MaxRetries: -1})
	defer rdb.Close()

	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	if _, err := rdb.Get(ctx, "nope").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET missing: %v", err)
	}
	if ok, err := rdb.SetNX(ctx, "k", "w", 0).Result(); err != nil || ok {
		t.Fatalf("SETNX existing = %v, %v", ok, err)
	}
	if ok, err := rdb.SetXX(ctx, "k", "w", 0).Result(); err != nil || !ok {
		t.Fatalf("SETXX existing = %v, %v", ok, err)
	}
	if old, err := rdb.SetArgs(ctx, "k", "x", redis.SetArgs{Get: true}).Result(); err != nil || old != "w" {
		t.Fatalf("SET GET = %q, %v", old, err)
	}
	if err := rdb.SetArgs(ctx, "k", "x", redis.SetArgs{TTL: time.Minute}).Err(); err != nil {
		t.Fatalf("SET EX: %v", err)
	}
	if d, err := rdb.TTL(ctx, "k").Result(); err != nil || d != time.Minute {
		t.Fatalf("TTL = %v, %v", d, err)
	}
	if ok, err := rdb.Persist(ctx, "k").Result(); err != nil || !ok {
		t.Fatalf("PERSIST = %v, %v", ok, err)
	}
	if err := rdb.Incr(ctx, "k").Err(); err == nil || err.Error() != "ERR value is not an integer or out of range" {
		t.Fatalf("INCR non-integer: %v", err)
	}
	if n, err := rdb.IncrBy(ctx, "ctr", 5).Result(); err != nil || n != 5 {
		t.Fatalf("INCRBY = %d, %v", n, err)
	}
	if err := rdb.MSet(ctx, "a", "1", "b", "2").Err(); err != nil {
		t.Fatal(err)
	}
	vals, err := rdb.MGet(ctx, "a", "zz", "b").Result()
	if err != nil || len(vals) != 3 || vals[0] != "1" || vals[1] != nil || vals[2] != "2" {
		t.Fatalf("MGET = %v, %v", vals, err)
	}
	var keys []string
	for it := rdb.Scan(ctx, 0, "*", 2).Iterator(); it.Next(ctx); {
		keys = append(keys, it.Val())
	}
	slices.Sort(keys)
	if want := []string{"a", "b", "ctr", "k"}; !slices.Equal(keys, want) {
		t.Fatalf("SCAN = %v, want %v", keys, want)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 4 {
		t.Fatalf("DBSIZE = %d, %v", n, err)
	}
	cmds, err := rdb.Command(ctx).Result()
	if err != nil {
		t.Fatalf("COMMAND: %v", err)
	}
	get := cmds["get"]
	if get == nil || get.Arity != 2 || !get.ReadOnly || get.FirstKeyPos != 1 {
		t.Fatalf("COMMAND get = %+v", get)
	}
	if mset := cmds["mset"]; mset == nil || mset.StepCount != 2 || mset.LastKeyPos != -1 {
		t.Fatalf("COMMAND mset = %+v", mset)
	}
	if len(cmds) != len(commandList) {
		t.Fatalf("COMMAND returned %d commands, want %d", len(cmds), len(commandList))
	}
	if n, err := rdb.Do(ctx, "COMMAND", "COUNT").Int(); err != nil || n != len(commandList) {
		t.Fatalf("COMMAND COUNT = %d, %v", n, err)
	}
	infoCmd := redis.NewCommandsInfoCmd(ctx, "command", "info", "get", "cluster|slots")
	_ = rdb.Process(ctx, infoCmd)
	info, err := infoCmd.Result()
	if err != nil || info["get"] == nil || info["cluster|slots"] == nil {
		t.Fatalf("COMMAND INFO = %v, %v", info, err)
	}
	if names, err := rdb.CommandList(ctx, nil).Result(); err != nil || !slices.Contains(names, "set") {
		t.Fatalf("COMMAND LIST = %v, %v", names, err)
	}
	shards, err := rdb.ClusterShards(ctx).Result()
	if err != nil || len(shards) != 1 || len(shards[0].Nodes) != 1 || shards[0].Nodes[0].Role != "master" ||
		shards[0].Slots[0].End != 16383 {
		t.Fatalf("CLUSTER SHARDS = %+v, %v", shards, err)
	}
	if name, err := rdb.ClientGetName(ctx).Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("CLIENT GETNAME = %q, %v", name, err)
	}
	list, err := rdb.ClientList(ctx).Result()
	if err != nil || !strings.Contains(list, "lib-name=go-redis") {
		t.Fatalf("CLIENT LIST = %q, %v", list, err)
	}
	if s, err := rdb.Info(ctx, "server").Result(); err != nil || !strings.Contains(s, "redis_mode:cluster") {
		t.Fatalf("INFO = %q, %v", s, err)
	}
}

func TestGoRedisClusterClient(t *testing.T) {
	e := startServer(t, nil)
	ctx := context.Background()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{e.addr}, MaxRedirects: 1})
	defer rdb.Close()

	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil || len(slots) != 1 || slots[0].Start != 0 || slots[0].End != 16383 ||
		len(slots[0].Nodes) != 1 || slots[0].Nodes[0].ID != testID1 || slots[0].Nodes[0].Addr != e.addr {
		t.Fatalf("CLUSTER SLOTS = %+v, %v", slots, err)
	}
	for i := range 50 {
		k := fmt.Sprintf("key:%d", i)
		if err := rdb.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	for i := range 50 {
		k := fmt.Sprintf("key:%d", i)
		if v, err := rdb.Get(ctx, k).Int(); err != nil || v != i {
			t.Fatalf("GET %s = %d, %v", k, v, err)
		}
	}
	// Multi-key commands fan out by slot (request_policy:multi_shard) and are aggregated.
	vals, err := rdb.MGet(ctx, "key:1", "key:2", "nope", "key:3").Result()
	if err != nil || len(vals) != 4 || vals[0] != "1" || vals[2] != nil || vals[3] != "3" {
		t.Fatalf("MGET = %v, %v", vals, err)
	}
	if err := rdb.MSet(ctx, "m1", "a", "m2", "b").Err(); err != nil {
		t.Fatalf("MSET: %v", err)
	}
	if n, err := rdb.Exists(ctx, "m1", "m2", "nope").Result(); err != nil || n != 2 {
		t.Fatalf("EXISTS = %d, %v", n, err)
	}
	if n, err := rdb.Del(ctx, "m1", "m2", "nope").Result(); err != nil || n != 2 {
		t.Fatalf("DEL = %d, %v", n, err)
	}
	if n, err := rdb.DBSize(ctx).Result(); err != nil || n != 50 {
		t.Fatalf("DBSIZE = %d, %v", n, err)
	}
	pipe := rdb.Pipeline()
	incrs := make([]*redis.IntCmd, 100)
	for i := range incrs {
		incrs[i] = pipe.Incr(ctx, fmt.Sprintf("c%d", i%7))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	for i, c := range incrs {
		if c.Val() != int64(i/7+1) {
			t.Fatalf("pipelined INCR %d = %d", i, c.Val())
		}
	}
}

// TestGoRedisRetriesTryAgain checks that an unavailable backend is retried by go-redis rather
// than surfaced, once it recovers within the retry budget.
func TestGoRedisRetriesTryAgain(t *testing.T) {
	e := startServer(t, nil)
	ctx := context.Background()
	e.be.mu.Lock()
	e.be.fail = group.ErrNotLeader
	e.be.mu.Unlock()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{e.addr},
		MinRetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond, MaxRedirects: 8})
	defer rdb.Close()
	go func() {
		time.Sleep(60 * time.Millisecond)
		e.be.mu.Lock()
		e.be.fail = nil
		e.be.mu.Unlock()
	}()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET during leader loss: %v", err)
	}
}

// staticBackend answers GET and SET without allocating, to measure the server's own cost.
type staticBackend struct{ *fakeBackend }

var staticVal = []byte("value")

func (staticBackend) Get(context.Context, []byte) ([]byte, bool, error) { return staticVal, true, nil }
func (staticBackend) Set(context.Context, group.SetArgs) (group.SetResult, error) {
	return group.SetResult{Done: true}, nil
}

func TestHotPathAllocations(t *testing.T) {
	s := New(Config{Backend: staticBackend{newFakeBackend()}, Topology: &fakeTopology{}, Logger: slog.New(slog.DiscardHandler)})
	defer s.cancel()
	c := &conn{s: s, w: resp.NewWriter(io.Discard)}
	get := [][]byte{[]byte("GET"), []byte("somekey")}
	set := [][]byte{[]byte("set"), []byte("somekey"), []byte("v"), []byte("NX")}
	c.exec(get) // builds the reusable request context
	for _, args := range [][][]byte{get, set} {
		if n := testing.AllocsPerRun(1000, func() { c.exec(args) }); n != 0 {
			t.Errorf("%s allocates %.1f times per command", args[0], n)
		}
	}
}
