package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

const (
	// writeBufSize is the bufio.Writer size of an outbound connection: big enough that a burst
	// of small MsgApp/heartbeats goes out in one syscall.
	writeBufSize = 64 << 10
	// maxBatch bounds how many messages are written between flushes, so that under sustained
	// load snapshot statuses are still reported and the deadline is refreshed regularly.
	maxBatch = 1024
	// streamChunk is how much streamed snapshot data is written under one write deadline: a
	// peer that stops reading is noticed within about WriteTimeout, however large the snapshot,
	// instead of after a deadline sized for the whole of it.
	streamChunk = 4 << 20
	// snapQueueSize is the snapshot lane's queue length: raft sends a follower one snapshot
	// at a time and waits for its status, so a few slots only absorb a leader change's overlap.
	snapQueueSize = 4
)

// peer is one outbound link to a peer: two lanes, each a bounded queue drained by its own writer
// goroutine over its own connection.
type peer struct {
	t    *Transport
	id   uint64
	addr string
	msgs lane // every message but MsgSnap
	// snaps carries MsgSnap, as etcd's rafthttp sends snapshots apart from its message
	// stream: a snapshot takes as long as its bytes take to move, minutes for a large one, and
	// heartbeats and appends queued behind it would starve the follower meanwhile (with
	// CheckQuorum, a leader whose only live follower is being caught up would step down).
	snaps lane

	// Guarded by t.mu.
	cancel  context.CancelFunc // set once the writer is started
	stopped bool
}

// lane is one outbound connection's queue.
type lane struct {
	name  string
	queue chan raftpb.Message
	// snapshots marks the snapshot lane: its connection says so in its hello, each snapshot
	// is flushed alone and reported once the receiver acknowledges it (see frame.go), and the
	// connection is closed once the queue is empty (snapshots are rare, and an idle connection
	// would hold a reader goroutine and its buffer on the peer).
	snapshots bool
}

func (t *Transport) newPeer(id uint64, addr string) *peer {
	return &peer{t: t, id: id, addr: addr,
		msgs:  lane{name: "messages", queue: make(chan raftpb.Message, t.cfg.QueueSize)},
		snaps: lane{name: "snapshots", queue: make(chan raftpb.Message, snapQueueSize), snapshots: true},
	}
}

// startPeerLocked starts p's writer. t.mu must be held, t.started true and t.closed false.
func (t *Transport) startPeerLocked(p *peer) {
	if p.stopped || p.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(t.ctx)
	p.cancel = cancel
	t.goLocked(func() { p.run(ctx, &p.msgs) })
	t.goLocked(func() { p.run(ctx, &p.snaps) })
}

// stop makes the writer exit. t.mu must be held. The queue channel is never closed, so a
// concurrent Send that still holds p cannot panic; its message is simply never written.
func (p *peer) stop() {
	p.stopped = true
	if p.cancel != nil {
		p.cancel()
	}
}

// enqueue adds m to its lane's queue without blocking and reports whether it fit.
func (p *peer) enqueue(m *raftpb.Message) bool {
	q := p.msgs.queue
	if m.Type == raftpb.MsgSnap {
		q = p.snaps.queue
	}
	select {
	case q <- *m:
		return true
	default:
		return false
	}
}

// link is the writer's connection state; only the writer goroutine touches it.
type link struct {
	conn        net.Conn
	bw          *bufio.Writer
	dead        chan struct{} // closed when the remote end closes or the conn breaks
	connectedAt time.Time
	// stopClose cancels the context hook that closes conn when the writer's context ends
	// (so a write blocked on a stalled peer returns); closedByCtx is closed once that hook ran.
	stopClose   func() bool
	closedByCtx chan struct{}
	// On the snapshot lane: the receiver's answers, and the bytes of snapshots written since
	// the last answer (they bound how long the answer may take).
	acks    chan byte
	pending int64
}

