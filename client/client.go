package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// Client is a connection to a Shoal cluster. It is safe for concurrent use by many goroutines,
// which share its pipelined connections; create one per process and Close it when done.
type Client struct {
	opts Options
	log  *slog.Logger
	sess *session // nil when writes are sent without a session

	slots       atomic.Pointer[slotMap]
	gen         atomic.Uint64 // incremented each time a new map is installed
	lastRefresh atomic.Int64  // unix nanos of the last successful refresh
	refreshSem  chan struct{} // one refresh at a time

	poolsMu sync.RWMutex
	pools   map[string]*nodePool

	state     atomic.Int64 // calls in flight, plus closedBit once Close started
	drained   chan struct{}
	drainOnce sync.Once
	closeOnce sync.Once
}

const closedBit = 1 << 62

// minRefreshGap rate-limits slot map reloads triggered by errors.
const minRefreshGap = 20 * time.Millisecond

// New connects to the cluster through opts.Seeds, loads the slot map and, unless sessions are
// off, checks that the cluster supports at-most-once sessions. ctx bounds only the connection
// setup.
func New(ctx context.Context, opts Options) (*Client, error) {
	if len(opts.Seeds) == 0 {
		return nil, errors.New("shoal: Options.Seeds is empty")
	}
	o := opts.withDefaults()
	c := &Client{
		opts: o, log: o.Logger, refreshSem: make(chan struct{}, 1),
		pools: map[string]*nodePool{}, drained: make(chan struct{}),
	}
	if err := c.refresh(ctx, 0, true); err != nil {
		c.Close()
		return nil, err
	}
	if o.Sessions != SessionsOff {
		ok, err := c.supportsSessions(ctx)
		if err != nil {
			c.Close()
			return nil, err
		}
		switch {
		case ok:
			id := rand.Uint64()
			for id == 0 {
				id = rand.Uint64()
			}
			c.sess = newSession(id)
		case o.Sessions == SessionsRequired:
			c.Close()
			return nil, ErrSessionsUnsupported
		default:
			c.log.Warn("shoal: cluster lacks SHOAL.AT; writes are not at-most-once")
		}
	}
	return c, nil
}

// Sessions reports whether writes carry an at-most-once session (see [Options.Sessions]).
func (c *Client) Sessions() bool { return c.sess != nil }

// supportsSessions asks a node whether it knows SHOAL.AT (COMMAND INFO answers null if not).
func (c *Client) supportsSessions(ctx context.Context) (bool, error) {
	var last error
	for _, addr := range c.slots.Load().addrs() {
		v, err := c.direct(ctx, addr, "COMMAND", "INFO", "SHOAL.AT")
		if err != nil {
			last = err
			continue
		}
		return v.Type == '*' && len(v.Array) == 1 && !v.Array[0].Null, nil
	}
	return false, fmt.Errorf("shoal: probing for sessions: %w", last)
}

// Close stops new calls (they fail with ErrClosed), waits for calls in flight to finish, then
// closes every connection and waits for the client's goroutines. It is safe to call more than
// once.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if old := c.state.Or(closedBit); old&^closedBit == 0 {
			c.drainOnce.Do(func() { close(c.drained) })
		}
		<-c.drained
		c.poolsMu.Lock()
		pools := c.pools
		c.pools = map[string]*nodePool{}
		c.poolsMu.Unlock()
		for _, p := range pools {
			p.close()
		}
	})
	return nil
}

// enter registers a call in flight; exit ends it.
func (c *Client) enter() error {
	if c.state.Add(1)&closedBit != 0 {
		c.exit()
		return ErrClosed
	}
	return nil
}

func (c *Client) exit() {
	if c.state.Add(-1) == closedBit {
		c.drainOnce.Do(func() { close(c.drained) })
	}
}

// pool returns the connection pool of addr, creating it.
func (c *Client) pool(addr string) (*nodePool, error) {
	c.poolsMu.RLock()
	p := c.pools[addr]
	c.poolsMu.RUnlock()
	if p != nil {
		return p, nil
	}
	c.poolsMu.Lock()
	defer c.poolsMu.Unlock()
	if p = c.pools[addr]; p == nil {
		p = newNodePool(addr, &c.opts)
		c.pools[addr] = p
	}
	return p, nil
}

