// Package rpc is the small pooled RESP client servers use to talk to each other: forwarding a
// plain client's request to the group that owns its key, and pulling or releasing slots during a
// hand-off.
package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

// Pool keeps idle connections per address. The zero value is not usable; use New.
type Pool struct {
	mu      sync.Mutex
	idle    map[string][]*conn
	closed  bool
	maxIdle int
	dial    time.Duration
}

type conn struct {
	nc net.Conn
	r  *resp.Reader
	w  *bufio.Writer
}

// New returns a pool keeping up to maxIdle idle connections per address.
func New(maxIdle int) *Pool {
	return &Pool{idle: make(map[string][]*conn), maxIdle: maxIdle, dial: 2 * time.Second}
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("rpc: pool closed")

// Do sends one command to addr and returns its reply. An error reply is returned as a Value of
// type '-', not as an error: errors are transport failures, after which the outcome is unknown.
func (p *Pool) Do(ctx context.Context, addr string, args ...[]byte) (resp.Value, error) {
	c, err := p.get(ctx, addr)
	if err != nil {
		return resp.Value{}, err
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	_ = c.nc.SetDeadline(deadline)
	// Cancelling ctx unblocks the read by moving the deadline into the past.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	v, err := c.roundTrip(args)
	stopped := stop()
	if err != nil || !stopped {
		c.nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return resp.Value{}, fmt.Errorf("rpc %s: %w", addr, err)
	}
	p.put(addr, c)
	return v, nil
}

func (c *conn) roundTrip(args [][]byte) (resp.Value, error) {
	if _, err := c.w.Write(resp.AppendCommand(nil, args...)); err != nil {
		return resp.Value{}, err
	}
	if err := c.w.Flush(); err != nil {
		return resp.Value{}, err
	}
	return c.r.ReadValue()
}

func (p *Pool) get(ctx context.Context, addr string) (*conn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	if l := p.idle[addr]; len(l) > 0 {
		c := l[len(l)-1]
		p.idle[addr] = l[:len(l)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	d := net.Dialer{Timeout: p.dial}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	return &conn{nc: nc, r: resp.NewReader(nc, resp.DefaultLimits()), w: bufio.NewWriter(nc)}, nil
}

func (p *Pool) put(addr string, c *conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= p.maxIdle {
		c.nc.Close()
		return
	}
	p.idle[addr] = append(p.idle[addr], c)
}

// Close closes idle connections; connections in use close when their call ends.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for addr, l := range p.idle {
		for _, c := range l {
			c.nc.Close()
		}
		delete(p.idle, addr)
	}
	return nil
}
