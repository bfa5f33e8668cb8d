package node_test

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
	"github.com/shoal-kv/shoal/internal/resp"
)

// TestPipelinedWritesKeepOrder sends one burst of interleaved writes and reads on a single
// connection (the server starts the writes without waiting, then answers in order) and checks
// every reply is the one a sequential execution gives.
func TestPipelinedWritesKeepOrder(t *testing.T) {
	c := nodetest.NewCluster(t, 1, 3)
	c.JoinAll()
	conn, err := net.Dial("tcp", c.GroupAddrs(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var buf []byte
	cmd := func(args ...string) {
		b := make([][]byte, len(args))
		for i, a := range args {
			b[i] = []byte(a)
		}
		buf = resp.AppendCommand(buf, b...)
	}
	type want struct {
		typ byte
		s   string
		n   int64
	}
	var wants []want
	for i := range 200 {
		k := "p" + strconv.Itoa(i%7)
		cmd("SET", k, strconv.Itoa(i))
		wants = append(wants, want{typ: '+', s: "OK"})
		cmd("INCR", "counter")
		wants = append(wants, want{typ: ':', n: int64(i + 1)})
		cmd("APPEND", "log", fmt.Sprintf("%d,", i))
		wants = append(wants, want{typ: ':', n: logLen(i)})
		if i%10 == 9 {
			cmd("GET", k)
			wants = append(wants, want{typ: '$', s: strconv.Itoa(i)})
		}
		cmd("SHOAL.AT", "77", strconv.Itoa(i+1), strconv.Itoa(i), "INCRBY", "sess", "2")
		wants = append(wants, want{typ: ':', n: int64(2 * (i + 1))})
	}
	cmd("SHOAL.AT", "77", "200", "199", "INCRBY", "sess", "2") // a retry of the last one
	wants = append(wants, want{typ: ':', n: 400})
	if _, err := conn.Write(buf); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := resp.NewReader(bufio.NewReader(conn), resp.DefaultLimits())
	for i, w := range wants {
		v, err := r.ReadValue()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if v.Type != w.typ || (w.typ == ':' && v.Int != w.n) || (w.typ != ':' && string(v.Str) != w.s) {
			t.Fatalf("reply %d = %c %q %d, want %c %q %d", i, v.Type, v.Str, v.Int, w.typ, w.s, w.n)
		}
	}
}

// logLen is the length of "0,1,...,i," .
func logLen(i int) int64 {
	n := 0
	for j := 0; j <= i; j++ {
		n += len(strconv.Itoa(j)) + 1
	}
	return int64(n)
}

// TestPipelinedWritesRespectAccessControl: writes pipelined by a connection that has not
// authenticated, or whose user may only read, are refused like unpipelined ones, and none of
// them is applied.
func TestPipelinedWritesRespectAccessControl(t *testing.T) {
	specs, err := auth.ParseUsers(strings.NewReader("internal int-pw all\nreader rd-pw read\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore(specs)
	if err != nil {
		t.Fatal(err)
	}
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 1, Replicas: 3, Configure: func(cfg *node.Config) {
		cfg.Auth, cfg.InternalUser, cfg.InternalPassword = st, "internal", "int-pw"
	}})
	c.JoinAll()
	send := func(prefix [][]string, n int) []resp.Value {
		conn, err := net.Dial("tcp", c.GroupAddrs(1)[0])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var buf []byte
		for _, args := range prefix {
			buf = resp.AppendCommand(buf, bytesOf(args)...)
		}
		for i := range n {
			buf = resp.AppendCommand(buf, bytesOf([]string{"SET", "acl" + strconv.Itoa(i), "x"})...)
		}
		if _, err := conn.Write(buf); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := resp.NewReader(bufio.NewReader(conn), resp.DefaultLimits())
		var out []resp.Value
		for range len(prefix) + n {
			v, err := r.ReadValue()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	for _, v := range send(nil, 5) {
		if v.Type != '-' || !strings.HasPrefix(string(v.Str), "NOAUTH") {
			t.Fatalf("pipelined SET before AUTH = %c %q, want NOAUTH", v.Type, v.Str)
		}
	}
	for _, v := range send([][]string{{"AUTH", "reader", "rd-pw"}}, 5)[1:] {
		if v.Type != '-' || !strings.HasPrefix(string(v.Str), "NOPERM") {
			t.Fatalf("pipelined SET by a read-only user = %c %q, want NOPERM", v.Type, v.Str)
		}
	}
	if n := c.Groups[1].Nodes[1].Group().Table().Len(); n != 0 {
		t.Fatalf("%d refused writes were applied", n)
	}
}

func bytesOf(args []string) [][]byte {
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	return b
}
