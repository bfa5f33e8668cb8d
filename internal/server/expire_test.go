package server

import (
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testClock is a clock a test moves by hand, shared by the server (Config.Clock) and the fake
// backend, so that TTLs and expiries are exact.
type testClock struct{ ms atomic.Int64 }

func (c *testClock) now() time.Time   { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) advance(ms int64) { c.ms.Add(ms) }

// t0 is the clock's start, in Unix milliseconds.
const t0 = 1_700_000_000_000

// startClocked starts a server whose clock, and its fake backend's, stands at t0 until moved.
func startClocked(t *testing.T) (*rawConn, *testClock) {
	t.Helper()
	clk := &testClock{}
	clk.ms.Store(t0)
	e := startServer(t, func(cfg *Config) {
		cfg.Clock = clk.now
		cfg.Backend.(*fakeBackend).now = clk.now
	})
	return e.dial(t), clk
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// intReply is the RESP encoding of n.
func intReply(n int64) string { return ":" + itoa(n) + "\r\n" }

type exchange struct {
	args []string
	want string
}

func run(c *rawConn, steps []exchange) {
	c.t.Helper()
	for _, s := range steps {
		c.do(s.want, s.args...)
	}
}

func TestExpireOptionsAndErrors(t *testing.T) {
	c, _ := startClocked(t)
	unsupported := func(s string) string { return "-ERR Unsupported option " + s + "\r\n" }
	const (
		nx     = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
		gtlt   = "-ERR GT and LT options at the same time are not compatible\r\n"
		notInt = "-ERR value is not an integer or out of range\r\n"
	)
	invalid := func(name string) string { return "-ERR invalid expire time in '" + name + "' command\r\n" }
	run(c, []exchange{
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"EXPIRE", "k"}, "-ERR wrong number of arguments for 'expire' command\r\n"},
		{[]string{"PEXPIREAT", "k"}, "-ERR wrong number of arguments for 'pexpireat' command\r\n"},
		{[]string{"PERSIST"}, "-ERR wrong number of arguments for 'persist' command\r\n"},
		{[]string{"PERSIST", "k", "x"}, "-ERR wrong number of arguments for 'persist' command\r\n"},
		{[]string{"TTL", "k", "x"}, "-ERR wrong number of arguments for 'ttl' command\r\n"},
		{[]string{"PEXPIRETIME"}, "-ERR wrong number of arguments for 'pexpiretime' command\r\n"},
		{[]string{"SETEX", "k", "10"}, "-ERR wrong number of arguments for 'setex' command\r\n"},
		{[]string{"PSETEX", "k", "10", "v", "x"}, "-ERR wrong number of arguments for 'psetex' command\r\n"},
		// Options are checked first, an unknown one before conflicts, both before the time.
		{[]string{"EXPIRE", "k", "10", "FOO"}, unsupported("FOO")},
		{[]string{"EXPIRE", "k", "abc", "FOO"}, unsupported("FOO")},
		{[]string{"EXPIRE", "absent", "10", "nx", "bar"}, unsupported("bar")},
		{[]string{"EXPIRE", "k", "10", ""}, unsupported("")},
		{[]string{"EXPIRE", "k", "10", "a\x00b"}, unsupported("a")},
		{[]string{"EXPIRE", "k", "10", "a\r\nb"}, unsupported("a  b")},
		{[]string{"EXPIRE", "k", "abc", "NX", "XX"}, nx},
		{[]string{"PEXPIRE", "k", "10", "nx", "gt"}, nx},
		{[]string{"EXPIREAT", "k", "10", "lt", "NX"}, nx},
		{[]string{"EXPIRE", "k", "10", "gt", "lt"}, gtlt},
		{[]string{"EXPIRE", "k", "10", "XX", "GT", "LT"}, gtlt},
		{[]string{"EXPIRE", "k", "10", "GT", "LT", "NX"}, nx},
		{[]string{"EXPIRE", "k", "abc"}, notInt},
		{[]string{"EXPIRE", "k", ""}, notInt},
		{[]string{"EXPIRE", "k", " 10"}, notInt},
		{[]string{"EXPIRE", "k", "+10"}, notInt},
		{[]string{"EXPIRE", "k", "1.5"}, notInt},
		// Overflow by the unit's conversion or by adding the clock.
		{[]string{"EXPIRE", "k", "9223372036854775807"}, invalid("expire")},
		{[]string{"EXPIRE", "k", "9223372036854775"}, invalid("expire")},
		{[]string{"EXPIRE", "k", "-9223372036854775808"}, invalid("expire")},
		{[]string{"EXPIRE", "k", "-9223372036854776"}, invalid("expire")},
		{[]string{"PEXPIRE", "k", "9223372036854775807"}, invalid("pexpire")},
		{[]string{"PEXPIRE", "k", itoa(math.MaxInt64 - t0 + 1)}, invalid("pexpire")},
		{[]string{"EXPIREAT", "k", "9223372036854776"}, invalid("expireat")},
		{[]string{"EXPIREAT", "k", "-9223372036854776"}, invalid("expireat")},
		{[]string{"TTL", "k"}, ":-1\r\n"},
		// The largest times that fit.
		{[]string{"PEXPIRE", "k", itoa(math.MaxInt64 - t0)}, ":1\r\n"},
		{[]string{"PEXPIRETIME", "k"}, intReply(math.MaxInt64)},
		{[]string{"EXPIRETIME", "k"}, ":9223372036854776\r\n"}, // rounded, without overflow
		{[]string{"PTTL", "k"}, intReply(math.MaxInt64 - t0)},
		{[]string{"TTL", "k"}, intReply((math.MaxInt64-t0)/1000 + 1)},
		{[]string{"EXPIREAT", "k", "9223372036854775"}, ":1\r\n"},
		{[]string{"PEXPIRETIME", "k"}, ":9223372036854775000\r\n"},
		{[]string{"PEXPIREAT", "k", "9223372036854775807"}, ":1\r\n"},
		{[]string{"PEXPIRETIME", "k"}, intReply(math.MaxInt64)},
	})
}

