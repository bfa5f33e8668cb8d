package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/accept"
	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/resp"
)

// Defaults for zero Config fields.
const (
	// DefaultRequestTimeout bounds one command's wait for the backend when
	// Config.RequestTimeout is zero.
	DefaultRequestTimeout = 5 * time.Second
	// DefaultMaxClients is Redis's default maxclients.
	DefaultMaxClients = 10000
)

// Config configures a Server. Backend and Topology are required; every other zero field takes
// a default.
type Config struct {
	// Addr is the TCP address to listen on, e.g. ":6379" or "127.0.0.1:0".
	Addr string
	// Backend executes commands against the replicated store.
	Backend Backend
	// Topology describes the cluster for the CLUSTER commands.
	Topology Topology
	// Logger receives connection and error events; nil means slog.Default().
	Logger *slog.Logger
	// Limits bound what one connection may send (see resp.Limits); zero fields take
	// resp.DefaultLimits.
	Limits resp.Limits
	// MaxClients is the most connections served at once; further connections get
	// "-ERR max number of clients reached" and are closed. Zero means DefaultMaxClients.
	MaxClients int
	// IdleTimeout closes a connection that sends nothing for this long (Redis "timeout");
	// zero disables it.
	IdleTimeout time.Duration
	// RequestTimeout bounds how long one command waits for the backend before the client is
	// told to retry. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// NodeID is this node's 40-character cluster id (CLUSTER MYID); empty means the id of the
	// node the Topology marks as Myself.
	NodeID string
	// Router, when set, tells which slots other groups serve: connections that sent
	// CLIENT CAPA redirect get MOVED for those; others have the Backend forward them.
	Router Locator
	// Auth holds the users; nil means no access control (the default user may do anything).
	// When the default user needs a password, commands before AUTH get NOAUTH.
	Auth *auth.Store
	// TLS, when set, makes the listener accept only TLS connections with this configuration.
	TLS *tls.Config
	// MaxMemory, when positive, refuses commands that may add data (Redis's "denyoom"
	// commands: SET, APPEND, INCR, MSET, ...) with OOM while UsedMemory() is at or above it.
	// Reads and DEL still run; nothing is evicted.
	MaxMemory int64
	// UsedMemory reports the bytes the store holds; required when MaxMemory is set.
	UsedMemory func() int64
	// Clock is the time relative expiries (EX, PX, EXPIRE, ...) are added to and TTL and PTTL
	// count down from; nil means time.Now. Tests set it to control the time.
	Clock func() time.Time
}

// Server serves the Redis protocol on one listener. Create it with New, then Start it; Close
// stops it. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	backend  Backend
	async    AsyncBackend  // backend, when it can start writes without waiting; else nil
	appender ValueAppender // backend, when it can read into a buffer; else nil
	topo     Topology
	log      *slog.Logger
	limits   resp.Limits
	timeout  time.Duration
	maxConns int
	started  time.Time

	// baseCtx parents every request context; Close cancels it so that backend calls in flight
	// return promptly.
	baseCtx context.Context
	cancel  context.CancelFunc

	nextID atomic.Int64 // CLIENT ID source

	mu      sync.Mutex
	ln      net.Listener
	closed  bool
	clients map[*conn]struct{}    // connections being served (count against MaxClients)
	rejects map[net.Conn]struct{} // connections being turned away, closed by Close too
	wg      sync.WaitGroup        // every goroutine the Server started
}

