package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
)

// etcdMaxTxnOps is etcd's default --max-txn-ops: a batch of SETs is sent as transactions of at
// most this many puts.
const etcdMaxTxnOps = 128

// etcdDialTimeout bounds establishing a driver's connection. clientv3 connects lazily and would
// otherwise make the first operation wait for it (inside the measured duration); a member that
// is not listening must fail the driver quickly, so startEtcd's probe can poll again.
const etcdDialTimeout = 5 * time.Second

// etcdMaxRetries caps clientv3's own retries of an RPC that failed as Unavailable (its default
// is 100): the same bound RESPDriver gives TRYAGAIN, so both kinds of target are treated alike,
// and an election costs a few retries rather than the whole op timeout.
const etcdMaxRetries = 5

// EtcdDriver speaks to one etcd member through etcd's own Go client (go.etcd.io/etcd/client/v3,
// gRPC): SET is a Put, GET a Get, which clientv3 makes linearizable by default, like Shoal's
// GET. Each driver owns one clientv3.Client configured with a single endpoint, so it holds one
// gRPC (HTTP/2) connection to one member, the analogue of one RESP connection; N workers are N
// connections.
type EtcdDriver struct {
	cli *clientv3.Client
	txn []clientv3.Op // reused across batches of SETs
}

// NewEtcdDriver connects to the member whose client URL is endpoint ("http://127.0.0.1:2379")
// and waits, at most etcdDialTimeout and while ctx lasts, until the connection is up, so that
// dialling happens before a load's clock starts.
func NewEtcdDriver(ctx context.Context, endpoint string) (*EtcdDriver, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          []string{endpoint},
		DialTimeout:        etcdDialTimeout,
		Logger:             zap.NewNop(), // clientv3 logs retries and reconnects; the report is the output
		MaxUnaryRetries:    etcdMaxRetries,
		BackoffWaitBetween: retryPause,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", endpoint, err)
	}
	if err := waitConnected(ctx, cli); err != nil {
		_ = cli.Close()
		return nil, fmt.Errorf("etcd %s: %w", endpoint, err)
	}
	return &EtcdDriver{cli: cli}, nil
}

// waitConnected makes cli's connection leave idle and waits until it is ready. A transient
// failure (nothing listening yet) is returned at once rather than waited through: gRPC's
// reconnect backoff would hold the caller for seconds, and callers poll (startEtcd) or fail the
// load anyway.
func waitConnected(ctx context.Context, cli *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, etcdDialTimeout)
	defer cancel()
	conn := cli.ActiveConnection()
	conn.Connect()
	for {
		switch s := conn.GetState(); s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("connect: %s", s)
		default:
			if !conn.WaitForStateChange(ctx, s) {
				return fmt.Errorf("connect: %w", ctx.Err())
			}
		}
	}
}

// Do implements Driver. A clientv3 call blocks until its answer, so a batch of GETs or a mix
// runs one operation after another (no pipelining); a batch of only SETs (preloading) becomes
// transactions of up to etcdMaxTxnOps puts, which is how a bulk load into etcd is done. Each
// request gets its own opTimeout, so a member that stops answering fails the worker instead of
// hanging it, and clientv3's retries cannot outlast the bound.
func (d *EtcdDriver) Do(ctx context.Context, ops []Op) (int, error) {
	allSets := len(ops) > 1
	for _, op := range ops {
		if op.Kind != OpSet {
			allSets = false
			break
		}
	}
	failed := 0
	if allSets {
		for len(ops) > 0 {
			n := min(len(ops), etcdMaxTxnOps)
			d.txn = d.txn[:0]
			for _, op := range ops[:n] {
				d.txn = append(d.txn, clientv3.OpPut(string(op.Key), string(op.Value)))
			}
			opCtx, cancel := context.WithTimeout(ctx, opTimeout)
			_, err := d.cli.Txn(opCtx).Then(d.txn...).Commit()
			cancel()
			if refused(err) {
				failed += n
			} else if err != nil {
				return failed, fmt.Errorf("etcd txn: %w", err)
			}
			ops = ops[n:]
		}
		return failed, nil
	}
	for _, op := range ops {
		var err error
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		if op.Kind == OpSet {
			_, err = d.cli.Put(opCtx, string(op.Key), string(op.Value))
		} else {
			_, err = d.cli.Get(opCtx, string(op.Key)) // linearizable: no WithSerializable
		}
		cancel()
		if refused(err) {
			failed++
		} else if err != nil {
			return failed, fmt.Errorf("etcd %s: %w", opName(op.Kind), err)
		}
	}
	return failed, nil
}

// refused reports whether err is etcd's answer refusing the request (an etcdserver or mvcc
// error such as "too many requests", "request timed out" or "too many operations in txn
// request"), as opposed to a failure to get an answer at all (connection lost, op timeout, the
// run's context ended). The first counts as a failed operation; the second stops the worker.
func refused(err error) bool {
	var ee rpctypes.EtcdError
	return err != nil && errors.As(err, &ee)
}

func opName(k OpKind) string {
	if k == OpSet {
		return "put"
	}
	return "get"
}

// Close implements Driver: it closes the client, which closes its connection and stops its
// goroutines.
func (d *EtcdDriver) Close() error {
	if err := d.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd close: %w", err)
	}
	return nil
}
