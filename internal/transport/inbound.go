package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// readBufSize is the bufio.Reader size of an inbound connection, matching the writer's buffer
// so a batched burst is read with few syscalls.
const readBufSize = 64 << 10

// acceptLoop accepts peer connections until the listener is closed.
func (t *Transport) acceptLoop() {
	var delay time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (e.g. EMFILE): back off instead of spinning, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "err", err, "retry_in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-t.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		delay = 0
		setNoDelay(c)
		if t.cfg.Wrap != nil {
			c = t.cfg.Wrap(c)
		}
		if t.cfg.TLS != nil {
			// The handshake runs at the first read, under readFrames' hello deadline.
			c = tls.Server(c, t.cfg.TLS)
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.goLocked(func() { t.serveConn(c) })
		t.mu.Unlock()
	}
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
	_ = c.SetReadDeadline(time.Now().Add(helloTimeout))
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
	debug("inbound connection", "from", h.From)

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
		if streamed {
			deliver, err := t.receiveSnapshot(&fr, &m, debug)
			if err != nil {
				// The data may be partly unread: the next bytes are not a frame header.
				return fmt.Errorf("peer %d: %w", h.From, err)
			}
			if !deliver {
				continue
			}
		} else if m.To != t.cfg.ID {
			debug("drop message addressed elsewhere", "from", m.From, "to", m.To, "type", m.Type)
			continue
		}
		if err := t.cfg.Handler(t.ctx, m); err != nil {
			if t.ctx.Err() != nil {
				return nil
			}
			// Handler errors (e.g. raft stopped, local message) are about the message, not
			// the link; keep reading.
			debug("handler rejected message", "from", m.From, "type", m.Type, "err", err)
		}
	}
}

// receiveSnapshot reads the snapshot data that follows the streamed-snapshot frame of m and hands
// it to ReceiveSnapshot. It reports whether m is to be delivered to Handler; an error means the
// connection's framing can no longer be trusted.
func (t *Transport) receiveSnapshot(fr *frameReader, m *raftpb.Message, debug func(string, ...any)) (bool, error) {
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
	data := &io.LimitedReader{R: fr.r, N: size}
	if m.To != t.cfg.ID {
		debug("drop snapshot addressed elsewhere", "from", m.From, "to", m.To, "bytes", size)
		return false, discard(data, size)
	}
	if err := t.cfg.ReceiveSnapshot(*m, noEOFReader{data}, size); err != nil {
		return false, fmt.Errorf("receive snapshot %d (%d bytes): %w", m.Snapshot.Metadata.Index, size, err)
	}
	// What the callback left unread (a snapshot it had no use for) is skipped, so the next
	// frame is read from its first byte.
	if err := discard(data, size); err != nil {
		return false, err
	}
	return true, nil
}

// discard skips what is left of a snapshot's data.
func discard(data *io.LimitedReader, size int64) error {
	if data.N == 0 {
		return nil
	}
	if _, err := io.Copy(io.Discard, data); err != nil {
		return fmt.Errorf("skip snapshot data (%d of %d bytes left): %w", data.N, size, noEOF(err))
	}
	if data.N != 0 {
		return fmt.Errorf("skip snapshot data (%d of %d bytes left): %w", data.N, size, io.ErrUnexpectedEOF)
	}
	return nil
}

// noEOFReader reads snapshot data: the connection ending before the data's end is a
// truncation (io.ErrUnexpectedEOF), not the end of the snapshot, which the limit alone marks.
type noEOFReader struct{ r *io.LimitedReader }

func (r noEOFReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF && r.r.N > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
