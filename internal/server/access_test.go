package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

func testStore(t *testing.T, text string) *auth.Store {
	t.Helper()
	specs, err := auth.ParseUsers(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore(specs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const testUsers = `
app     apw   read,write
reader  rpw   read
ops     opw   admin
`

func TestAuthRequired(t *testing.T) {
	e := startServer(t, func(c *Config) { c.Auth = testStore(t, testUsers) })
	r := e.dial(t)
	// Unknown commands and arity errors come first, as in Redis 7.
	r.do("-ERR unknown command 'nope', with args beginning with: \r\n", "nope")
	r.do("-ERR wrong number of arguments for 'get' command\r\n", "get")
	r.do("-NOAUTH Authentication required.\r\n", "get", "k")
	r.do("-NOAUTH Authentication required.\r\n", "set", "k", "v")
	r.do("-NOAUTH Authentication required.\r\n", "ping")
	r.do("-NOAUTH Authentication required.\r\n", "cluster", "slots")
	r.do("-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n", "hello", "2")
	// No default user: AUTH <password> tries the default user and fails.
	r.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "auth", "apw")
	r.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "auth", "app", "wrong")
	r.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "auth", "nobody", "apw")
	r.do("-ERR syntax error\r\n", "auth", "a", "b", "c")
	r.do("+OK\r\n", "auth", "app", "apw")
	r.do("+OK\r\n", "set", "k", "v")
	r.do("$1\r\nv\r\n", "get", "k")
	r.do("+PONG\r\n", "ping")
	r.do("-NOPERM User app has no permissions to run the 'config|get' command\r\n", "config", "get", "maxmemory")
	r.do("-NOPERM User app has no permissions to run the 'client|list' command\r\n", "client", "list")
	// A failed AUTH keeps the current user.
	r.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "auth", "ops", "x")
	r.do("$1\r\nv\r\n", "get", "k")

	ro := e.dial(t)
	ro.do("+OK\r\n", "auth", "reader", "rpw")
	ro.do("$1\r\nv\r\n", "get", "k")
	ro.do(":1\r\n", "exists", "k")
	ro.do("-NOPERM User reader has no permissions to run the 'set' command\r\n", "set", "k", "w")
	ro.do("-NOPERM User reader has no permissions to run the 'del' command\r\n", "del", "k")
	ro.do("-NOPERM User reader has no permissions to run the 'incr' command\r\n", "incr", "n")
	// Wrappers do not launder rights: the inner command is checked too.
	ro.do("-NOPERM User reader has no permissions to run the 'set' command\r\n", "shoal.fwd", "1", "set", "k", "w")
	ro.do("-NOPERM User reader has no permissions to run the 'shoal.at' command\r\n", "shoal.at", "1", "1", "0", "set", "k", "w")
	ro.do("-NOPERM User reader has no permissions to run the 'shoal.pull' command\r\n", "shoal.pull", "1", "0", "10", "100")

	op := e.dial(t)
	op.send("*5\r\n$5\r\nhello\r\n$1\r\n2\r\n$4\r\nauth\r\n$3\r\nops\r\n$3\r\nopw\r\n")
	if v, err := resp.NewReader(op.br, resp.Limits{}).ReadValue(); err != nil || v.Type != '*' || len(v.Array) != 14 {
		t.Fatalf("HELLO 2 AUTH: %+v, %v", v, err)
	}
	op.do("-NOPERM User ops has no permissions to run the 'get' command\r\n", "get", "k")
	op.do("*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n", "config", "get", "maxmemory")

	h := e.dial(t)
	h.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "hello", "2", "auth", "app", "nope")
	h.do("-NOAUTH Authentication required.\r\n", "get", "k")
}

// TestRequirePass covers the default user with a password (--requirepass), the one-argument
// AUTH and go-redis authenticating through HELLO/AUTH.
func TestRequirePass(t *testing.T) {
	e := startServer(t, func(c *Config) { c.Auth = testStore(t, "default secret all\n") })
	r := e.dial(t)
	r.do("-NOAUTH Authentication required.\r\n", "get", "k")
	r.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "auth", "nope")
	r.do("+OK\r\n", "auth", "secret")
	r.do("$-1\r\n", "get", "k")

	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: e.addr, Password: "secret", Protocol: 2})
	defer rc.Close()
	if err := rc.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatalf("go-redis with password: %v", err)
	}
	bad := redis.NewClient(&redis.Options{Addr: e.addr, Password: "wrong", Protocol: 2, MaxRetries: -1})
	defer bad.Close()
	if err := bad.Get(ctx, "a").Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("go-redis with a wrong password: %v", err)
	}
}

