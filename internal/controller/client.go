package controller

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// DefaultAttemptTimeout bounds one request to one controller node before the Client tries the
// next. It exceeds the server's DefaultRequestTimeout so that a node without a leader gets to
// answer -TRYAGAIN rather than being abandoned mid-request.
const DefaultAttemptTimeout = 3 * time.Second

// Client talks to the controller replicas. Any replica serves any request (raft forwards
// proposals to the leader; reads use ReadIndex), so the client keeps using the replica that last
// answered and moves on to the next one when a replica fails or answers -TRYAGAIN, backing off
// between attempts until the request's context ends. State-changing requests carry the client's
// session, so a retry executes at most once.
//
// A Client sends one request at a time (the session keeps only the last request per client);
// its methods are safe for concurrent use and queue behind each other.
type Client struct {
	addrs []string
	id    uint64 // session client id, random

	mu   sync.Mutex
	seq  uint64
	cur  int // index into addrs of the replica to try first
	conn net.Conn
	r    *resp.Reader

	// AttemptTimeout overrides DefaultAttemptTimeout when positive; set it before first use.
	AttemptTimeout time.Duration
	// TLS, when set, makes connections TLS (ServerName from the address when empty); set it
	// before first use.
	TLS *tls.Config
	// Username and Password, when Password is set, authenticate every connection (AUTH); set
	// them before first use.
	Username, Password string
}

// ErrAuth wraps a refused AUTH or a missing right: retrying on another replica cannot help.
var ErrAuth = errors.New("controller: access denied")

// NewClient returns a client of the controller replicas at addrs (their RESP addresses).
// It connects lazily.
func NewClient(addrs []string) *Client {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("controller: crypto/rand: %v", err)) // never fails on supported platforms
	}
	id := binary.LittleEndian.Uint64(b[:])>>1 | 1 // positive: 0 means "no session"
	return &Client{addrs: append([]string(nil), addrs...), id: id}
}

// Close closes the client's connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
	return nil
}

// Join adds group gid with its nodes (or replaces an existing group's node list) and returns the
// latest configuration number.
func (c *Client) Join(ctx context.Context, gid uint64, nodes []Node) (uint64, error) {
	return c.change(ctx, "JOIN", strconv.FormatUint(gid, 10), FormatNodes(nodes))
}

// Leave removes group gid.
func (c *Client) Leave(ctx context.Context, gid uint64) (uint64, error) {
	return c.change(ctx, "LEAVE", strconv.FormatUint(gid, 10))
}

// Move assigns the slots of r to group gid.
func (c *Client) Move(ctx context.Context, r keyspace.Range, gid uint64) (uint64, error) {
	return c.change(ctx, "MOVE", u16(r.Lo), u16(r.Hi), strconv.FormatUint(gid, 10))
}

// Split cuts the shard whose range is exactly r at slot at.
func (c *Client) Split(ctx context.Context, r keyspace.Range, at uint16) (uint64, error) {
	return c.change(ctx, "SPLIT", u16(r.Lo), u16(r.Hi), u16(at))
}

// Merge joins two adjacent shards of one group.
func (c *Client) Merge(ctx context.Context, a, b keyspace.Range) (uint64, error) {
	return c.change(ctx, "MERGE", u16(a.Lo), u16(a.Hi), u16(b.Lo), u16(b.Hi))
}

// Rebalance spreads load over the groups now.
func (c *Client) Rebalance(ctx context.Context) (uint64, error) {
	return c.change(ctx, "REBALANCE")
}

// Report sends a group's load report.
func (c *Client) Report(ctx context.Context, r Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("controller: encode report: %w", err)
	}
	_, err = c.change(ctx, "REPORT", string(b))
	return err
}

// SetAuto turns automatic load rebalancing on or off.
func (c *Client) SetAuto(ctx context.Context, on bool) error {
	arg := "off"
	if on {
		arg = "on"
	}
	_, err := c.change(ctx, "AUTO", arg)
	return err
}

// Query returns configuration num; -1 (or a number past the newest) returns the newest.
func (c *Client) Query(ctx context.Context, num int64) (Config, error) {
	var cfg Config
	v, err := c.call(ctx, false, "QUERY", strconv.FormatInt(num, 10))
	if err == nil {
		err = decodeBulk(v, &cfg)
	}
	return cfg, err
}

// Status returns the controller's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	v, err := c.call(ctx, false, "STATUS")
	if err == nil {
		err = decodeBulk(v, &st)
	}
	return st, err
}

func decodeBulk(v resp.Value, dst any) error {
	if v.Type != '$' || v.Null {
		return fmt.Errorf("controller: unexpected reply type %q", v.Type)
	}
	if err := json.Unmarshal(v.Str, dst); err != nil {
		return fmt.Errorf("controller: decode reply: %w", err)
	}
	return nil
}

