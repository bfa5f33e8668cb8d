package transport

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/accept"
)

// readBufSize is the bufio.Reader size of an inbound connection, matching the writer's buffer
// so a batched burst is read with few syscalls.
const readBufSize = 64 << 10

// acceptLoop accepts peer connections until the listener is closed.
func (t *Transport) acceptLoop() {
	accept.Loop(t.ctx, t.ln, t.log, func(c net.Conn) {
		setNoDelay(c)
		if t.cfg.Wrap != nil {
			c = t.cfg.Wrap(c)
		}
		if t.cfg.TLS != nil {
			// The handshake runs at the first read, under readFrames' hello deadline.
			c = tls.Server(c, t.cfg.TLS)
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.closed {
			_ = c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.goLocked(func() { t.serveConn(c) })
	})
}

// serveConn reads frames from one inbound connection and hands them to Handler in order.
func (t *Transport) serveConn(c net.Conn) {
	log := t.log.With("remote", c.RemoteAddr().String())
	defer func() {
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
		_ = c.Close()
	}()
	err := t.readFrames(c, log.Debug)
	if err == nil || t.ctx.Err() != nil {
		return
	}
	// A peer crashing or restarting mid-frame is routine; a protocol violation is not.
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		log.Debug("inbound connection lost", "err", err)
	} else {
		log.Warn("inbound connection rejected", "err", err)
	}
}

// readFrames runs the read loop of one connection. It returns nil on a clean close by the peer.
func (t *Transport) readFrames(c net.Conn, debug func(string, ...any)) error {
	br := bufio.NewReaderSize(c, readBufSize)

	// A connection that never identifies itself must not hold a goroutine forever.
	_ = c.SetReadDeadline(time.Now().Add(t.cfg.HelloTimeout))
	h, err := readHello(br)
	if err != nil {
		return fmt.Errorf("reject connection: %w", err)
	}
	if h.To != t.cfg.ID {
		return fmt.Errorf("reject connection from %d: %w: addressed to %d, this is %d",
			h.From, ErrBadHello, h.To, t.cfg.ID)
	}
	// No read deadline afterwards: a link between followers is legitimately idle for long
	// stretches; a dead peer is detected by TCP keepalive (on by default for accepted conns).
	_ = c.SetReadDeadline(time.Time{})
	snapshots := h.Flags&helloSnapshots != 0
	debug("inbound connection", "from", h.From, "snapshots", snapshots)

	fr := frameReader{r: br, max: t.cfg.MaxFrameSize}
	for {
		payload, streamed, err := fr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("peer %d: %w", h.From, err)
		}
		var m raftpb.Message
		if err := m.Unmarshal(payload); err != nil {
			// Framing is intact but the bytes are not a Message: the sender is broken or
			// not speaking our version; dropping the link is safer than guessing.
			return fmt.Errorf("peer %d: decode message: %w", h.From, err)
		}
		deliver := m.To == t.cfg.ID
		if streamed {
			if deliver, err = t.receiveSnapshot(c, &fr, &m, debug); err != nil {
				// The data may be partly unread: the next bytes are not a frame header.
				return fmt.Errorf("peer %d: %w", h.From, err)
			}
		} else if !deliver {
			debug("drop message addressed elsewhere", "from", m.From, "to", m.To, "type", m.Type)
		}
		if deliver {
			if err := t.cfg.Handler(t.ctx, m); err != nil {
				if t.ctx.Err() != nil {
					return nil
				}
				// Handler errors (e.g. raft stopped, local message) are about the message, not
				// the link; keep reading.
				debug("handler rejected message", "from", m.From, "type", m.Type, "err", err)
				deliver = false
			}
		}
		if snapshots && m.Type == raftpb.MsgSnap {
			if err := t.ack(c, deliver); err != nil {
				return fmt.Errorf("peer %d: %w", h.From, err)
			}
		}
	}
}

