package server_test

import (
	"bytes"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

// TestPipelinedWritesReplyAsSequential runs one script of writes (every kind the server starts
// without waiting, with their options, outcomes and errors) against a real node twice: once
// sent as a single pipeline, where the writes are started back to back and answered later,
// and once a command at a time, which takes the ordinary path. Every reply must be the same.
func TestPipelinedWritesReplyAsSequential(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	addr := testNode(t)
	script := func(p string) [][]string {
		k := func(s string) string { return p + s }
		return [][]string{
			{"SET", k("a"), "1"},
			{"SET", k("a"), "2", "GET"},
			{"SET", k("a"), "3", "NX"},
			{"SET", k("a"), "4", "XX", "GET"},
			{"SET", k("b"), "1", "XX"},
			{"SET", k("b"), "1", "NX", "GET"},
			{"SET", k("b"), "x", "GET"},
			{"GET", k("a")},
			{"INCR", k("c")},
			{"DECR", k("c")},
			{"INCRBY", k("c"), "10"},
			{"DECRBY", k("c"), "3"},
			{"DECRBY", k("c"), "-9223372036854775808"},
			{"INCRBY", k("c"), "9223372036854775807"},
			{"INCR", k("b")},
			{"APPEND", k("b"), "yz"},
			{"MSET", k("m1"), "1", k("m2"), "2"},
			{"MSET", k("m1")},
			{"SET", k("e"), "1", "EX", "100"},
			{"SET", k("e"), "2", "KEEPTTL", "GET"},
			{"SET", k("x"), "1", "PX", "100000"},
			{"SET", k("x"), "2", "PXAT", "1"}, // already past: deletes
			{"SETEX", k("se"), "100", "v"},
			{"PSETEX", k("pe"), "100000", "v"},
			{"SETEX", k("se2"), "0", "v"},
			{"SET", k("n"), "1", "EXAT", "9223372036854775"},
			{"TTL", k("e")}, // not started: answered once the writes before it are
			{"TTL", k("x")},
			{"TTL", k("se")},
			{"TTL", k("pe")},
			{"PEXPIRETIME", k("n")},
			{"SET", k("e"), "3"},
			{"TTL", k("e")},
			{"SET", k("e"), "1", "BOGUS"},
			{"DEL", k("a"), k("m1"), k("zz")},
			{"GET", k("m2")},
			{"SHOAL.AT", "42", "1", "0", "INCRBY", k("s"), "5"},
			{"SHOAL.AT", "42", "1", "0", "INCRBY", k("s"), "5"}, // a retry: the recorded reply
			{"EXISTS", k("a"), k("b"), k("m2")},
			{"SET", k("last"), "end"},
		}
	}
	pipelined := runScript(t, addr, script("p:"), true)
	sequential := runScript(t, addr, script("s:"), false)
	for i := range pipelined {
		if !bytes.Equal(pipelined[i], sequential[i]) {
			t.Errorf("command %d %q: pipelined reply %q, sequential reply %q", i, script("")[i], pipelined[i], sequential[i])
		}
	}
	// The expiries the started writes carried, as read back (well within the 500 ms that would
	// round TTL 100 down).
	var ttls []string
	for i, cmd := range script("") {
		if cmd[0] == "TTL" || cmd[0] == "PEXPIRETIME" {
			ttls = append(ttls, strings.TrimSpace(string(pipelined[i])))
		}
	}
	if want := []string{":100", ":-2", ":100", ":100", ":9223372036854775000", ":-1"}; !slices.Equal(ttls, want) {
		t.Errorf("TTLs after pipelined writes with expiries: %q, want %q", ttls, want)
	}
}

// runScript sends cmds and returns each reply re-encoded, all at once or one at a time.
func runScript(t *testing.T, addr string, cmds [][]string, pipeline bool) [][]byte {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	r := resp.NewReader(nc, resp.Limits{})
	encode := func(cmd []string) []byte {
		args := make([][]byte, len(cmd))
		for i, a := range cmd {
			args[i] = []byte(a)
		}
		return resp.AppendCommand(nil, args...)
	}
	read := func() []byte {
		v, err := r.ReadValue()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		w := resp.NewWriter(&b)
		w.Value(v)
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	var out [][]byte
	if pipeline {
		var buf []byte
		for _, c := range cmds {
			buf = append(buf, encode(c)...)
		}
		if _, err := nc.Write(buf); err != nil {
			t.Fatal(err)
		}
		for range cmds {
			out = append(out, read())
		}
		return out
	}
	for _, c := range cmds {
		if _, err := nc.Write(encode(c)); err != nil {
			t.Fatal(err)
		}
		out = append(out, read())
	}
	return out
}

// testNode starts a standalone node for a test and waits until it serves writes.
func testNode(t *testing.T) string {
	t.Helper()
	addr := startNodeTB(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.SetDeadline(time.Now().Add(2 * time.Second))
			nc.Write(resp.AppendCommand(nil, []byte("SET"), []byte("probe"), []byte("1")))
			b := make([]byte, 64)
			n, _ := nc.Read(b)
			nc.Close()
			if strings.HasPrefix(string(b[:n]), "+OK") {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("node not serving")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
