package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// heapInUse returns the live heap after a collection.
func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// TestOversizedAndMalformedInput: requests over the limits and malformed framing get Redis's
// protocol error and the connection is closed; nothing is executed.
func TestOversizedAndMalformedInput(t *testing.T) {
	e := startServer(t, func(c *Config) { c.Limits.MaxBuffered = 1 << 20 })
	for _, tc := range []struct{ name, in, want string }{
		{"bulk over proto-max-bulk-len", "*2\r\n$3\r\nGET\r\n$600000000\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"negative bulk", "*2\r\n$3\r\nGET\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"array over the limit", "*2000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"array count overflow", "*99999999999999999999999\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"nested arrays", strings.Repeat("*1\r\n", 10000), "-ERR Protocol error: expected '$', got '*'\r\n"},
		{"query buffer", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n", "-ERR Protocol error: query buffer limit exceeded\r\n"},
		{"inline too long", strings.Repeat("a", 100<<10), "-ERR Protocol error: too big inline request\r\n"},
		{"header too long", "*1\r\n$" + strings.Repeat("1", 100<<10), "-ERR Protocol error: too big bulk count string\r\n"},
		{"unbalanced quotes", "SET \"k v\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
		{"binary garbage", "\x01\xff\x02\r\n*1\r\n%\r\n", "-ERR unknown command '\x01\xff\x02', with args beginning with: \r\n-ERR Protocol error: expected '$', got '%'\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(t)
			c.send(tc.in)
			c.expect(tc.want)
			c.expectEOF()
		})
	}
	c := e.dial(t)
	c.do("$-1\r\n", "GET", "k") // nothing of the above was executed
}

// TestClaimedSizesDoNotAllocate: many connections each announcing a huge bulk or array and
// then sending little cost memory in proportion to what they sent, not to what they claimed.
func TestClaimedSizesDoNotAllocate(t *testing.T) {
	e := startServer(t, nil)
	before := heapInUse()
	const n = 40
	var conns []*rawConn
	for i := range n {
		c := e.dial(t)
		if i%2 == 0 {
			c.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n" + strings.Repeat("x", 4096))
		} else {
			c.send("*1000000\r\n$3\r\nSET\r\n$1\r\nk\r\n")
		}
		conns = append(conns, c)
	}
	// Let the server read what was sent.
	time.Sleep(200 * time.Millisecond)
	c := e.dial(t)
	c.do("+PONG\r\n", "PING")
	grown := heapInUse() - before
	t.Logf("heap grew %d KiB for %d connections claiming ~10 GiB", grown>>10, n)
	if grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB for requests that sent a few KiB each", grown>>20)
	}
	for _, c := range conns {
		c.nc.Close()
	}
}

// TestHalfSentRequest: a request that stops halfway holds its connection until the idle
// timeout, gets no reply (it never completed), and does not disturb other clients.
func TestHalfSentRequest(t *testing.T) {
	e := startServer(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	half := e.dial(t)
	half.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nab")
	other := e.dial(t)
	other.do("+PONG\r\n", "PING")
	start := time.Now()
	half.expectEOF()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("half-sent request held the connection for %v", d)
	}
	e.dial(t).do("$-1\r\n", "GET", "k") // the partial SET was never applied

	// Without an idle timeout the connection stays, and the server still closes promptly.
	e2 := startServer(t, nil)
	h2 := e2.dial(t)
	h2.send("*2\r\n$3\r\nGET\r\n$1")
	done := make(chan error, 1)
	go func() { done <- e2.srv.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a half-sent request")
	}
}

// TestSlowReader: a client that pipelines requests and does not read its replies is held back
// by TCP (the server stops reading from it) instead of making the server buffer its replies;
// others are served meanwhile, and the slow client later receives every reply in order.
func TestSlowReader(t *testing.T) {
	e := startServer(t, nil)
	val := strings.Repeat("v", 64<<10)
	setup := e.dial(t)
	setup.do("+OK\r\n", "SET", "big", val)
	before := heapInUse()
	slow := e.dial(t)
	const n = 300 // ~19 MiB of replies
	slow.send(strings.Repeat("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n", n))
	time.Sleep(200 * time.Millisecond)
	setup.do("+PONG\r\n", "PING")
	grown := heapInUse() - before
	t.Logf("heap grew %d KiB while %d KiB of replies waited", grown>>10, n*len(val)>>10)
	if grown > 8<<20 {
		t.Fatalf("server buffered %d MiB of replies for a client that does not read", grown>>20)
	}
	want := fmt.Sprintf("$%d\r\n%s\r\n", len(val), val)
	slow.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, len(want))
	for i := range n {
		if _, err := io.ReadFull(slow.br, buf); err != nil || string(buf) != want {
			t.Fatalf("reply %d: %v", i, err)
		}
	}
}

// idleConnCount returns how many idle connections the test can afford: 2000 unless the file
// descriptor limit is lower (each connection costs two descriptors in this process).
func idleConnCount(t *testing.T) int {
	var lim syscall.Rlimit
	n := 2000
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		n = min(n, int(lim.Cur-200)/2)
	}
	if n < 200 {
		t.Skipf("file descriptor limit %d too low", lim.Cur)
	}
	return n
}

// TestManyIdleConnections: thousands of idle clients cost a bounded amount of memory each and
// leave the server responsive; the idle timeout then reclaims all of them.
func TestManyIdleConnections(t *testing.T) {
	e := startServer(t, func(c *Config) { c.IdleTimeout = 2 * time.Second })
	n := idleConnCount(t)
	before := heapInUse()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatalf("dial after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	// Every connection is served: a PING on each gets its PONG.
	for _, c := range conns {
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 7)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "+PONG\r\n" {
			t.Fatalf("connection %d: %q, %v", i, buf, err)
		}
	}
	if got := e.srv.numClients(); got != n {
		t.Fatalf("numClients = %d, want %d", got, n)
	}
	perConn := (heapInUse() - before) / int64(n)
	t.Logf("%d idle connections, %d KiB of heap each (both ends)", n, perConn>>10)
	if perConn > 96<<10 {
		t.Fatalf("%d KiB of heap per idle connection", perConn>>10)
	}
	// Still responsive.
	start := time.Now()
	c := e.dial(t)
	c.do("+PONG\r\n", "PING")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("PING took %v with %d idle connections", d, n)
	}
	// The idle timeout closes them all.
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.numClients() > 1 { // c may still be counted
		if time.Now().After(deadline) {
			t.Fatalf("%d connections left after the idle timeout", e.srv.numClients())
		}
		time.Sleep(50 * time.Millisecond)
	}
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(conns[0]).ReadByte(); err == nil {
		t.Fatal("idle connection still open")
	}
}

// TestMaxClientsUnderFlood: connections beyond MaxClients are refused with Redis's error and
// closed, the admitted ones keep working, and no goroutine is left behind.
func TestMaxClientsUnderFlood(t *testing.T) {
	const limit = 50
	e := startServer(t, func(c *Config) { c.MaxClients = limit })
	var admitted []*rawConn
	for range limit {
		c := e.dial(t)
		c.do("+PONG\r\n", "PING")
		admitted = append(admitted, c)
	}
	for range 200 {
		c := e.dial(t)
		c.expect("-ERR max number of clients reached\r\n")
		c.expectEOF()
	}
	for _, c := range admitted {
		c.do("+PONG\r\n", "PING")
	}
}
