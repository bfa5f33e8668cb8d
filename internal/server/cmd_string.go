package server

import (
	"math"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// maxValBuf bounds the value buffer a connection keeps between GETs: a rare huge value is
// read into a buffer of its own rather than pinned for the life of the connection.
const maxValBuf = 64 << 10

// cmdGet answers GET key.
func cmdGet(c *conn, args [][]byte) {
	val, ok, err := c.getInto(args[1])
	c.valueReply(val, ok, err)
}

// valueReply answers with a value, nil when there is none, or the backend's error.
func (c *conn) valueReply(val []byte, ok bool, err error) {
	switch {
	case err != nil:
		c.backendError(err)
	case !ok:
		c.w.Null()
	default:
		c.w.Bulk(val)
	}
}

// getInto reads key through the backend into the connection's value buffer when the backend
// can, so that answering GET allocates nothing. The value is valid until the next getInto.
func (c *conn) getInto(key []byte) ([]byte, bool, error) {
	if c.s.appender == nil {
		return c.s.backend.Get(c.reqCtx(), key)
	}
	val, ok, err := c.s.appender.GetAppend(c.reqCtx(), key, c.valBuf[:0])
	if ok && cap(val) <= maxValBuf {
		c.valBuf = val[:0]
	}
	return val, ok, err
}

// parseSetOptions parses SET's options into a with the exact precedence rules of Redis 7
// (parseExtendedStringArgumentsOrReply): NX and XX exclude each other, KEEPTTL and the expiry
// options exclude each other, repeating the same option is allowed, and anything else is a
// syntax error. An expiry becomes a.ExpireAt as Redis computes it (setExpireAt). It returns an
// error text, or "".
func (c *conn) parseSetOptions(args [][]byte, a *group.SetArgs) string {
	var (
		exp               int    // the time options and KEEPTTL seen (timeOption's bits)
		expire            []byte // the EX/PX/EXAT/PXAT argument, nil if none
		seconds, relative bool
	)
	for j := 3; j < len(args); j++ {
		opt := args[j]
		if bit, sec, rel := timeOption(opt); bit != 0 {
			// Repeatable, exclusive of the other time options and KEEPTTL, and followed by
			// its time.
			if exp&^bit != 0 || j+1 == len(args) {
				return errSyntax
			}
			exp, expire, seconds, relative = exp|bit, args[j+1], sec, rel
			j++
			continue
		}
		switch {
		case equalFold(opt, "nx") && !a.XX:
			a.NX = true
		case equalFold(opt, "xx") && !a.NX:
			a.XX = true
		case equalFold(opt, "get"):
			a.Get = true
		case equalFold(opt, "keepttl") && exp&^optKeep == 0:
			exp |= optKeep
			a.KeepTTL = true
		default:
			return errSyntax
		}
	}
	if expire != nil {
		at, e := c.setExpireAt(expire, seconds, relative, "set")
		if e != "" {
			return e
		}
		a.ExpireAt = at
	}
	return ""
}

// cmdSet answers SET key value [NX|XX] [GET] [EX s|PX ms|EXAT t|PXAT t|KEEPTTL].
func cmdSet(c *conn, args [][]byte) {
	a := group.SetArgs{Key: args[1], Val: args[2]}
	if e := c.parseSetOptions(args, &a); e != "" {
		c.w.Error(e)
		return
	}
	res, err := c.s.backend.Set(c.reqCtx(), a)
	writeSetReply(c, a.Get, res, err)
}

// writeSetReply answers SET from its outcome.
func writeSetReply(c *conn, get bool, res group.SetResult, err error) {
	switch {
	case err != nil:
		c.backendError(err)
	case get:
		// SET ... GET replies with the previous value whether or not the write happened.
		if res.HadOld {
			c.w.Bulk(res.Old)
		} else {
			c.w.Null()
		}
	case res.Done:
		c.w.OK()
	default:
		c.w.Null()
	}
}

func cmdDel(c *conn, args [][]byte) {
	n, err := c.s.backend.Del(c.reqCtx(), args[1:])
	c.intReply(n, err)
}

// cmdExists answers EXISTS key [key ...]; a key named twice counts twice, as in Redis.
func cmdExists(c *conn, args [][]byte) {
	n, err := c.s.backend.Exists(c.reqCtx(), args[1:])
	c.intReply(n, err)
}

// cmdSetNX answers SETNX key value: 1 if it set the key, 0 if the key existed.
func cmdSetNX(c *conn, args [][]byte) {
	res, err := c.s.backend.Set(c.reqCtx(), group.SetArgs{Key: args[1], Val: args[2], NX: true})
	var n int64
	if res.Done {
		n = 1
	}
	c.intReply(n, err)
}

// cmdGetSet answers GETSET key value (SET key value GET) with the previous value.
func cmdGetSet(c *conn, args [][]byte) {
	res, err := c.s.backend.Set(c.reqCtx(), group.SetArgs{Key: args[1], Val: args[2], Get: true})
	writeSetReply(c, true, res, err)
}

// cmdGetDel answers GETDEL key: the value, deleted, or nil.
func cmdGetDel(c *conn, args [][]byte) {
	val, ok, err := c.s.backend.GetDel(c.reqCtx(), args[1])
	c.valueReply(val, ok, err)
}

// cmdStrLen answers STRLEN key: the value's length, 0 for a missing key.
func cmdStrLen(c *conn, args [][]byte) {
	val, _, err := c.getInto(args[1])
	c.intReply(int64(len(val)), err)
}

// cmdGetRange answers GETRANGE key start end: the bytes from start to end inclusive, negative
// offsets counting from the end, clamped to the value, as Redis's getrangeCommand computes them.
func cmdGetRange(c *conn, args [][]byte) {
	start, ok1 := parseInt(args[2])
	end, ok2 := parseInt(args[3])
	if !ok1 || !ok2 {
		c.w.Error(errNotInteger)
		return
	}
	val, _, err := c.getInto(args[1])
	if err != nil {
		c.backendError(err)
		return
	}
	n := int64(len(val))
	if start < 0 && end < 0 && start > end {
		c.w.Bulk(nil)
		return
	}
	if start < 0 {
		start = max(n+start, 0)
	}
	if end < 0 {
		end = max(n+end, 0)
	}
	end = min(end, n-1)
	if start > end || n == 0 {
		c.w.Bulk(nil)
		return
	}
	c.w.Bulk(val[start : end+1])
}

// cmdType answers TYPE key: every value Shoal holds is a string.
func cmdType(c *conn, args [][]byte) {
	n, err := c.s.backend.Exists(c.reqCtx(), args[1:2])
	switch {
	case err != nil:
		c.backendError(err)
	case n > 0:
		c.w.SimpleString("string")
	default:
		c.w.SimpleString("none")
	}
}

// cmdAppend answers APPEND key value with the new length.
func cmdAppend(c *conn, args [][]byte) {
	n, err := c.s.backend.Append(c.reqCtx(), args[1], args[2])
	c.intReply(n, err)
}

// cmdIncr answers INCR key.
func cmdIncr(c *conn, args [][]byte) { c.incrBy(args[1], 1) }

// cmdDecr answers DECR key.
func cmdDecr(c *conn, args [][]byte) { c.incrBy(args[1], -1) }

// cmdIncrBy answers INCRBY key delta.
func cmdIncrBy(c *conn, args [][]byte) {
	d, ok := parseInt(args[2])
	if !ok {
		c.w.Error(errNotInteger)
		return
	}
	c.incrBy(args[1], d)
}

// cmdDecrBy answers DECRBY key delta. Negating math.MinInt64 overflows, which Redis 7 reports
// with its own message before touching the key.
func cmdDecrBy(c *conn, args [][]byte) {
	d, ok := parseInt(args[2])
	if !ok {
		c.w.Error(errNotInteger)
		return
	}
	if d == math.MinInt64 {
		c.w.Error(errDecrOverflow)
		return
	}
	c.incrBy(args[1], -d)
}

func (c *conn) incrBy(key []byte, delta int64) {
	n, err := c.s.backend.IncrBy(c.reqCtx(), key, delta)
	c.intReply(n, err)
}

// cmdMGet answers MGET key [key ...] with one value or null per key.
func cmdMGet(c *conn, args [][]byte) {
	vals, found, err := c.s.backend.MGet(c.reqCtx(), args[1:])
	if err != nil {
		c.backendError(err)
		return
	}
	c.w.ArrayHeader(len(args) - 1)
	for i := range args[1:] {
		if i < len(found) && found[i] {
			c.w.Bulk(vals[i])
		} else {
			c.w.Null()
		}
	}
}

// cmdMSet answers MSET key value [key value ...]. An odd number of key/value arguments is an
// arity error in Redis, not a syntax error.
func cmdMSet(c *conn, args [][]byte) {
	if len(args)%2 == 0 {
		c.arityError("mset")
		return
	}
	if err := c.s.backend.MSet(c.reqCtx(), args[1:]); err != nil {
		c.backendError(err)
		return
	}
	c.w.OK()
}

// cmdDBSize answers DBSIZE.
func cmdDBSize(c *conn, args [][]byte) {
	n, err := c.s.backend.DBSize(c.reqCtx())
	c.intReply(n, err)
}

// cmdScan answers SCAN cursor [MATCH pattern] [COUNT count] [TYPE type] with
// [next-cursor, [key ...]], parsing options exactly as Redis's scanGenericCommand does.
func cmdScan(c *conn, args [][]byte) {
	cursor, ok := parseCursor(args[1])
	if !ok {
		c.w.Error(errInvalidCursor)
		return
	}
	count := int64(10)
	var match []byte
	onlyStrings := true
	for i := 2; i < len(args); i += 2 {
		if i+1 >= len(args) {
			c.w.Error(errSyntax)
			return
		}
		switch opt, val := args[i], args[i+1]; {
		case equalFold(opt, "count"):
			n, ok := parseInt(val)
			if !ok {
				c.w.Error(errNotInteger)
				return
			}
			if n < 1 {
				c.w.Error(errSyntax)
				return
			}
			count = n
		case equalFold(opt, "match"):
			// "*" matches everything; Redis skips matching for it, and so does the backend.
			if len(val) == 1 && val[0] == '*' {
				match = nil
			} else {
				match = val
			}
		case equalFold(opt, "type"):
			// Every Shoal value is a string. Redis 7 accepts unknown type names and returns
			// no keys for them, still advancing the cursor.
			onlyStrings = equalFold(val, "string")
		default:
			c.w.Error(errSyntax)
			return
		}
	}
	if count > math.MaxInt32 {
		count = math.MaxInt32
	}
	// The cursor names the slot it continues in: a connection that asked for redirects is sent
	// to that slot's owner, so every page it gets comes from the node that serves the slot.
	if moved, ok := c.redirectForSlot(uint16(min(cursor>>32, keyspace.NumSlots-1))); ok {
		c.w.Error(moved)
		return
	}
	next, keys, err := c.s.backend.Scan(c.reqCtx(), cursor, match, int(count))
	if err != nil {
		c.backendError(err)
		return
	}
	if !onlyStrings {
		keys = nil
	}
	c.w.ArrayHeader(2)
	c.w.Bulk(c.appendInt(next))
	c.w.ArrayHeader(len(keys))
	for _, k := range keys {
		c.w.Bulk(k)
	}
}
