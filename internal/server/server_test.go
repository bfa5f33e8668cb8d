package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

type testEnv struct {
	srv  *Server
	be   *fakeBackend
	topo *fakeTopology
	addr string
}

// startServer starts a server on a free loopback port with a fake backend and topology; mod
// may adjust the config first.
func startServer(t *testing.T, mod func(*Config)) *testEnv {
	t.Helper()
	be := newFakeBackend()
	topo := &fakeTopology{}
	cfg := Config{
		Addr:     "127.0.0.1:0",
		Backend:  be,
		Topology: topo,
		Logger:   slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	srv := New(cfg)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	topo.setAddr(addr)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testEnv{srv: srv, be: be, topo: topo, addr: addr}
}

// rawConn is a plain TCP client that checks exact reply bytes.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (e *testEnv) dial(t *testing.T) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.nc.Write([]byte(s)); err != nil {
		r.t.Fatal(err)
	}
}

// expect reads exactly len(want) bytes and compares them.
func (r *rawConn) expect(want string) {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if n, err := io.ReadFull(r.br, got); err != nil {
		r.t.Fatalf("reading reply (want %q): got %q, %v", want, got[:n], err)
	}
	if string(got) != want {
		r.t.Fatalf("reply mismatch\n got %q\nwant %q", got, want)
	}
}

// do sends a multibulk command and checks the exact reply.
func (r *rawConn) do(want string, args ...string) {
	r.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	r.send(b.String())
	r.expect(want)
}

