package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shoal-kv/shoal/internal/freeport"
)

// startTestEtcd starts one etcd member (skipping the test when etcd is not installed) with
// --max-txn-ops maxTxn and returns its client URL; the member is stopped at cleanup.
func startTestEtcd(t *testing.T, maxTxn int) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed (scripts/install-bench-deps.sh)")
	}
	var ports freeport.Picker
	cp, err := ports.PortWith(0)
	if err != nil {
		t.Fatal(err)
	}
	pp, err := ports.PortWith(0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	curl := fmt.Sprintf("http://127.0.0.1:%d", cp)
	purl := fmt.Sprintf("http://127.0.0.1:%d", pp)
	procs := NewProcs(nil)
	t.Cleanup(procs.StopAll)
	if _, err := procs.Start("etcd", dir, filepath.Join(dir, "etcd.log"), "etcd", "--name", "e1",
		"--data-dir", filepath.Join(dir, "data"), "--listen-client-urls", curl, "--advertise-client-urls", curl,
		"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl, "--initial-cluster", "e1="+purl,
		"--max-txn-ops", fmt.Sprint(maxTxn), "--logger", "zap", "--log-level", "warn"); err != nil {
		t.Fatal(err)
	}
	return curl
}

// TestEtcdDriver drives one etcd member through EtcdDriver: a probe-style retry until it is
// up, single puts and linearizable gets, a SET batch split into transactions of etcdMaxTxnOps
// whose refused transaction counts as failed operations (not an error), a cancelled context
// as an error, and Close releasing the client's goroutines.
func TestEtcdDriver(t *testing.T) {
	// 100 < etcdMaxTxnOps: of a 200-SET batch the first transaction (128) is refused, the
	// second (72) applied.
	ep := startTestEtcd(t, 100)
	ctx := context.Background()
	baseline := runtime.NumGoroutine()

	var d *EtcdDriver
	err := waitFor(ctx, 30*time.Second, "etcd", func() error {
		var err error
		if d, err = NewEtcdDriver(ctx, ep); err != nil {
			return err
		}
		if _, err = d.Do(ctx, []Op{{Kind: OpSet, Key: []byte("probe"), Value: []byte("1")}}); err != nil {
			_ = d.Close()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	f, err := d.Do(ctx, []Op{{Kind: OpSet, Key: []byte("a"), Value: []byte("1")}, {Kind: OpGet, Key: []byte("a")},
		{Kind: OpGet, Key: []byte("absent")}})
	if err != nil || f != 0 {
		t.Fatalf("put/get: failed %d, err %v", f, err)
	}

	batch := make([]Op, 200)
	for i := range batch {
		batch[i] = Op{Kind: OpSet, Key: fmt.Appendf(nil, "k%03d", i), Value: []byte("v")}
	}
	if f, err := d.Do(ctx, batch); err != nil || f != etcdMaxTxnOps {
		t.Fatalf("200 sets with --max-txn-ops 100: failed %d, err %v; want %d refused, no error", f, err, etcdMaxTxnOps)
	}
	check, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"a": 1, "k000": 0, "k127": 0, "k128": 1, "k199": 1} {
		r, err := check.Get(ctx, key)
		if err != nil {
			t.Errorf("get %s: %v", key, err)
		} else if r.Count != want {
			t.Errorf("%s: count %d, want %d", key, r.Count, want)
		}
	}
	_ = check.Close()

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if f, err := d.Do(cctx, []Op{{Kind: OpGet, Key: []byte("a")}}); err == nil {
		t.Errorf("cancelled context: failed %d, no error", f)
	}

	if err := d.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// gRPC stops a closed connection's goroutines asynchronously: give them a moment.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseline && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > baseline {
		t.Errorf("%d goroutines after Close, %d before the driver", n, baseline)
	}
}

// TestEtcdDriverUnreachable: a member that is not listening fails NewEtcdDriver at once, so
// startEtcd's probe polls again instead of waiting out gRPC's reconnect backoff.
func TestEtcdDriverUnreachable(t *testing.T) {
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if d, err := NewEtcdDriver(context.Background(), fmt.Sprintf("http://127.0.0.1:%d", p)); err == nil {
		_ = d.Close()
		t.Fatal("connected to a closed port")
	}
	if el := time.Since(t0); el > etcdDialTimeout/2 {
		t.Errorf("took %v to fail", el)
	}
}
