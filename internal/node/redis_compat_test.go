package node_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// compatCommands are sent, in order and on one connection, to a real redis-server and to a
// Shoal node: every reply must be byte for byte the same. They cover the commands Shoal
// implements with their options, edge values and errors, and the generic errors (unknown
// command, arity). Left out by design: SELECT and the cluster commands (Shoal is a cluster;
// this Redis is standalone), HELLO's server fields and HELLO 3 (Shoal speaks RESP2 only),
// COMMAND DOCS and the subcommands Shoal does not implement, SCAN cursors and INFO (their
// values are the implementation's), and times left that depend on when the command ran (PTTL
// of a key with an expiry; TTL only within 500 ms of setting it, where it rounds to the same).
// The expiry commands run on two keys, "t" and "tn", whose slots lie in different halves of the
// slot space, so that in a cluster of two groups one of them is forwarded.
var compatCommands = slices.Concat(baseCommands, expiryCommands("t"), expiryCommands("tn"),
	[][]string{{"QUIT", "x"}}) // QUIT takes any arguments and closes the connection: last

var baseCommands = [][]string{
	{"PING"}, {"ping", "hello world"}, {"PING", "a", "b"}, {"ECHO"}, {"ECHO", ""}, {"echo", "x y"},
	{"GET"}, {"GET", "k"}, {"GET", "k", "k"}, {"get", ""},
	{"SET", "k"}, {"SET", "k", "v"}, {"GET", "k"}, {"SET", "", ""}, {"GET", ""},
	{"SET", "k", "v", "NX"}, {"SET", "k", "w", "XX"}, {"GET", "k"}, {"SET", "k2", "v", "XX"},
	{"SET", "k", "v", "NX", "XX"}, {"SET", "k", "v", "xx", "nx"}, {"SET", "k", "v", "GET"},
	{"SET", "k", "v2", "get"}, {"SET", "absent", "v", "GET", "XX"}, {"SET", "absent", "v", "GET", "NX"},
	{"SET", "k", "v", "NX", "GET"}, {"SET", "k", "v", "FOO"}, {"SET", "k", "v", "GET", "GET"},
	{"SET", "k", "v", "KEEPTTL"}, {"SET", "k", "v", "KEEPTTL", "XX"},
	{"SET", "k", "v", "EX"}, {"SET", "k", "v", "EX", "0"}, {"SET", "k", "v", "EX", "-1"},
	{"SET", "k", "v", "EX", "abc"}, {"SET", "k", "v", "EX", "1.5"}, {"SET", "k", "v", "PX", "0"},
	{"SET", "k", "v", "EX", "10", "PX", "10"}, {"SET", "k", "v", "KEEPTTL", "EX", "10"},
	{"SET", "k", "v", "EX", "10", "KEEPTTL"}, {"SET", "k", "v", "EXAT", "0"}, {"SET", "k", "v", "PXAT", "-5"},
	{"SET", "k", "v", "EX", "9223372036854775807"}, {"SET", "k", "v", "PX", "99999999999999999999"},
	{"DEL"}, {"DEL", "k", "k", "absent"}, {"DEL", "k"}, {"EXISTS"}, {"SET", "e", "1"},
	{"EXISTS", "e", "absent", "e"}, {"exists", "absent"},
	{"SET", "n", "10"}, {"INCR", "n"}, {"INCR"}, {"INCR", "n", "1"}, {"DECR", "n"},
	{"INCRBY", "n", "5"}, {"INCRBY", "n", "-5"}, {"INCRBY", "n"}, {"INCRBY", "n", "abc"},
	{"INCRBY", "n", "1.5"}, {"INCRBY", "n", " 1"}, {"INCRBY", "n", "+1"}, {"INCRBY", "n", "-0"},
	{"INCRBY", "n", "01"}, {"INCRBY", "n", ""}, {"INCRBY", "n", "9223372036854775807"},
	{"INCRBY", "n", "9223372036854775808"}, {"DECRBY", "n", "-9223372036854775808"},
	{"DECRBY", "n", "9223372036854775807"}, {"DECRBY", "n", "9223372036854775807"}, {"GET", "n"},
	{"INCR", "fresh"}, {"DECR", "fresh2"}, {"DECRBY", "fresh3", "7"},
	{"SET", "f", "1.5"}, {"INCR", "f"}, {"SET", "s", " 1"}, {"INCR", "s"}, {"SET", "z", "007"},
	{"INCR", "z"}, {"SET", "em", ""}, {"INCR", "em"}, {"SET", "neg", "-0"}, {"INCR", "neg"},
	{"SET", "big", "9223372036854775807"}, {"INCR", "big"}, {"DECR", "big"}, {"GET", "big"},
	{"SET", "small", "-9223372036854775808"}, {"DECR", "small"}, {"INCRBY", "small", "-1"},
	{"SET", "long", "123456789012345678901234567890"}, {"INCR", "long"},
	{"APPEND"}, {"APPEND", "a"}, {"APPEND", "a", "xx"}, {"APPEND", "a", ""}, {"APPEND", "a", "yy"},
	{"GET", "a"}, {"APPEND", "n", "5"}, {"GET", "n"}, {"INCR", "n"},
	{"MSET"}, {"MSET", "a"}, {"MSET", "a", "1", "b"}, {"MSET", "a", "1", "b", "2"},
	{"MSET", "a", "3", "a", "4"}, {"MGET"}, {"MGET", "a", "b", "absent", "a"}, {"mget", "absent"},
	{"DBSIZE"}, {"DBSIZE", "x"}, {"SCAN"}, {"SCAN", "abc"}, {"SCAN", "0", "COUNT", "0"},
	{"SCAN", "0", "COUNT", "x"}, {"SCAN", "0", "COUNT"}, {"SCAN", "0", "MATCH"}, {"SCAN", "0", "FOO", "bar"},
	{"SCAN", "0", "TYPE"},
	{"FOO"}, {"foo", "a", "b"}, {"FOO", strings.Repeat("x", 200), "y"}, {""},
	{"CLIENT", "SETNAME", "has space"}, {"CLIENT", "SETNAME", "ok"}, {"CLIENT", "GETNAME"},
	{"CLIENT", "FOO"}, {"CLIENT"}, {"CONFIG", "GET"}, {"CONFIG", "FOO"},
	{"COMMAND", "FOO"}, {"READONLY", "x"}, {"ASKING", "x"},
	{"SETNX"}, {"SETNX", "sn"}, {"SETNX", "sn", "1"}, {"SETNX", "sn", "2"}, {"GET", "sn"},
	{"GETSET"}, {"GETSET", "gs"}, {"GETSET", "gs", "1"}, {"GETSET", "gs", "2"}, {"GET", "gs"},
	{"STRLEN"}, {"STRLEN", "gs", "x"}, {"STRLEN", "gs"}, {"STRLEN", "absent"}, {"SET", "es", ""}, {"STRLEN", "es"},
	{"TYPE"}, {"TYPE", "gs"}, {"TYPE", "absent"}, {"TYPE", "es"}, {"TTL"}, {"TTL", "gs"}, {"TTL", "absent"},
	{"PTTL", "gs", "x"}, {"PTTL", "gs"}, {"PTTL", "absent"},
	{"UNLINK"}, {"UNLINK", "gs", "sn", "absent", "gs"}, {"EXISTS", "gs", "sn"},
	{"COMMAND", "INFO", "setnx", "getset", "strlen", "type", "ttl", "pttl", "unlink", "getrange", "getdel"},
	{"GETDEL"}, {"GETDEL", "a", "b"}, {"SET", "gd", "v"}, {"GETDEL", "gd"}, {"GETDEL", "gd"}, {"EXISTS", "gd"},
	{"SET", "fresh", "x"}, {"GETDEL", "fresh"}, {"GETDEL", "absent"}, {"SET", "gd2", ""}, {"GETDEL", "gd2"},
	{"SET", "hw", "Hello World"}, {"GETRANGE", "hw", "0", "3"}, {"GETRANGE", "hw", "-3", "-1"},
	{"GETRANGE", "hw", "0", "-1"}, {"GETRANGE", "hw", "10", "100"}, {"GETRANGE", "hw", "-1", "-5"},
	{"GETRANGE", "hw", "5", "3"}, {"GETRANGE", "hw", "-100", "2"}, {"GETRANGE", "hw", "x", "1"},
	{"GETRANGE", "hw", "1", "x"}, {"GETRANGE", "hw", "0", "9223372036854775807"},
	{"GETRANGE", "hw", "-9223372036854775808", "-1"}, {"GETRANGE", "hw", "11", "11"},
	{"GETRANGE", "absent", "0", "-1"}, {"GETRANGE", "absent", "x", "-1"}, {"GETRANGE", "hw", "0"},
	{"GETRANGE", "es", "0", "-1"}, {"GETRANGE", "hw", "-1", "-1"}, {"GETRANGE", "hw", "3", "-100"},
	{"COMMAND", "INFO", "get", "set", "del", "exists", "append", "incr", "decr", "incrby", "decrby"},
	{"COMMAND", "INFO", "mget", "mset", "dbsize", "scan", "ping", "echo", "nosuchcommand"},
	{"COMMAND", "INFO", "info", "auth", "select", "quit", "readonly", "readwrite", "asking", "hello"},
	{"CONFIG", "GET", "proto-max-bulk-len"}, {"CONFIG", "GET", "maxclients"}, {"CONFIG", "GET", "nosuch"},
	{"AUTH", "x"}, {"AUTH", "a", "b"}, {"AUTH"}, {"HELLO", "abc"},
	{"HELLO", "2", "FOO"},
	{"COMMAND", "INFO", "setex", "psetex", "expire", "pexpire", "expireat", "pexpireat", "persist"},
	{"COMMAND", "INFO", "expiretime", "pexpiretime", "ttl", "pttl", "getex"}, {"GETEX"},
	{"SETEX"}, {"SETEX", "t", "10"}, {"PSETEX", "t", "10", "v", "x"}, {"EXPIRE"}, {"EXPIRE", "t"},
	{"PEXPIREAT", "t"}, {"PERSIST"}, {"PERSIST", "t", "x"}, {"EXPIRETIME"}, {"PEXPIRETIME", "t", "x"},
}

