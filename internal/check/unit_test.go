package check

import (
	"encoding/binary"
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/linearize"
)

// dialHello connects to addr as raft node from would, sending a transport hello and then msg.
func dialHello(t *testing.T, addr string, from uint64, msg string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var h [helloLen]byte
	binary.BigEndian.PutUint32(h[0:], helloLen-4)
	binary.BigEndian.PutUint32(h[4:], 0x53485254)
	binary.BigEndian.PutUint16(h[8:], 1)
	binary.BigEndian.PutUint64(h[12:], from)
	binary.BigEndian.PutUint64(h[20:], 2)
	if _, err := c.Write(append(h[:], msg...)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNetworkBlockDelayHeal drives a proxy in front of a plain listener standing in for a node.
func TestNetworkBlockDelayHeal(t *testing.T) {
	node, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	got := make(chan string, 16)
	go func() {
		for {
			c, err := node.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, helloLen+5)
				if _, err := io.ReadFull(c, b); err == nil {
					got <- string(b[helloLen:])
				}
			}()
		}
	}()
	n := NewNetwork(nil)
	defer n.Close()
	port, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	// Raft id r of the group is harness node 10+r; the proxy fronts node 12.
	sender := func(r uint64) (uint64, bool) { return 10 + r, r >= 1 && r <= 3 }
	if err := n.Listen(12, port, node.Addr().String(), sender); err != nil {
		t.Fatal(err)
	}
	recv := func(want string, within time.Duration) bool {
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("node received %q, want %q", s, want)
			}
			return true
		case <-time.After(within):
			return false
		}
	}

	c := dialHello(t, port, 1, "hello")
	if !recv("hello", 2*time.Second) {
		t.Fatal("message not forwarded")
	}
	c.Close()

	n.Block(11, 12)
	c = dialHello(t, port, 1, "block")
	if recv("block", 300*time.Millisecond) {
		t.Fatal("blocked link delivered a message")
	}
	c.Close()
	c = dialHello(t, port, 3, "other") // 13 -> 12 is not blocked
	if !recv("other", 2*time.Second) {
		t.Fatal("unblocked link did not deliver")
	}
	c.Close()

	n.Heal()
	n.Delay(11, 12, 300*time.Millisecond)
	start := time.Now()
	c = dialHello(t, port, 1, "delay")
	if !recv("delay", 3*time.Second) {
		t.Fatal("delayed message never arrived")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("delayed message arrived after %v", d)
	}
	c.Close()
}

// TestLost checks the read-back rule on hand-made histories.
func TestLost(t *testing.T) {
	ack := func(k linearize.Kind, v string, call, ret int64) write {
		return write{kind: k, key: "k", value: v, call: call, ret: ret, acked: true}
	}
	unknown := func(k linearize.Kind, v string, call int64) write {
		return write{kind: k, key: "k", value: v, call: call, ret: math.MaxInt64}
	}
	for _, tc := range []struct {
		name   string
		writes []write
		final  finalValue
		lost   int
	}{
		{"all present", []write{ack(linearize.Append, "a1;", 1, 2), ack(linearize.Append, "a2;", 3, 4)},
			finalValue{"a1;a2;", true}, 0},
		{"append missing", []write{ack(linearize.Append, "a1;", 1, 2), ack(linearize.Append, "a2;", 3, 4)},
			finalValue{"a1;", true}, 1},
		{"overwritten by a later set", []write{ack(linearize.Append, "a1;", 1, 2), ack(linearize.Put, "s1;", 3, 4)},
			finalValue{"s1;", true}, 0},
		{"append after the base set missing", []write{ack(linearize.Put, "s1;", 1, 2), ack(linearize.Append, "a1;", 3, 4)},
			finalValue{"s1;", true}, 1},
		{"concurrent with the base set", []write{ack(linearize.Put, "s1;", 1, 4), ack(linearize.Append, "a1;", 2, 3)},
			finalValue{"s1;", true}, 0},
		{"deleted", []write{ack(linearize.Append, "a1;", 1, 2), ack(linearize.Delete, "", 3, 4)},
			finalValue{}, 0},
		{"append after delete missing", []write{ack(linearize.Delete, "", 1, 2), ack(linearize.Append, "a1;", 3, 4)},
			finalValue{}, 1},
		{"unknown delete excuses", []write{unknown(linearize.Delete, "", 1), ack(linearize.Append, "a1;", 3, 4)},
			finalValue{}, 0},
	} {
		w := &workload{keys: []string{"k"}, writes: tc.writes}
		if n, detail := w.lost(map[string]finalValue{"k": tc.final}); n != tc.lost {
			t.Errorf("%s: lost %d, want %d (%v)", tc.name, n, tc.lost, detail)
		}
	}
}