// New returns a Server for cfg. It does not listen until Start.
func New(cfg Config) *Server {
	s := &Server{
		cfg:      cfg,
		backend:  cfg.Backend,
		topo:     cfg.Topology,
		log:      cfg.Logger,
		limits:   cfg.Limits,
		timeout:  cfg.RequestTimeout,
		maxConns: cfg.MaxClients,
		clients:  make(map[*conn]struct{}),
		rejects:  make(map[net.Conn]struct{}),
	}
	// Fill zero limits here (resp does the same internally) so that CONFIG GET reports the
	// values actually enforced.
	d := resp.DefaultLimits()
	for _, f := range []struct {
		v *int
		d int
	}{
		{&s.limits.MaxBulk, d.MaxBulk}, {&s.limits.MaxArray, d.MaxArray},
		{&s.limits.MaxInline, d.MaxInline}, {&s.limits.MaxBuffered, d.MaxBuffered},
	} {
		if *f.v <= 0 {
			*f.v = f.d
		}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.timeout <= 0 {
		s.timeout = DefaultRequestTimeout
	}
	if s.maxConns <= 0 {
		s.maxConns = DefaultMaxClients
	}
	// Asserted once here rather than per command on the write path.
	s.async, _ = cfg.Backend.(AsyncBackend)
	s.appender, _ = cfg.Backend.(ValueAppender)
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	return s
}

// nowMillis is the server's clock in Unix milliseconds, the base of relative expiry times.
func (s *Server) nowMillis() int64 {
	if s.cfg.Clock != nil {
		return s.cfg.Clock().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// Start listens on Config.Addr and returns once the listener is open; connections are then
// accepted in the background until Close. ctx bounds only the listen itself.
func (s *Server) Start(ctx context.Context) error {
	if s.backend == nil || s.topo == nil {
		return errors.New("server: Config.Backend and Config.Topology are required")
	}
	if s.cfg.MaxMemory > 0 && s.cfg.UsedMemory == nil {
		return errors.New("server: Config.MaxMemory needs Config.UsedMemory")
	}
	// With TLS, the handshake runs on the connection's goroutine at its first read, bounded by
	// IdleTimeout like any other read, so a peer stalling the handshake holds no more than an
	// idle client does.
	ln, err := accept.Listen(ctx, s.cfg.Addr, s.cfg.TLS)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Addr, err)
	}
	s.mu.Lock()
	if s.closed || s.ln != nil {
		s.mu.Unlock()
		ln.Close()
		return errors.New("server: already started or closed")
	}
	s.ln = ln
	s.started = time.Now()
	s.wg.Add(1)
	s.mu.Unlock()
	go s.acceptLoop(ln)
	s.log.Info("resp server listening", "addr", ln.Addr().String())
	return nil
}

// Addr returns the address the server listens on, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, closes every connection, cancels requests in flight and waits for
// all goroutines the Server started. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
	}
	for c := range s.clients {
		c.nc.Close()
	}
	for nc := range s.rejects {
		nc.Close()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return err
}

// acceptLoop accepts connections until the listener is closed.
func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	accept.Loop(s.baseCtx, ln, s.log, s.admit)
}

// admit starts serving nc, or turns it away when the server is full or closing.
func (s *Server) admit(nc net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.clients) >= s.maxConns {
		s.rejects[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.reject(nc)
		return
	}
	c := newConn(s, nc)
	c.initACL()
	s.clients[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go c.serve()
}

// reject tells a client over MaxClients why it is being dropped, as Redis does, then closes.
func (s *Server) reject(nc net.Conn) {
	defer s.wg.Done()
	s.log.Debug("rejecting connection: max clients reached", "remote", nc.RemoteAddr().String())
	nc.SetWriteDeadline(time.Now().Add(time.Second))
	nc.Write([]byte("-" + errMaxClients + "\r\n"))
	lingerClose(nc)
	s.mu.Lock()
	delete(s.rejects, nc)
	s.mu.Unlock()
}

// removeConn forgets a finished connection.
func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// snapshotClients returns the connections being served, for CLIENT LIST and INFO.
func (s *Server) snapshotClients() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.clients))
	for c := range s.clients {
		out = append(out, c)
	}
	return out
}

func (s *Server) numClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// lingerClose closes nc after giving the peer a chance to read what was written last. Closing
// a socket with unread input makes the kernel send RST, which can destroy the final error
// reply before the client reads it; so the write side is shut first and pending input is
// drained briefly.
func lingerClose(nc net.Conn) {
	if tc, ok := nc.(*net.TCPConn); ok {
		if tc.CloseWrite() == nil {
			tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			var buf [4096]byte
			for n := 0; n < 1<<20; {
				m, err := tc.Read(buf[:])
				n += m
				if err != nil {
					break
				}
			}
		}
	}
	nc.Close()
}
