package transport

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/tlsconf"
)

// peerTLS generates a CA with a node certificate and returns its peer configuration.
func peerTLS(t *testing.T) *tlsconf.Set {
	t.Helper()
	set, err := tlsconf.DemoSet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// expectNothing checks that n receives no message for a while.
func expectNothing(t *testing.T, n *node, d time.Duration) {
	t.Helper()
	select {
	case m := <-n.recv:
		t.Fatalf("node %d received %v from %d over an unauthenticated link", n.cfg.ID, m.Type, m.From)
	case <-time.After(d):
	}
}

func TestMutualTLS(t *testing.T) {
	good, other := peerTLS(t), peerTLS(t)
	withTLS := func(set *tlsconf.Set) func(*Config) {
		return func(c *Config) { c.TLS = set.Peer }
	}
	a, b := newNode(t, 1, withTLS(good)), newNode(t, 2, withTLS(good))
	connect(a, b)
	for i := uint64(1); i <= 100; i++ {
		a.Send([]raftpb.Message{app(1, 2, i)})
		b.Send([]raftpb.Message{app(2, 1, i)})
	}
	expect(t, b, 100)
	expect(t, a, 100)

	// A node with a certificate from another CA, and a node without TLS, can neither reach a
	// nor be reached by it.
	stranger := newNode(t, 3, withTLS(other))
	plain := newNode(t, 4, nil)
	for _, n := range []*node{stranger, plain} {
		n.AddPeer(1, a.Addr())
		a.AddPeer(n.cfg.ID, n.Addr())
	}
	deadlineAt := time.Now().Add(500 * time.Millisecond)
	for i := uint64(1); time.Now().Before(deadlineAt); i++ {
		stranger.Send([]raftpb.Message{app(3, 1, i)})
		plain.Send([]raftpb.Message{app(4, 1, i)})
		a.Send([]raftpb.Message{app(1, 3, i), app(1, 4, i)})
		time.Sleep(20 * time.Millisecond)
	}
	expectNothing(t, a, 100*time.Millisecond)
	expectNothing(t, stranger, 0)
	expectNothing(t, plain, 0)
	select {
	case <-a.unreachable:
	default:
		t.Fatal("a never reported the unauthenticated peers unreachable")
	}
}

// TestStreamedSnapshotOverTLS: a streamed snapshot crosses a TLS link (where the connection has
// no ReadFrom shortcut) intact, beside ordinary messages.
func TestStreamedSnapshotOverTLS(t *testing.T) {
	set := peerTLS(t)
	data := make([]byte, streamChunk+777)
	for i := range data {
		data[i] = byte(i * 7)
	}
	src := newSnapSource(data)
	recv := make(chan received, 10)
	a := newNode(t, 1, func(c *Config) { c.TLS, c.OpenSnapshot = set.Peer, src.open })
	b := newNode(t, 2, func(c *Config) { c.TLS, c.ReceiveSnapshot = set.Peer, receiveInto(recv, nil) })
	connect(a, b)
	a.Send([]raftpb.Message{app(1, 2, 1), streamedSnap(1, 2, 9), app(1, 2, 2)})
	if m := receiveAroundSnapshot(t, b, func(raftpb.Message) {}); m.Snapshot.Metadata.Index != 9 {
		t.Fatalf("got snapshot %d, want 9", m.Snapshot.Metadata.Index)
	}
	if r := <-recv; r.err != nil || string(r.data) != string(data) {
		t.Fatalf("received %d bytes (err %v), want the source's %d", len(r.data), r.err, len(data))
	}
	waitSnapStatus(t, a, 2, false)
}