// direct sends one unkeyed command to addr, without retries. An error reply is returned as a
// *ServerError.
func (c *Client) direct(ctx context.Context, addr string, args ...string) (resp.Value, error) {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	vs, err := c.roundTrip(ctx, addr, resp.AppendCommand(nil, b...), 1)
	if err != nil {
		return resp.Value{}, err
	}
	if vs[0].Type == '-' {
		return vs[0], newServerError(vs[0].Str)
	}
	return vs[0], nil
}

// roundTrip sends buf (n commands) on a connection of addr and returns the n replies.
func (c *Client) roundTrip(ctx context.Context, addr string, buf []byte, n int) ([]resp.Value, error) {
	cn, cl, err := c.start(ctx, addr, buf, n)
	if err != nil {
		return nil, err
	}
	if err := cn.wait(ctx, cl); err != nil {
		return nil, err
	}
	return cl.replies, nil
}

// start queues buf (n commands) on a connection of addr.
func (c *Client) start(ctx context.Context, addr string, buf []byte, n int) (*conn, *call, error) {
	p, err := c.pool(addr)
	if err != nil {
		return nil, nil, err
	}
	cn, err := p.get(ctx)
	if err != nil {
		return nil, nil, err
	}
	cl := newCall(buf, n)
	if err := cn.send(ctx, cl); err != nil {
		return nil, nil, err
	}
	return cn, cl, nil
}

