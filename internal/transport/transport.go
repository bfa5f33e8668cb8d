// Package transport carries raft messages between Shoal processes over TCP.
//
// A Transport belongs to one raft node (one ID). A process running several raft nodes (several
// replica groups, the controller group) creates one Transport per node; nothing is shared
// between them, so they can be started and closed independently.
//
// Outbound, each peer has two lanes, each a writer goroutine that owns a TCP connection and a
// bounded queue: one for raft's messages, one for snapshots (MsgSnap), so that a snapshot
// taking minutes to send does not hold up the heartbeats and appends behind it. The snapshot
// lane connects when a snapshot is to be sent and closes once it has none left. Send never blocks: when a queue is full, or the peer is unknown, the message is dropped
// and Unreachable is reported, because raft retransmits and a slow peer must not stall the
// node's Ready loop. Connections are dialled lazily and re-dialled after errors with capped,
// jittered exponential backoff; while backing off, messages are dropped (and reported) rather
// than queued, so a peer that comes back receives fresh messages, not a backlog of stale ones.
//
// Inbound, every accepted connection has one reader goroutine that decodes frames and calls
// Handler sequentially, preserving per-link order, which raft relies on for efficiency (though
// not for safety).
//
// Callbacks (Handler, Unreachable, SnapshotStatus) run on transport goroutines and on the
// goroutine calling Send. They must not block for long; they may call back into the Transport.
// The shape matches raft.Node.Step, ReportUnreachable and ReportSnapshot.
//
// Snapshots, as etcd's rafthttp does, travel out of band of the message: with OpenSnapshot and
// ReceiveSnapshot configured, a MsgSnap's data is streamed from the sender's snapshot file into
// the receiver's, after the message on the snapshot lane's connection, rather than held in memory inside one
// frame. OpenSnapshot and ReceiveSnapshot run on the peer's snapshot writer and the connection's
// reader and may take as long as the data takes to move; messages keep flowing meanwhile on the
// peer's other connection, so they may reach the receiver before or after the MsgSnap sent
// between them (raft does not rely on that order).
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/accept"
)

// Defaults for zero Config fields.
const (
	// DefaultQueueSize matches etcd's rafthttp stream buffer: enough to absorb a burst of
	// pipelined MsgApp without letting a dead peer hold unbounded memory.
	DefaultQueueSize = 4096
	// DefaultDialTimeout bounds one dial attempt.
	DefaultDialTimeout = 2 * time.Second
	// DefaultMinBackoff is the first reconnect delay after a failure.
	DefaultMinBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the reconnect delay; small compared with raft election timeouts
	// measured in seconds, so a restarted peer is reached again within about one election.
	DefaultMaxBackoff = 2 * time.Second
	// DefaultWriteTimeout bounds a stalled write; without it a peer that stops reading (or a
	// silently partitioned link) would block its writer until TCP gives up, many minutes later.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultHelloTimeout bounds how long an accepted connection may take to identify itself.
	DefaultHelloTimeout = 10 * time.Second
)

// ErrClosed is returned by Start on a Transport that has been closed.
var ErrClosed = errors.New("transport: closed")

