package client_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/client"
)

// shared is one group used by the tests that do not stop nodes.
var shared *cluster

func TestMain(m *testing.M) {
	c, err := startCluster(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start cluster:", err)
		os.Exit(1)
	}
	shared = c
	code := m.Run()
	c.close()
	os.Exit(code)
}

func newClient(t testing.TB, c *cluster, mod func(*client.Options)) *client.Client {
	t.Helper()
	o := client.Options{Seeds: c.seeds()}
	if mod != nil {
		mod(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.New(ctx, o)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// runID makes keys unique per test run, since the shared cluster outlives -count iterations.
var runID atomic.Int64

// uniq returns a key prefix unique to this test run.
func uniq(t testing.TB) string { return fmt.Sprintf("%s#%d:", t.Name(), runID.Add(1)) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCRUD(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	pre := uniq(t)
	k := func(s string) string { return pre + s }

	// Missing vs empty.
	if _, err := cl.Get(ctx, k("missing")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get missing: err = %v, want ErrNotFound", err)
	}
	if err := cl.Put(ctx, k("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, k("empty")); err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get empty = %q (nil=%v), %v; want empty non-nil", v, v == nil, err)
	}
	if ok, err := cl.Exists(ctx, k("empty")); err != nil || !ok {
		t.Fatalf("Exists empty = %v, %v", ok, err)
	}
	if ok, err := cl.Exists(ctx, k("missing")); err != nil || ok {
		t.Fatalf("Exists missing = %v, %v", ok, err)
	}

	// Put / Get / Swap.
	if err := cl.Put(ctx, k("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if v, err := cl.Get(ctx, k("a")); err != nil || string(v) != "1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if prev, existed, err := cl.Swap(ctx, k("a"), []byte("2")); err != nil || !existed || string(prev) != "1" {
		t.Fatalf("Swap = %q, %v, %v", prev, existed, err)
	}
	if prev, existed, err := cl.Swap(ctx, k("new"), []byte("x")); err != nil || existed || prev != nil {
		t.Fatalf("Swap new = %q, %v, %v", prev, existed, err)
	}
	if prev, existed, err := cl.Swap(ctx, k("empty"), []byte("y")); err != nil || !existed || prev == nil || len(prev) != 0 {
		t.Fatalf("Swap of empty value = %q, %v, %v", prev, existed, err)
	}

	// PutIfAbsent.
	if ok, err := cl.PutIfAbsent(ctx, k("nx"), []byte("first")); err != nil || !ok {
		t.Fatalf("PutIfAbsent new = %v, %v", ok, err)
	}
	if ok, err := cl.PutIfAbsent(ctx, k("nx"), []byte("second")); err != nil || ok {
		t.Fatalf("PutIfAbsent existing = %v, %v", ok, err)
	}
	if v, _ := cl.Get(ctx, k("nx")); string(v) != "first" {
		t.Fatalf("after PutIfAbsent: %q", v)
	}

	// Append.
	if n, err := cl.Append(ctx, k("log"), []byte("ab")); err != nil || n != 2 {
		t.Fatalf("Append = %d, %v", n, err)
	}
	if n, err := cl.Append(ctx, k("log"), []byte("cd")); err != nil || n != 4 {
		t.Fatalf("Append = %d, %v", n, err)
	}

	// Incr.
	if n, err := cl.Incr(ctx, k("ctr"), 5); err != nil || n != 5 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	if n, err := cl.Incr(ctx, k("ctr"), -7); err != nil || n != -2 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	_, err := cl.Incr(ctx, k("log"), 1)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "ERR" || !strings.Contains(se.Msg, "not an integer") {
		t.Fatalf("Incr of non-integer: %v (%T), want *ServerError", err, err)
	}

	// Delete.
	if ok, err := cl.Delete(ctx, k("a")); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if ok, err := cl.Delete(ctx, k("a")); err != nil || ok {
		t.Fatalf("Delete again = %v, %v", ok, err)
	}
	if _, err := cl.Get(ctx, k("a")); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("Get deleted: %v", err)
	}
}

func TestCompareAndSwap(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	key := uniq(t)
	if err := cl.Put(ctx, key, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	ok, err := cl.CompareAndSwap(ctx, key, []byte("v1"), []byte("v2"))
	if client.IsUnknownCommand(err) {
		t.Skip("server has no SHOAL.CAS yet:", err)
	}
	if err != nil || !ok {
		t.Fatalf("CAS matching = %v, %v", ok, err)
	}
	if ok, err := cl.CompareAndSwap(ctx, key, []byte("v1"), []byte("v3")); err != nil || ok {
		t.Fatalf("CAS stale = %v, %v", ok, err)
	}
	if ok, err := cl.CompareAndSwap(ctx, key+"missing", []byte(""), []byte("v3")); err != nil || ok {
		t.Fatalf("CAS missing key = %v, %v", ok, err)
	}
	if v, _ := cl.Get(ctx, key); string(v) != "v2" {
		t.Fatalf("value %q, want v2", v)
	}
}

func TestBulk(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	const n = 1000
	pre := uniq(t)
	kvs := make([]client.KV, n)
	keys := make([]string, n+1)
	for i := range kvs {
		kvs[i] = client.KV{Key: fmt.Sprintf("%sbulk:%d", pre, i), Value: []byte(fmt.Sprintf("v%d", i))}
		keys[i] = kvs[i].Key
	}
	kvs[7].Value = []byte{} // an empty value is found
	keys[n] = pre + "bulk:missing"
	if err := cl.PutMany(ctx, kvs); err != nil {
		t.Fatal(err)
	}
	items, err := cl.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items[:n] {
		if !it.Found || it.Key != keys[i] || !bytes.Equal(it.Value, kvs[i].Value) || it.Value == nil {
			t.Fatalf("item %d = %+v, want %q", i, it, kvs[i].Value)
		}
	}
	if items[n].Found {
		t.Fatalf("missing key found: %+v", items[n])
	}
	d, err := cl.DeleteMany(ctx, keys)
	if err != nil || d != n {
		t.Fatalf("DeleteMany = %d, %v; want %d", d, err, n)
	}
	items, err = cl.GetMany(ctx, keys[:10])
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Found {
			t.Fatalf("deleted key found: %+v", it)
		}
	}
}

func TestBulkPartialFailure(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	if err := cl.Put(ctx, "partial:text", []byte("abc")); err != nil {
		t.Fatal(err)
	}
	// GetMany has no per-key failure mode on a healthy cluster, so use a canceled context:
	// every key reports the cancellation.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := cl.GetMany(cctx, []string{"partial:a", "partial:b"})
	var be *client.BatchError
	if !errors.As(err, &be) || be.Failed != 2 || !errors.Is(err, context.Canceled) {
		t.Fatalf("GetMany with canceled ctx: %v", err)
	}
}

func TestScan(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	const n = 1000
	pre := fmt.Sprintf("scan%d:", runID.Add(1))
	want := map[string]string{}
	var kvs []client.KV
	for i := range n {
		k := fmt.Sprintf("%s%d", pre, i)
		want[k] = fmt.Sprint(i)
		kvs = append(kvs, client.KV{Key: k, Value: []byte(want[k])})
	}
	if err := cl.PutMany(ctx, kvs); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 7, 1000} {
		seq, errf := cl.Scan(ctx, client.ScanOptions{Match: pre + "*", PageSize: size})
		got := map[string]int{}
		for k, v := range seq {
			got[k]++
			if want[k] != string(v) {
				t.Fatalf("key %q = %q, want %q", k, v, want[k])
			}
		}
		if err := errf(); err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("page %d: scan returned %d distinct keys, want %d", size, len(got), n)
		}
		for k, c := range got {
			if c != 1 {
				t.Fatalf("page %d: key %q returned %d times", size, k, c)
			}
		}
	}
	// Stopping early is not an error.
	seq, errf := cl.Scan(ctx, client.ScanOptions{Match: pre + "1*"})
	count := 0
	for k := range seq {
		if !strings.HasPrefix(k, pre+"1") {
			t.Fatalf("key %q does not match", k)
		}
		if count++; count == 5 {
			break
		}
	}
	if err := errf(); err != nil || count != 5 {
		t.Fatalf("early stop: %d, %v", count, err)
	}
}

type user struct {
	Name string
	Age  int
}

// gobCodec is a binary Codec.
type gobCodec struct{}

func (gobCodec) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}
func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

func TestTyped(t *testing.T) {
	cl := newClient(t, shared, nil)
	ctx := testCtx(t)
	if err := client.PutJSON(ctx, cl, "typed:json", user{"ann", 41}); err != nil {
		t.Fatal(err)
	}
	u, err := client.GetJSON[user](ctx, cl, "typed:json")
	if err != nil || u != (user{"ann", 41}) {
		t.Fatalf("GetJSON = %+v, %v", u, err)
	}
	if raw, _ := cl.Get(ctx, "typed:json"); string(raw) != `{"Name":"ann","Age":41}` {
		t.Fatalf("stored %s", raw)
	}
	if _, err := client.GetJSON[user](ctx, cl, "typed:missing"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("GetJSON missing: %v", err)
	}
	if err := client.PutAs(ctx, cl, gobCodec{}, "typed:gob", user{"bob", 7}); err != nil {
		t.Fatal(err)
	}
	if u, err := client.GetAs[user](ctx, cl, gobCodec{}, "typed:gob"); err != nil || u != (user{"bob", 7}) {
		t.Fatalf("GetAs gob = %+v, %v", u, err)
	}
	if _, err := client.GetJSON[user](ctx, cl, "typed:gob"); err == nil {
		t.Fatal("decoding gob as JSON succeeded")
	}
}

func TestConcurrentPipelining(t *testing.T) {
	cl := newClient(t, shared, func(o *client.Options) { o.PoolSize = 2 })
	ctx := testCtx(t)
	var wg sync.WaitGroup
	var fails atomic.Int32
	for g := range 32 {
		wg.Go(func() {
			for i := range 50 {
				k := fmt.Sprintf("conc:%d:%d", g, i)
				if err := cl.Put(ctx, k, []byte(k)); err != nil {
					t.Error(err)
					fails.Add(1)
					return
				}
				if v, err := cl.Get(ctx, k); err != nil || string(v) != k {
					t.Errorf("Get %s = %q, %v", k, v, err)
					fails.Add(1)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestContextCancellation(t *testing.T) {
	ps, dial, err := proxies(shared)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range ps {
			p.close()
		}
	}()
	cl := newClient(t, shared, func(o *client.Options) { o.Dialer = dial })
	ctx := testCtx(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := cl.Get(cctx, "cancel:a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with canceled ctx: %v", err)
	}
	for _, p := range ps {
		p.delay.Store(int64(2 * time.Second))
	}
	start := time.Now()
	dctx, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	_, err = cl.Get(dctx, "cancel:a")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on a hung node: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("cancellation took %v", el)
	}
	for _, p := range ps {
		p.delay.Store(0)
	}
}

func TestCloseWaitsForInFlight(t *testing.T) {
	ps, dial, err := proxies(shared)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range ps {
			p.close()
		}
	}()
	cl := newClient(t, shared, func(o *client.Options) { o.Dialer = dial })
	ctx := testCtx(t)
	if err := cl.Put(ctx, "close:a", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.delay.Store(int64(300 * time.Millisecond))
	}
	done := make(chan error, 1)
	go func() {
		v, err := cl.Get(ctx, "close:a")
		if err == nil && string(v) != "v" {
			err = fmt.Errorf("got %q", v)
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cl.Close()
	el := time.Since(start)
	// The call finished inside Close; its goroutine may still be delivering the result.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("in-flight Get failed: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("in-flight call did not finish")
	}
	if el < 150*time.Millisecond {
		t.Fatalf("Close returned after %v, too early", el)
	}
	if _, err := cl.Get(ctx, "close:a"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	cl.Close() // idempotent
}

// TestNodeKilled stops the leader while clients write and read; every call must succeed.
func TestNodeKilled(t *testing.T) {
	c, err := startCluster(3)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	cl := newClient(t, c, func(o *client.Options) { o.ReadTimeout = 2 * time.Second })
	ctx := testCtx(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var ops atomic.Int64
	const workers = 8
	incs := make([]int64, workers)
	for w := range workers {
		wg.Go(func() {
			key := fmt.Sprintf("kill:%d", w)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := cl.Incr(ctx, key, 1); err != nil {
					t.Errorf("worker %d: Incr: %v", w, err)
					return
				}
				incs[w]++
				if err := cl.Put(ctx, fmt.Sprintf("kill:%d:%d", w, i%10), []byte("x")); err != nil {
					t.Errorf("worker %d: Put: %v", w, err)
					return
				}
				if _, err := cl.Get(ctx, key); err != nil {
					t.Errorf("worker %d: Get: %v", w, err)
					return
				}
				ops.Add(3)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	leader := c.leader()
	t.Logf("stopping leader %d after %d ops", leader, ops.Load())
	c.stop(leader)
	before := ops.Load()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	after := ops.Load()
	if after <= before {
		t.Fatalf("no progress after the leader stopped (%d ops before, %d after)", before, after)
	}
	t.Logf("%d ops after the leader stopped", after-before)
	// Every increment was acknowledged once; with sessions it also executed once.
	for w := range workers {
		v, err := cl.Get(ctx, fmt.Sprintf("kill:%d", w))
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		fmt.Sscan(string(v), &n)
		if cl.Sessions() && n != incs[w] {
			t.Errorf("worker %d: counter %d, acknowledged increments %d", w, n, incs[w])
		}
		if n < incs[w] {
			t.Errorf("worker %d: counter %d < acknowledged increments %d", w, n, incs[w])
		}
	}
}

// TestAtMostOnce drops the reply to an APPEND after the server executed it; the client retries
// on a new connection with the same session sequence number and the text is appended once.
func TestAtMostOnce(t *testing.T) {
	ctx := testCtx(t)
	ps, cl := viaProxies(t, ctx, client.Options{})
	key := uniq(t) + "log"
	if err := cl.Put(ctx, key, []byte("start;")); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		p.dropAppend.Store(1)
	}
	n, err := cl.Append(ctx, key, []byte("once;"))
	if err != nil {
		t.Fatal(err)
	}
	dropped := int32(0)
	for _, p := range ps {
		dropped += p.dropped.Load()
	}
	if dropped == 0 {
		t.Fatal("the proxy dropped no reply")
	}
	v, err := cl.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != "start;once;" || n != int64(len(v)) {
		t.Fatalf("value %q (Append returned %d), want %q", v, n, "start;once;")
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := client.New(context.Background(), client.Options{}); err == nil {
		t.Fatal("New without seeds succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := client.New(ctx, client.Options{Seeds: []string{"127.0.0.1:1"}, DialTimeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("New against a closed port succeeded")
	}
}

// TestBulkWritesBeyondRecords: a PutMany of more keys sharing a hash tag than the server keeps
// whole at-most-once results for (64 per client and slot), sent on two connections, whose first
// reply is lost with its connection: the writes that had not run yet run when retried, and the
// one that ran is not run again (its record is reduced to the fact that it ran, so its retry is
// refused as stale, an unknown outcome, and reported for its key alone): every pair is written.
// When the lowest record used to be dropped with the horizon raised over it, the 99 writes queued
// behind the lost reply were refused without ever running.
func TestBulkWritesBeyondRecords(t *testing.T) {
	ctx := testCtx(t)
	ps, cl := viaProxies(t, ctx, client.Options{PoolSize: 2})
	tag := "{" + uniq(t) + "}"
	kvs := make([]client.KV, 200)
	for i := range kvs {
		kvs[i] = client.KV{Key: fmt.Sprintf("%s:%d", tag, i), Value: []byte(fmt.Sprint(i))}
	}
	first := kvs[0].Key
	for _, p := range ps {
		p.dropKey.Store(&first)
	}
	err := cl.PutMany(ctx, kvs)
	var be *client.BatchError
	if err != nil && !errors.As(err, &be) {
		t.Fatalf("PutMany: %v", err)
	}
	for i := range kvs {
		if be == nil || be.Errs[i] == nil {
			continue
		}
		var se *client.ServerError
		if i != 0 || !errors.As(be.Errs[i], &se) || se.Code != "STALE" {
			t.Fatalf("key %d failed: %v (only the write whose reply was lost may, as stale)", i, be.Errs[i])
		}
	}
	dropped := int32(0)
	for _, p := range ps {
		dropped += p.dropped.Load()
	}
	if dropped == 0 { // each node's proxy drops once: a retry through another node may lose one too
		t.Fatal("the proxies dropped no reply")
	}
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.Key
	}
	items, err := cl.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if !it.Found || string(it.Value) != fmt.Sprint(i) {
			t.Fatalf("%s = %q (found %v), want %d", keys[i], it.Value, it.Found, i)
		}
	}
}

// viaProxies starts a proxy in front of every node of the shared cluster and returns them with
// a client that requires sessions and reaches the nodes through them (opts adds its settings);
// both are closed when the test ends.
func viaProxies(t *testing.T, ctx context.Context, opts client.Options) (map[string]*proxy, *client.Client) {
	t.Helper()
	ps, dial, err := proxies(shared)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range ps {
			p.close()
		}
	})
	opts.Seeds, opts.Dialer, opts.Sessions = shared.seeds(), dial, client.SessionsRequired
	cl, err := client.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return ps, cl
}