// TestNoAuthConfigured keeps Redis's replies for a server without passwords.
func TestNoAuthConfigured(t *testing.T) {
	e := startServer(t, nil)
	r := e.dial(t)
	r.do("-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n", "auth", "x")
	r.do("+OK\r\n", "auth", "default", "x")
	r.do("-WRONGPASS invalid username-password pair or user is disabled.\r\n", "auth", "other", "x")
	r.do("$-1\r\n", "get", "k")
}

// TestUnauthenticatedLimits checks that a connection that has not authenticated cannot make
// the server buffer a large request.
func TestUnauthenticatedLimits(t *testing.T) {
	e := startServer(t, func(c *Config) { c.Auth = testStore(t, testUsers) })
	r := e.dial(t)
	r.send("*1\r\n$100000\r\n")
	r.expect("-ERR Protocol error: invalid bulk length\r\n")
	r.expectEOF()
	r = e.dial(t)
	r.send("*1000\r\n")
	r.expect("-ERR Protocol error: invalid multibulk length\r\n")
	r.expectEOF()
	// After AUTH the configured limits apply.
	r = e.dial(t)
	r.do("+OK\r\n", "auth", "app", "apw")
	big := strings.Repeat("x", 100000)
	r.do("+OK\r\n", "set", "big", big)
}

// fixedLocator says the slots below split are local.
type fixedLocator struct{ split uint16 }

func (l fixedLocator) Locate(slot uint16) (bool, string) { return slot < l.split, "127.0.0.1:1" }

func TestMaxMemory(t *testing.T) {
	var used atomic.Int64
	e := startServer(t, func(c *Config) {
		c.MaxMemory = 1000
		c.UsedMemory = used.Load
	})
	r := e.dial(t)
	r.do("+OK\r\n", "set", "a", "1")
	r.do("*4\r\n$9\r\nmaxmemory\r\n$4\r\n1000\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n", "config", "get", "maxmemory*")
	used.Store(1000)
	const oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n"
	for _, cmd := range [][]string{
		{"set", "b", "1"}, {"append", "a", "x"}, {"incr", "n"}, {"incrby", "n", "2"}, {"decr", "n"},
		{"mset", "x", "1", "y", "2"}, {"shoal.cas", "a", "absent", "z"}, {"shoal.at", "5", "1", "0", "set", "b", "1"},
	} {
		r.do(oom, cmd...)
	}
	// Reads and deletes go on; nothing was evicted or half-applied.
	r.do("$1\r\n1\r\n", "get", "a")
	r.do(":0\r\n", "exists", "b", "x", "y", "n")
	r.do(":1\r\n", "del", "a")
	used.Store(999)
	r.do("+OK\r\n", "set", "b", "1")
}

func TestMaxMemoryOnlyLocalKeys(t *testing.T) {
	var used atomic.Int64
	used.Store(1 << 30)
	// "a" hashes to 15495, "b" to 3300: split at 10000 makes b local and a remote.
	e := startServer(t, func(c *Config) {
		c.MaxMemory = 1000
		c.UsedMemory = used.Load
		c.Router = fixedLocator{split: 10000}
	})
	if keyspace.Slot([]byte("a")) < 10000 || keyspace.Slot([]byte("b")) >= 10000 {
		t.Fatal("test keys hash differently than assumed")
	}
	r := e.dial(t)
	r.do("-OOM command not allowed when used memory > 'maxmemory'.\r\n", "set", "b", "1")
	// A key served by another group is forwarded (here: to the fake backend); its owner
	// applies its own limit.
	r.do("+OK\r\n", "set", "a", "1")
	r.do("-OOM command not allowed when used memory > 'maxmemory'.\r\n", "mset", "a", "1", "b", "2")
}

func TestTLSClientPort(t *testing.T) {
	set, err := tlsconf.DemoSet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := startServer(t, func(c *Config) { c.TLS = set.Server })
	anon := set.Client.Clone() // trusts the CA, presents no client certificate
	anon.Certificates = nil
	nc, err := tls.Dial("tcp", e.addr, tlsconf.ForAddr(anon, e.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	rc.do("+PONG\r\n", "ping")
	rc.do("+OK\r\n", "set", "k", "v")
	rc.do("$1\r\nv\r\n", "get", "k")

	// go-redis over TLS.
	ctx := context.Background()
	gr := redis.NewClient(&redis.Options{Addr: e.addr, TLSConfig: tlsconf.ForAddr(anon, e.addr), Protocol: 2})
	defer gr.Close()
	if v, err := gr.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("go-redis over TLS: %q, %v", v, err)
	}

	// A plaintext client gets nothing it can parse as RESP, and the server stays healthy.
	p, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pr := &rawConn{t: t, nc: p, br: bufio.NewReader(p)}
	pr.send("*1\r\n$4\r\nPING\r\n")
	b, _ := pr.br.ReadByte()
	if b == '+' {
		t.Fatal("plaintext PING answered on a TLS port")
	}
	rc.do("+PONG\r\n", "ping")
}
