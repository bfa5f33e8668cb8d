package client

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

// call is one pipelined request: buf holds n encoded commands, whose n replies arrive in order.
// The reader goroutine fills replies and closes done. A caller that gives up (its context ended)
// sets abandoned, and the writer then skips the call if it has not been written yet.
type call struct {
	buf       []byte
	n         int
	replies   []resp.Value
	err       error
	done      chan struct{}
	abandoned atomic.Bool
	one       [1]resp.Value // backing store for single-command calls
}

func newCall(buf []byte, n int) *call {
	cl := &call{buf: buf, n: n, done: make(chan struct{})}
	if n == 1 {
		cl.replies = cl.one[:0]
	} else {
		cl.replies = make([]resp.Value, 0, n)
	}
	return cl
}

// Limits on what one write gathers from the queue.
const (
	maxWriteBatch = 256 << 10
	keepWriteBuf  = 1 << 20
	queueLen      = 256
	pendingLen    = 1024
)

// conn is one pipelined connection: a writer goroutine takes queued calls and writes as many as
// are waiting in one write; a reader goroutine matches replies to calls in FIFO order.
type conn struct {
	addr        string
	nc          net.Conn
	rd          *resp.Reader
	readTimeout time.Duration

	queue   chan *call    // submitted, not yet written
	pending chan *call    // written (or being written), awaiting replies
	quit    chan struct{} // closed by fail: stop both goroutines
	dead    chan struct{} // closed once every accepted call was answered or failed
	wdone   chan struct{} // closed when the writer exits

	failOnce sync.Once
	err      error // why the connection failed; set before quit is closed
}

// dialConn connects to addr, authenticates, opts into redirects and starts the goroutines.
func dialConn(ctx context.Context, o *Options, addr string) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if o.Dialer != nil {
		nc, err = o.Dialer(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, &connError{addr, err}
	}
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, &connError{addr, err}
		}
		nc = tc
	}
	rd := resp.NewReader(nc, resp.Limits{})
	// Handshake: AUTH (if configured) and CLIENT CAPA redirect, pipelined.
	var hs []byte
	n := 0
	if o.Password != "" {
		if o.Username != "" {
			hs = resp.AppendCommand(hs, []byte("AUTH"), []byte(o.Username), []byte(o.Password))
		} else {
			hs = resp.AppendCommand(hs, []byte("AUTH"), []byte(o.Password))
		}
		n++
	}
	hs = resp.AppendCommand(hs, []byte("CLIENT"), []byte("CAPA"), []byte("redirect"))
	n++
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write(hs); err != nil {
		nc.Close()
		return nil, &connError{addr, err}
	}
	for i := range n {
		v, err := rd.ReadValue()
		if err != nil {
			nc.Close()
			return nil, &connError{addr, err}
		}
		// An AUTH failure is final; a CLIENT CAPA error (older server) is ignored.
		if i == 0 && o.Password != "" && v.Type == '-' {
			nc.Close()
			return nil, newServerError(v.Str)
		}
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn{
		addr: addr, nc: nc, rd: rd, readTimeout: o.ReadTimeout,
		queue: make(chan *call, queueLen), pending: make(chan *call, pendingLen),
		quit: make(chan struct{}), dead: make(chan struct{}), wdone: make(chan struct{}),
	}
	go c.writeLoop()
	go c.readLoop()
	return c, nil
}

// broken reports whether the connection failed or was closed.
func (c *conn) broken() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// fail closes the connection once, recording why.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.err = &connError{c.addr, err}
		close(c.quit)
		c.nc.Close()
	})
}

// close stops the connection and waits for its goroutines.
func (c *conn) close() {
	c.fail(net.ErrClosed)
	<-c.dead
}

// send queues cl for writing.
func (c *conn) send(ctx context.Context, cl *call) error {
	select {
	case c.queue <- cl:
		return nil
	case <-c.quit:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait waits for cl's replies. On a context error the call is abandoned: its replies, if any
// arrive, are discarded.
func (c *conn) wait(ctx context.Context, cl *call) error {
	select {
	case <-cl.done:
		return cl.err
	case <-c.dead:
		select {
		case <-cl.done:
			return cl.err
		default:
			return c.err // accepted after the connection was drained: never sent
		}
	case <-ctx.Done():
		cl.abandoned.Store(true)
		return ctx.Err()
	}
}

func (c *conn) writeLoop() {
	defer close(c.wdone)
	var buf []byte
	for {
		var cl *call
		select {
		case cl = <-c.queue:
		case <-c.quit:
			return
		}
		buf = buf[:0]
	gather:
		for {
			if !cl.abandoned.Load() {
				select {
				case c.pending <- cl:
				case <-c.quit:
					cl.err = c.err
					close(cl.done)
					return
				}
				buf = append(buf, cl.buf...)
			}
			if len(buf) >= maxWriteBatch {
				break gather
			}
			select {
			case cl = <-c.queue:
			default:
				break gather
			}
		}
		if len(buf) == 0 {
			continue
		}
		if _, err := c.nc.Write(buf); err != nil {
			c.fail(err)
			return
		}
		if cap(buf) > keepWriteBuf {
			buf = nil
		}
	}
}

func (c *conn) readLoop() {
	defer close(c.dead)
	for {
		var cl *call
		select {
		case cl = <-c.pending:
		case <-c.quit:
			c.drain()
			return
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
		for i := range cl.n {
			if i > 0 && i%256 == 0 {
				_ = c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
			}
			v, err := c.rd.ReadValue()
			if err != nil {
				c.fail(err)
				cl.err = c.err
				close(cl.done)
				c.drain()
				return
			}
			cl.replies = append(cl.replies, v)
		}
		close(cl.done)
	}
}

// drain fails every call the connection accepted, once the writer stopped.
func (c *conn) drain() {
	<-c.wdone
	for {
		select {
		case cl := <-c.pending:
			cl.err = c.err
			close(cl.done)
		case cl := <-c.queue:
			cl.err = c.err
			close(cl.done)
		default:
			return
		}
	}
}

// nodePool holds PoolSize connections to one node, dialled lazily and replaced when broken.
type nodePool struct {
	addr  string
	opts  *Options
	next  atomic.Uint32
	conns []atomic.Pointer[conn]
	mu    []sync.Mutex // one per slot: serialises dialling
}

func newNodePool(addr string, o *Options) *nodePool {
	return &nodePool{addr: addr, opts: o, conns: make([]atomic.Pointer[conn], o.PoolSize), mu: make([]sync.Mutex, o.PoolSize)}
}

// get returns a live connection, round robin, dialling if needed.
func (p *nodePool) get(ctx context.Context) (*conn, error) {
	i := int(p.next.Add(1)) % len(p.conns)
	if c := p.conns[i].Load(); c != nil && !c.broken() {
		return c, nil
	}
	p.mu[i].Lock()
	defer p.mu[i].Unlock()
	old := p.conns[i].Load()
	if old != nil && !old.broken() {
		return old, nil
	}
	c, err := dialConn(ctx, p.opts, p.addr)
	if err != nil {
		return nil, err
	}
	p.conns[i].Store(c)
	if old != nil {
		old.close()
	}
	return c, nil
}

// close closes every connection of the pool and waits for their goroutines.
func (p *nodePool) close() {
	for i := range p.conns {
		p.mu[i].Lock()
		if c := p.conns[i].Load(); c != nil {
			c.close()
		}
		p.mu[i].Unlock()
	}
}
