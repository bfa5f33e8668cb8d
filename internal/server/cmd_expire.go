package server

import (
	"bytes"
	"math"

	"github.com/shoal-kv/shoal/internal/group"
)

// Expiry commands. Times travel to the backend as absolute Unix milliseconds: a relative time is
// added to this server's clock here, once, so that a forwarded or retried command means the
// same instant wherever it is applied.

// setExpireAt converts the expiry argument of SET, SETEX or PSETEX to Unix milliseconds as
// Redis's getExpireMillisecondsOrReply does: a positive integer that still fits in an int64 once
// in milliseconds and, if relative, added to the clock. name is the command's, for the error.
func (c *conn) setExpireAt(arg []byte, seconds, relative bool, name string) (int64, string) {
	n, ok := parseInt(arg)
	if !ok {
		return 0, errNotInteger
	}
	if n <= 0 || seconds && n > math.MaxInt64/1000 {
		return 0, invalidExpire(name)
	}
	if seconds {
		n *= 1000
	}
	if relative {
		now := c.s.nowMillis()
		if n > math.MaxInt64-now {
			return 0, invalidExpire(name)
		}
		n += now
	}
	return n, ""
}

// cmdSetEx answers SETEX key seconds value.
func cmdSetEx(c *conn, args [][]byte) { c.setEx(args, true, "setex") }

// cmdPSetEx answers PSETEX key milliseconds value.
func cmdPSetEx(c *conn, args [][]byte) { c.setEx(args, false, "psetex") }

func (c *conn) setEx(args [][]byte, seconds bool, name string) {
	at, e := c.setExpireAt(args[2], seconds, true, name)
	if e != "" {
		c.w.Error(e)
		return
	}
	res, err := c.s.backend.Set(c.reqCtx(), group.SetArgs{Key: args[1], Val: args[3], ExpireAt: at})
	writeSetReply(c, false, res, err)
}

// cmdExpire answers EXPIRE key seconds [NX|XX|GT|LT].
func cmdExpire(c *conn, args [][]byte) { c.expire(args, true, true, "expire") }

// cmdPExpire answers PEXPIRE key milliseconds [NX|XX|GT|LT].
func cmdPExpire(c *conn, args [][]byte) { c.expire(args, false, true, "pexpire") }

// cmdExpireAt answers EXPIREAT key unix-time-seconds [NX|XX|GT|LT].
func cmdExpireAt(c *conn, args [][]byte) { c.expire(args, true, false, "expireat") }

// cmdPExpireAt answers PEXPIREAT key unix-time-milliseconds [NX|XX|GT|LT].
func cmdPExpireAt(c *conn, args [][]byte) { c.expire(args, false, false, "pexpireat") }

// expire runs the EXPIRE family as Redis's expireGenericCommand does: options first (an
// unknown one, then conflicting ones, are errors before the time is even parsed), then the
// time, which may be negative but must not overflow when converted to milliseconds or added
// to the clock. A time not in the future deletes the key; the reply is 1 when the expiry was
// set (or the key deleted) and 0 when the key is missing or a condition failed.
func (c *conn) expire(args [][]byte, seconds, relative bool, name string) {
	a := group.ExpireArgs{Key: args[1]}
	for _, opt := range args[3:] {
		switch {
		case equalFold(opt, "nx"):
			a.NX = true
		case equalFold(opt, "xx"):
			a.XX = true
		case equalFold(opt, "gt"):
			a.GT = true
		case equalFold(opt, "lt"):
			a.LT = true
		default:
			c.w.Error("ERR Unsupported option " + cString(opt))
			return
		}
	}
	if a.NX && (a.XX || a.GT || a.LT) {
		c.w.Error(errExpireNX)
		return
	}
	if a.GT && a.LT {
		c.w.Error(errExpireGTLT)
		return
	}
	when, ok := parseInt(args[2])
	if !ok {
		c.w.Error(errNotInteger)
		return
	}
	if seconds {
		if when > math.MaxInt64/1000 || when < math.MinInt64/1000 {
			c.w.Error(invalidExpire(name))
			return
		}
		when *= 1000
	}
	if relative {
		now := c.s.nowMillis()
		if when > math.MaxInt64-now {
			c.w.Error(invalidExpire(name))
			return
		}
		when += now
	}
	a.At = when
	done, err := c.s.backend.Expire(c.reqCtx(), a)
	c.boolReply(done, err)
}

// cString is an argument as Redis prints it with %s into an error: cut at the first NUL (C
// strings end there), with CR and LF made spaces (addReplyErrorFormat).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return sanitize(string(b))
}