func TestExpireSetsAndDeletes(t *testing.T) {
	c, clk := startClocked(t)
	run(c, []exchange{
		{[]string{"EXPIRE", "absent", "10"}, ":0\r\n"},
		{[]string{"PERSIST", "absent"}, ":0\r\n"},
		{[]string{"TTL", "absent"}, ":-2\r\n"},
		{[]string{"PTTL", "absent"}, ":-2\r\n"},
		{[]string{"EXPIRETIME", "absent"}, ":-2\r\n"},
		{[]string{"PEXPIRETIME", "absent"}, ":-2\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"PERSIST", "k"}, ":0\r\n"},
		{[]string{"EXPIRETIME", "k"}, ":-1\r\n"},
		{[]string{"PEXPIRETIME", "k"}, ":-1\r\n"},
		{[]string{"EXPIRE", "k", "100"}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":100\r\n"},
		{[]string{"PTTL", "k"}, ":100000\r\n"},
		{[]string{"EXPIRETIME", "k"}, intReply((t0 + 100_000) / 1000)},
		{[]string{"PEXPIRETIME", "k"}, intReply(t0 + 100_000)},
		{[]string{"PERSIST", "k"}, ":1\r\n"},
		{[]string{"PERSIST", "k"}, ":0\r\n"},
		{[]string{"TTL", "k"}, ":-1\r\n"},
		{[]string{"PEXPIRE", "k", "1500"}, ":1\r\n"},
		{[]string{"PTTL", "k"}, ":1500\r\n"},
		{[]string{"EXPIREAT", "k", itoa(t0/1000 + 50)}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":50\r\n"},
		{[]string{"PEXPIREAT", "k", itoa(t0 + 2)}, ":1\r\n"},
		{[]string{"GET", "k"}, "$1\r\nv\r\n"},
	})
	clk.advance(1)
	c.do("$1\r\nv\r\n", "GET", "k")
	c.do(":1\r\n", "PTTL", "k")
	clk.advance(1) // the expiry's own millisecond: gone
	run(c, []exchange{
		{[]string{"GET", "k"}, "$-1\r\n"},
		{[]string{"TTL", "k"}, ":-2\r\n"},
		{[]string{"EXPIRE", "k", "10"}, ":0\r\n"},
	})
	// A time not in the future deletes the key and answers 1: now, 0 (which the backend must
	// not take for "no expiry"), negative times, and relative times of 0 or less.
	for _, args := range [][]string{
		{"PEXPIREAT", "k", itoa(clk.ms.Load())}, {"PEXPIREAT", "k", "0"}, {"EXPIREAT", "k", "0"},
		{"PEXPIREAT", "k", "-1"}, {"EXPIREAT", "k", "-9223372036854775"}, {"EXPIRE", "k", "0"},
		{"EXPIRE", "k", "-1"}, {"PEXPIRE", "k", "0"}, {"PEXPIRE", "k", "-9223372036854775808"},
		{"PEXPIRE", "k", itoa(-clk.ms.Load())}, {"EXPIRE", "k", itoa(-clk.ms.Load() / 1000)},
		{"EXPIRE", "k", "0", "NX"}, {"EXPIREAT", "k", "0", "LT"},
	} {
		c.do("+OK\r\n", "SET", "k", "v")
		c.do(":1\r\n", args...)
		c.do(":0\r\n", "EXISTS", "k")
	}
}

// TestExpireConditions is the truth table of NX, XX, GT and LT, where a key without expiry
// counts as expiring never.
func TestExpireConditions(t *testing.T) {
	c, _ := startClocked(t)
	at := func(s int64) string { return itoa(t0/1000 + s) }
	run(c, []exchange{
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"EXPIREAT", "k", at(100), "XX"}, ":0\r\n"},
		{[]string{"EXPIREAT", "k", at(100), "GT"}, ":0\r\n"},
		{[]string{"EXPIREAT", "k", at(100), "XX", "GT"}, ":0\r\n"},
		{[]string{"EXPIREAT", "k", "0", "GT"}, ":0\r\n"},
		{[]string{"TTL", "k"}, ":-1\r\n"},
		{[]string{"EXPIREAT", "k", at(100), "NX"}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":100\r\n"},
		{[]string{"EXPIREAT", "k", at(50), "NX"}, ":0\r\n"},
		{[]string{"EXPIREAT", "k", at(100), "GT"}, ":0\r\n"}, // equal is not greater
		{[]string{"EXPIREAT", "k", at(100), "LT"}, ":0\r\n"}, // nor less
		{[]string{"EXPIREAT", "k", at(50), "GT"}, ":0\r\n"},
		{[]string{"EXPIREAT", "k", at(200), "LT"}, ":0\r\n"},
		{[]string{"EXPIREAT", "k", "0", "GT"}, ":0\r\n"}, // a past time that fails stays harmless
		{[]string{"TTL", "k"}, ":100\r\n"},
		{[]string{"EXPIREAT", "k", at(200), "GT"}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":200\r\n"},
		{[]string{"EXPIREAT", "k", at(150), "LT"}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":150\r\n"},
		{[]string{"EXPIREAT", "k", at(300), "XX", "GT"}, ":1\r\n"},
		{[]string{"EXPIREAT", "k", at(250), "xx", "lt"}, ":1\r\n"},
		{[]string{"EXPIREAT", "k", at(400), "XX"}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":400\r\n"},
		{[]string{"EXPIRE", "k", "10", "nx", "NX"}, ":0\r\n"}, // repeating an option is allowed
		{[]string{"EXPIRE", "k", "500", "GT", "gt"}, ":1\r\n"},
		{[]string{"TTL", "k"}, ":500\r\n"},
		{[]string{"PERSIST", "k"}, ":1\r\n"},
		{[]string{"EXPIRE", "k", "10", "LT"}, ":1\r\n"}, // less than never
		{[]string{"TTL", "k"}, ":10\r\n"},
	})
}