// expectEOF checks that the server closed the connection.
func (r *rawConn) expectEOF() {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := r.br.ReadByte()
	if err == nil {
		r.t.Fatalf("expected EOF, got byte %q", b)
	}
	if !errors.Is(err, io.EOF) && !isReset(err) {
		r.t.Fatalf("expected EOF, got %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestExactReplies(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG\r\n"},
		{[]string{"ping", "hi"}, "$2\r\nhi\r\n"},
		{[]string{"PING", "a", "b"}, "-ERR wrong number of arguments for 'ping' command\r\n"},
		{[]string{"ECHO", "x y"}, "$3\r\nx y\r\n"},
		{[]string{"GET"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"GeT"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"GET", "a", "b"}, "-ERR wrong number of arguments for 'get' command\r\n"},
		{[]string{"GET", "missing"}, "$-1\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"GET", "k"}, "$1\r\nv\r\n"},
		{[]string{"SET", "k"}, "-ERR wrong number of arguments for 'set' command\r\n"},
		{[]string{"SET", "k", "v", "NX", "XX"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v", "xx", "nx"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v", "FOO"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "w", "NX"}, "$-1\r\n"},
		{[]string{"SET", "k", "w", "NX", "GET"}, "$1\r\nv\r\n"},
		{[]string{"SET", "k", "w", "XX", "GET"}, "$1\r\nv\r\n"},
		{[]string{"SET", "new", "1", "XX"}, "$-1\r\n"},
		{[]string{"SET", "new", "1", "GET"}, "$-1\r\n"},
		{[]string{"SET", "new", "2", "get"}, "$1\r\n1\r\n"},
		{[]string{"SET", "k", "v", "KEEPTTL"}, "+OK\r\n"},
		{[]string{"SET", "k", "v", "EX", "0"}, "-ERR invalid expire time in 'set' command\r\n"},
		{[]string{"SET", "k", "v", "EX", "-5"}, "-ERR invalid expire time in 'set' command\r\n"},
		{[]string{"SET", "k", "v", "EX", "abc"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SET", "k", "v", "EX"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v", "EX", "1", "PX", "1"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v", "KEEPTTL", "EX", "1"}, "-ERR syntax error\r\n"},
		{[]string{"SET", "k", "v", "EX", "9223372036854775807"}, "-ERR invalid expire time in 'set' command\r\n"},
		{[]string{"SET", "k", "v", "PX", "9223372036854775807"}, "-ERR invalid expire time in 'set' command\r\n"},
		{[]string{"SET", "k", "v", "PXAT", "9223372036854775807"}, "+OK\r\n"},
		{[]string{"SET", "k", "v"}, "+OK\r\n"},
		{[]string{"APPEND", "k", "xyz"}, ":4\r\n"},
		{[]string{"GET", "k"}, "$4\r\nvxyz\r\n"},
		{[]string{"INCR", "k"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"INCR", "n"}, ":1\r\n"},
		{[]string{"INCRBY", "n", "10"}, ":11\r\n"},
		{[]string{"DECR", "n"}, ":10\r\n"},
		{[]string{"DECRBY", "n", "20"}, ":-10\r\n"},
		{[]string{"INCRBY", "n", "abc"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"INCRBY", "n", "01"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"INCRBY", "n", "9223372036854775808"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SET", "big", "9223372036854775807"}, "+OK\r\n"},
		{[]string{"INCR", "big"}, "-ERR increment or decrement would overflow\r\n"},
		{[]string{"DEL", "big"}, ":1\r\n"},
		{[]string{"DECRBY", "n", "-9223372036854775808"}, "-ERR decrement would overflow\r\n"},
		{[]string{"MSET", "a", "1", "b"}, "-ERR wrong number of arguments for 'mset' command\r\n"},
		{[]string{"MSET", "a"}, "-ERR wrong number of arguments for 'mset' command\r\n"},
		{[]string{"MSET", "a", "1", "b", "2"}, "+OK\r\n"},
		{[]string{"MGET", "a", "nope", "b"}, "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"},
		{[]string{"EXISTS", "a", "a", "nope"}, ":2\r\n"},
		{[]string{"DEL", "a", "a", "nope"}, ":1\r\n"},
		{[]string{"DBSIZE"}, ":4\r\n"},
		{[]string{"DBSIZE", "x"}, "-ERR wrong number of arguments for 'dbsize' command\r\n"},
		{[]string{"SCAN", "abc"}, "-ERR invalid cursor\r\n"},
		{[]string{"SCAN", "0", "COUNT", "0"}, "-ERR syntax error\r\n"},
		{[]string{"SCAN", "0", "COUNT", "x"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SCAN", "0", "COUNT"}, "-ERR syntax error\r\n"},
		{[]string{"SCAN", "0", "FOO", "bar"}, "-ERR syntax error\r\n"},
		{[]string{"SCAN", "0", "MATCH", "n*", "COUNT", "100"}, "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nn\r\n$3\r\nnew\r\n"},
		{[]string{"SCAN", "0", "COUNT", "2"}, "*2\r\n$1\r\n2\r\n*2\r\n$1\r\nb\r\n$1\r\nk\r\n"},
		{[]string{"SCAN", "0", "TYPE", "hash", "COUNT", "2"}, "*2\r\n$1\r\n2\r\n*0\r\n"},
		{[]string{"FOO", "a", "b"}, "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"},
		{[]string{"foo"}, "-ERR unknown command 'foo', with args beginning with: \r\n"},
		{[]string{"CLUSTER"}, "-ERR wrong number of arguments for 'cluster' command\r\n"},
		{[]string{"CLUSTER", "foo"}, "-ERR unknown subcommand 'foo'. Try CLUSTER HELP.\r\n"},
		{[]string{"cluster", "KEYSLOT"}, "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n"},
		{[]string{"CLUSTER", "KEYSLOT", "foo"}, ":12182\r\n"},
		{[]string{"CLUSTER", "KEYSLOT", "{user1000}.following"}, ":3443\r\n"},
		{[]string{"CLUSTER", "MYID"}, "$40\r\n" + testID1 + "\r\n"},
		{[]string{"HELLO", "3"}, "-NOPROTO unsupported protocol version\r\n"},
		{[]string{"HELLO", "abc"}, "-ERR Protocol version is not an integer or out of range\r\n"},
		{[]string{"HELLO", "2", "FOO"}, "-ERR Syntax error in HELLO option 'FOO'\r\n"},
		{[]string{"SELECT", "0"}, "+OK\r\n"},
		{[]string{"SELECT", "1"}, "-ERR SELECT is not allowed in cluster mode\r\n"},
		{[]string{"SELECT", "x"}, "-ERR value is not an integer or out of range\r\n"},
		{[]string{"SELECT", "99999999999"}, "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"},
		{[]string{"HELLO", "2", "AUTH", "bob", "x"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "pw"}, "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"},
		{[]string{"AUTH", "default", "pw"}, "+OK\r\n"},
		{[]string{"AUTH", "bob", "pw"}, "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
		{[]string{"AUTH", "a", "b", "c"}, "-ERR syntax error\r\n"},
		{[]string{"READONLY"}, "+OK\r\n"},
		{[]string{"READWRITE"}, "+OK\r\n"},
		{[]string{"ASKING"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETNAME", "my conn"}, "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$-1\r\n"},
		{[]string{"CLIENT", "SETNAME", "me"}, "+OK\r\n"},
		{[]string{"CLIENT", "GETNAME"}, "$2\r\nme\r\n"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "go-redis"}, "+OK\r\n"},
		{[]string{"CLIENT", "SETINFO", "foo", "x"}, "-ERR Unrecognized option 'foo'\r\n"},
		{[]string{"CLIENT", "ID"}, ":1\r\n"},
		{[]string{"CONFIG", "GET", "save"}, "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"},
		{[]string{"CONFIG", "GET", "APPENDONLY"}, "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"},
		{[]string{"CONFIG", "GET", "nosuch"}, "*0\r\n"},
		{[]string{"COMMAND", "DOCS"}, "*0\r\n"},
		{[]string{"COMMAND", "INFO", "nosuch"}, "*1\r\n$-1\r\n"},
	}
	for _, tc := range cases {
		c.do(tc.want, tc.args...)
	}
	// Inline commands share the same validation.
	c.send("FOO a b\r\n")
	c.expect("-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n")
	// A long unknown command's argument list stops once it reaches 128 bytes.
	long := strings.Repeat("x", 200)
	c.do("-ERR unknown command 'nope', with args beginning with: '"+strings.Repeat("x", 128)+"' \r\n", "nope", long, "y")
}

func TestQuitCloses(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	c.do("+OK\r\n", "QUIT")
	c.expectEOF()
}

func TestProtocolErrorCloses(t *testing.T) {
	e := startServer(t, nil)
	for _, tc := range []struct{ in, want string }{
		{"*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"*1\r\n+GET\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"},
		{"SET \"a b\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
	} {
		c := e.dial(t)
		c.do("+PONG\r\n", "PING")
		c.send(tc.in + "PING\r\n")
		c.expect(tc.want)
		c.expectEOF()
	}
}

func TestLimits(t *testing.T) {
	e := startServer(t, func(c *Config) { c.Limits.MaxBulk = 16 })
	c := e.dial(t)
	c.send("*2\r\n$3\r\nGET\r\n$17\r\n")
	c.expect("-ERR Protocol error: invalid bulk length\r\n")
	c.expectEOF()
}

func TestPipelining(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	const n = 1000
	var req, want strings.Builder
	for i := 1; i <= n; i++ {
		req.WriteString("*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n")
		fmt.Fprintf(&want, ":%d\r\n", i)
		// Interleave other commands so that replies of different shapes keep their order.
		if i%100 == 0 {
			fmt.Fprintf(&req, "*2\r\n$4\r\nECHO\r\n$%d\r\n%d\r\n", len(fmt.Sprint(i)), i)
			fmt.Fprintf(&want, "$%d\r\n%d\r\n", len(fmt.Sprint(i)), i)
		}
	}
	c.send(req.String())
	c.expect(want.String())
}

// TestGetReusesValueBuffer reads values of different sizes back to back, pipelined and not,
// so that a connection's reused GET buffer can never leak bytes of one value into another,
// including around a value too large to keep (maxValBuf).
func TestGetReusesValueBuffer(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	vals := map[string]string{
		"short": "x",
		"mid":   strings.Repeat("m", 300),
		"huge":  strings.Repeat("h", maxValBuf+1000),
		"empty": "",
	}
	for k, v := range vals {
		c.do("+OK\r\n", "SET", k, v)
	}
	bulk := func(v string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) }
	order := []string{"mid", "short", "huge", "short", "missing", "mid", "empty", "huge", "mid"}
	var req, want strings.Builder
	for _, k := range order {
		fmt.Fprintf(&req, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", len(k), k)
		if v, ok := vals[k]; ok {
			want.WriteString(bulk(v))
		} else {
			want.WriteString("$-1\r\n")
		}
	}
	c.send(req.String())
	c.expect(want.String())
	for _, k := range order {
		if v, ok := vals[k]; ok {
			c.do(bulk(v), "GET", k)
		}
	}
}

func TestBackendUnavailable(t *testing.T) {
	e := startServer(t, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond })
	c := e.dial(t)
	e.be.mu.Lock()
	e.be.fail = group.ErrNotLeader
	e.be.mu.Unlock()
	c.do("-TRYAGAIN shard unavailable: no raft leader\r\n", "GET", "k")
	e.be.mu.Lock()
	e.be.fail = errors.New("disk on fire\nreally")
	e.be.mu.Unlock()
	c.do("-TRYAGAIN disk on fire really\r\n", "SET", "k", "v")
	e.be.mu.Lock()
	e.be.fail, e.be.block = nil, true
	e.be.mu.Unlock()
	start := time.Now()
	c.do("-TRYAGAIN request timed out\r\n", "INCR", "k")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	e.be.mu.Lock()
	e.be.block = false
	e.be.mu.Unlock()
	c.do("$-1\r\n", "GET", "k")
}

func TestMaxClients(t *testing.T) {
	e := startServer(t, func(c *Config) { c.MaxClients = 1 })
	c1 := e.dial(t)
	c1.do("+PONG\r\n", "PING")
	c2 := e.dial(t)
	c2.expect("-ERR max number of clients reached\r\n")
	c2.expectEOF()
	// The first client is unaffected, and its slot frees up once it leaves.
	c1.do("+PONG\r\n", "PING")
	c1.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.numClients() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection not released")
		}
		time.Sleep(time.Millisecond)
	}
	c3 := e.dial(t)
	c3.do("+PONG\r\n", "PING")
}

func TestIdleTimeout(t *testing.T) {
	e := startServer(t, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	c := e.dial(t)
	c.do("+PONG\r\n", "PING")
	c.expectEOF()
}

func TestCloseWithOpenConnections(t *testing.T) {
	e := startServer(t, nil)
	e.be.block = true
	c := e.dial(t)
	c.send("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	idle := e.dial(t)
	idle.do("+PONG\r\n", "PING")
	time.Sleep(20 * time.Millisecond)
	done := make(chan error)
	go func() { done <- e.srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	idle.expectEOF()
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Fatal("still accepting after Close")
	}
}

func TestInfo(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	c.do("+OK\r\n", "SET", "a", "1")
	info := bulkCommand(t, c, "INFO")
	for _, want := range []string{
		"# Server\r\nredis_version:7.2.0\r\n",
		"\r\n\r\n# Clients\r\nconnected_clients:1\r\n",
		"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n",
		"# Raft\r\nraft_term:3\r\nraft_leader:1\r\n",
		"# Cluster\r\ncluster_enabled:1\r\n",
		"# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q:\n%s", want, info)
		}
	}
	if got := bulkCommand(t, c, "INFO", "cluster"); got != "# Cluster\r\ncluster_enabled:1\r\n" {
		t.Errorf("INFO cluster = %q", got)
	}
	if got := bulkCommand(t, c, "INFO", "nosuch"); got != "" {
		t.Errorf("INFO nosuch = %q", got)
	}
	if got := bulkCommand(t, c, "INFO", "keyspace", "CLUSTER"); got != "# Cluster\r\ncluster_enabled:1\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n" {
		t.Errorf("INFO keyspace cluster = %q", got)
	}
}

// bulkCommand sends a command whose reply is a bulk string and returns it.
func bulkCommand(t *testing.T, c *rawConn, args ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	c.send(b.String())
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil || line[0] != '$' {
		t.Fatalf("%v: reply %q, %v", args, line, err)
	}
	var n int
	fmt.Sscanf(line, "$%d\r\n", &n)
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestClusterNodesAndInfo(t *testing.T) {
	e := startServer(t, nil)
	e.topo.set(ClusterView{Epoch: 9, Shards: []ShardView{
		{
			Ranges: []keyspace.Range{{Lo: 0, Hi: 5000}, {Lo: 6000, Hi: 6001}},
			Nodes: []NodeView{
				{ID: testID2, Addr: "10.0.0.2:7000", Healthy: true},
				{ID: testID1, Addr: "10.0.0.1:7000", Leader: true, Healthy: true, Myself: true},
				{ID: testID3, Addr: "10.0.0.3:7000", Healthy: false},
			},
		},
		{
			Ranges: []keyspace.Range{{Lo: 5000, Hi: 6000}, {Lo: 6001, Hi: 16384}},
			Nodes:  []NodeView{{ID: strings.Repeat("4", 40), Addr: "10.0.0.4:7001", Healthy: true}},
		},
	}})
	c := e.dial(t)
	nodes := bulkCommand(t, c, "CLUSTER", "NODES")
	want := testID1 + " 10.0.0.1:7000@17000 myself,master - 0 0 9 connected 0-4999 6000\n" +
		testID2 + " 10.0.0.2:7000@17000 slave " + testID1 + " 0 0 9 connected\n" +
		testID3 + " 10.0.0.3:7000@17000 slave,fail " + testID1 + " 0 0 9 disconnected\n" +
		strings.Repeat("4", 40) + " 10.0.0.4:7001@17001 master - 0 0 9 connected 5000-5999 6001-16383\n"
	if nodes != want {
		t.Errorf("CLUSTER NODES\n got %q\nwant %q", nodes, want)
	}
	info := bulkCommand(t, c, "CLUSTER", "INFO")
	for _, l := range []string{"cluster_state:ok\r\n", "cluster_slots_assigned:16384\r\n", "cluster_known_nodes:4\r\n",
		"cluster_size:2\r\n", "cluster_current_epoch:9\r\n", "cluster_my_epoch:9\r\n"} {
		if !strings.Contains(info, l) {
			t.Errorf("CLUSTER INFO lacks %q:\n%s", l, info)
		}
	}
	// CLUSTER SLOTS: unhealthy replicas are omitted; one entry per range.
	c.do("*4\r\n"+
		"*4\r\n:0\r\n:4999\r\n*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$40\r\n"+testID1+"\r\n*3\r\n$8\r\n10.0.0.2\r\n:7000\r\n$40\r\n"+testID2+"\r\n"+
		"*4\r\n:6000\r\n:6000\r\n*3\r\n$8\r\n10.0.0.1\r\n:7000\r\n$40\r\n"+testID1+"\r\n*3\r\n$8\r\n10.0.0.2\r\n:7000\r\n$40\r\n"+testID2+"\r\n"+
		"*3\r\n:5000\r\n:5999\r\n*3\r\n$8\r\n10.0.0.4\r\n:7001\r\n$40\r\n"+strings.Repeat("4", 40)+"\r\n"+
		"*3\r\n:6001\r\n:16383\r\n*3\r\n$8\r\n10.0.0.4\r\n:7001\r\n$40\r\n"+strings.Repeat("4", 40)+"\r\n",
		"CLUSTER", "SLOTS")
}

func TestHello(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	c.do("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.0\r\n$5\r\nproto\r\n:2\r\n"+
		"$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$7\r\ncluster\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
		"HELLO", "2", "AUTH", "default", "x", "SETNAME", "n1")
	c.do("$2\r\nn1\r\n", "CLIENT", "GETNAME")
}

func TestKeyRefs(t *testing.T) {
	args := [][]byte{[]byte("mset"), []byte("a"), []byte("1"), []byte("b"), []byte("2")}
	k := keyRefs{args: args, cmd: commands["mset"]}
	if k.Len() != 2 || string(k.At(0)) != "a" || string(k.At(1)) != "b" {
		t.Fatalf("mset keys: %d", k.Len())
	}
	k = keyRefs{args: args[:3], cmd: commands["del"]}
	if k.Len() != 2 || string(k.At(1)) != "1" {
		t.Fatalf("del keys: %d", k.Len())
	}
	k = keyRefs{args: args[:2], cmd: commands["get"]}
	if k.Len() != 1 || string(k.At(0)) != "a" {
		t.Fatalf("get keys: %d", k.Len())
	}
}

func TestParseInt(t *testing.T) {
	for in, want := range map[string]bool{"0": true, "-1": true, "9223372036854775807": true,
		"-9223372036854775808": true, "9223372036854775808": false, "-9223372036854775809": false,
		"01": false, "+1": false, "-0": false, "": false, "-": false, " 1": false, "1 ": false,
		"99999999999999999999": false} {
		if _, ok := parseInt([]byte(in)); ok != want {
			t.Errorf("parseInt(%q) ok=%v, want %v", in, ok, want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*", "abc", true}, {"a?c", "abc", true}, {"a[bx]c", "abc", true},
		{"a[^b]c", "abc", false}, {"a[a-c]c", "abc", true}, {"a\\*", "a*", true}, {"a\\*", "ab", false},
		{"*max-*-len*", "proto-max-bulk-len", true}, {"SAVE", "save", true},
	} {
		if got := globMatch(tc.p, tc.s, true); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// TestAppendTooLarge: an APPEND that would pass the longest value gets Redis's error and changes
// nothing.
func TestAppendTooLarge(t *testing.T) {
	e := startServer(t, nil)
	e.be.mu.Lock()
	e.be.maxValue = 8
	e.be.mu.Unlock()
	c := e.dial(t)
	c.do(":5\r\n", "APPEND", "k", "12345")
	c.do("-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n", "APPEND", "k", "6789")
	c.do("$5\r\n12345\r\n", "GET", "k")
}
