package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-kv/shoal/internal/accept"
	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// Backend is what the RESP server needs from a controller replica; *Service implements it.
type Backend interface {
	Do(ctx context.Context, sess Session, op Op) (uint64, error)
	Query(ctx context.Context, num int64) (Config, error)
	Status(ctx context.Context) (Status, error)
}

// DefaultRequestTimeout bounds one request's wait for the replicated state when
// ServerConfig.RequestTimeout is zero. It is below the Client's per-attempt timeout so that a
// replica without a leader answers -TRYAGAIN and the client moves on to another replica.
const DefaultRequestTimeout = 2 * time.Second

// controllerLimits bounds what one connection may send: controller requests are small (the
// largest is a load report), so a misbehaving peer cannot make the controller buffer much.
func controllerLimits() resp.Limits {
	return resp.Limits{MaxBulk: 8 << 20, MaxArray: 1024, MaxInline: 64 << 10, MaxBuffered: 16 << 20}
}

// ServerConfig configures a Server.
type ServerConfig struct {
	// Addr is the TCP address to listen on ("127.0.0.1:0" picks a port).
	Addr    string
	Backend Backend
	// RequestTimeout bounds each request's wait; DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
	Logger         *slog.Logger
	// Auth holds the users; nil means no access control. CTL QUERY and STATUS need the read
	// right, every other CTL command admin; PING, QUIT and AUTH need nothing.
	Auth *auth.Store
	// TLS, when set, makes the listener accept only TLS connections.
	TLS *tls.Config
}

// Server is the controller's RESP front end. It answers PING and the CTL commands:
//
//	CTL QUERY [num]                       bulk JSON of configuration num (-1 or none: latest)
//	CTL JOIN gid id=addr[,id=addr...]     integer: the latest configuration number afterwards
//	CTL LEAVE gid                         integer
//	CTL MOVE lo hi gid                    integer; [lo,hi) half-open
//	CTL SPLIT lo hi at                    integer; [lo,hi) must be exactly one shard
//	CTL MERGE lo1 hi1 lo2 hi2             integer; two adjacent shards of one group
//	CTL REPORT <json Report>              +OK
//	CTL REBALANCE                         integer
//	CTL AUTO on|off                       +OK
//	CTL STATUS                            bulk JSON of Status
//
// Any CTL command may end with "SEQ client seq" to execute at most once (see Session). Refused
// operations and malformed requests answer "-ERR <reason>"; an unknown outcome (no leader,
// timeout) answers "-TRYAGAIN <reason>", which clients retry, preferably on another replica.
type Server struct {
	cfg ServerConfig
	log *slog.Logger

	baseCtx context.Context // parent of every request; Close cancels it
	cancel  context.CancelFunc

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and every connection goroutine
}

// NewServer returns a Server; call Start to listen.
func NewServer(cfg ServerConfig) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Logger, conns: map[net.Conn]struct{}{}}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Start listens and serves connections in the background until Close. ctx bounds the listen.
func (s *Server) Start(ctx context.Context) error {
	if s.cfg.Backend == nil {
		return errors.New("controller server: Backend is required")
	}
	ln, err := accept.Listen(ctx, s.cfg.Addr, s.cfg.TLS)
	if err != nil {
		return fmt.Errorf("controller server: listen %s: %w", s.cfg.Addr, err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return errors.New("controller server: closed")
	}
	s.ln = ln
	s.wg.Add(1)
	s.mu.Unlock()
	go s.acceptLoop(ln)
	return nil
}

// Addr returns the listening address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Close stops accepting, closes every connection, cancels requests in flight and waits for the
// server's goroutines. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	var err error
	if !s.closed {
		s.closed = true
		if s.ln != nil {
			err = s.ln.Close()
		}
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	accept.Loop(s.baseCtx, ln, s.log, func(nc net.Conn) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		go s.serve(nc)
	})
}