// cmdPersist answers PERSIST key: 1 if it removed an expiry, 0 if the key has none or is missing.
func cmdPersist(c *conn, args [][]byte) {
	done, err := c.s.backend.Expire(c.reqCtx(), group.ExpireArgs{Key: args[1], Persist: true})
	c.boolReply(done, err)
}

// boolReply writes 1 for true and 0 for false, or the reply for err.
func (c *conn) boolReply(b bool, err error) {
	var n int64
	if b {
		n = 1
	}
	c.intReply(n, err)
}

// cmdTTL answers TTL key: the seconds left, rounded to the nearest.
func cmdTTL(c *conn, args [][]byte) { c.ttl(args[1], false, false) }

// cmdPTTL answers PTTL key: the milliseconds left.
func cmdPTTL(c *conn, args [][]byte) { c.ttl(args[1], true, false) }

// cmdExpireTime answers EXPIRETIME key: the expiry as a Unix time in seconds, rounded.
func cmdExpireTime(c *conn, args [][]byte) { c.ttl(args[1], false, true) }

// cmdPExpireTime answers PEXPIRETIME key: the expiry as a Unix time in milliseconds.
func cmdPExpireTime(c *conn, args [][]byte) { c.ttl(args[1], true, true) }

// ttl answers the TTL family as Redis's ttlGenericCommand does: -2 for a missing key, -1 for
// one without expiry, else the time left (or the expiry itself, abs), never below 0, in
// milliseconds or rounded to the nearest second.
func (c *conn) ttl(key []byte, ms, abs bool) {
	at, ok, err := c.s.backend.ExpireTime(c.reqCtx(), key)
	switch {
	case err != nil:
		c.backendError(err)
		return
	case !ok:
		c.w.Int(-2)
		return
	case at == 0:
		c.w.Int(-1)
		return
	}
	t := at
	if !abs {
		t -= c.s.nowMillis()
	}
	t = max(t, 0)
	if !ms {
		// (t+500)/1000 without overflowing for an expiry near the int64 limit (PEXPIREAT
		// accepts any), where Redis's C arithmetic still gives the rounded value.
		t = t/1000 + (t%1000+500)/1000
	}
	c.w.Int(t)
}

// cmdGetEx answers GETEX key [EX s|PX ms|EXAT t|PXAT t|PERSIST]: the value, with its expiry set
// or removed in the same step. As in Redis's getexCommand, the options are checked first, a
// missing key answers nil before the time is checked, and a time already past deletes the key
// (the value is still the answer).
func cmdGetEx(c *conn, args [][]byte) {
	var (
		f                 int // the time options and PERSIST seen (timeOption's bits)
		expire            []byte
		seconds, relative bool
	)
	for j := 2; j < len(args); j++ {
		opt := args[j]
		bit, sec, rel := timeOption(opt)
		switch {
		case bit != 0 && f&^bit == 0 && j+1 < len(args):
			f, expire, seconds, relative = f|bit, args[j+1], sec, rel
			j++
		case bit == 0 && equalFold(opt, "persist") && f&^optKeep == 0:
			f |= optKeep
		default:
			c.w.Error(errSyntax)
			return
		}
	}
	if f == 0 {
		cmdGet(c, args)
		return
	}
	a := group.ExpireArgs{Key: args[1], Persist: f == optKeep}
	if expire != nil {
		at, e := c.setExpireAt(expire, seconds, relative, "getex")
		if e != "" {
			if _, ok, err := c.getInto(args[1]); err != nil || !ok {
				c.valueReply(nil, false, err)
			} else {
				c.w.Error(e)
			}
			return
		}
		a.At = at
	}
	val, ok, err := c.s.backend.GetEx(c.reqCtx(), a)
	c.valueReply(val, ok, err)
}

// Bits of the options SET and GETEX share (parseExtendedStringArgumentsOrReply): each time
// option excludes the others and optKeep (KEEPTTL for SET, PERSIST for GETEX), and may repeat.
const (
	optEX = 1 << iota
	optPX
	optEXAT
	optPXAT
	optKeep
)

// timeOption tells which time option opt is (0: none) and how its time counts: in seconds or
// milliseconds, relative to the clock or absolute.
func timeOption(opt []byte) (bit int, seconds, relative bool) {
	switch {
	case equalFold(opt, "ex"):
		return optEX, true, true
	case equalFold(opt, "px"):
		return optPX, false, true
	case equalFold(opt, "exat"):
		return optEXAT, true, false
	case equalFold(opt, "pxat"):
		return optPXAT, false, false
	}
	return 0, false, false
}
