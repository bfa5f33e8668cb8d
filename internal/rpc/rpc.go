// Package rpc is the small pooled RESP client servers use to talk to each other: forwarding a
// plain client's request to the group that owns its key, and pulling or releasing slots during a
// hand-off.
package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

// Pool keeps idle connections per address. The zero value is not usable; use New or NewPool.
type Pool struct {
	mu      sync.Mutex
	idle    map[string][]*conn
	closed  bool
	maxIdle int
	dial    time.Duration
	opts    Options
}

// Options configure a Pool.
type Options struct {
	// MaxIdle is the most idle connections kept per address.
	MaxIdle int
	// TLS, when set, makes every connection TLS; ServerName is the address's host when empty.
	TLS *tls.Config
	// Username and Password, when Password is set, authenticate every new connection (AUTH)
	// before it is used: servers with access control refuse anything else.
	Username, Password string
}

type conn struct {
	nc net.Conn
	r  *resp.Reader
	w  *bufio.Writer
}

// New returns a pool keeping up to maxIdle idle connections per address.
func New(maxIdle int) *Pool { return NewPool(Options{MaxIdle: maxIdle}) }

// NewPool returns a pool configured by o.
func NewPool(o Options) *Pool {
	return &Pool{idle: make(map[string][]*conn), maxIdle: o.MaxIdle, dial: 2 * time.Second, opts: o}
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
	dctx, cancel := context.WithTimeout(ctx, p.dial)
	defer cancel()
	var nc net.Conn
	var err error
	if p.opts.TLS != nil {
		d := tls.Dialer{Config: p.opts.TLS}
		if d.Config.ServerName == "" {
			d.Config = d.Config.Clone()
			host, _, herr := net.SplitHostPort(addr)
			if herr != nil {
				host = addr
			}
			d.Config.ServerName = host
		}
		nc, err = d.DialContext(dctx, "tcp", addr) // includes the handshake
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	c := &conn{nc: nc, r: resp.NewReader(nc, resp.DefaultLimits()), w: bufio.NewWriter(nc)}
	if p.opts.Password != "" {
		if err := c.auth(dctx, p.opts.Username, p.opts.Password); err != nil {
			nc.Close()
			return nil, fmt.Errorf("rpc: %s: %w", addr, err)
		}
	}
	return c, nil
}

// ErrAuth wraps a refused AUTH: the credentials are wrong, retrying cannot help.
var ErrAuth = errors.New("rpc: authentication refused")

// auth sends AUTH on a new connection and checks the reply.
func (c *conn) auth(ctx context.Context, user, pass string) error {
	deadline, _ := ctx.Deadline()
	_ = c.nc.SetDeadline(deadline)
	defer c.nc.SetDeadline(time.Time{})
	args := [][]byte{[]byte("AUTH"), []byte(pass)}
	if user != "" {
		args = [][]byte{[]byte("AUTH"), []byte(user), []byte(pass)}
	}
	v, err := c.roundTrip(args)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	if v.Type == '-' {
		return fmt.Errorf("%w: %s", ErrAuth, v.Str)
	}
	return nil
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