// run is the writer goroutine of one of p's lanes: it owns the lane's connection for its whole
// life.
func (p *peer) run(ctx context.Context, ln *lane) {
	t := p.t
	log := t.log.With("peer", p.id, "addr", p.addr, "lane", ln.name)
	var (
		l        link
		scratch  []byte // reused encoding buffer for frames that do not fit the bufio buffer
		snaps    int    // MsgSnap frames written since the last flush, reported after it
		failures int    // consecutive connection failures, drives backoff
		retryAt  time.Time
	)
	defer p.closeLink(&l)

	// fail tears the connection down after an error and schedules the next dial.
	fail := func(err error) {
		if l.conn != nil && time.Since(l.connectedAt) > t.cfg.MaxBackoff {
			failures = 0 // the link was healthy for a while: this is a fresh outage
		}
		p.closeLink(&l)
		for ; snaps > 0; snaps-- {
			t.cfg.SnapshotStatus(p.id, true)
		}
		retryAt = time.Now().Add(t.backoff(failures))
		failures++
		log.Debug("peer link down", "err", err, "retry_in", time.Until(retryAt).Round(time.Millisecond))
		t.cfg.Unreachable(p.id)
	}

	for {
		var m raftpb.Message
		select {
		case <-ctx.Done():
			return
		case <-l.dead: // nil channel when not connected
			fail(errors.New("connection closed by peer"))
			continue
		case m = <-ln.queue:
		}

		if l.conn == nil {
			if time.Now().Before(retryAt) {
				// Backing off: drop rather than queue, so the peer gets fresh messages
				// when it returns and Send does not fill up with stale ones meanwhile.
				t.reportDrop(&m)
				continue
			}
			if err := p.dial(ctx, &l, ln.snapshots); err != nil {
				if ctx.Err() != nil {
					return
				}
				if m.Type == raftpb.MsgSnap {
					snaps++ // fail reports it, together with Unreachable
				}
				fail(err)
				continue
			}
			log.Debug("peer link up")
		}

		// Write m and whatever else is already queued, then flush once: under load many
		// messages share one syscall; when idle each message is flushed immediately.
		var err error
		for n := 0; ; n++ {
			var isSnap bool
			if isSnap, err = p.writeFrame(&l, &m, &scratch); err != nil {
				if isSnap {
					t.cfg.SnapshotStatus(p.id, true)
				}
				break
			}
			if isSnap {
				snaps++
			}
			if n+1 >= maxBatch || ln.snapshots {
				break
			}
			select {
			case m = <-ln.queue:
				continue
			default:
			}
			break
		}
		if err == nil {
			err = p.flush(&l)
		}
		if err == nil && snaps > 0 { // the snapshot lane: one snapshot, flushed alone
			var delivered bool
			if delivered, err = p.awaitAck(ctx, &l); err == nil {
				t.cfg.SnapshotStatus(p.id, !delivered)
				snaps = 0
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return // Close/RemovePeer closed the conn under us; not a peer failure
			}
			fail(err)
			continue
		}
		if ln.snapshots && len(ln.queue) == 0 {
			p.closeLink(&l)
			failures = 0
		}
	}
}

// errTooLarge is returned by writeFrame for a message over MaxFrameSize; the connection is
// still usable, only the message is dropped.
type errTooLarge struct{ size int }

func (e errTooLarge) Error() string { return fmt.Sprintf("message of %d bytes", e.size) }