// TestTTLRounding: TTL rounds the time left to the nearest second, half up, as Redis's
// (ttl+500)/1000 does, and never answers less than 0 for a key that exists.
func TestTTLRounding(t *testing.T) {
	c, clk := startClocked(t)
	run(c, []exchange{
		{[]string{"SET", "k", "v", "PX", "100000"}, "+OK\r\n"},
		{[]string{"TTL", "k"}, ":100\r\n"},
	})
	for _, s := range []struct {
		advance  int64
		ttl, pms int64
	}{{400, 100, 99600}, {100, 100, 99500}, {1, 99, 99499}, {98_999, 1, 500}, {1, 0, 499}, {498, 0, 1}} {
		clk.advance(s.advance)
		c.do(intReply(s.ttl), "TTL", "k")
		c.do(intReply(s.pms), "PTTL", "k")
	}
	clk.advance(1)
	c.do(":-2\r\n", "TTL", "k")
	// EXPIRETIME rounds the same way.
	c.do("+OK\r\n", "SET", "k", "v")
	for at, want := range map[int64]int64{t0 + 200_499: (t0 + 200_000) / 1000, t0 + 200_500: (t0 + 201_000) / 1000} {
		c.do(":1\r\n", "PEXPIREAT", "k", itoa(at))
		c.do(intReply(want), "EXPIRETIME", "k")
	}
}

