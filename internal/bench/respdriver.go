package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// respConn is one TCP connection to one RESP server.
type respConn struct {
	conn net.Conn
	r    *resp.Reader
	wbuf []byte
}

func dialRESP(ctx context.Context, addr string) (*respConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &respConn{conn: c, r: resp.NewReader(c, resp.DefaultLimits())}, nil
}

// call sends one command and reads its reply; an error reply is returned as a Value, not an error.
func (c *respConn) call(ctx context.Context, args ...string) (resp.Value, error) {
	setDeadline(ctx, c.conn)
	b := make([][]byte, len(args))
	for i, a := range args {
		b[i] = []byte(a)
	}
	if _, err := c.conn.Write(resp.AppendCommand(nil, b...)); err != nil {
		return resp.Value{}, fmt.Errorf("write: %w", err)
	}
	v, err := c.r.ReadValue()
	if err != nil {
		return resp.Value{}, fmt.Errorf("read: %w", err)
	}
	return v, nil
}

func setDeadline(ctx context.Context, c net.Conn) {
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(opTimeout)
	}
	_ = c.SetDeadline(dl)
}

// RESPDriver speaks RESP to a single server or to a Redis-protocol cluster. In cluster mode it
// reads CLUSTER SLOTS once and sends each key straight to its slot's master, as cluster-aware
// clients (and redis-benchmark --cluster) do, following MOVED redirections when the map changes.
// A pipelined batch is split per node, written to every node, then the replies are collected, so
// a batch costs one round trip however many nodes it touches.
type RESPDriver struct {
	addrs   []string    // known nodes; slot owners index into it
	conns   []*respConn // lazily dialed, parallel to addrs
	owner   []uint16    // slot -> index in addrs; nil when not a cluster
	seed    string
	pending [][]int // per node: positions of the batch's ops queued to it
	// "GET" and "SET", owned by the driver so that encoding a command does not allocate.
	get, set []byte
}

