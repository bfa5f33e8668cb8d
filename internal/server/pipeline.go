package server

import (
	"context"
	"math"
	"time"

	"github.com/shoal-kv/shoal/internal/group"
)

// AsyncBackend is offered by backends that can start a write without waiting for it to apply.
// The server uses it for pipelined writes: while more commands of the same connection are
// already buffered, each write is proposed at once and answered later, in order, so a pipeline
// of N writes costs about one commit latency instead of N.
type AsyncBackend interface {
	StartWrite(ctx context.Context, w group.Write) (group.Wait, error)
}

// replyKind says how to answer a started write once its result is in.
type replyKind uint8

const (
	replySet    replyKind = iota + 1 // SET: OK, or null when NX/XX prevented it
	replySetGet                      // SET ... GET: the previous value, or null
	replyInt                         // DEL, APPEND, INCR...: the integer result
	replyOK                          // MSET: OK
)

// pendingReply is a started write whose reply is still owed, in command order. It holds no
// closure, so starting a write allocates nothing here.
type pendingReply struct {
	ctx  context.Context
	wait group.Wait
	kind replyKind
}

// maxPipelined bounds the writes a connection has in flight before it stops to answer them.
const maxPipelined = 1024

// drain waits for the started writes and writes their replies, in order. Every reply the
// connection writes must come after the replies owed for earlier commands, so everything else
// that writes a reply (or flushes) drains first.
func (c *conn) drain() {
	if len(c.pipe) == 0 {
		return
	}
	for i := range c.pipe {
		p := &c.pipe[i]
		res, err := p.wait.Result(p.ctx)
		switch p.kind {
		case replySet, replySetGet:
			writeSetReply(c, p.kind == replySetGet, res.Set, err)
		case replyInt:
			c.intReply(res.N, err)
		case replyOK:
			if err != nil {
				c.backendError(err)
			} else {
				c.w.OK()
			}
		}
		*p = pendingReply{}
	}
	c.pipe = c.pipe[:0]
	// The wait may have been long: the commands still to run should not inherit a stale clock
	// (their request contexts are renewed from it).
	c.now = time.Now()
	// Contexts replaced while these writes were in flight could not be cancelled then (their
	// writes still waited on them); they can now.
	for _, stop := range c.staleStops {
		stop()
	}
	clear(c.staleStops)
	c.staleStops = c.staleStops[:0]
}

// tryStart starts cmd (looked up from args[0], maybe nil) as a pipelined write if it is one,
// and every check the ordinary path would make passes; otherwise it reports false and the
// command runs the ordinary way.
//
// A write is started only while other commands of the connection are buffered or earlier
// writes are still unanswered: within a pipeline, the last write then shares the batch's
// commit instead of waiting for its own after the batch was answered. A lone write runs the
// ordinary way, where the router retries it if its slot is moving.
func (c *conn) tryStart(cmd *command, args [][]byte) bool {
	ab := c.s.async
	if ab == nil || cmd == nil || !cmd.pipelined || len(c.pipe) >= maxPipelined ||
		(c.r.Buffered() == 0 && len(c.pipe) == 0) {
		return false
	}
	if !cmd.arityOK(len(args)) || c.refusal(cmd, args) != "" {
		return false // the ordinary path answers with the error
	}
	if cmd.name == "shoal.at" {
		// The session wrapper passes through: its inner write is what starts.
		prev := c.session
		s, ok := parseSession(args)
		if !ok || c.wrapDepth >= maxWrapDepth {
			return false
		}
		c.session = &s
		c.wrapDepth++
		started := c.tryStart(c.lookupCommand(args[4]), args[4:])
		c.wrapDepth--
		c.session = prev
		return started
	}
	if cmd.firstKey == 0 || c.asking {
		return false
	}
	if _, moved := c.redirectFor(cmd, args); moved {
		return false
	}
	if c.s.route(c, cmd, keyRefs{args: args, cmd: cmd}, false) != nil {
		return false
	}
	var w group.Write
	kind := replyInt
	switch cmd.name {
	case "set":
		w.Op, w.Set = group.WriteSet, group.SetArgs{Key: args[1], Val: args[2]}
		if c.parseSetOptions(args, &w.Set) != "" {
			return false
		}
		kind = replySet
		if w.Set.Get {
			kind = replySetGet
		}
	case "setex", "psetex":
		at, e := c.setExpireAt(args[2], cmd.name == "setex", true, cmd.name)
		if e != "" {
			return false
		}
		w.Op, w.Set, kind = group.WriteSet, group.SetArgs{Key: args[1], Val: args[3], ExpireAt: at}, replySet
	case "del":
		w.Op, w.Args = group.WriteDel, args[1:]
	case "append":
		w.Op, w.Args = group.WriteAppend, args[1:3]
	case "incr", "decr":
		w.Op, w.Args, w.Delta = group.WriteIncrBy, args[1:2], 1
		if cmd.name == "decr" {
			w.Delta = -1
		}
	case "incrby", "decrby":
		d, ok := parseInt(args[2])
		if !ok || (cmd.name == "decrby" && d == math.MinInt64) {
			return false
		}
		if cmd.name == "decrby" {
			d = -d
		}
		w.Op, w.Args, w.Delta = group.WriteIncrBy, args[1:2], d
	case "mset":
		if len(args)%2 == 0 {
			return false
		}
		w.Op, w.Args, kind = group.WriteMSet, args[1:], replyOK
	default:
		return false
	}
	ctx := c.reqCtx()
	wait, err := ab.StartWrite(ctx, w)
	if err != nil {
		return false // not proposed: the ordinary path runs it (and reports any error)
	}
	if c.lastCmd.Load() != cmd {
		c.lastCmd.Store(cmd)
	}
	c.pipe = append(c.pipe, pendingReply{ctx: ctx, wait: wait, kind: kind})
	return true
}

// pipelinedCommands are the commands tryStart can start: the writes, and the session wrapper
// around them.
var pipelinedCommands = []string{"set", "setex", "psetex", "del", "append", "incr", "decr", "incrby", "decrby", "mset", "shoal.at"}
