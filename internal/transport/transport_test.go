package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/freeport"
)

// deadline is generous: tests never assert on timing, only that things happen eventually.
const deadline = 15 * time.Second

// TestMain fails the run if any goroutine of this package is still alive after all tests: a
// hand-written goleak that catches writers, readers or link watchers without an owner.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoTransportGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// transportGoroutines returns the stacks of goroutines running code of this package, other
// than test functions themselves.
func transportGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/transport.") && !strings.Contains(g, "testing.tRunner") &&
			!strings.Contains(g, "testing.(*B)") && !strings.Contains(g, "transport.TestMain") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

func waitNoTransportGoroutines(d time.Duration) string {
	end := time.Now().Add(d)
	for {
		s := transportGoroutines()
		if s == "" || time.Now().After(end) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// node is a Transport under test plus what its callbacks observed.
type node struct {
	*Transport
	recv        chan raftpb.Message
	unreachable chan uint64
	snapStatus  chan snapStatus
}

type snapStatus struct {
	id     uint64
	failed bool
}

// newNode starts a transport on a free loopback port. mod adjusts the Config before New.
func newNode(t testing.TB, id uint64, mod func(*Config)) *node {
	t.Helper()
	return newNodeAt(t, id, "127.0.0.1:0", mod)
}

func newNodeAt(t testing.TB, id uint64, addr string, mod func(*Config)) *node {
	t.Helper()
	n := &node{
		recv:        make(chan raftpb.Message, 100000),
		unreachable: make(chan uint64, 100000),
		snapStatus:  make(chan snapStatus, 1000),
	}
	cfg := Config{
		ID:         id,
		ListenAddr: addr,
		Handler: func(ctx context.Context, m raftpb.Message) error {
			select {
			case n.recv <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Unreachable: func(id uint64) {
			select {
			case n.unreachable <- id:
			default:
			}
		},
		SnapshotStatus: func(id uint64, failed bool) { n.snapStatus <- snapStatus{id, failed} },
		MinBackoff:     5 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	n.Transport = tr
	return n
}

// connect makes every node a peer of every other.
func connect(nodes ...*node) {
	for _, a := range nodes {
		for _, b := range nodes {
			a.AddPeer(b.cfg.ID, b.Addr())
		}
	}
}

func app(from, to, index uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgApp, From: from, To: to, Term: 1, Index: index,
		Entries: []raftpb.Entry{{Term: 1, Index: index + 1, Data: []byte("payload")}}}
}

// expect receives exactly count messages on n and checks they come from each sender in
// increasing Index order, starting at 1.
func expect(t *testing.T, n *node, count int) map[uint64][]uint64 {
	t.Helper()
	byFrom := map[uint64][]uint64{}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for i := 0; i < count; i++ {
		select {
		case m := <-n.recv:
			if m.To != n.cfg.ID {
				t.Fatalf("node %d got message for %d", n.cfg.ID, m.To)
			}
			want := uint64(len(byFrom[m.From]) + 1)
			if m.Index != want {
				t.Fatalf("node %d: from %d got index %d, want %d (out of order or lost)",
					n.cfg.ID, m.From, m.Index, want)
			}
			if len(m.Entries) != 1 || string(m.Entries[0].Data) != "payload" {
				t.Fatalf("bad entries %+v", m.Entries)
			}
			byFrom[m.From] = append(byFrom[m.From], m.Index)
		case <-timer.C:
			t.Fatalf("node %d: received %d of %d messages", n.cfg.ID, i, count)
		}
	}
	return byFrom
}

func TestTwoTransportsInOrder(t *testing.T) {
	a, b := newNode(t, 1, nil), newNode(t, 2, nil)
	connect(a, b)
	const n = 2000
	for i := uint64(1); i <= n; {
		// Mix single sends and batches, as a raft Ready loop would.
		var batch []raftpb.Message
		for ; i <= n && len(batch) < int(i%7)+1; i++ {
			batch = append(batch, app(1, 2, i))
			b.Send([]raftpb.Message{app(2, 1, i)})
		}
		a.Send(batch)
	}
	expect(t, b, n)
	expect(t, a, n)
	select {
	case id := <-a.unreachable:
		t.Fatalf("unexpected unreachable %d", id)
	case id := <-b.unreachable:
		t.Fatalf("unexpected unreachable %d", id)
	default:
	}
}

func TestThreeTransports(t *testing.T) {
	nodes := []*node{newNode(t, 1, nil), newNode(t, 2, nil), newNode(t, 3, nil)}
	connect(nodes...)
	const n = 500
	for i := uint64(1); i <= n; i++ {
		for _, src := range nodes {
			var batch []raftpb.Message
			for _, dst := range nodes {
				// Including a message to self, which must be dropped silently.
				batch = append(batch, app(src.cfg.ID, dst.cfg.ID, i))
			}
			src.Send(batch)
		}
	}
	var wg sync.WaitGroup
	for _, dst := range nodes {
		wg.Go(func() {
			got := expect(t, dst, 2*n)
			if len(got) != 2 {
				t.Errorf("node %d heard from %d peers, want 2", dst.cfg.ID, len(got))
			}
			if _, ok := got[dst.cfg.ID]; ok {
				t.Errorf("node %d received its own message", dst.cfg.ID)
			}
		})
	}
	wg.Wait()
}

func TestPeerRestart(t *testing.T) {
	a, b := newNode(t, 1, nil), newNode(t, 2, nil)
	addr := b.Addr()
	a.AddPeer(2, addr)
	a.Send([]raftpb.Message{app(1, 2, 1)})
	expect(t, b, 1)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// The writer notices the closed link (even without sending) and reports it.
	waitUnreachable(t, a, 2)

	b2 := newNodeAt(t, 2, addr, nil)
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var first uint64
	for idx := uint64(2); first == 0; idx++ {
		a.Send([]raftpb.Message{app(1, 2, idx)})
		select {
		case m := <-b2.recv:
			first = m.Index
		case <-tick.C:
		case <-timer.C:
			t.Fatal("no message reached the restarted peer")
		}
	}
	// Later messages arrive in order on the new link.
	next := uint64(1 << 20)
	for i := range uint64(100) {
		a.Send([]raftpb.Message{app(1, 2, next+i)})
	}
	prev := first
	for want := next; want < next+100; {
		select {
		case m := <-b2.recv:
			if m.Index <= prev {
				t.Fatalf("out of order: %d after %d", m.Index, prev)
			}
			prev = m.Index
			if m.Index >= next {
				if m.Index != want {
					t.Fatalf("got %d, want %d", m.Index, want)
				}
				want++
			}
		case <-timer.C:
			t.Fatal("timed out waiting for messages after restart")
		}
	}
}

func waitUnreachable(t *testing.T, n *node, want uint64) {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		select {
		case id := <-n.unreachable:
			if id == want {
				return
			}
		case <-timer.C:
			t.Fatalf("Unreachable(%d) not reported", want)
		}
	}
}

// freeAddr returns a loopback address nothing listens on.
// freeAddr returns a free 127.0.0.1 address; pass one Picker for all the addresses of a cluster
// so that none repeats (nil: a single address).
func freeAddr(t testing.TB, pk *freeport.Picker) string {
	if pk == nil {
		pk = new(freeport.Picker)
	}
	a, err := pk.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestUnreachablePeerDown(t *testing.T) {
	a := newNode(t, 1, func(c *Config) { c.Peers = map[uint64]string{2: freeAddr(t, nil), 1: "self-ignored"} })
	a.Send([]raftpb.Message{app(1, 2, 1)})
	waitUnreachable(t, a, 2)
	// A snapshot to a down peer is reported failed.
	a.Send([]raftpb.Message{{Type: raftpb.MsgSnap, From: 1, To: 2}})
	waitSnapStatus(t, a, 2, true)
}

func TestUnreachableUnknownPeer(t *testing.T) {
	a := newNode(t, 1, nil)
	a.Send([]raftpb.Message{app(1, 7, 1), {Type: raftpb.MsgSnap, From: 1, To: 7}})
	for range 2 {
		if id := <-a.unreachable; id != 7 {
			t.Fatalf("Unreachable(%d), want 7", id)
		}
	}
	waitSnapStatus(t, a, 7, true)
}

func TestQueueFullDrops(t *testing.T) {
	var unreachable atomic.Int32
	// Not started: the writer is not draining, so the queue fills deterministically.
	tr, err := New(Config{
		ID: 1, ListenAddr: "127.0.0.1:0", QueueSize: 2,
		Peers:       map[uint64]string{2: "127.0.0.1:1"},
		Handler:     func(context.Context, raftpb.Message) error { return nil },
		Unreachable: func(id uint64) { unreachable.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Send([]raftpb.Message{app(1, 2, 1), app(1, 2, 2), app(1, 2, 3), app(1, 2, 4), app(1, 1, 5)})
	if got := unreachable.Load(); got != 2 {
		t.Fatalf("Unreachable called %d times, want 2", got)
	}
}

func waitSnapStatus(t *testing.T, n *node, id uint64, failed bool) {
	t.Helper()
	select {
	case s := <-n.snapStatus:
		if s.id != id || s.failed != failed {
			t.Fatalf("SnapshotStatus(%d, %v), want (%d, %v)", s.id, s.failed, id, failed)
		}
	case <-time.After(deadline):
		t.Fatalf("SnapshotStatus(%d, %v) not reported", id, failed)
	}
}

func TestLargeSnapshot(t *testing.T) {
	a, b := newNode(t, 1, nil), newNode(t, 2, nil)
	connect(a, b)
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	snap := raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Term: 3,
		Snapshot: &raftpb.Snapshot{Data: data, Metadata: raftpb.SnapshotMetadata{Index: 42, Term: 3}}}
	a.Send([]raftpb.Message{app(1, 2, 1), snap, app(1, 2, 2)})
	got := receiveAroundSnapshot(t, b, func(m raftpb.Message) {})
	if s := got.Snapshot; s.Metadata.Index != 42 || !bytes.Equal(s.Data, data) {
		t.Fatal("snapshot corrupted in transit")
	}
	waitSnapStatus(t, a, 2, false)
}

// receiveAroundSnapshot receives, on n, the two appends (indexes 1 and 2) and the MsgSnap a test
// sent between them: the appends in their order, the snapshot (its own lane) at any point. It
// calls check on each message as it arrives and returns the snapshot message.
func receiveAroundSnapshot(t *testing.T, n *node, check func(raftpb.Message)) raftpb.Message {
	t.Helper()
	var snap *raftpb.Message
	want := uint64(1)
	for want <= 2 || snap == nil {
		select {
		case m := <-n.recv:
			check(m)
			switch {
			case m.Type == raftpb.MsgSnap && snap == nil && m.Snapshot != nil:
				snap = &m
			case m.Type == raftpb.MsgApp && m.Index == want:
				want++
			default:
				t.Fatalf("got %v index %d, want the snapshot or append %d", m.Type, m.Index, want)
			}
		case <-time.After(deadline):
			t.Fatalf("appends up to %d and snapshot %v received, want both appends and the snapshot", want-1, snap != nil)
		}
	}
	return *snap
}

func TestSendFrameTooLarge(t *testing.T) {
	a := newNode(t, 1, func(c *Config) { c.MaxFrameSize = 1 << 20 })
	b := newNode(t, 2, nil)
	connect(a, b)
	big := raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2,
		Snapshot: &raftpb.Snapshot{Data: make([]byte, 2<<20)}}
	a.Send([]raftpb.Message{big, app(1, 2, 1)})
	waitSnapStatus(t, a, 2, true)
	waitUnreachable(t, a, 2)
	expect(t, b, 1) // the link survives an oversized message
}

// rawHello builds a hello frame with arbitrary fields.
func rawHello(magic uint32, version, flags uint16, from, to uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, helloSize)
	b = binary.BigEndian.AppendUint32(b, magic)
	b = binary.BigEndian.AppendUint16(b, version)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint64(b, from)
	return binary.BigEndian.AppendUint64(b, to)
}

func frame(t *testing.T, m raftpb.Message) []byte {
	t.Helper()
	p, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// expectClosed asserts the server closes c without sending anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed by server: n=%d err=%v", n, err)
	}
}

func TestBadHelloRejected(t *testing.T) {
	b := newNode(t, 2, nil)
	valid := frame(t, app(1, 2, 1))
	cases := map[string][]byte{
		"magic":   rawHello(0xdeadbeef, WireVersion, 0, 1, 2),
		"version": rawHello(HelloMagic, WireVersion+1, 0, 1, 2),
		"to":      rawHello(HelloMagic, WireVersion, 0, 1, 3),
		"from0":   rawHello(HelloMagic, WireVersion, 0, 0, 2),
		"flags":   rawHello(HelloMagic, WireVersion, 2, 1, 2),
		"http":    []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"short":   rawHello(HelloMagic, WireVersion, 0, 1, 2)[:4+helloSize-1],
	}
	for name, hello := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", b.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(append(hello, valid...)); err != nil {
				t.Fatal(err)
			}
			if name == "short" {
				_ = c.(*net.TCPConn).CloseWrite() // truncated hello, then EOF
			}
			expectClosed(t, c)
		})
	}
	select {
	case m := <-b.recv:
		t.Fatalf("message delivered over a rejected connection: %+v", m)
	default:
	}

	// The same bytes after a valid hello are accepted: the wire format is as documented.
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(append(rawHello(HelloMagic, WireVersion, 0, 1, 2), valid...)); err != nil {
		t.Fatal(err)
	}
	expect(t, b, 1)
}

