package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
	"github.com/shoal-kv/shoal/internal/resp"
)

// These benchmarks drive a real single-node server (raft group of one, WAL fsync, standalone
// as `shoal server` runs it) over a real connection, so that allocs/op counts everything one
// request costs the process: parsing, routing, the read barrier or the proposal, apply, reply.
// The client side allocates nothing per request, so the figure is the server's. Watch allocs/op
// more than ns/op: the time depends on the disk and on whatever else the machine runs.
//
//	go test -run='^$' -bench=Node -benchmem ./internal/server/

// startNodeTB starts a standalone node, stopped when the test ends, and returns its client
// address. It may not have elected itself yet.
func startNodeTB(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	addrs := nodetest.FreeAddrs(tb, 2)
	members := map[uint64]node.Member{1: {ClientAddr: addrs[0], PeerAddr: addrs[1]}}
	n, err := node.Start(context.Background(), node.Config{
		ID: 1, GroupID: 1, Dir: filepath.Join(dir, "1"), Members: members,
		TickInterval: 20 * time.Millisecond, SnapshotEntries: 20000,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { n.Close() })
	return n.ClientAddr()
}

// benchConn is a client connection that sends pre-encoded commands and skips over replies
// without allocating.
type benchConn struct {
	nc net.Conn
	br *bufio.Reader
}

func dialBench(b *testing.B, addr string) *benchConn {
	b.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nc.Close() })
	c := &benchConn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	// Wait for a leader: the first write succeeds once the group of one has elected itself.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.send(b, resp.AppendCommand(nil, []byte("SET"), []byte("bench:probe"), []byte("1")))
		t, err := c.reply()
		if err == nil && t == '+' {
			return c
		}
		if time.Now().After(deadline) {
			b.Fatalf("server not serving: reply %q, err %v", t, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *benchConn) send(b *testing.B, p []byte) {
	if _, err := c.nc.Write(p); err != nil {
		b.Fatal(err)
	}
}

// reply reads one reply of the simple kinds GET and SET answer with and returns its type byte.
func (c *benchConn) reply() (byte, error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 3 {
		return 0, fmt.Errorf("short reply %q", line)
	}
	t := line[0]
	if t == '$' {
		// A short conversion passed to a parameter that does not escape: no allocation.
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return 0, err
		}
		if n >= 0 {
			if _, err := c.br.Discard(n + 2); err != nil {
				return 0, err
			}
		}
	}
	return t, nil
}

// runBench sends b.N commands from cmds (cycling), depth at a time, and checks every reply has
// type want.
func runBench(b *testing.B, c *benchConn, cmds [][]byte, depth int, want byte) {
	var batch []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += depth {
		n := min(depth, b.N-i)
		batch = batch[:0]
		for j := range n {
			batch = append(batch, cmds[(i+j)%len(cmds)]...)
		}
		c.send(b, batch)
		for range n {
			t, err := c.reply()
			if err != nil {
				b.Fatal(err)
			}
			if t != want {
				b.Fatalf("reply type %q, want %q", t, want)
			}
		}
	}
}

const benchKeys = 1024

func benchCommands(op string) [][]byte {
	cmds := make([][]byte, benchKeys)
	val := []byte("0123456789abcdef0123456789abcdef") // 32 bytes, as the project's benchmarks
	for i := range cmds {
		key := fmt.Appendf(nil, "key:%012d", i)
		if op == "SET" {
			cmds[i] = resp.AppendCommand(nil, []byte("SET"), key, val)
		} else {
			cmds[i] = resp.AppendCommand(nil, []byte("GET"), key)
		}
	}
	return cmds
}

func benchNodeOp(b *testing.B, op string, depth int) {
	c := dialBench(b, startNodeTB(b))
	sets := benchCommands("SET")
	if op == "GET" {
		// Load the keys so every GET finds a value.
		runBenchUntimed(b, c, sets)
		runBench(b, c, benchCommands("GET"), depth, '$')
		return
	}
	runBench(b, c, sets, depth, '+')
}

func runBenchUntimed(b *testing.B, c *benchConn, cmds [][]byte) {
	for _, cmd := range cmds {
		c.send(b, cmd)
		if t, err := c.reply(); err != nil || t != '+' {
			b.Fatalf("load: reply %q, err %v", t, err)
		}
	}
}

// BenchmarkNodeGet is one client sending one GET at a time.
func BenchmarkNodeGet(b *testing.B) { benchNodeOp(b, "GET", 1) }

// BenchmarkNodeGetPipelined is one client sending GETs 16 at a time.
func BenchmarkNodeGetPipelined(b *testing.B) { benchNodeOp(b, "GET", 16) }

// BenchmarkNodeSet is one client sending one SET at a time (each waits for its fsync).
func BenchmarkNodeSet(b *testing.B) { benchNodeOp(b, "SET", 1) }

// BenchmarkNodeSetPipelined is one client sending SETs 16 at a time.
func BenchmarkNodeSetPipelined(b *testing.B) { benchNodeOp(b, "SET", 16) }
