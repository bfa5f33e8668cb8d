package server

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/resp"
)

// conn is one client connection. Everything except the fields under mu and the atomics is
// touched only by the connection's own goroutine.
type conn struct {
	s     *Server
	nc    net.Conn
	r     *resp.Reader
	w     *resp.Writer
	id    int64
	addr  string
	laddr string
	born  time.Time

	mu      sync.Mutex // guards the client metadata below, read by CLIENT LIST from other conns
	name    string
	libName string
	libVer  string

	lastCmd    atomic.Pointer[command] // for CLIENT LIST cmd=
	lastActive atomic.Int64            // unix nanoseconds, for CLIENT LIST idle=

	readOnly bool // READONLY was sent: replica reads allowed (used by routing later)
	asking   bool // ASKING was sent: the next command may touch an importing slot
	quit     bool // close after flushing the current reply
	redirect bool // CLIENT CAPA redirect: answer MOVED for other groups' slots

	acl aclState // the authenticated user (access.go)

	// Set while a SHOAL.FWD / SHOAL.AT wrapper runs its inner command.
	hops      int
	session   *group.Session
	wrapDepth int

	pipe []pendingReply // pipelined writes started and not yet answered, in order
	// staleStops cancel request contexts replaced while writes started under them were still
	// unanswered; drain calls them once those writes are answered.
	staleStops []context.CancelFunc

	// ctx is reused by successive commands while its deadline is at least half a
	// RequestTimeout away: a fresh context per command would cost allocations on the GET/SET
	// hot path, and this still bounds every command by RequestTimeout.
	ctx      context.Context
	ctxStop  context.CancelFunc
	deadline time.Time
	// now is when the connection last received bytes (or finished waiting for started writes):
	// the arrival time of the commands being executed. Reading the clock once per read rather
	// than once per command matters for pipelines, and commands parsed from one read did
	// arrive together; it lags the clock by at most the time one read's commands take.
	now time.Time

	valBuf  []byte   // GET's value, reused from command to command (see getInto)
	nameBuf [32]byte // lowercased command names for table lookups
	numBuf  [24]byte // integers formatted as bulk strings
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:     s,
		nc:    nc,
		id:    s.nextID.Add(1),
		addr:  nc.RemoteAddr().String(),
		laddr: nc.LocalAddr().String(),
		born:  time.Now(),
	}
	c.now = c.born
	c.lastActive.Store(c.born.UnixNano())
	c.r = resp.NewReader(flushingReader{c}, s.limits)
	c.w = resp.NewWriter(nc)
	return c
}

// flushingReader is the connection as the resp.Reader sees it. The Reader asks it for bytes
// only when it has no complete command buffered, which is exactly when the pending replies
// must go out: flushing here answers a pipelined batch with one write, answers a lone command
// at once, and never leaves replies waiting behind a partially received request.
type flushingReader struct{ c *conn }

func (fr flushingReader) Read(p []byte) (int, error) {
	c := fr.c
	c.drain()
	if c.w.Buffered() > 0 {
		if err := c.w.Flush(); err != nil {
			return 0, err
		}
	}
	if t := c.s.cfg.IdleTimeout; t > 0 {
		c.nc.SetReadDeadline(time.Now().Add(t))
	}
	n, err := c.nc.Read(p)
	c.touch()
	return n, err
}

// touch records that the connection received bytes now.
func (c *conn) touch() {
	c.now = time.Now()
	c.lastActive.Store(c.now.UnixNano())
}

// serve runs the connection until the peer leaves, a protocol error occurs, QUIT, or Close.
func (c *conn) serve() {
	defer c.s.wg.Done()
	defer c.s.removeConn(c)
	defer func() {
		if c.ctxStop != nil {
			c.ctxStop()
		}
		for _, stop := range c.staleStops {
			stop()
		}
	}()
	defer func() {
		// A bug in one command must not take the whole node down; drop just this client.
		if p := recover(); p != nil {
			c.s.log.Error("panic serving connection", "remote", c.addr, "panic", p, "stack", string(debug.Stack()))
			c.nc.Close()
		}
	}()
	log := c.s.log
	log.Debug("client connected", "id", c.id, "remote", c.addr)
	for {
		args, err := c.r.ReadCommand()
		if err != nil {
			c.drain() // replies owed for earlier commands go first
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				log.Debug("protocol error; closing", "id", c.id, "remote", c.addr, "err", pe.Error())
				c.w.Error("ERR " + pe.Error())
				c.w.Flush()
				lingerClose(c.nc)
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("client connection ended", "id", c.id, "remote", c.addr, "err", err)
			}
			c.w.Flush()
			c.nc.Close()
			return
		}
		c.exec(args)
		if c.quit {
			c.w.Flush()
			lingerClose(c.nc)
			return
		}
	}
}