// expiryCommands exercise expiry on key k (which they leave deleted): SET's expiry options,
// SETEX and PSETEX, the EXPIRE family with its options, errors and overflows, PERSIST, the TTL
// family, which writes keep an expiry, and times already past deleting the key.
func expiryCommands(k string) [][]string {
	return [][]string{
		{"SET", k, "v", "EX", "100"}, {"TTL", k}, {"SET", k, "w", "KEEPTTL"}, {"TTL", k}, {"GET", k},
		{"SET", k, "x", "XX", "GET", "KEEPTTL"}, {"TTL", k}, {"SET", k, "v", "NX", "EX", "5"}, {"TTL", k},
		{"SET", k, "v", "PX", "100000"}, {"TTL", k}, {"SET", k, "v"}, {"TTL", k}, {"PTTL", k},
		{"SET", k, "v", "EXAT", "9999999999"}, {"EXPIRETIME", k}, {"PEXPIRETIME", k},
		{"SET", k, "v", "PXAT", "9999999999499"}, {"EXPIRETIME", k}, {"PEXPIRETIME", k},
		{"SET", k, "v", "PXAT", "9999999999500"}, {"EXPIRETIME", k},
		{"SET", k, "v", "PXAT", "9223372036854775807"}, {"PEXPIRETIME", k}, {"EXPIRETIME", k},
		{"SET", k, "v", "EXAT", "9223372036854775"}, {"PEXPIRETIME", k},
		{"SET", k, "v", "EXAT", "9223372036854776"}, {"SET", k, "v", "EX", "9223372036854775"},
		{"SET", k, "v", "PX", "9223372036854775807"}, {"SET", k, "v", "PXAT", "0"}, {"PEXPIRETIME", k},
		{"SET", k, "x", "PXAT", "1", "GET"}, {"GET", k}, {"EXISTS", k},
		{"SET", k, "v", "EXAT", "1"}, {"GET", k}, {"TTL", k},
		{"SETEX", k, "0", "v"}, {"SETEX", k, "-1", "v"}, {"SETEX", k, "abc", "v"},
		{"SETEX", k, "9223372036854775", "v"}, {"SETEX", k, "100", "v"}, {"TTL", k}, {"GET", k},
		{"PSETEX", k, "0", "v"}, {"PSETEX", k, "9223372036854775807", "v"}, {"PSETEX", k, "1.5", "v"},
		{"PSETEX", k, "100000", "w"}, {"TTL", k}, {"GET", k},
		{"SET", k, "v"}, {"EXPIRE", "absent", "100"}, {"EXPIRE", "absent", "100", "bogus"},
		{"EXPIRE", k, "100", "FOO"}, {"EXPIRE", k, "abc", "FOO"}, {"EXPIRE", k, "abc"}, {"EXPIRE", k, ""},
		{"EXPIRE", k, "100", ""}, {"EXPIRE", k, "100", "a\x00b"}, {"EXPIRE", k, "100", "a\r\nb"},
		{"EXPIRE", k, "100", "NX", "XX"}, {"EXPIRE", k, "100", "gt", "lt"}, {"EXPIRE", k, "100", "nx", "gt"},
		{"EXPIRE", k, "100", "xx", "gt", "lt"}, {"EXPIRE", k, "100", "gt", "lt", "nx"},
		{"EXPIRE", k, "9223372036854775807"}, {"EXPIRE", k, "9223372036854775"},
		{"EXPIRE", k, "-9223372036854776"}, {"PEXPIRE", k, "9223372036854775807"},
		{"EXPIREAT", k, "9223372036854776"}, {"EXPIREAT", k, "-9223372036854776"}, {"TTL", k},
		{"EXPIRE", k, "100", "XX"}, {"EXPIRE", k, "100", "GT"}, {"EXPIREAT", k, "0", "GT"}, {"TTL", k},
		{"EXPIRE", k, "100", "NX"}, {"TTL", k}, {"EXPIRE", k, "200", "NX"}, {"EXPIRE", k, "50", "GT"},
		{"EXPIRE", k, "200", "gt"}, {"TTL", k}, {"EXPIRE", k, "300", "LT"}, {"EXPIRE", k, "150", "LT"},
		{"TTL", k}, {"EXPIRE", k, "250", "XX", "GT"}, {"TTL", k}, {"EXPIRE", k, "10", "NX", "nx"},
		{"PEXPIRE", k, "100000"}, {"TTL", k}, {"EXPIREAT", k, "9999999999"}, {"EXPIRETIME", k},
		{"PEXPIREAT", k, "9999999999999", "LT"}, {"PEXPIREAT", k, "9999999998999", "LT"}, {"PEXPIRETIME", k},
		{"PEXPIREAT", k, "9223372036854775807"}, {"PEXPIRETIME", k}, {"EXPIRETIME", k},
		{"PERSIST", k}, {"PERSIST", k}, {"TTL", k}, {"PTTL", k}, {"EXPIRETIME", k}, {"PERSIST", "absent"},
		{"EXPIRE", k, "100", "LT"}, {"TTL", k},
		{"PEXPIREAT", k, "0"}, {"EXISTS", k}, {"SET", k, "v"}, {"EXPIRE", k, "-1"}, {"GET", k},
		{"SET", k, "v"}, {"EXPIREAT", k, "0", "NX"}, {"EXISTS", k}, {"SET", k, "v"}, {"EXPIRE", k, "100"},
		{"EXPIREAT", k, "1", "GT"}, {"EXISTS", k}, {"EXPIREAT", k, "1", "LT"}, {"EXISTS", k},
		{"SET", k, "v"}, {"PEXPIRE", k, "-9223372036854775808"}, {"EXISTS", k}, {"SET", k, "v"},
		{"EXPIREAT", k, "-9223372036854775"}, {"EXISTS", k}, {"SET", k, "v"}, {"PEXPIRE", k, "0"},
		{"TTL", k}, {"PTTL", k}, {"EXPIRETIME", k}, {"PEXPIRETIME", k}, {"EXPIRE", k, "100"}, {"PERSIST", k},
		{"SET", k, "v", "EX", "100"}, {"APPEND", k, "x"}, {"TTL", k}, {"GET", k}, {"SET", k, "1", "KEEPTTL"},
		{"INCR", k}, {"TTL", k}, {"INCRBY", k, "5"}, {"DECR", k}, {"TTL", k}, {"SETNX", k, "0"}, {"TTL", k},
		{"GETSET", k, "1"}, {"TTL", k}, {"EXPIRE", k, "100"}, {"MSET", k, "2"}, {"TTL", k},
		{"EXPIRE", k, "100"}, {"SET", k, "3"}, {"TTL", k}, {"EXPIRE", k, "100"}, {"GETDEL", k}, {"TTL", k},
		{"SETEX", k, "100", "v"}, {"DEL", k}, {"TTL", k},
		{"GETEX", k}, {"GETEX", k, "EX", "100"}, {"GETEX", k, "EX", "abc"}, {"GETEX", k, "FOO"},
		{"GETEX", k, "EX", "10", "PX", "10"}, {"GETEX", k, "PERSIST", "EX", "10"}, {"GETEX", k, "EX"},
		{"SET", k, "v"}, {"GETEX", k}, {"TTL", k}, {"GETEX", k, "EX", "100"}, {"TTL", k},
		{"GETEX", k, "PX", "200000"}, {"TTL", k}, {"GETEX", k, "persist", "PERSIST"}, {"TTL", k},
		{"GETEX", k, "EXAT", "9999999999"}, {"EXPIRETIME", k}, {"GETEX", k, "PXAT", "9999999999123"},
		{"PEXPIRETIME", k}, {"GETEX", k, "EX", "0"}, {"GETEX", k, "EX", "-5"}, {"GETEX", k, "EX", "abc"},
		{"GETEX", k, "EX", "9223372036854775"}, {"GETEX", k, "PX", "9223372036854775807"},
		{"GETEX", k, "NX"}, {"GETEX", k, "KEEPTTL"}, {"GETEX", k, "GET"}, {"GETEX", k, "EX", "5", "EX", "100"},
		{"TTL", k}, {"GETEX", k, "EXAT", "1"}, {"EXISTS", k}, {"GETEX", k, "EX", "100"},
	}
}