func TestInboundFrameTooLarge(t *testing.T) {
	b := newNode(t, 2, func(c *Config) { c.MaxFrameSize = 1024 })
	c, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: make([]byte, 2048)}}}
	msg := append(rawHello(HelloMagic, WireVersion, 0, 1, 2), frame(t, big)...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	// A length beyond the limit is rejected from the header alone, before any body arrives.
	c2, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	// (The top bit is streamFlag, so 1<<30 is the largest plain length.)
	hdr := binary.BigEndian.AppendUint32(rawHello(HelloMagic, WireVersion, 0, 1, 2), 1<<30)
	if _, err := c2.Write(hdr); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c2)
	// So is a streamed-snapshot frame whose message is over the limit.
	c3, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	hdr = binary.BigEndian.AppendUint32(rawHello(HelloMagic, WireVersion, 0, 1, 2), streamFlag|1<<30)
	if _, err := c3.Write(hdr); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c3)
}

func TestRemoveAndAddPeer(t *testing.T) {
	a, b := newNode(t, 1, nil), newNode(t, 2, nil)
	connect(a, b)
	a.Send([]raftpb.Message{app(1, 2, 1)})
	expect(t, b, 1)

	a.RemovePeer(2)
	a.Send([]raftpb.Message{app(1, 2, 99)})
	waitUnreachable(t, a, 2)

	// Re-adding at a new address: a restarted peer elsewhere.
	b2 := newNode(t, 2, nil)
	a.AddPeer(2, b2.Addr())
	a.AddPeer(2, b2.Addr()) // idempotent
	a.Send([]raftpb.Message{app(1, 2, 1), app(1, 2, 2)})
	expect(t, b2, 2)
	select {
	case m := <-b.recv:
		t.Fatalf("removed peer's old address got %+v", m)
	default:
	}
}