// ack answers a MsgSnap on a snapshot connection (see the wire format in frame.go).
func (t *Transport) ack(c net.Conn, delivered bool) error {
	b := [1]byte{ackDropped}
	if delivered {
		b[0] = ackDelivered
	}
	_ = c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
	if _, err := c.Write(b[:]); err != nil {
		return fmt.Errorf("acknowledge snapshot: %w", err)
	}
	return nil
}

// receiveSnapshot reads the snapshot data that follows the streamed-snapshot frame of m and hands
// it to ReceiveSnapshot. It reports whether m is to be delivered to Handler; an error means the
// connection's framing can no longer be trusted.
func (t *Transport) receiveSnapshot(c net.Conn, fr *frameReader, m *raftpb.Message, debug func(string, ...any)) (bool, error) {
	size, err := fr.streamSize()
	if err != nil {
		return false, err
	}
	if m.Type != raftpb.MsgSnap || m.Snapshot == nil {
		return false, fmt.Errorf("streamed data after a %s, not a snapshot", m.Type)
	}
	if t.cfg.ReceiveSnapshot == nil {
		return false, errors.New("streamed snapshot, but no ReceiveSnapshot is configured")
	}
	data := &snapData{r: &io.LimitedReader{R: fr.r, N: size}, conn: fr.r, c: c, stall: 2 * t.cfg.WriteTimeout}
	if m.To != t.cfg.ID {
		debug("drop snapshot addressed elsewhere", "from", m.From, "to", m.To, "bytes", size)
		return false, data.skip(size)
	}
	if err := t.cfg.ReceiveSnapshot(*m, data, size); err != nil {
		return false, fmt.Errorf("receive snapshot %d (%d bytes): %w", m.Snapshot.Metadata.Index, size, err)
	}
	// What the callback left unread (a snapshot it had no use for) is skipped, so the next
	// frame is read from its first byte; the checksum is checked in any case.
	if err := data.skip(size); err != nil {
		return false, err
	}
	_ = c.SetReadDeadline(time.Time{}) // back to an idle link's no deadline (see readFrames)
	return true, nil
}

// snapData reads a streamed snapshot's data for ReceiveSnapshot: exactly the data's bytes, each
// added to a CRC32-C, and the read that reaches the end also reads the sender's checksum and
// fails if it differs, so a receiver writing the data to a file sees the error before it keeps
// the file. Every read must make progress within stall: a sender that stops mid-stream must not
// hold the receiver (and whatever it locked to write the file) for as long as TCP keepalive
// takes to notice, or for ever if the sender is alive but stuck.
type snapData struct {
	r     *io.LimitedReader // the data
	conn  io.Reader         // the connection, for the checksum after the data
	c     net.Conn          // for read deadlines
	stall time.Duration
	crc   uint32
	done  bool // the checksum was read and matched
}

func (d *snapData) Read(p []byte) (int, error) {
	if d.r.N == 0 {
		if err := d.finish(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	_ = d.c.SetReadDeadline(time.Now().Add(d.stall))
	n, err := d.r.Read(p)
	d.crc = crc32.Update(d.crc, castagnoli, p[:n])
	if err == io.EOF && d.r.N > 0 {
		// The connection ended before the data did: a truncation, not the snapshot's end.
		err = io.ErrUnexpectedEOF
	}
	if err == nil && d.r.N == 0 {
		err = d.finish()
	}
	return n, err
}

// finish reads the checksum that follows the data and compares it with the data read.
func (d *snapData) finish() error {
	if d.done {
		return nil
	}
	var b [4]byte
	if _, err := io.ReadFull(d.conn, b[:]); err != nil {
		return fmt.Errorf("snapshot checksum: %w", noEOF(err))
	}
	if sent := binary.BigEndian.Uint32(b[:]); sent != d.crc {
		return fmt.Errorf("snapshot data damaged in transit: checksum %08x, sent %08x", d.crc, sent)
	}
	d.done = true
	return nil
}

// skip reads and drops what is left of the data, then checks the checksum.
func (d *snapData) skip(size int64) error {
	if _, err := io.Copy(io.Discard, d); err != nil {
		return fmt.Errorf("skip snapshot data (%d of %d bytes left): %w", d.r.N, size, noEOF(err))
	}
	return d.finish()
}