// TestRepliesMatchRedis compares Shoal's replies with a real redis-server's, command by
// command (scripts/install-test-deps.sh installs redis-server; without it the test is skipped).
func TestRepliesMatchRedis(t *testing.T) {
	redis, shoal, _ := redisAndShoal(t, 1)
	rc, sc := dialCompat(t, redis), dialCompat(t, shoal)
	for _, args := range compatCommands {
		want, got := rc.do(t, args), sc.do(t, args)
		if got != want {
			t.Errorf("%q:\n  redis: %q\n  shoal: %q", args, want, got)
		}
	}
}

// redisAndShoal starts a redis-server and a one-node Shoal cluster serving every slot, and
// returns their client addresses; without redis-server the test is skipped.
func redisAndShoal(t *testing.T, groups int) (redis, shoal string, c *nodetest.Cluster) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (scripts/install-test-deps.sh installs it)")
	}
	redis = startRedis(t, bin)
	c = nodetest.NewCluster(t, groups, 1)
	c.WaitSettled(c.JoinAll().Num)
	return redis, c.GroupAddrs(1)[0], c
}

// startRedis runs a redis-server without persistence on a free port and stops it (by pid)
// when the test ends.
func startRedis(t *testing.T, bin string) string {
	t.Helper()
	addr := nodetest.FreeAddrs(t, 1)[0]
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(end) {
			t.Fatalf("redis-server did not listen on %s", addr)
		}
	}
}

