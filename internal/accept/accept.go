// Package accept holds what Shoal's listeners share: the client port, the controller's port and
// the raft transport each listen on TCP, optionally behind TLS, and accept connections until they
// are closed, backing off on temporary failures rather than spinning.
package accept

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Listen listens on the TCP address addr, behind TLS when cfg is not nil (the handshake then
// runs at a connection's first read or write, on the goroutine serving it). ctx bounds only the
// listen itself.
func Listen(ctx context.Context, addr string, cfg *tls.Config) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// Backoff bounds the delay between retries of a failed Accept.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Loop accepts connections from ln and passes each to handle, until ln is closed or ctx is done.
// An Accept that fails otherwise (out of file descriptors, say) is retried after a delay that
// doubles from 5ms up to 1s and starts again after a success, as net/http does: a tight retry
// loop would burn the CPU the rest of the process needs to recover.
func Loop(ctx context.Context, ln net.Listener, log *slog.Logger, handle func(net.Conn)) {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			delay = min(max(2*delay, minBackoff), maxBackoff)
			log.Warn("accept failed; retrying", "err", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		handle(nc)
	}
}
