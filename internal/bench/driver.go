package bench

import (
	"context"
	"time"
)

// OpKind is a benchmark operation.
type OpKind uint8

// Operations of the Go generator: GET and SET, mapped to etcd's range and put.
const (
	OpGet OpKind = iota
	OpSet
)

// Op is one operation: a key and, for a SET, its value. The slices belong to the worker and
// stay valid only during Do.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte
}

// Driver issues operations over one client connection. A worker owns one Driver; Drivers are
// not safe for concurrent use.
type Driver interface {
	// Do executes ops, pipelined when the protocol allows it, and returns how many of them the
	// server refused (error replies that retries did not cure). A non-nil error means the
	// connection is unusable and the worker must stop.
	Do(ctx context.Context, ops []Op) (failed int, err error)
	// Close releases the connection.
	Close() error
}

// DriverFactory opens the Driver of worker i (0-based); workers are spread over the target's
// endpoints by i.
type DriverFactory func(ctx context.Context, i int) (Driver, error)

// opTimeout bounds one batch when the context carries no deadline: a server that stops
// answering must fail the measurement, not hang the run.
const opTimeout = 10 * time.Second

// retryPause is how long a worker waits before retrying an operation a cluster asked to retry
// (TRYAGAIN, CLUSTERDOWN during an election).
const retryPause = 20 * time.Millisecond