// writeFrame encodes m as a frame into the link's buffer. isSnap reports whether m was a MsgSnap
// (so the caller can report its status). A message larger than MaxFrameSize is dropped and
// reported here, and is not an error for the connection.
func (p *peer) writeFrame(l *link, m *raftpb.Message, scratch *[]byte) (isSnap bool, err error) {
	t := p.t
	if t.streams(m) {
		return p.writeStreamed(l, m)
	}
	isSnap = m.Type == raftpb.MsgSnap
	size := m.Size()
	if p.overLimit(m, size) {
		return false, nil
	}
	if isSnap {
		l.pending += int64(size)
	}
	need := frameHeaderSize + size
	var buf []byte
	if need <= l.bw.Available() {
		// Encode straight into bufio's free space: no copy, no allocation.
		buf = l.bw.AvailableBuffer()[:need]
	} else {
		if cap(*scratch) < need {
			*scratch = make([]byte, need)
		}
		buf = (*scratch)[:need]
		if need > maxRetainedBuf {
			*scratch = nil // do not pin a snapshot-sized buffer
		}
		// This write reaches the socket; bound it by time.
		p.setDeadline(l, l.bw.Buffered()+need)
	}
	binary.BigEndian.PutUint32(buf, uint32(size))
	if _, err := m.MarshalTo(buf[frameHeaderSize:]); err != nil {
		// Cannot happen for a well-formed Message; treat as a dropped message, not a link error.
		t.log.Error("marshal raft message", "peer", p.id, "type", m.Type, "err", err)
		t.reportDrop(m)
		return false, nil
	}
	if _, err := l.bw.Write(buf); err != nil {
		return isSnap, fmt.Errorf("write %s to peer %d: %w", m.Type, p.id, err)
	}
	return isSnap, nil
}

// overLimit reports whether m, of size bytes encoded, exceeds the frame limit, in which case it
// is dropped (and reported) rather than sent: the receiver would close the connection on it.
func (p *peer) overLimit(m *raftpb.Message, size int) bool {
	t := p.t
	if size <= t.cfg.MaxFrameSize {
		return false
	}
	t.log.Warn("drop message over frame limit", "peer", p.id, "type", m.Type, "size", size, "limit", t.cfg.MaxFrameSize)
	t.reportDrop(m)
	return true
}

// streams reports whether m's snapshot data is to be streamed from OpenSnapshot after it rather
// than sent inside its frame: a MsgSnap that does not carry its data, when a source is set.
func (t *Transport) streams(m *raftpb.Message) bool {
	return m.Type == raftpb.MsgSnap && t.cfg.OpenSnapshot != nil && m.Snapshot != nil &&
		len(m.Snapshot.Data) == 0 && m.Snapshot.Metadata.Index != 0
}