func (s *Server) serve(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		nc.Close()
	}()
	r := resp.NewReader(nc, controllerLimits())
	w := resp.NewWriter(nc)
	user := s.cfg.Auth.Initial() // nil until AUTH when a password is needed
	for {
		args, err := r.ReadCommand()
		if err != nil {
			var pe *resp.ProtocolError
			if errors.As(err, &pe) {
				w.Error("ERR " + pe.Error())
				w.Flush()
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("controller connection", "remote", nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		if len(args) == 0 {
			continue
		}
		quit := false
		if s.permit(w, &user, args) {
			quit = s.dispatch(w, args)
		}
		if r.Buffered() == 0 || quit {
			if err := w.Flush(); err != nil || quit {
				return
			}
		}
	}
}

// permit handles AUTH and checks the connection's user may run args, writing the reply (of
// AUTH, or the refusal) and returning false when the command must not be dispatched.
func (s *Server) permit(w *resp.Writer, user **auth.User, args [][]byte) bool {
	name := strings.ToUpper(string(args[0]))
	if name == "AUTH" {
		var u, p []byte
		switch len(args) {
		case 2:
			if !s.cfg.Auth.Required() {
				w.Error(auth.ErrAuthNoPassword)
				return false
			}
			u, p = []byte(auth.DefaultUser), args[1]
		case 3:
			u, p = args[1], args[2]
		default:
			w.Error("ERR syntax error")
			return false
		}
		nu, ok := s.cfg.Auth.Authenticate(u, p)
		if !ok {
			w.Error(auth.ErrWrongPass)
			return false
		}
		*user = nu
		w.SimpleString("OK")
		return false
	}
	if s.cfg.Auth == nil || name == "QUIT" {
		return true
	}
	if *user == nil {
		w.Error(auth.ErrNoAuth)
		return false
	}
	need, full := auth.None, strings.ToLower(name)
	if name == "CTL" && len(args) >= 2 {
		full += "|" + strings.ToLower(string(args[1]))
		need = auth.Admin
		switch strings.ToUpper(string(args[1])) {
		case "QUERY", "STATUS":
			need = auth.Read
		}
	}
	if !(*user).Can(need) {
		w.Error(auth.NoPerm((*user).Name(), full))
		return false
	}
	return true
}

// dispatch executes one command and writes its reply; it reports whether to close the connection.
func (s *Server) dispatch(w *resp.Writer, args [][]byte) (quit bool) {
	switch strings.ToUpper(string(args[0])) {
	case "PING":
		switch len(args) {
		case 1:
			w.SimpleString("PONG")
		case 2:
			w.Bulk(args[1])
		default:
			w.Error("ERR wrong number of arguments for 'ping' command")
		}
	case "QUIT":
		w.SimpleString("OK")
		return true
	case "CTL":
		strs := make([]string, len(args)-1)
		for i, a := range args[1:] {
			strs[i] = string(a)
		}
		s.ctl(w, strs)
	default:
		w.Error(fmt.Sprintf("ERR unknown command '%s'; this is a shoal controller: try PING or CTL STATUS", args[0]))
	}
	return false
}

// ctl executes a CTL subcommand.
func (s *Server) ctl(w *resp.Writer, args []string) {
	if len(args) == 0 {
		w.Error("ERR wrong number of arguments for 'ctl' command")
		return
	}
	var sess Session
	if n := len(args); n >= 4 && strings.EqualFold(args[n-3], "SEQ") {
		c, err1 := strconv.ParseUint(args[n-2], 10, 64)
		q, err2 := strconv.ParseUint(args[n-1], 10, 64)
		if err1 != nil || err2 != nil || c == 0 || q == 0 {
			w.Error("ERR SEQ wants a positive client id and sequence number")
			return
		}
		sess, args = Session{Client: c, Seq: q}, args[:n-3]
	}
	ctx, cancel := context.WithTimeout(s.baseCtx, s.cfg.RequestTimeout)
	defer cancel()
	sub, rest := strings.ToUpper(args[0]), args[1:]
	switch sub {
	case "QUERY":
		num := int64(-1)
		if len(rest) > 1 {
			w.Error("ERR usage: CTL QUERY [num]")
			return
		}
		if len(rest) == 1 {
			n, err := strconv.ParseInt(rest[0], 10, 64)
			if err != nil {
				w.Error(fmt.Sprintf("ERR configuration number %q is not an integer", rest[0]))
				return
			}
			num = n
		}
		c, err := s.cfg.Backend.Query(ctx, num)
		s.writeJSON(w, c, err)
		return
	case "STATUS":
		if len(rest) != 0 {
			w.Error("ERR usage: CTL STATUS")
			return
		}
		st, err := s.cfg.Backend.Status(ctx)
		s.writeJSON(w, st, err)
		return
	}
	op, err := parseOp(sub, rest)
	if err != nil {
		w.Error("ERR " + err.Error())
		return
	}
	num, err := s.cfg.Backend.Do(ctx, sess, op)
	if err != nil {
		writeErr(w, err)
		return
	}
	if op.Kind == OpReport || op.Kind == OpAuto {
		w.SimpleString("OK")
		return
	}
	w.Int(int64(num))
}

func (s *Server) writeJSON(w *resp.Writer, v any, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		w.Error("ERR encode: " + err.Error())
		return
	}
	w.Bulk(b)
}

// writeErr answers a refused operation with -ERR and an unknown outcome with -TRYAGAIN.
func writeErr(w *resp.Writer, err error) {
	var oe *OpError
	msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(err.Error())
	if errors.As(err, &oe) {
		w.Error("ERR " + msg)
		return
	}
	w.Error("TRYAGAIN " + msg)
}

// parseOp parses the arguments of a state-changing CTL subcommand.
func parseOp(sub string, a []string) (Op, error) {
	want := func(n int, usage string) error {
		if len(a) != n {
			return fmt.Errorf("usage: CTL %s", usage)
		}
		return nil
	}
	switch sub {
	case "JOIN":
		if len(a) < 2 {
			return Op{}, errors.New("usage: CTL JOIN gid id=addr[,id=addr...]")
		}
		gid, err := parseGID(a[0])
		if err != nil {
			return Op{}, err
		}
		nodes, err := ParseNodes(strings.Join(a[1:], ","))
		if err != nil {
			return Op{}, err
		}
		return Op{Kind: OpJoin, Group: gid, Nodes: nodes}, nil
	case "LEAVE":
		if err := want(1, "LEAVE gid"); err != nil {
			return Op{}, err
		}
		gid, err := parseGID(a[0])
		return Op{Kind: OpLeave, Group: gid}, err
	case "MOVE":
		if err := want(3, "MOVE lo hi gid"); err != nil {
			return Op{}, err
		}
		r, err := parseRange(a[0], a[1])
		if err != nil {
			return Op{}, err
		}
		gid, err := parseGID(a[2])
		return Op{Kind: OpMove, Range: r, Group: gid}, err
	case "SPLIT":
		if err := want(3, "SPLIT lo hi at"); err != nil {
			return Op{}, err
		}
		r, err := parseRange(a[0], a[1])
		if err != nil {
			return Op{}, err
		}
		at, err := parseSlot(a[2], keyspace.NumSlots)
		return Op{Kind: OpSplit, Range: r, At: at}, err
	case "MERGE":
		if err := want(4, "MERGE lo1 hi1 lo2 hi2"); err != nil {
			return Op{}, err
		}
		r1, err := parseRange(a[0], a[1])
		if err != nil {
			return Op{}, err
		}
		r2, err := parseRange(a[2], a[3])
		return Op{Kind: OpMerge, Range: r1, Range2: r2}, err
	case "REPORT":
		if err := want(1, "REPORT <json report>"); err != nil {
			return Op{}, err
		}
		var rep Report
		dec := json.NewDecoder(strings.NewReader(a[0]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			return Op{}, fmt.Errorf("report is not valid JSON: %w", err)
		}
		return Op{Kind: OpReport, Report: &rep}, nil
	case "REBALANCE":
		if err := want(0, "REBALANCE"); err != nil {
			return Op{}, err
		}
		return Op{Kind: OpRebalance}, nil
	case "AUTO":
		if err := want(1, "AUTO on|off"); err != nil {
			return Op{}, err
		}
		switch strings.ToLower(a[0]) {
		case "on":
			return Op{Kind: OpAuto, Auto: true}, nil
		case "off":
			return Op{Kind: OpAuto}, nil
		}
		return Op{}, errors.New("usage: CTL AUTO on|off")
	}
	return Op{}, fmt.Errorf("unknown CTL subcommand %q (want QUERY, JOIN, LEAVE, MOVE, SPLIT, MERGE, REPORT, REBALANCE, AUTO or STATUS)", sub)
}

// ParseNodes parses "id=addr[,id=addr...]", a group's replicas by raft id and client address.
func ParseNodes(s string) ([]Node, error) {
	var out []Node
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idStr, addr, ok := strings.Cut(part, "=")
		id, err := strconv.ParseUint(idStr, 10, 64)
		if !ok || err != nil || id == 0 || addr == "" {
			return nil, fmt.Errorf("node %q: want id=addr with a positive id", part)
		}
		out = append(out, Node{ID: id, Addr: addr})
	}
	if len(out) == 0 {
		return nil, errors.New("no nodes given: want id=addr[,id=addr...]")
	}
	return out, nil
}

// FormatNodes is the inverse of ParseNodes.
func FormatNodes(nodes []Node) string {
	parts := make([]string, len(nodes))
	for i, n := range nodes {
		parts[i] = strconv.FormatUint(n.ID, 10) + "=" + n.Addr
	}
	return strings.Join(parts, ",")
}

func parseGID(s string) (uint64, error) {
	gid, err := strconv.ParseUint(s, 10, 64)
	if err != nil || gid == 0 {
		return 0, fmt.Errorf("group id %q: want a positive integer", s)
	}
	return gid, nil
}

func parseSlot(s string, limit int) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n > uint64(limit) {
		return 0, fmt.Errorf("slot %q: want an integer in 0..%d", s, limit)
	}
	return uint16(n), nil
}

// parseRange parses the half-open bounds lo and hi; the operations check emptiness.
func parseRange(lo, hi string) (keyspace.Range, error) {
	l, err := parseSlot(lo, keyspace.NumSlots)
	if err != nil {
		return keyspace.Range{}, err
	}
	h, err := parseSlot(hi, keyspace.NumSlots)
	if err != nil {
		return keyspace.Range{}, err
	}
	return keyspace.Range{Lo: l, Hi: h}, nil
}