func TestWrapHook(t *testing.T) {
	var wrapped atomic.Int32
	wrap := func(c net.Conn) net.Conn { wrapped.Add(1); return countingConn{c} }
	a := newNode(t, 1, func(c *Config) { c.Wrap = wrap })
	b := newNode(t, 2, func(c *Config) { c.Wrap = wrap })
	connect(a, b)
	a.Send([]raftpb.Message{app(1, 2, 1)})
	expect(t, b, 1)
	if got := wrapped.Load(); got != 2 { // a's dialled conn and b's accepted conn
		t.Fatalf("Wrap called %d times, want 2", got)
	}
}

type countingConn struct{ net.Conn }

func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	var nodes []*node
	for id := uint64(1); id <= 3; id++ {
		nodes = append(nodes, newNode(t, id, nil))
	}
	connect(nodes...)
	// Also a peer that is down, so a writer is mid-backoff at Close.
	nodes[0].AddPeer(9, freeAddr(t, nil))
	for i := uint64(1); i <= 10; i++ {
		for _, src := range nodes {
			var batch []raftpb.Message
			for _, dst := range []uint64{1, 2, 3, 9} {
				batch = append(batch, app(src.cfg.ID, dst, i))
			}
			src.Send(batch)
		}
	}
	for _, n := range nodes {
		expect(t, n, 20)
	}
	if transportGoroutines() == "" {
		t.Fatal("goroutine detection is broken: no transport goroutines while running")
	}
	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		_ = n.Close() // idempotent
	}
	// Close waited for its goroutines; the retry only covers the instant between a goroutine's
	// wg.Done (or close of its done channel) and its actual exit.
	if s := waitNoTransportGoroutines(deadline); s != "" {
		t.Fatalf("goroutines left after Close:\n%s", s)
	}
	end := time.Now().Add(deadline)
	for runtime.NumGoroutine() > before {
		if time.Now().After(end) {
			t.Fatalf("goroutines: %d before, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseUnblocksHandlerAndStalledWriter(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	// b's handler blocks until its ctx is cancelled, so a's writes eventually stall on a full
	// TCP window; Close of both must still return promptly.
	b := newNode(t, 2, func(c *Config) {
		c.Handler = func(ctx context.Context, m raftpb.Message) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-block:
				return nil
			}
		}
	})
	a := newNode(t, 1, nil)
	connect(a, b)
	big := raftpb.Message{Type: raftpb.MsgSnap, From: 1, To: 2, Snapshot: &raftpb.Snapshot{Data: make([]byte, 32<<20)}}
	a.Send([]raftpb.Message{app(1, 2, 1), big})
	time.Sleep(50 * time.Millisecond) // let the writer get into the big write; not a correctness wait
	done := make(chan struct{})
	go func() {
		_ = a.Close()
		_ = b.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("Close blocked")
	}
}

func TestStartContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr, err := New(Config{ID: 1, ListenAddr: "127.0.0.1:0",
		Handler: func(context.Context, raftpb.Message) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	addr := tr.Addr()
	cancel()
	// The listener closes once the context is cancelled.
	end := time.Now().Add(deadline)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(end) {
			t.Fatal("listener still open after ctx cancel")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestNewValidates(t *testing.T) {
	h := func(context.Context, raftpb.Message) error { return nil }
	bad := []Config{
		{ListenAddr: ":0", Handler: h},
		{ID: 1, Handler: h},
		{ID: 1, ListenAddr: ":0"},
		{ID: 1, ListenAddr: ":0", Handler: h, QueueSize: -1},
		{ID: 1, ListenAddr: ":0", Handler: h, Peers: map[uint64]string{0: "x:1"}},
		{ID: 1, ListenAddr: ":0", Handler: h, Peers: map[uint64]string{2: ""}},
	}
	for i, c := range bad {
		if _, err := New(c); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
}

func TestFrameReaderRejectsTruncation(t *testing.T) {
	var b bytes.Buffer
	b.Write(binary.BigEndian.AppendUint32(nil, 10))
	b.WriteString("short")
	fr := frameReader{r: bufio.NewReader(&b), max: 100}
	if _, _, err := fr.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want ErrUnexpectedEOF", err)
	}
}

// snapSource serves one snapshot's data to OpenSnapshot, optionally failing after failAfter
// bytes, and records what was opened and closed.
type snapSource struct {
	data      []byte
	failAfter int // >0: Read fails once this many bytes were read
	openErr   error
	opened    atomic.Int32
	closed    atomic.Int32
	md        chan raftpb.SnapshotMetadata
}

func newSnapSource(data []byte) *snapSource {
	return &snapSource{data: data, md: make(chan raftpb.SnapshotMetadata, 10)}
}

func (s *snapSource) open(md raftpb.SnapshotMetadata) (io.ReadCloser, int64, error) {
	s.md <- md
	if s.openErr != nil {
		return nil, 0, s.openErr
	}
	s.opened.Add(1)
	var r io.Reader = bytes.NewReader(s.data)
	if s.failAfter > 0 {
		r = io.MultiReader(io.LimitReader(r, int64(s.failAfter)), failingReader{})
	}
	return &closeCounter{Reader: r, n: &s.closed}, int64(len(s.data)), nil
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk read failed") }

type closeCounter struct {
	io.Reader
	n *atomic.Int32
}

func (c *closeCounter) Close() error { c.n.Add(1); return nil }

// received is what a ReceiveSnapshot callback was given.
type received struct {
	m    raftpb.Message
	data []byte
	size int64
	err  error
}

// receiveInto returns a ReceiveSnapshot that reads the whole data, reports it on ch, and then
// returns fail (nil: accept).
func receiveInto(ch chan<- received, fail error) func(raftpb.Message, io.Reader, int64) error {
	return func(m raftpb.Message, r io.Reader, size int64) error {
		b, err := io.ReadAll(r)
		ch <- received{m: m, data: b, size: size, err: err}
		if err != nil {
			return err
		}
		return fail
	}
}

func streamedSnap(from, to, index uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgSnap, From: from, To: to, Term: 3,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: index, Term: 3,
			ConfState: raftpb.ConfState{Voters: []uint64{1, 2}}}}}
}

// TestStreamedSnapshot: a MsgSnap without data is followed on the wire by its data, read from
// OpenSnapshot (in several chunks: it is larger than the buffers and streamChunk), which reaches
// ReceiveSnapshot byte for byte before the message reaches Handler.
func TestStreamedSnapshot(t *testing.T) {
	data := make([]byte, 2*streamChunk+12345)
	_, _ = rand.Read(data)
	src := newSnapSource(data)
	recv := make(chan received, 10)
	a := newNode(t, 1, func(c *Config) { c.OpenSnapshot = src.open })
	b := newNode(t, 2, func(c *Config) { c.ReceiveSnapshot = receiveInto(recv, nil) })
	connect(a, b)
	a.Send([]raftpb.Message{app(1, 2, 1), streamedSnap(1, 2, 42), app(1, 2, 2)})

	got := receiveAroundSnapshot(t, b, func(m raftpb.Message) {
		if m.Type == raftpb.MsgSnap && len(recv) == 0 {
			t.Fatal("snapshot message delivered before its data was received")
		}
	})
	if s := got.Snapshot; s.Metadata.Index != 42 || len(s.Data) != 0 {
		t.Fatalf("delivered snapshot %+v, want index 42 without data", s)
	}
	r := <-recv
	if r.err != nil || r.size != int64(len(data)) || !bytes.Equal(r.data, data) {
		t.Fatalf("received %d bytes (size %d, err %v), want the source's %d", len(r.data), r.size, r.err, len(data))
	}
	if r.m.Snapshot.Metadata.Index != 42 || r.m.Snapshot.Metadata.Term != 3 || r.m.From != 1 {
		t.Fatalf("callback got message %+v", r.m)
	}
	if md := <-src.md; md.Index != 42 || md.Term != 3 || len(md.ConfState.Voters) != 2 {
		t.Fatalf("OpenSnapshot asked for %+v", md)
	}
	waitSnapStatus(t, a, 2, false)
	if src.closed.Load() != 1 {
		t.Fatalf("source closed %d times, want 1", src.closed.Load())
	}
	// The link goes on carrying ordinary messages.
	a.Send([]raftpb.Message{app(1, 2, 3), app(1, 2, 4)})
	for want := uint64(3); want <= 4; want++ {
		select {
		case m := <-b.recv:
			if m.Index != want {
				t.Fatalf("got index %d, want %d", m.Index, want)
			}
		case <-time.After(deadline):
			t.Fatalf("message %d after the snapshot not received", want)
		}
	}
	select {
	case id := <-a.unreachable:
		t.Fatalf("unexpected unreachable %d", id)
	default:
	}
}

// sendUntilReceived sends MsgApps with increasing indexes from a to b until b receives one: the
// link may be backing off after a failure, which drops messages.
func sendUntilReceived(t *testing.T, a, b *node, from uint64) {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for idx := from; ; idx++ {
		a.Send([]raftpb.Message{app(1, 2, idx)})
		select {
		case m := <-b.recv:
			if m.Type != raftpb.MsgApp {
				t.Fatalf("got %v, want an append", m.Type)
			}
			return
		case <-tick.C:
		case <-timer.C:
			t.Fatal("the link did not recover")
		}
	}
}

// TestStreamedSnapshotSourceFails: a source that fails part-way fails the snapshot
// (SnapshotStatus failed), the receiver sees a truncated stream and does not deliver the
// message, and the link recovers for later messages. A source that cannot be opened drops the
// snapshot without harming the link at all.
func TestStreamedSnapshotSourceFails(t *testing.T) {
	data := make([]byte, streamChunk+streamChunk/2)
	_, _ = rand.Read(data)
	src := newSnapSource(data)
	src.failAfter = streamChunk + 1000
	recv := make(chan received, 10)
	a := newNode(t, 1, func(c *Config) { c.OpenSnapshot = src.open })
	b := newNode(t, 2, func(c *Config) { c.ReceiveSnapshot = receiveInto(recv, nil) })
	connect(a, b)
	a.Send([]raftpb.Message{app(1, 2, 1), streamedSnap(1, 2, 42)})
	waitSnapStatus(t, a, 2, true)
	waitUnreachable(t, a, 2)
	select {
	case r := <-recv:
		if r.err == nil || len(r.data) >= len(data) {
			t.Fatalf("receiver read %d bytes without error from a failed stream", len(r.data))
		}
	case <-time.After(deadline):
		t.Fatal("receiver callback not called")
	}
	if m := <-b.recv; m.Type != raftpb.MsgApp || m.Index != 1 {
		t.Fatalf("first message %v %d", m.Type, m.Index)
	}
	sendUntilReceived(t, a, b, 2)
	select {
	case m := <-b.recv:
		if m.Type == raftpb.MsgSnap {
			t.Fatal("failed snapshot delivered to Handler")
		}
	default:
	}
	if src.closed.Load() != 1 {
		t.Fatalf("source closed %d times, want 1", src.closed.Load())
	}

	// Open failure: dropped, reported, and the very next message still goes through.
	src.openErr = errors.New("snapshot purged")
	a.Send([]raftpb.Message{streamedSnap(1, 2, 43), app(1, 2, 1000)})
	waitSnapStatus(t, a, 2, true)
	select {
	case m := <-b.recv:
		if m.Index != 1000 {
			t.Fatalf("got %v %d, want the append after the dropped snapshot", m.Type, m.Index)
		}
	case <-time.After(deadline):
		t.Fatal("message after an unopenable snapshot not received")
	}
}

// TestReceiveSnapshotError: a receiver that fails to store a snapshot drops it and closes the
// connection (its framing may be lost); messages, on their own connection, still arrive.
func TestReceiveSnapshotError(t *testing.T) {
	data := make([]byte, 300<<10)
	_, _ = rand.Read(data)
	src := newSnapSource(data)
	recv := make(chan received, 10)
	a := newNode(t, 1, func(c *Config) { c.OpenSnapshot = src.open })
	b := newNode(t, 2, func(c *Config) { c.ReceiveSnapshot = receiveInto(recv, errors.New("disk full")) })
	connect(a, b)
	a.Send([]raftpb.Message{streamedSnap(1, 2, 42)})
	if r := <-recv; !bytes.Equal(r.data, data) {
		t.Fatal("receiver got different data")
	}
	sendUntilReceived(t, a, b, 1)
	waitConns(t, b, 1) // the snapshot's connection is gone
	select {
	case m := <-b.recv:
		t.Fatalf("got %v after a snapshot the receiver failed to store", m.Type)
	default:
	}
}

// waitConns waits until n holds want inbound connections.
func waitConns(t *testing.T, n *node, want int) {
	t.Helper()
	for end := time.Now().Add(deadline); ; time.Sleep(5 * time.Millisecond) {
		n.mu.RLock()
		got := len(n.conns)
		n.mu.RUnlock()
		if got == want {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("node %d holds %d inbound connections, want %d", n.cfg.ID, got, want)
		}
	}
}

// TestStreamedFrameWireFormat writes a streamed-snapshot frame by hand, as frame.go documents
// it, followed by an ordinary frame: the data reaches ReceiveSnapshot, even when the callback
// reads only part of it, and the next frame is read from its first byte.
func TestStreamedFrameWireFormat(t *testing.T) {
	recv := make(chan received, 10)
	b := newNode(t, 2, func(c *Config) {
		c.ReceiveSnapshot = func(m raftpb.Message, r io.Reader, size int64) error {
			p := make([]byte, 3) // reads only part: the transport skips the rest
			_, err := io.ReadFull(r, p)
			recv <- received{m: m, data: p, size: size, err: err}
			return err
		}
	})
	c := dialRaw(t, b.Addr())
	w := streamedBytes(t, 2, "0123456789")
	w = binary.BigEndian.AppendUint32(w, crc32.Checksum([]byte("0123456789"), castagnoli))
	w = append(w, frame(t, app(1, 2, 1))...)
	if _, err := c.Write(w); err != nil {
		t.Fatal(err)
	}
	r := <-recv
	if r.err != nil || string(r.data) != "012" || r.size != 10 || r.m.Snapshot.Metadata.Index != 7 {
		t.Fatalf("callback got %q size %d err %v", r.data, r.size, r.err)
	}
	if m := <-b.recv; m.Type != raftpb.MsgSnap {
		t.Fatalf("got %v, want the snapshot message", m.Type)
	}
	expect(t, b, 1)
	// On a connection whose hello says it carries snapshots, each is answered with one byte
	// once the Handler has it.
	cs := dialRaw(t, b.Addr())
	w = streamedBytes(t, 2, "0123456789")
	binary.BigEndian.PutUint16(w[frameHeaderSize+6:], helloSnapshots)
	w = binary.BigEndian.AppendUint32(w, crc32.Checksum([]byte("0123456789"), castagnoli))
	if _, err := cs.Write(w); err != nil {
		t.Fatal(err)
	}
	<-recv
	_ = cs.SetReadDeadline(time.Now().Add(deadline))
	var ack [1]byte
	if _, err := io.ReadFull(cs, ack[:]); err != nil || ack[0] != ackDelivered {
		t.Fatalf("snapshot connection answered %v, %v; want the byte %d", ack, err, ackDelivered)
	}
	if m := <-b.recv; m.Type != raftpb.MsgSnap {
		t.Fatalf("got %v, want the snapshot message", m.Type)
	}

	// Without ReceiveSnapshot, a streamed snapshot closes the connection.
	b2 := newNode(t, 3, nil)
	c2 := dialRaw(t, b2.Addr())
	if _, err := c2.Write(streamedBytes(t, 3, "0123456789")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c2)

	// Data whose checksum does not match: the callback reading all of it gets an error with the
	// last bytes (before it could keep a file of them), the message is not delivered, and the
	// connection is closed.
	got := make(chan error, 1)
	b3 := newNode(t, 4, func(c *Config) {
		c.ReceiveSnapshot = func(m raftpb.Message, r io.Reader, size int64) error {
			_, err := io.Copy(io.Discard, r)
			got <- err
			return err
		}
	})
	c3 := dialRaw(t, b3.Addr())
	w = streamedBytes(t, 4, "0123456789")
	w = binary.BigEndian.AppendUint32(w, crc32.Checksum([]byte("0123456780"), castagnoli))
	if _, err := c3.Write(append(w, frame(t, app(1, 4, 1))...)); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err == nil || !strings.Contains(err.Error(), "damaged in transit") {
		t.Fatalf("reading data with a wrong checksum: %v, want a checksum error", err)
	}
	expectClosed(t, c3)
	select {
	case m := <-b3.recv:
		t.Fatalf("delivered %v after damaged snapshot data", m.Type)
	case <-time.After(200 * time.Millisecond):
	}
}

// dialRaw connects to a transport's address to write frames by hand; the connection is closed
// when the test ends.
func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// streamedBytes is what node 1 writes to open a link to node to and stream it snapshot 7 whose
// data is data, as frame.go documents: the hello, the streamed-snapshot frame, the data's size and
// the data, without the checksum that follows them.
func streamedBytes(t *testing.T, to uint64, data string) []byte {
	t.Helper()
	sm := streamedSnap(1, to, 7)
	p, err := sm.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w := rawHello(HelloMagic, WireVersion, 0, 1, to)
	w = binary.BigEndian.AppendUint32(w, 1<<31|uint32(len(p)))
	w = append(w, p...)
	w = binary.BigEndian.AppendUint64(w, uint64(len(data)))
	return append(w, data...)
}

// stallingReader returns the first n bytes of r, then blocks until release is closed.
type stallingReader struct {
	r       io.Reader
	n       int
	release chan struct{}
}

func (s *stallingReader) Read(b []byte) (int, error) {
	if s.n == 0 {
		<-s.release
		return s.r.Read(b)
	}
	k, err := s.r.Read(b[:min(len(b), s.n)])
	s.n -= k
	return k, err
}

// TestSnapshotDoesNotHoldUpMessages: while a snapshot is on its way (here its source stalls part
// way, as a slow link or disk would), heartbeats and appends to the same peer keep arriving; the
// snapshot then completes, and its connection is closed once it is sent.
func TestSnapshotDoesNotHoldUpMessages(t *testing.T) {
	data := make([]byte, streamChunk+streamChunk/2)
	_, _ = rand.Read(data)
	release := make(chan struct{})
	recv := make(chan received, 10)
	a := newNode(t, 1, func(c *Config) {
		c.OpenSnapshot = func(md raftpb.SnapshotMetadata) (io.ReadCloser, int64, error) {
			r := &stallingReader{r: bytes.NewReader(data), n: streamChunk / 2, release: release}
			return io.NopCloser(r), int64(len(data)), nil
		}
	})
	b := newNode(t, 2, func(c *Config) { c.ReceiveSnapshot = receiveInto(recv, nil) })
	var once sync.Once
	unstall := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unstall) // before the transports close: their writer may be blocked on the source
	connect(a, b)

	a.Send([]raftpb.Message{streamedSnap(1, 2, 42)})
	for i := uint64(1); i <= 50; i++ {
		a.Send([]raftpb.Message{{Type: raftpb.MsgHeartbeat, From: 1, To: 2, Term: 3}, app(1, 2, i)})
	}
	expectMixed := func() {
		want := uint64(1)
		for want <= 50 {
			select {
			case m := <-b.recv:
				switch {
				case m.Type == raftpb.MsgHeartbeat:
				case m.Type == raftpb.MsgApp && m.Index == want:
					want++
				default:
					t.Fatalf("got %v index %d while the snapshot is stalled, want append %d", m.Type, m.Index, want)
				}
			case <-time.After(deadline):
				t.Fatalf("appends behind a stalled snapshot: %d of 50 received", want-1)
			}
		}
	}
	expectMixed()
	select {
	case s := <-a.snapStatus:
		t.Fatalf("snapshot status %+v while its source is stalled", s)
	default:
	}

	unstall()
	waitSnapStatus(t, a, 2, false)
	if r := <-recv; r.err != nil || !bytes.Equal(r.data, data) {
		t.Fatalf("snapshot received %d bytes, err %v", len(r.data), r.err)
	}
	// The MsgSnap follows its data to the Handler, after every heartbeat that was ahead of it.
	for {
		select {
		case m := <-b.recv:
			if m.Type == raftpb.MsgHeartbeat {
				continue
			}
			if m.Type != raftpb.MsgSnap || m.Snapshot.Metadata.Index != 42 {
				t.Fatalf("got %v, want the snapshot", m.Type)
			}
		case <-time.After(deadline):
			t.Fatal("snapshot message not delivered")
		}
		break
	}
	waitConns(t, b, 1) // the snapshot's connection is closed once it is sent
}