// NewRESPDriver connects to seed. When the server answers CLUSTER SLOTS, the driver routes by
// slot; when it refuses (a plain redis-server), every command goes to seed.
func NewRESPDriver(ctx context.Context, seed string) (*RESPDriver, error) {
	d := &RESPDriver{seed: seed, get: []byte("GET"), set: []byte("SET")}
	c, err := dialRESP(ctx, seed)
	if err != nil {
		return nil, err
	}
	d.addrs, d.conns = []string{seed}, []*respConn{c}
	if err := d.refresh(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// refresh reloads the slot map from CLUSTER SLOTS on any connected node.
func (d *RESPDriver) refresh(ctx context.Context) error {
	var lastErr error
	for i, c := range d.conns {
		if c == nil {
			continue
		}
		v, err := c.call(ctx, "CLUSTER", "SLOTS")
		if err != nil {
			lastErr = fmt.Errorf("CLUSTER SLOTS on %s: %w", d.addrs[i], err)
			continue
		}
		if v.Type == '-' {
			if strings.Contains(string(v.Str), "cluster support disabled") {
				d.owner = nil // plain redis-server
				return nil
			}
			lastErr = fmt.Errorf("CLUSTER SLOTS on %s: %s", d.addrs[i], v.Str)
			continue
		}
		return d.applySlots(v, d.addrs[i])
	}
	if lastErr == nil {
		lastErr = errors.New("no connection to ask CLUSTER SLOTS")
	}
	return lastErr
}

// applySlots installs a CLUSTER SLOTS reply: [[start, end, [host, port, id], replicas...], ...].
func (d *RESPDriver) applySlots(v resp.Value, from string) error {
	// Unowned slots stay at index 0, the seed: it answers MOVED or CLUSTERDOWN for them.
	owner := make([]uint16, keyspace.NumSlots)
	fromHost, _, _ := net.SplitHostPort(from)
	for _, r := range v.Array {
		if len(r.Array) < 3 || len(r.Array[2].Array) < 2 {
			return fmt.Errorf("CLUSTER SLOTS: malformed range entry")
		}
		lo, hi := r.Array[0].Int, r.Array[1].Int
		host := string(r.Array[2].Array[0].Str)
		if host == "" || host == "?" {
			host = fromHost
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(r.Array[2].Array[1].Int, 10))
		idx := d.nodeIndex(addr)
		for s := max(lo, 0); s <= hi && s < keyspace.NumSlots; s++ {
			owner[s] = uint16(idx)
		}
	}
	d.owner = owner
	return nil
}

func (d *RESPDriver) nodeIndex(addr string) int {
	for i, a := range d.addrs {
		if a == addr {
			return i
		}
	}
	d.addrs = append(d.addrs, addr)
	d.conns = append(d.conns, nil)
	return len(d.addrs) - 1
}

// conn returns node i's connection, dialing it on first use.
func (d *RESPDriver) conn(ctx context.Context, i int) (*respConn, error) {
	if d.conns[i] == nil {
		c, err := dialRESP(ctx, d.addrs[i])
		if err != nil {
			return nil, err
		}
		d.conns[i] = c
	}
	return d.conns[i], nil
}

// Do implements Driver.
func (d *RESPDriver) Do(ctx context.Context, ops []Op) (int, error) {
	failed := 0
	todo := ops
	for attempt := 0; len(todo) > 0; attempt++ {
		retry, f, err := d.round(ctx, todo)
		if err != nil {
			return failed, err
		}
		failed += f
		if len(retry) == 0 {
			break
		}
		if attempt >= 5 {
			return failed + len(retry), nil
		}
		select {
		case <-ctx.Done():
			return failed + len(retry), ctx.Err()
		case <-time.After(retryPause):
		}
		todo = retry
	}
	return failed, nil
}

// round sends ops once and returns the ones to retry (redirected or asked to retry).
func (d *RESPDriver) round(ctx context.Context, ops []Op) (retry []Op, failed int, err error) {
	for len(d.pending) < len(d.addrs) {
		d.pending = append(d.pending, nil)
	}
	for i := range d.pending {
		d.pending[i] = d.pending[i][:0]
	}
	for i, op := range ops {
		n := 0
		if d.owner != nil {
			n = int(d.owner[keyspace.Slot(op.Key)])
		}
		d.pending[n] = append(d.pending[n], i)
	}
	// Write every node's share first, then read, so the nodes work in parallel.
	for n, idx := range d.pending {
		if len(idx) == 0 {
			continue
		}
		c, err := d.conn(ctx, n)
		if err != nil {
			return nil, 0, err
		}
		c.wbuf = c.wbuf[:0]
		for _, i := range idx {
			op := ops[i]
			if op.Kind == OpSet {
				c.wbuf = resp.AppendCommand(c.wbuf, d.set, op.Key, op.Value)
			} else {
				c.wbuf = resp.AppendCommand(c.wbuf, d.get, op.Key)
			}
		}
		setDeadline(ctx, c.conn)
		if _, err := c.conn.Write(c.wbuf); err != nil {
			return nil, 0, fmt.Errorf("write to %s: %w", d.addrs[n], err)
		}
	}
	for n, idx := range d.pending {
		if len(idx) == 0 {
			continue
		}
		c := d.conns[n]
		for _, i := range idx {
			v, err := c.r.ReadValue()
			if err != nil {
				return nil, 0, fmt.Errorf("read from %s: %w", d.addrs[n], err)
			}
			if v.Type != '-' {
				continue
			}
			switch {
			case bytes.HasPrefix(v.Str, []byte("MOVED ")):
				d.applyMoved(v.Str)
				retry = append(retry, ops[i])
			case bytes.HasPrefix(v.Str, []byte("ASK ")), bytes.HasPrefix(v.Str, []byte("TRYAGAIN")),
				bytes.HasPrefix(v.Str, []byte("CLUSTERDOWN")):
				retry = append(retry, ops[i])
			default:
				failed++
			}
		}
	}
	return retry, failed, nil
}

// applyMoved points the slot of a "MOVED slot host:port" error at its new owner.
func (d *RESPDriver) applyMoved(msg []byte) {
	f := strings.Fields(string(msg))
	if len(f) != 3 || d.owner == nil {
		return
	}
	slot, err := strconv.Atoi(f[1])
	if err != nil || slot < 0 || slot >= keyspace.NumSlots {
		return
	}
	d.owner[slot] = uint16(d.nodeIndex(f[2]))
	for len(d.pending) < len(d.addrs) {
		d.pending = append(d.pending, nil)
	}
}

// Close implements Driver.
func (d *RESPDriver) Close() error {
	var errs []error
	for _, c := range d.conns {
		if c != nil {
			errs = append(errs, c.conn.Close())
		}
	}
	return errors.Join(errs...)
}