// Config configures a Transport. Zero optional fields take the defaults above.
type Config struct {
	// ID is this node's raft ID; it must be non-zero (raft reserves 0 for "none").
	ID uint64
	// ListenAddr is the TCP address to accept peer connections on; ":0" / "127.0.0.1:0" picks
	// a free port, reported by Addr.
	ListenAddr string
	// Peers maps peer raft IDs to their listen addresses. An entry for ID itself is ignored, so
	// callers may pass the whole membership.
	Peers map[uint64]string
	// Handler receives every inbound message, sequentially per connection. An error is logged;
	// the connection stays up (raft errors such as a stopped node are not link problems).
	Handler func(ctx context.Context, m raftpb.Message) error
	// Unreachable is called (optional) when a message to id is dropped or its link fails.
	Unreachable func(id uint64)
	// SnapshotStatus is called (optional) for every MsgSnap: failed=false once the receiver
	// acknowledged that its Handler took the message (after ReceiveSnapshot stored a streamed
	// snapshot's data), failed=true if it was dropped, its data could not be opened or read,
	// the write failed, or the receiver did not take it. Not called for snapshots discarded by
	// Close or RemovePeer.
	SnapshotStatus func(id uint64, failed bool)
	// OpenSnapshot (optional) opens the data of the snapshot md describes, for a MsgSnap whose
	// Snapshot.Data is empty: the transport then streams the size bytes of the returned reader
	// after the message (see the wire format in frame.go) instead of sending the data inside the
	// frame, so a snapshot is never held in memory whole and is not bound by MaxFrameSize. The
	// transport reads it in bounded chunks on the peer's writer goroutine and closes it once
	// written. An error drops the MsgSnap (SnapshotStatus failed); a reader that fails or ends
	// early fails the snapshot and the connection, whose framing it has broken. Without it, a
	// MsgSnap is sent whole inside its frame.
	OpenSnapshot func(md raftpb.SnapshotMetadata) (data io.ReadCloser, size int64, err error)
	// ReceiveSnapshot (optional, but required to accept streamed snapshots) receives a streamed
	// MsgSnap before Handler does: m (its Snapshot.Data empty) and a reader of exactly size
	// bytes, the snapshot's data, valid only during the call. Bytes it leaves unread are
	// discarded. If it returns nil, m is then passed to Handler as usual; an error drops m and
	// closes the connection, since the data may be partly unread (the sender sees its link
	// fail and raft sends the snapshot again). A streamed snapshot reaching a Transport without
	// ReceiveSnapshot closes the connection.
	ReceiveSnapshot func(m raftpb.Message, data io.Reader, size int64) error
	// Logger receives logs; nil discards them. Reconnect noise is at Debug level.
	Logger *slog.Logger
	// QueueSize is the per-peer outbound queue length (default DefaultQueueSize).
	QueueSize int
	// DialTimeout bounds one dial plus hello (default DefaultDialTimeout).
	DialTimeout time.Duration
	// Wrap, if set, wraps every connection (dialled and accepted) right after it is
	// established and before the hello (and beneath TLS): a hook for fault injection in tests.
	Wrap func(net.Conn) net.Conn
	// TLS, if set, runs every link over TLS with this one configuration in both roles: it
	// accepts as a TLS server and dials as a TLS client (ServerName taken from the peer's
	// address when empty). For mutual authentication set Certificates, RootCAs, ClientCAs and
	// ClientAuth: tls.RequireAndVerifyClientCert, so that a node refuses any peer whose
	// certificate its CA did not sign, in both directions.
	TLS *tls.Config

	// MaxFrameSize bounds one frame in both directions (default DefaultMaxFrameSize, at most
	// MaxFrameSizeLimit). Larger outbound messages are dropped; a larger inbound frame closes
	// the connection. Streamed snapshot data is not part of a frame and is not bounded by it.
	MaxFrameSize int
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults DefaultMinBackoff,
	// DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout bounds writing one frame, plus 100ms per MiB so large snapshots are not cut
	// off on slow links (default DefaultWriteTimeout).
	WriteTimeout time.Duration
	// HelloTimeout bounds how long an accepted connection may take to send its hello (default
	// DefaultHelloTimeout).
	HelloTimeout time.Duration
}

// Transport sends and receives raft messages for one raft node. It is safe for concurrent use.
type Transport struct {
	cfg Config
	log *slog.Logger

	mu      sync.RWMutex // RLock in Send, the hot path
	peers   map[uint64]*peer
	conns   map[net.Conn]struct{} // accepted connections, closed by Close
	ln      net.Listener
	ctx     context.Context // set by Start; parent of every goroutine's context
	cancel  context.CancelFunc
	started bool
	closed  bool

	wg sync.WaitGroup // every goroutine the Transport starts
}