type compatConn struct {
	c  net.Conn
	br *bufio.Reader
}

func dialCompat(t *testing.T, addr string) *compatConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &compatConn{c: c, br: bufio.NewReader(c)}
}

// do sends args as a RESP array and returns the whole reply, as raw bytes.
func (cc *compatConn) do(t *testing.T, args []string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = cc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(cc.c, b.String()); err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	r, err := readRawReply(cc.br)
	if err != nil {
		t.Fatalf("%q: reading reply: %v", args, err)
	}
	return r
}

// readRawReply reads one RESP2 reply and returns its bytes.
func readRawReply(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 {
		return "", fmt.Errorf("short reply line %q", line)
	}
	switch line[0] {
	case '+', '-', ':':
		return line, nil
	case '$':
		n, err := strconv.Atoi(line[1 : len(line)-2])
		if err != nil || n < 0 {
			return line, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(br, b); err != nil {
			return "", err
		}
		return line + string(b), nil
	case '*':
		n, err := strconv.Atoi(line[1 : len(line)-2])
		if err != nil {
			return "", err
		}
		out := line
		for range n {
			sub, err := readRawReply(br)
			if err != nil {
				return "", err
			}
			out += sub
		}
		return out, nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// compatRaw are byte streams, each written on a fresh connection to both servers: everything
// each answers (until it closes the connection or falls silent) must be the same. They are the
// protocol's edge cases: inline commands and their quoting, empty and negative lengths, and
// malformed input, after which Redis answers a protocol error and closes.
var compatRaw = []string{
	"PING\r\n", "ping hello\n", "SET a b\r\nGET a\r\n", "\r\n\r\nPING\r\n", "  PING   x  \r\n",
	`SET "a b" "c\x41\n"` + "\r\n" + `GET "a b"` + "\r\n", `SET 'x y' 'it''s'` + "\r\n",
	`SET "a b` + "\r\n", `SET "a"b c` + "\r\n", `ECHO "\x4"` + "\r\n", `ECHO "\q"` + "\r\n",
	"*0\r\nPING\r\n", "*-1\r\nPING\r\n", "*1\r\n$-1\r\n", "*1\r\n$abc\r\n", "*abc\r\n",
	"*2\r\n$4\r\nECHO\r\n$1\r\nab\r\n", "*1\r\n$4\r\nPING\r\n*1\r\n", "*3000000000\r\n",
	"*1\r\n$4\r\nPING\n", "*1\r\nPING\r\n", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
}

// TestRawProtocolMatchesRedis compares how Shoal and a real redis-server answer raw byte streams.
func TestRawProtocolMatchesRedis(t *testing.T) {
	redis, shoal, _ := redisAndShoal(t, 1)
	for _, in := range compatRaw {
		want, got := rawExchange(t, redis, in), rawExchange(t, shoal, in)
		if got != want {
			t.Errorf("%q:\n  redis: %q\n  shoal: %q", in, want, got)
		}
	}
}

// rawExchange writes in on a new connection and returns all that comes back until the server
// closes the connection or sends nothing for a while.
func rawExchange(t *testing.T, addr, in string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, in); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return string(out)
		}
	}
}