// TestSnapshotReportedOnceDelivered: a snapshot is reported sent only once the receiver's
// Handler has it (raft probes the follower right after the report, and the probe travels on
// the other connection); one the receiver's Handler refuses is reported failed.
func TestSnapshotReportedOnceDelivered(t *testing.T) {
	for _, streamed := range []bool{true, false} {
		t.Run(fmt.Sprintf("streamed=%v", streamed), func(t *testing.T) {
			src := newSnapSource(bytes.Repeat([]byte("snapshot data "), 1000))
			entered, release := make(chan struct{}, 1), make(chan struct{})
			refuse := errors.New("raft stopped")
			var calls atomic.Int32
			a := newNode(t, 1, func(c *Config) { c.OpenSnapshot = src.open })
			b := newNode(t, 2, func(c *Config) {
				c.ReceiveSnapshot = receiveInto(make(chan received, 10), nil)
				next := c.Handler
				c.Handler = func(ctx context.Context, m raftpb.Message) error {
					if m.Type != raftpb.MsgSnap {
						return next(ctx, m)
					}
					if calls.Add(1) == 2 {
						return refuse
					}
					entered <- struct{}{}
					select {
					case <-release:
					case <-ctx.Done():
					}
					return next(ctx, m)
				}
			})
			connect(a, b)
			snap := streamedSnap(1, 2, 42)
			if !streamed {
				snap.Snapshot.Data = []byte("inline data")
			}
			a.Send([]raftpb.Message{snap})
			select {
			case <-entered:
			case <-time.After(deadline):
				t.Fatal("snapshot did not reach the receiver's Handler")
			}
			select {
			case s := <-a.snapStatus:
				t.Fatalf("snapshot reported %+v before the receiver's Handler took it", s)
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			waitSnapStatus(t, a, 2, false)

			a.Send([]raftpb.Message{snap}) // the Handler refuses this one
			waitSnapStatus(t, a, 2, true)
		})
	}
}

// TestSlowSnapshotOpenKeepsConnection: opening a snapshot (which checksums its whole file) may take
// longer than the receiver allows a new connection to identify itself: the snapshot connection's
// hello goes out before the open, so the transfer still succeeds.
func TestSlowSnapshotOpenKeepsConnection(t *testing.T) {
	const hello = 300 * time.Millisecond
	src := newSnapSource([]byte("snapshot data"))
	recv := make(chan received, 10)
	a := newNode(t, 1, func(c *Config) {
		c.OpenSnapshot = func(md raftpb.SnapshotMetadata) (io.ReadCloser, int64, error) {
			time.Sleep(2 * hello)
			return src.open(md)
		}
	})
	b := newNode(t, 2, func(c *Config) { c.ReceiveSnapshot, c.HelloTimeout = receiveInto(recv, nil), hello })
	connect(a, b)
	a.Send([]raftpb.Message{streamedSnap(1, 2, 42)})
	waitSnapStatus(t, a, 2, false)
	if r := <-recv; r.err != nil || string(r.data) != "snapshot data" {
		t.Fatalf("received %q, %v", r.data, r.err)
	}
}
