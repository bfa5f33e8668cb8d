package client

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"
)

// SessionMode selects how writes obtain at-most-once execution.
type SessionMode int

const (
	// SessionsAuto (the default) sends every write inside a SHOAL.AT session when the cluster
	// supports it, which New checks once; against a server that does not, writes are sent as
	// plain commands and a write retried after a timeout or failover may execute twice, as
	// with any Redis client. A warning is logged in that case.
	SessionsAuto SessionMode = iota
	// SessionsRequired sends every write inside a SHOAL.AT session and makes New fail with
	// ErrSessionsUnsupported if the cluster does not support them.
	SessionsRequired
	// SessionsOff sends writes as plain commands.
	SessionsOff
)

// Defaults for zero Options fields.
const (
	DefaultPoolSize    = 4
	DefaultDialTimeout = 5 * time.Second
	DefaultReadTimeout = 10 * time.Second
	DefaultMaxRetries  = 20
	DefaultMinBackoff  = 5 * time.Millisecond
	DefaultMaxBackoff  = 500 * time.Millisecond
	DefaultBatchSize   = 512
	DefaultPageSize    = 100
)

// Options configure a [Client]. Only Seeds is required; every zero field takes its default.
type Options struct {
	// Seeds are "host:port" addresses of one or more cluster nodes, used to learn the slot map.
	// Nodes named by the map are used afterwards; the seeds are tried again whenever no known
	// node answers.
	Seeds []string
	// PoolSize is the number of pipelined connections per node (default 4). Many concurrent
	// calls share each connection.
	PoolSize int
	// DialTimeout bounds connecting, including TLS and AUTH (default 5 s).
	DialTimeout time.Duration
	// ReadTimeout is how long a connection may wait for a reply before it is considered dead and
	// closed, failing (and so retrying) every request pipelined on it (default 10 s). Servers
	// answer within their own request timeout (5 s) with a retryable error.
	ReadTimeout time.Duration
	// MaxRetries bounds the attempts of one call beyond the first (default 20). A negative value
	// means no bound other than the call's context.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the jittered exponential wait between attempts
	// (defaults 5 ms and 500 ms). A redirection (MOVED, ASK) is followed without waiting.
	MinBackoff, MaxBackoff time.Duration
	// BatchSize is the most commands one pipelined batch of a bulk call carries (default 512).
	BatchSize int
	// TLS, when set, makes every connection use TLS with this configuration. ServerName is filled
	// from the node's host when empty.
	TLS *tls.Config
	// Username and Password, when Password is set, authenticate every connection (AUTH).
	Username, Password string
	// Sessions selects at-most-once sessions for writes (default SessionsAuto).
	Sessions SessionMode
	// Dialer, when set, opens the TCP connections instead of a net.Dialer (for proxies and tests).
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives connection and routing events at debug and warning levels; nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.PoolSize <= 0 {
		o.PoolSize = DefaultPoolSize
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
