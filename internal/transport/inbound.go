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
		payload, err := fr.next()
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
		if m.To != t.cfg.ID {
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