// TestForwardedRepliesMatchRedis: the same commands, sent to one node of a cluster of two groups,
// so that about half of them are forwarded to the other group (and multi-key ones split between
// the two): forwarding must not change a reply. DBSIZE is left out: a node counts its own
// group's keys, as a Redis Cluster node does.
func TestForwardedRepliesMatchRedis(t *testing.T) {
	redis, shoal, c := redisAndShoal(t, 2)
	cfg, err := c.Ctrl.Query(context.Background(), -1)
	if err != nil {
		t.Fatal(err)
	}
	owned := map[uint64]int{}
	for _, args := range compatCommands {
		if len(args) > 1 {
			owned[cfg.Owner(keyspace.SlotString(args[1]))]++
		}
	}
	if owned[1] < 20 || owned[2] < 20 {
		t.Fatalf("the commands' first arguments fall %d on group 1 and %d on group 2: too few forwarded", owned[1], owned[2])
	}
	rc, sc := dialCompat(t, redis), dialCompat(t, shoal)
	for _, args := range compatCommands {
		if strings.EqualFold(args[0], "DBSIZE") && len(args) == 1 {
			continue
		}
		want, got := rc.do(t, args), sc.do(t, args)
		if got != want {
			t.Errorf("%q:\n  redis: %q\n  shoal: %q", args, want, got)
		}
	}
}