func TestSetExpiry(t *testing.T) {
	c, clk := startClocked(t)
	invalid := func(name string) string { return "-ERR invalid expire time in '" + name + "' command\r\n" }
	const notInt = "-ERR value is not an integer or out of range\r\n"
	run(c, []exchange{
		{[]string{"SET", "k", "v", "EX", "100"}, "+OK\r\n"},
		{[]string{"PTTL", "k"}, ":100000\r\n"},
		{[]string{"SET", "k", "v", "px", "1500"}, "+OK\r\n"},
		{[]string{"PTTL", "k"}, ":1500\r\n"},
		{[]string{"TTL", "k"}, ":2\r\n"},
		{[]string{"SET", "k", "w", "KEEPTTL"}, "+OK\r\n"},
		{[]string{"PTTL", "k"}, ":1500\r\n"},
		{[]string{"GET", "k"}, "$1\r\nw\r\n"},
		{[]string{"SET", "k", "x", "XX", "GET", "KEEPTTL"}, "$1\r\nw\r\n"},
		{[]string{"PTTL", "k"}, ":1500\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"TTL", "k"}, ":-1\r\n"},
		{[]string{"SET", "k", "v", "EXAT", itoa(t0/1000 + 50)}, "+OK\r\n"},
		{[]string{"TTL", "k"}, ":50\r\n"},
		{[]string{"SET", "k", "v", "PXAT", itoa(t0 + 1234)}, "+OK\r\n"},
		{[]string{"PTTL", "k"}, ":1234\r\n"},
		{[]string{"SET", "k", "v", "NX", "EX", "10"}, "$-1\r\n"},
		{[]string{"PTTL", "k"}, ":1234\r\n"},
		{[]string{"SET", "n", "v", "XX", "EX", "10"}, "$-1\r\n"},
		{[]string{"EXISTS", "n"}, ":0\r\n"},
		// A time already past writes nothing that lasts; GET still answers the old value.
		{[]string{"SET", "k", "w", "PXAT", "1", "GET"}, "$1\r\nv\r\n"},
		{[]string{"EXISTS", "k"}, ":0\r\n"},
		{[]string{"SET", "k", "w", "EXAT", itoa(t0 / 1000)}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$-1\r\n"},
		// Bounds: positive, fitting in milliseconds, and fitting once added to the clock.
		{[]string{"SET", "k", "v", "EX", "0"}, invalid("set")},
		{[]string{"SET", "k", "v", "PXAT", "-1"}, invalid("set")},
		{[]string{"SET", "k", "v", "EX", "9223372036854776"}, invalid("set")},
		{[]string{"SET", "k", "v", "EX", "9223372036854775"}, invalid("set")},
		{[]string{"SET", "k", "v", "EXAT", "9223372036854776"}, invalid("set")},
		{[]string{"SET", "k", "v", "PX", itoa(math.MaxInt64 - t0 + 1)}, invalid("set")},
		{[]string{"SET", "k", "v", "EX", "x"}, notInt},
		{[]string{"SET", "k", "v", "PX", itoa(math.MaxInt64 - t0)}, "+OK\r\n"},
		{[]string{"PEXPIRETIME", "k"}, intReply(math.MaxInt64)},
		{[]string{"SET", "k", "v", "EXAT", "9223372036854775"}, "+OK\r\n"},
		{[]string{"PEXPIRETIME", "k"}, ":9223372036854775000\r\n"},
		// SETEX and PSETEX.
		{[]string{"SETEX", "k", "0", "v"}, invalid("setex")},
		{[]string{"SETEX", "k", "-1", "v"}, invalid("setex")},
		{[]string{"SETEX", "k", "abc", "v"}, notInt},
		{[]string{"SETEX", "k", "9223372036854775", "v"}, invalid("setex")},
		{[]string{"PSETEX", "k", "0", "v"}, invalid("psetex")},
		{[]string{"PSETEX", "k", "-5", "v"}, invalid("psetex")},
		{[]string{"PSETEX", "k", itoa(math.MaxInt64 - t0 + 1), "v"}, invalid("psetex")},
		{[]string{"PEXPIRETIME", "k"}, ":9223372036854775000\r\n"}, // none of these wrote
		{[]string{"SETEX", "k", "100", "v1"}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$2\r\nv1\r\n"},
		{[]string{"PTTL", "k"}, ":100000\r\n"},
		{[]string{"PSETEX", "k", "250", "v2"}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$2\r\nv2\r\n"},
		{[]string{"PTTL", "k"}, ":250\r\n"},
	})
	clk.advance(249)
	c.do("$2\r\nv2\r\n", "GET", "k")
	clk.advance(1)
	c.do("$-1\r\n", "GET", "k")
	c.do(":-2\r\n", "PTTL", "k")
}

// TestExpiryCommandInfo checks the COMMAND INFO metadata of the expiry commands against Redis
// 7.0's (the compatibility test compares them byte for byte with a real redis-server).
func TestExpiryCommandInfo(t *testing.T) {
	for name, want := range map[string]struct {
		arity           int
		flags, acl, ksf string
	}{
		"expire":      {-3, "write fast", "@keyspace @write @fast", "RW update"},
		"pexpireat":   {-3, "write fast", "@keyspace @write @fast", "RW update"},
		"persist":     {2, "write fast", "@keyspace @write @fast", "RW update"},
		"setex":       {4, "write denyoom", "@write @string @slow", "OW update"},
		"psetex":      {4, "write denyoom", "@write @string @slow", "OW update"},
		"expiretime":  {2, "readonly fast", "@keyspace @read @fast", "RO access"},
		"pexpiretime": {2, "readonly fast", "@keyspace @read @fast", "RO access"},
		"pttl":        {2, "readonly fast", "@keyspace @read @fast", "RO access"},
	} {
		cmd := commands[name]
		if cmd == nil {
			t.Errorf("%s: not in the command table", name)
			continue
		}
		got := struct {
			arity           int
			flags, acl, ksf string
		}{cmd.arity, strings.Join(cmd.flags, " "), strings.Join(cmd.acl, " "), strings.Join(cmd.keySpecs[0].flags, " ")}
		if got != want || cmd.firstKey != 1 || cmd.lastKey != 1 || cmd.step != 1 || len(cmd.keySpecs) != 1 {
			t.Errorf("%s: %+v (keys %d %d %d), want %+v", name, got, cmd.firstKey, cmd.lastKey, cmd.step, want)
		}
	}
}