// writeStreamed writes the MsgSnap m as a streamed-snapshot frame followed by its data, read
// from OpenSnapshot in chunks through the link's buffer (see the wire format in frame.go). If
// the data cannot be opened, m is dropped and reported here, and the connection is untouched.
// Once the frame is started, any failure, the source's included, is returned as an error: the
// receiver expects the rest of the data, so the connection must be torn down.
func (p *peer) writeStreamed(l *link, m *raftpb.Message) (isSnap bool, err error) {
	t := p.t
	md := m.Snapshot.Metadata
	size := m.Size()
	if p.overLimit(m, size) {
		return false, nil
	}
	data, n, err := t.cfg.OpenSnapshot(md)
	if err != nil {
		// The snapshot may have been replaced by a newer one meanwhile: raft sends that one
		// once told this one failed.
		t.log.Warn("drop snapshot: cannot open its data", "peer", p.id, "index", md.Index, "err", err)
		t.cfg.SnapshotStatus(p.id, true)
		return false, nil
	}
	defer func() {
		if cerr := data.Close(); cerr != nil {
			t.log.Debug("close snapshot source", "peer", p.id, "index", md.Index, "err", cerr)
		}
	}()
	if n < 0 {
		t.log.Error("drop snapshot: bad size from its source", "peer", p.id, "index", md.Index, "size", n)
		t.cfg.SnapshotStatus(p.id, true)
		return false, nil
	}
	// The message without its data is small: one allocation per snapshot sent is nothing.
	buf := make([]byte, frameHeaderSize+size+8)
	binary.BigEndian.PutUint32(buf, streamFlag|uint32(size))
	if _, err := m.MarshalTo(buf[frameHeaderSize : frameHeaderSize+size]); err != nil {
		t.log.Error("marshal raft message", "peer", p.id, "type", m.Type, "err", err)
		t.reportDrop(m)
		return false, nil
	}
	binary.BigEndian.PutUint64(buf[frameHeaderSize+size:], uint64(n))
	l.pending += n
	p.setDeadline(l, l.bw.Buffered()+len(buf))
	if _, err := l.bw.Write(buf); err != nil {
		return true, fmt.Errorf("write %s to peer %d: %w", m.Type, p.id, err)
	}
	src := &sourceReader{r: data}
	var sent int64
	for sent < n {
		chunk := min(n-sent, streamChunk)
		p.setDeadline(l, l.bw.Buffered()+int(chunk))
		c, err := io.CopyN(l.bw, src, chunk)
		sent += c
		switch {
		case src.err != nil:
			return true, fmt.Errorf("read snapshot %d for peer %d (%d of %d bytes sent): %w",
				md.Index, p.id, sent, n, src.err)
		case errors.Is(err, io.EOF):
			return true, fmt.Errorf("snapshot %d for peer %d ended after %d of %d bytes: %w",
				md.Index, p.id, sent, n, io.ErrUnexpectedEOF)
		case err != nil:
			return true, fmt.Errorf("stream snapshot %d to peer %d (%d of %d bytes sent): %w",
				md.Index, p.id, sent, n, err)
		}
	}
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], src.crc)
	if _, err := l.bw.Write(sum[:]); err != nil {
		return true, fmt.Errorf("stream snapshot %d to peer %d: checksum: %w", md.Index, p.id, err)
	}
	return true, nil
}

// sourceReader checksums a snapshot's data as it is read from its source (the checksum follows
// the data on the wire), and remembers a read error, to tell it from a write error on the
// connection when the copy fails.
type sourceReader struct {
	r   io.Reader
	crc uint32
	err error
}