// change sends a state-changing CTL command with a fresh session sequence number.
func (c *Client) change(ctx context.Context, args ...string) (uint64, error) {
	v, err := c.call(ctx, true, args...)
	if err != nil {
		return 0, err
	}
	switch v.Type {
	case ':':
		return uint64(v.Int), nil
	case '+':
		return 0, nil
	}
	return 0, fmt.Errorf("controller: unexpected reply type %q", v.Type)
}

// call sends "CTL args..." (with a session when session is true) to a replica, retrying on other
// replicas until a definite answer or the end of ctx. -ERR replies come back as *OpError.
func (c *Client) call(ctx context.Context, session bool, args ...string) (resp.Value, error) {
	if len(c.addrs) == 0 {
		return resp.Value{}, errors.New("controller: no addresses")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := make([][]byte, 0, len(args)+4)
	cmd = append(cmd, []byte("CTL"))
	for _, a := range args {
		cmd = append(cmd, []byte(a))
	}
	if session {
		c.seq++
		cmd = append(cmd, []byte("SEQ"), []byte(strconv.FormatUint(c.id, 10)), []byte(strconv.FormatUint(c.seq, 10)))
	}
	buf := resp.AppendCommand(nil, cmd...)
	backoff := 20 * time.Millisecond
	var last error
	for {
		v, err := c.attempt(ctx, buf)
		if errors.Is(err, ErrAuth) {
			c.drop()
			return resp.Value{}, err
		}
		if err == nil {
			if v.Type != '-' {
				return v, nil
			}
			msg := string(v.Str)
			if isAccessError(msg) {
				return resp.Value{}, fmt.Errorf("%w: %s", ErrAuth, msg)
			}
			if rest, ok := strings.CutPrefix(msg, "ERR "); ok {
				return resp.Value{}, &OpError{Msg: rest}
			}
			err = fmt.Errorf("%s: %s", c.addrs[c.cur], msg) // TRYAGAIN: this replica cannot answer now
		} else {
			c.drop()
		}
		last = err
		c.cur = (c.cur + 1) % len(c.addrs)
		select {
		case <-ctx.Done():
			return resp.Value{}, fmt.Errorf("%w: %w (last error: %w)", ErrUnavailable, ctx.Err(), last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// attempt sends one request to the current replica and reads its reply.
func (c *Client) attempt(ctx context.Context, req []byte) (resp.Value, error) {
	timeout := c.AttemptTimeout
	if timeout <= 0 {
		timeout = DefaultAttemptTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if c.conn == nil {
		if err := c.dial(actx); err != nil {
			return resp.Value{}, err
		}
	}
	deadline, _ := actx.Deadline()
	c.conn.SetDeadline(deadline)
	// Unblock the read at once if ctx is cancelled (not just when the deadline passes).
	stop := context.AfterFunc(actx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.conn.Write(req); err != nil {
		return resp.Value{}, fmt.Errorf("send to %s: %w", c.addrs[c.cur], err)
	}
	v, err := c.r.ReadValue()
	if err != nil {
		return resp.Value{}, fmt.Errorf("read from %s: %w", c.addrs[c.cur], err)
	}
	return v, nil
}

// dial connects to the current replica, with TLS and AUTH when configured.
func (c *Client) dial(ctx context.Context) error {
	addr := c.addrs[c.cur]
	var conn net.Conn
	var err error
	if c.TLS != nil {
		cfg := c.TLS.Clone()
		if cfg.ServerName == "" {
			if host, _, herr := net.SplitHostPort(addr); herr == nil {
				cfg.ServerName = host
			}
		}
		d := tls.Dialer{Config: cfg}
		conn, err = d.DialContext(ctx, "tcp", addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	c.conn, c.r = conn, resp.NewReader(conn, controllerLimits())
	if c.Password == "" {
		return nil
	}
	args := [][]byte{[]byte("AUTH"), []byte(c.Password)}
	if c.Username != "" {
		args = [][]byte{[]byte("AUTH"), []byte(c.Username), []byte(c.Password)}
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := conn.Write(resp.AppendCommand(nil, args...)); err != nil {
		c.drop()
		return fmt.Errorf("auth to %s: %w", addr, err)
	}
	v, err := c.r.ReadValue()
	if err != nil {
		c.drop()
		return fmt.Errorf("auth to %s: %w", addr, err)
	}
	if v.Type == '-' {
		c.drop()
		return fmt.Errorf("%w: %s: %s", ErrAuth, addr, v.Str)
	}
	return nil
}

// isAccessError reports whether an error reply is an authentication or permission refusal.
func isAccessError(msg string) bool {
	for _, p := range []string{"NOAUTH ", "NOPERM ", "WRONGPASS "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// drop closes the current connection, if any.
func (c *Client) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.r = nil, nil
	}
}

func u16(v uint16) string { return strconv.Itoa(int(v)) }