// New validates cfg and returns a Transport that is not yet listening. Messages sent before
// Start are queued (up to QueueSize per peer) and written once Start runs the writers.
func New(cfg Config) (*Transport, error) {
	if cfg.ID == 0 {
		return nil, errors.New("transport: Config.ID must be non-zero")
	}
	if cfg.ListenAddr == "" {
		return nil, errors.New("transport: Config.ListenAddr is required")
	}
	if cfg.Handler == nil {
		return nil, errors.New("transport: Config.Handler is required")
	}
	if cfg.QueueSize < 0 || cfg.DialTimeout < 0 || cfg.MaxFrameSize < 0 || cfg.MinBackoff < 0 ||
		cfg.MaxBackoff < 0 || cfg.WriteTimeout < 0 || cfg.HelloTimeout < 0 {
		return nil, errors.New("transport: negative size or duration in Config")
	}
	if cfg.MaxFrameSize > MaxFrameSizeLimit {
		return nil, fmt.Errorf("transport: MaxFrameSize %d above the limit %d", cfg.MaxFrameSize, MaxFrameSizeLimit)
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxFrameSize == 0 {
		cfg.MaxFrameSize = DefaultMaxFrameSize
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = DefaultHelloTimeout
	}
	if cfg.Unreachable == nil {
		cfg.Unreachable = func(uint64) {}
	}
	if cfg.SnapshotStatus == nil {
		cfg.SnapshotStatus = func(uint64, bool) {}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		cfg:   cfg,
		log:   log.With("component", "transport", "id", cfg.ID),
		peers: make(map[uint64]*peer, len(cfg.Peers)),
		conns: make(map[net.Conn]struct{}),
	}
	for id, addr := range cfg.Peers {
		if id == 0 || addr == "" {
			return nil, fmt.Errorf("transport: invalid peer %d at %q", id, addr)
		}
		if id != cfg.ID {
			t.peers[id] = t.newPeer(id, addr)
		}
	}
	t.cfg.Peers = nil // the live set is t.peers; do not keep the caller's map
	return t, nil
}

// Start listens on ListenAddr and starts the accept loop and peer writers. It returns once the
// listener is bound, so Addr is valid afterwards. Cancelling ctx stops the Transport like
// Close does, but only Close waits for its goroutines.
func (t *Transport) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	if t.started {
		return errors.New("transport: already started")
	}
	ln, err := accept.Listen(ctx, t.cfg.ListenAddr, nil) // TLS after Wrap: see acceptLoop
	if err != nil {
		return fmt.Errorf("transport: listen on %s: %w", t.cfg.ListenAddr, err)
	}
	t.ln = ln
	t.ctx, t.cancel = context.WithCancel(ctx)
	t.started = true
	// Closing the listener and accepted connections is what unblocks Accept and Read, so it
	// is tied to the context rather than left to Close: cancelling Start's ctx also works.
	// A tracked goroutine rather than context.AfterFunc, so Close's Wait covers it too.
	t.goLocked(func() {
		<-t.ctx.Done()
		t.closeNetwork()
	})
	t.goLocked(t.acceptLoop)
	for _, p := range t.peers {
		t.startPeerLocked(p)
	}
	t.log.Info("transport listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the Transport listens on, or "" before Start.
func (t *Transport) Addr() string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.ln == nil {
		return ""
	}
	return t.ln.Addr().String()
}

// Send enqueues msgs for their destinations (m.To) and returns without blocking. A message to
// an unknown peer, or one whose peer queue is full, is dropped and Unreachable is called (and
// SnapshotStatus(to, true) for a MsgSnap). Messages to this node itself are dropped silently.
func (t *Transport) Send(msgs []raftpb.Message) {
	var dropped []int // indexes into msgs; reported after unlocking so callbacks may re-enter
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return
	}
	for i := range msgs {
		m := &msgs[i]
		if m.To == t.cfg.ID {
			continue
		}
		if p := t.peers[m.To]; p == nil || !p.enqueue(m) {
			dropped = append(dropped, i)
		}
	}
	t.mu.RUnlock()
	for _, i := range dropped {
		m := &msgs[i]
		t.log.Debug("drop message: unknown peer or queue full", "to", m.To, "type", m.Type)
		t.reportDrop(m)
	}
}

// reportDrop tells raft that m did not make it.
func (t *Transport) reportDrop(m *raftpb.Message) {
	t.cfg.Unreachable(m.To)
	if m.Type == raftpb.MsgSnap {
		t.cfg.SnapshotStatus(m.To, true)
	}
}

// AddPeer adds a peer, or changes its address. Changing the address discards the old
// connection and queue. Adding ID itself, or adding to a closed Transport, does nothing.
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == 0 || id == t.cfg.ID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if old := t.peers[id]; old != nil {
		if old.addr == addr {
			return
		}
		old.stop()
	}
	p := t.newPeer(id, addr)
	t.peers[id] = p
	if t.started {
		t.startPeerLocked(p)
	}
}

// RemovePeer forgets a peer: its writer stops, queued messages are discarded and later sends
// to id are dropped as unknown. It does not wait for the writer (Close does), so it is safe to
// call from a callback.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		p.stop()
		delete(t.peers, id)
	}
}

// Close stops the Transport: it closes the listener and every connection, stops all goroutines
// it started and waits for them. Queued messages are discarded without callbacks. Close is
// idempotent.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	for id, p := range t.peers {
		p.stop()
		delete(t.peers, id)
	}
	cancel := t.cancel
	t.mu.Unlock()
	if cancel != nil {
		cancel() // the watcher started by Start then runs closeNetwork
	}
	t.wg.Wait()
	return nil
}

// closeNetwork closes the listener and accepted connections so blocked Accept and Read calls
// return. Outbound connections are closed by their writers.
func (t *Transport) closeNetwork() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true // a cancelled Start ctx is a close: refuse new work
	if t.ln != nil {
		if err := t.ln.Close(); err != nil {
			t.log.Debug("close listener", "err", err)
		}
	}
	for c := range t.conns {
		_ = c.Close() // the reader reports its own exit
	}
	for id, p := range t.peers {
		p.stop()
		delete(t.peers, id)
	}
}

// goLocked runs f in a goroutine tracked by t.wg. t.mu must be held and t.closed false, which
// guarantees no wg.Add happens after Close has started waiting.
func (t *Transport) goLocked(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}