// exec validates and runs one command, writing exactly one reply. It is the single place
// where every command passes, so lookup, arity and routing are enforced uniformly.
func (c *conn) exec(args [][]byte) {
	cmd := c.lookupCommand(args[0])
	if c.tryStart(cmd, args) {
		return
	}
	c.drain()
	if cmd == nil {
		c.unknownCommand(args)
		return
	}
	if cmd.subs != nil && len(args) >= 2 {
		sub := c.lookupSub(cmd, args[1])
		if sub == nil {
			c.unknownSubcommand(cmd, args)
			return
		}
		cmd = sub
	}
	if c.lastCmd.Load() != cmd {
		c.lastCmd.Store(cmd)
	}
	if !cmd.arityOK(len(args)) || cmd.run == nil {
		c.arityError(cmd.fullName)
		return
	}
	if !c.permit(cmd, args) { // NOAUTH, NOPERM, OOM (access.go)
		return
	}
	asking := c.asking
	c.asking = false
	if cmd.firstKey > 0 {
		if moved, ok := c.redirectFor(cmd, args); ok {
			c.w.Error(moved)
			return
		}
		if err := c.s.route(c, cmd, keyRefs{args: args, cmd: cmd}, asking); err != nil {
			c.routeError(err)
			return
		}
	}
	cmd.run(c, args)
}

// reqCtx returns the context that bounds the current command's backend call, carrying the
// forwarding hops and session of a wrapped command.
func (c *conn) reqCtx() context.Context {
	ctx := c.baseReqCtx()
	if c.hops > 0 || c.session != nil {
		return c.requestContext(ctx)
	}
	return ctx
}

func (c *conn) baseReqCtx() context.Context {
	done := c.ctx != nil && ctxDone(c.ctx)
	if c.ctx == nil || done || c.deadline.Sub(c.now) < c.s.timeout/2 {
		if done {
			// A command of the current read waited out the context: the clock has moved on
			// since the read, and the next command deserves a full timeout of its own.
			c.now = time.Now()
		}
		if c.ctxStop != nil {
			if len(c.pipe) > 0 {
				// Started writes still wait under the old context: cancelling it now would
				// answer them with an error although they apply.
				c.staleStops = append(c.staleStops, c.ctxStop)
			} else {
				c.ctxStop()
			}
		}
		c.deadline = c.now.Add(c.s.timeout)
		c.ctx, c.ctxStop = context.WithDeadline(c.s.baseCtx, c.deadline)
	}
	return c.ctx
}

// ctxDone reports whether ctx has ended, without blocking.
func ctxDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// intReply writes n, or the reply for err.
func (c *conn) intReply(n int64, err error) {
	if err != nil {
		c.backendError(err)
		return
	}
	c.w.Int(n)
}

// backendError replies to a failed backend call.
func (c *conn) backendError(err error) {
	msg := backendError(err)
	if msg[0] != 'E' { // availability problems are worth a trace; state-machine errors are not
		c.s.log.Debug("backend unavailable", "id", c.id, "err", err)
	}
	c.w.Error(msg)
}

// arityError writes Redis's wrong-number-of-arguments error for the command's full name.
func (c *conn) arityError(fullName string) {
	c.w.Error("ERR wrong number of arguments for '" + fullName + "' command")
}

// unknownCommand writes Redis 7's exact unknown-command error: the name as typed (at most 128
// bytes), then each argument quoted and followed by a space while the list is under 128 bytes.
func (c *conn) unknownCommand(args [][]byte) {
	b := make([]byte, 0, 256)
	b = append(b, "ERR unknown command '"...)
	b = appendTrunc(b, args[0], 128)
	b = append(b, "', with args beginning with: "...)
	b = appendArgList(b, args[1:])
	c.w.Error(string(b))
}

// unknownSubcommand writes Redis 7's error for an unknown subcommand of a container command.
func (c *conn) unknownSubcommand(cmd *command, args [][]byte) {
	b := make([]byte, 0, 128)
	b = append(b, "ERR unknown subcommand '"...)
	b = appendTrunc(b, args[1], 128)
	b = append(b, "'. Try "...)
	b = append(b, strings.ToUpper(cmd.name)...)
	b = append(b, " HELP."...)
	c.w.Error(string(b))
}

// appendTrunc appends at most n bytes of s (C's "%.128s").
func appendTrunc(b, s []byte, n int) []byte {
	if len(s) > n {
		s = s[:n]
	}
	return append(b, s...)
}

// appendArgList appends "'arg' " per argument as Redis does: each argument is cut to the room
// left under 128 bytes, and the list stops once it reaches 128 bytes.
func appendArgList(b []byte, args [][]byte) []byte {
	n := 0
	for _, a := range args {
		if n >= 128 {
			break
		}
		start := len(b)
		b = append(b, '\'')
		b = appendTrunc(b, a, 128-n)
		b = append(b, '\'', ' ')
		n += len(b) - start
	}
	return b
}
