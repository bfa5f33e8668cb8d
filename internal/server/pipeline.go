package server

import (
	"context"
	"math"

	"github.com/shoal-kv/shoal/internal/group"
)

// AsyncBackend is offered by backends that can start a write without waiting for it to apply.
// The server uses it for pipelined writes: while more commands of the same connection are
// already buffered, each write is proposed at once and answered later, in order, so a pipeline
// of N writes costs about one commit latency instead of N.
type AsyncBackend interface {
	StartWrite(ctx context.Context, w group.Write) (group.Wait, error)
}

// pendingReply is a started write whose reply is still owed, in command order.
type pendingReply struct {
	ctx   context.Context
	wait  group.Wait
	reply func(c *conn, res group.WriteResult, err error)
}

// maxPipelined bounds the writes a connection has in flight before it stops to answer them.
const maxPipelined = 1024

// drain waits for the started writes and writes their replies, in order. Every reply the
// connection writes must come after the replies owed for earlier commands, so everything else
// that writes a reply (or flushes) drains first.
func (c *conn) drain() {
	for i := range c.pipe {
		p := &c.pipe[i]
		res, err := p.wait(p.ctx)
		p.reply(c, res, err)
		*p = pendingReply{}
	}
	c.pipe = c.pipe[:0]
}

// tryStart starts args as a pipelined write if it is one, more commands are buffered behind it,
// and every check the ordinary path would make passes; otherwise it reports false and the
// command runs the ordinary way.
func (c *conn) tryStart(args [][]byte) bool {
	ab, ok := c.s.backend.(AsyncBackend)
	if !ok || c.r.Buffered() == 0 || len(c.pipe) >= maxPipelined {
		return false
	}
	cmd := c.lookupCommand(args[0])
	if cmd == nil || !cmd.arityOK(len(args)) || c.refusal(cmd, args) != "" {
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
		started := c.tryStart(args[4:])
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
	var reply func(c *conn, res group.WriteResult, err error)
	intReply := func(c *conn, res group.WriteResult, err error) { c.intReply(res.N, err) }
	switch cmd.name {
	case "set":
		w.Op, w.Set = group.WriteSet, group.SetArgs{Key: args[1], Val: args[2]}
		var o setOptions
		if c.parseSetOptions(args, &w.Set, &o) != "" {
			return false
		}
		get := w.Set.Get
		reply = func(c *conn, res group.WriteResult, err error) { writeSetReply(c, get, res.Set, err) }
	case "del":
		w.Op, w.Args, reply = group.WriteDel, args[1:], intReply
	case "append":
		w.Op, w.Args, reply = group.WriteAppend, args[1:3], intReply
	case "incr", "decr":
		w.Op, w.Args, w.Delta, reply = group.WriteIncrBy, args[1:2], 1, intReply
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
		w.Op, w.Args, w.Delta, reply = group.WriteIncrBy, args[1:2], d, intReply
	case "mset":
		if len(args)%2 == 0 {
			return false
		}
		w.Op, w.Args = group.WriteMSet, args[1:]
		reply = func(c *conn, _ group.WriteResult, err error) {
			if err != nil {
				c.backendError(err)
				return
			}
			c.w.SimpleString("OK")
		}
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
	c.pipe = append(c.pipe, pendingReply{ctx: ctx, wait: wait, reply: reply})
	return true
}