func (s *sourceReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	s.crc = crc32.Update(s.crc, castagnoli, b[:n])
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// awaitAck waits for the receiver's answer to the snapshot just flushed and reports whether it
// was delivered. The receiver answers once its Handler has the message, after writing the data
// out durably: WriteTimeout plus 100ms per MiB sent bounds that.
func (p *peer) awaitAck(ctx context.Context, l *link) (delivered bool, err error) {
	d := p.t.cfg.WriteTimeout + time.Duration(l.pending>>20)*100*time.Millisecond
	l.pending = 0
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case a := <-l.acks:
		return a == ackDelivered, nil
	case <-l.dead:
		select {
		case a := <-l.acks: // answered, then closed: the answer counts
			return a == ackDelivered, nil
		default:
		}
		return false, fmt.Errorf("peer %d closed the connection before acknowledging a snapshot", p.id)
	case <-timer.C:
		return false, fmt.Errorf("peer %d did not acknowledge a snapshot within %v", p.id, d)
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// flush writes out the buffered frames.
func (p *peer) flush(l *link) error {
	if l.bw.Buffered() == 0 {
		return nil
	}
	p.setDeadline(l, l.bw.Buffered())
	if err := l.bw.Flush(); err != nil {
		return fmt.Errorf("flush to peer %d: %w", p.id, err)
	}
	return nil
}

// setDeadline bounds the next socket write of n bytes: WriteTimeout plus 100ms per MiB, a
// floor of ~10 MiB/s that slow-but-live links meet and stalled ones do not.
func (p *peer) setDeadline(l *link, n int) {
	d := p.t.cfg.WriteTimeout + time.Duration(n>>20)*100*time.Millisecond
	_ = l.conn.SetWriteDeadline(time.Now().Add(d)) // an error here resurfaces on Write
}

// dial connects to the peer and queues the hello (it goes out with the first flush, saving a
// round of syscalls). It also starts a goroutine that reads the connection: the remote sends
// nothing but snapshot acknowledgements (on a snapshots connection), so a read returning means
// the peer closed or restarted, which the writer learns immediately rather than on its next
// failed write.
func (p *peer) dial(ctx context.Context, l *link, snapshots bool) error {
	t := p.t
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return fmt.Errorf("dial peer %d at %s: %w", p.id, p.addr, err)
	}
	setNoDelay(c)
	if t.cfg.Wrap != nil {
		c = t.cfg.Wrap(c)
	}
	if t.cfg.TLS != nil {
		if c, err = p.handshake(ctx, c); err != nil {
			return err
		}
	}
	l.conn = c
	l.connectedAt = time.Now()
	closedByCtx := make(chan struct{})
	l.closedByCtx = closedByCtx
	l.stopClose = context.AfterFunc(ctx, func() {
		defer close(closedByCtx)
		_ = c.Close()
	})
	if l.bw == nil {
		l.bw = bufio.NewWriterSize(c, writeBufSize)
	} else {
		l.bw.Reset(c)
	}
	dead := make(chan struct{})
	l.dead = dead
	h := hello{From: t.cfg.ID, To: p.id}
	if snapshots {
		h.Flags = helloSnapshots
		l.acks = make(chan byte, 1) // one snapshot is awaited at a time
	}
	go readAcks(c, l.acks, dead) // owned by the writer: closeLink closes c and waits for it
	_, _ = l.bw.Write(appendHello(l.bw.AvailableBuffer(), h))
	if snapshots {
		// Sent now, not with the first frame: opening a snapshot checksums its whole file first,
		// which can outlast the receiver's hello deadline (after the hello it waits freely).
		return p.flush(l)
	}
	return nil
}

// readAcks reads c until it fails, passing every byte to acks (nil: discarding them), then
// closes dead. More answers than the writer awaits mean a broken peer: the link counts as dead.
func readAcks(c net.Conn, acks chan<- byte, dead chan<- struct{}) {
	defer close(dead)
	if acks == nil {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	var b [16]byte
	for {
		n, err := c.Read(b[:])
		for _, a := range b[:n] {
			select {
			case acks <- a:
			default:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// handshake runs the TLS client handshake on c within DialTimeout, so that a peer we cannot
// authenticate (or that refuses us) fails the dial and goes through the usual backoff.
func (p *peer) handshake(ctx context.Context, c net.Conn) (net.Conn, error) {
	cfg := p.t.cfg.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(p.addr)
		if err != nil {
			host = p.addr
		}
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	hctx, cancel := context.WithTimeout(ctx, p.t.cfg.DialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("tls handshake with peer %d at %s: %w", p.id, p.addr, err)
	}
	return tc, nil
}

// closeLink closes the connection, if any, and waits for its read goroutine.
func (p *peer) closeLink(l *link) {
	if l.conn == nil {
		return
	}
	if !l.stopClose() {
		<-l.closedByCtx // the hook is running; wait so no goroutine outlives the writer
	}
	_ = l.conn.Close()
	<-l.dead
	l.conn, l.dead, l.stopClose, l.closedByCtx, l.acks, l.pending = nil, nil, nil, nil, nil, 0
	l.bw.Reset(io.Discard) // drop buffered frames; they belong to the dead connection
}

// backoff returns the delay before reconnect attempt failures+1: exponential from MinBackoff,
// capped at MaxBackoff, with jitter in [d/2, d] so peers that lost each other together do not
// redial in lockstep.
func (t *Transport) backoff(failures int) time.Duration {
	d := t.cfg.MinBackoff
	for i := 0; i < failures && d < t.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, t.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// setNoDelay disables Nagle's algorithm: raft heartbeats and votes are small and latency
// matters; batching is done by the writer's buffer instead. Go enables it by default for TCP,
// but being explicit keeps that property independent of the default.
func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}