// refresh reloads the slot map from any known node or seed, unless another refresh installed a
// map since the caller saw generation seen. force skips the rate limit.
func (c *Client) refresh(ctx context.Context, seen uint64, force bool) error {
	select {
	case c.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-c.refreshSem }()
	if c.gen.Load() != seen {
		return nil
	}
	if !force && time.Since(time.Unix(0, c.lastRefresh.Load())) < minRefreshGap {
		return nil
	}
	var cands []string
	if m := c.slots.Load(); m != nil {
		cands = m.addrs()
	}
	for _, s := range c.opts.Seeds {
		if !slices.Contains(cands, s) {
			cands = append(cands, s)
		}
	}
	off := rand.IntN(len(cands))
	var last error
	for i := range cands {
		addr := cands[(off+i)%len(cands)]
		pctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
		v, err := c.direct(pctx, addr, "CLUSTER", "SLOTS")
		cancel()
		if err == nil {
			var m *slotMap
			if m, err = parseSlots(v, addr); err == nil {
				c.slots.Store(m)
				c.gen.Add(1)
				c.lastRefresh.Store(time.Now().UnixNano())
				c.log.Debug("shoal: slot map loaded", "from", addr, "shards", len(m.shards))
				return nil
			}
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("shoal: loading slot map: %w", last)
}

// backoff returns the wait before retry number attempt (1-based): full jitter over an
// exponentially growing window, capped.
func (c *Client) backoff(attempt int) time.Duration {
	win := c.opts.MinBackoff << min(attempt-1, 20)
	if win > c.opts.MaxBackoff || win <= 0 {
		win = c.opts.MaxBackoff
	}
	return c.opts.MinBackoff/2 + rand.N(win)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// op is one keyed command of a call: one command, one reply.
type op struct {
	key   string
	slot  uint16
	args  [][]byte // command name and arguments
	write bool
	seq   uint64 // session sequence number, 0 when none
}

func newOp(key string, write bool, args ...[]byte) op {
	return op{key: key, slot: keyspace.SlotString(key), args: args, write: write}
}

// Reply classification.
type replyKind uint8

const (
	replyOK replyKind = iota
	replyFinal
	replyMoved
	replyAsk
	replyRetry       // TRYAGAIN, LOADING
	replyClusterDown // CLUSTERDOWN: retry after reloading the map
)

func classify(v *resp.Value) (replyKind, string) {
	if v.Type != '-' {
		return replyOK, ""
	}
	s := v.Str
	code, rest, _ := bytes.Cut(s, []byte(" "))
	switch string(code) {
	case "MOVED", "ASK":
		_, addr, _ := bytes.Cut(rest, []byte(" "))
		if len(addr) == 0 {
			return replyFinal, ""
		}
		if code[0] == 'M' {
			return replyMoved, string(addr)
		}
		return replyAsk, string(addr)
	case "TRYAGAIN", "LOADING":
		return replyRetry, ""
	case "CLUSTERDOWN":
		return replyClusterDown, ""
	}
	return replyFinal, ""
}

// RESP encoding helpers.
func appendHeader(dst []byte, t byte, n int) []byte {
	dst = append(dst, t)
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

func appendBulk(dst, b []byte) []byte {
	dst = appendHeader(dst, '$', len(b))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func appendBulkUint(dst []byte, n uint64) []byte {
	var tmp [20]byte
	return appendBulk(dst, strconv.AppendUint(tmp[:0], n, 10))
}

var cmdAt = []byte("SHOAL.AT")

const askingCmd = "*1\r\n$6\r\nASKING\r\n"

// encode appends o's command, inside a session for a write when sessions are on, preceded by
// ASKING when asking.
func (c *Client) encode(dst []byte, o *op, asking bool, acked uint64) []byte {
	if asking {
		dst = append(dst, askingCmd...)
	}
	if o.seq != 0 {
		dst = appendHeader(dst, '*', 4+len(o.args))
		dst = appendBulk(dst, cmdAt)
		dst = appendBulk(dst, c.sess.idStr)
		dst = appendBulkUint(dst, o.seq)
		dst = appendBulkUint(dst, acked)
	} else {
		dst = appendHeader(dst, '*', len(o.args))
	}
	for _, a := range o.args {
		dst = appendBulk(dst, a)
	}
	return dst
}

// exec runs one keyed command with routing and retries and returns its reply, or the final
// error (a reply error is a *ServerError).
func (c *Client) exec(ctx context.Context, o op) (resp.Value, error) {
	ops := [1]op{o}
	var vals [1]resp.Value
	var errs [1]error
	c.run(ctx, ops[:], vals[:], errs[:])
	return vals[0], errs[0]
}

// route is where one op goes next, when it was redirected.
type route struct {
	addr   string
	asking bool
}

// batch is the part of a round sent to one connection.
type batch struct {
	addr string
	idx  []int  // op indices
	ask  []bool // whether each op was preceded by ASKING (one extra reply)
	cn   *conn
	cl   *call
	err  error
}

// run executes ops, each with its own routing, grouping them by node into pipelined batches
// of at most BatchSize commands that are all in flight at once, and retrying each op that met
// a redirection or a retryable error until it succeeds, fails finally, runs out of retries, or
// ctx ends. vals[i] receives op i's reply, errs[i] its error; a reply error is a *ServerError.
func (c *Client) run(ctx context.Context, ops []op, vals []resp.Value, errs []error) {
	if err := c.enter(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	defer c.exit()
	if c.sess != nil {
		for i := range ops {
			if ops[i].write {
				ops[i].seq = c.sess.begin()
			}
		}
		defer func() {
			for i := range ops {
				if ops[i].seq != 0 {
					c.sess.finish(ops[i].seq)
				}
			}
		}()
	}
	todo := make([]int, len(ops))
	for i := range todo {
		todo[i] = i
	}
	var redirect []route // lazily allocated: per op
	var batches []batch
	for attempt := 0; len(todo) > 0; attempt++ {
		if err := ctx.Err(); err != nil {
			for _, i := range todo {
				errs[i] = c.giveUp(&ops[i], err, errs[i])
			}
			return
		}
		if attempt > 0 && c.opts.MaxRetries >= 0 && attempt > c.opts.MaxRetries {
			for _, i := range todo {
				errs[i] = fmt.Errorf("shoal: %s %q: gave up after %d attempts: %w", ops[i].args[0], ops[i].key, attempt, errs[i])
			}
			return
		}
		gen := c.gen.Load()
		m := c.slots.Load()
		// Group by destination, then cut each node's ops into chunks spread over its pool's
		// connections: a server runs one connection's commands in order, so parallelism across
		// a node comes from its connections.
		batches = batches[:0]
		var retry []int
		var dests []batch
		for _, i := range todo {
			var addr string
			asking := false
			if redirect != nil && redirect[i].addr != "" {
				addr, asking = redirect[i].addr, redirect[i].asking
				redirect[i] = route{}
			} else if sh := m.lookup(ops[i].slot); sh != nil {
				addr = sh.pick()
			} else {
				errs[i] = &ServerError{Code: "CLUSTERDOWN", Msg: fmt.Sprintf("CLUSTERDOWN Hash slot %d not served (client map)", ops[i].slot)}
				retry = append(retry, i)
				continue
			}
			j := slices.IndexFunc(dests, func(b batch) bool { return b.addr == addr })
			if j < 0 {
				dests = append(dests, batch{addr: addr})
				j = len(dests) - 1
			}
			dests[j].idx = append(dests[j].idx, i)
			dests[j].ask = append(dests[j].ask, asking)
		}
		for _, d := range dests {
			per := min(c.opts.BatchSize, max(1, (len(d.idx)+c.opts.PoolSize-1)/c.opts.PoolSize))
			for lo := 0; lo < len(d.idx); lo += per {
				hi := min(lo+per, len(d.idx))
				batches = append(batches, batch{addr: d.addr, idx: d.idx[lo:hi], ask: d.ask[lo:hi]})
			}
		}
		// Send every batch, then collect.
		var acked uint64
		if c.sess != nil {
			acked = c.sess.ackedNow()
		}
		for k := range batches {
			b := &batches[k]
			var buf []byte
			n := 0
			for x, i := range b.idx {
				buf = c.encode(buf, &ops[i], b.ask[x], acked)
				n++
				if b.ask[x] {
					n++
				}
			}
			b.cn, b.cl, b.err = c.start(ctx, b.addr, buf, n)
		}
		needRefresh, onlyRedirects := len(retry) > 0, len(retry) == 0
		for k := range batches {
			b := &batches[k]
			if b.err == nil {
				b.err = b.cn.wait(ctx, b.cl)
			}
			var got []resp.Value
			if b.cl != nil {
				if b.err != nil {
					// A failed call may still have some replies, but only the reader may touch
					// them until done is closed.
					select {
					case <-b.cl.done:
						got = b.cl.replies
					default:
					}
				} else {
					got = b.cl.replies
				}
			}
			r := 0
			for x, i := range b.idx {
				if b.ask[x] {
					r++ // ASKING's +OK
				}
				if r >= len(got) {
					// No reply: the connection failed or ctx ended.
					if ctxErr := ctx.Err(); ctxErr != nil {
						errs[i] = c.giveUp(&ops[i], ctxErr, errs[i])
						continue
					}
					errs[i] = b.err
					var se *ServerError
					if errors.As(b.err, &se) || errors.Is(b.err, ErrClosed) {
						continue // AUTH failure or closed: final
					}
					retry = append(retry, i)
					onlyRedirects = false
					needRefresh = true
					if sh := m.lookup(ops[i].slot); sh != nil {
						sh.avoid(b.addr)
					}
					continue
				}
				v := &got[r]
				r++
				kind, addr := classify(v)
				switch kind {
				case replyOK:
					vals[i], errs[i] = *v, nil
				case replyFinal:
					errs[i] = fmt.Errorf("shoal: %s %q: %w", ops[i].args[0], ops[i].key, newServerError(v.Str))
				case replyMoved, replyAsk:
					if redirect == nil {
						redirect = make([]route, len(ops))
					}
					redirect[i] = route{addr: addr, asking: kind == replyAsk}
					errs[i] = newServerError(v.Str)
					retry = append(retry, i)
					needRefresh = needRefresh || kind == replyMoved
				default:
					errs[i] = newServerError(v.Str)
					retry = append(retry, i)
					onlyRedirects = false
					needRefresh = needRefresh || kind == replyClusterDown
				}
			}
		}
		todo = retry
		if len(todo) == 0 {
			return
		}
		if needRefresh {
			if err := c.refresh(ctx, gen, false); err != nil {
				c.log.Debug("shoal: slot map refresh failed", "err", err)
			}
		}
		if !onlyRedirects || attempt >= 3 {
			_ = sleep(ctx, c.backoff(attempt+1)) // ctx is checked at the top of the loop
		}
	}
}

// giveUp builds the error of an op abandoned because ctx ended, keeping the last attempt's error
// for context.
func (c *Client) giveUp(o *op, ctxErr, last error) error {
	if last != nil && !errors.Is(last, ctxErr) {
		return fmt.Errorf("shoal: %s %q: %w (last error: %v)", o.args[0], o.key, ctxErr, last)
	}
	return fmt.Errorf("shoal: %s %q: %w", o.args[0], o.key, ctxErr)
}
