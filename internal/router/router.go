// Package router decides, for every request a server receives, which replica group serves it:
// the local group, or another group reached by forwarding the request to one of its nodes. It
// keeps the node's delegation map (the newest configuration it knows), bounds forwarding hops so
// stale maps never loop, retries refusals after refreshing, and fans multi-key commands out per
// group. It implements the server's Backend.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// Local is the group this node is a replica of.
type Local interface {
	// GetAppendSlot appends key's value to dst, so that callers can reuse one buffer; slot is
	// key's, which the router has computed already (a GET hashes its key once).
	GetAppendSlot(ctx context.Context, key []byte, slot uint16, dst []byte) ([]byte, bool, error)
	MGet(ctx context.Context, keys [][]byte) ([][]byte, []bool, error)
	Exists(ctx context.Context, keys [][]byte) (int64, error)
	Set(ctx context.Context, a group.SetArgs) (group.SetResult, error)
	Expire(ctx context.Context, a group.ExpireArgs) (bool, error)
	ExpireTime(ctx context.Context, key []byte) (at int64, ok bool, err error)
	GetEx(ctx context.Context, a group.ExpireArgs) ([]byte, bool, error)
	Del(ctx context.Context, keys [][]byte) (int64, error)
	Append(ctx context.Context, key, val []byte) (int64, error)
	IncrBy(ctx context.Context, key []byte, delta int64) (int64, error)
	MSet(ctx context.Context, kvs [][]byte) error
	GetDel(ctx context.Context, key []byte) ([]byte, bool, error)
	CompareAndSwap(ctx context.Context, key, old []byte, oldPresent bool, val []byte) (bool, error)
	ScanRange(ctx context.Context, r keyspace.Range, cursor uint64, match []byte, count int) (uint64, [][]byte, error)
	DBSize(ctx context.Context) (int64, error)
	Info(section string) string
	Serves(slot uint16) bool
	Start(ctx context.Context, w group.Write) (group.Wait, error)
}

// Peers sends a command to another node.
type Peers interface {
	Do(ctx context.Context, addr string, args ...[]byte) (resp.Value, error)
}

// Config configures a Router.
type Config struct {
	GroupID uint64
	Local   Local
	Peers   Peers
	// MaxHops bounds how many times one request may be forwarded (default 3): a node whose map
	// is stale forwards to the owner it knows, which forwards again if it gave the slot away,
	// and so on; past the bound the request is refused and the client retries.
	MaxHops int
	// Refresh is called when a refusal suggests the delegation map is stale.
	Refresh func()
	Logger  *slog.Logger
}

// Router routes requests. Its zero delegation map (standalone mode) sends everything local.
type Router struct {
	cfg     Config
	latest  atomic.Pointer[controller.Config]
	leaders atomic.Pointer[map[uint64]uint64] // other groups' raft leaders, as last learned
}

// SetLeaders records the raft leaders (node ids) of other groups.
func (r *Router) SetLeaders(m map[uint64]uint64) { r.leaders.Store(&m) }

// Leader returns group gid's raft leader as last learned, or 0.
func (r *Router) Leader(gid uint64) uint64 {
	if m := r.leaders.Load(); m != nil {
		return (*m)[gid]
	}
	return 0
}

// New creates a router.
func New(cfg Config) *Router {
	if cfg.MaxHops == 0 {
		cfg.MaxHops = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Refresh == nil {
		cfg.Refresh = func() {}
	}
	return &Router{cfg: cfg}
}

// SetConfig installs a newer configuration into the delegation map; older ones are ignored.
func (r *Router) SetConfig(c *controller.Config) {
	for {
		cur := r.latest.Load()
		if cur != nil && cur.Num >= c.Num {
			return
		}
		if r.latest.CompareAndSwap(cur, c) {
			return
		}
	}
}

// Latest returns the newest configuration known here, nil in standalone mode.
func (r *Router) Latest() *controller.Config { return r.latest.Load() }

type hopsKey struct{}

// WithHops records how many times a request has been forwarded already.
func WithHops(ctx context.Context, hops int) context.Context {
	return context.WithValue(ctx, hopsKey{}, hops)
}

func hopsOf(ctx context.Context) int {
	h, _ := ctx.Value(hopsKey{}).(int)
	return h
}

// Locate says whether the local group serves slot, and otherwise the client address of a node
// of the group that owns it in the newest configuration known here ("" when unknown).
func (r *Router) Locate(slot uint16) (local bool, addr string) {
	if r.cfg.Local.Serves(slot) {
		return true, ""
	}
	c := r.latest.Load()
	if c == nil {
		return true, "" // standalone: the local group answers (and refuses) for itself
	}
	gid := c.Owner(slot)
	if gid == r.cfg.GroupID {
		return true, "" // ours in the newest configuration; the group is catching up to it
	}
	g, ok := c.Groups[gid]
	if !ok || len(g.Nodes) == 0 {
		return false, ""
	}
	// The leader saves the owner a forwarding hop inside its group; any node would do.
	if l := r.Leader(gid); l != 0 {
		for _, n := range g.Nodes {
			if n.ID == l {
				return false, n.Addr
			}
		}
	}
	return false, g.Nodes[int(slot)%len(g.Nodes)].Addr
}

// ErrNoOwner is returned when no group is known to own a slot.
var ErrNoOwner = errors.New("no group serves this slot")

// retryable reports whether err is a refusal that a retry after a map refresh may cure.
func retryable(err error) bool {
	return errors.Is(err, group.ErrWrongGroup) || errors.Is(err, group.ErrMoving) || errors.Is(err, ErrNoOwner)
}

// route runs op against the owner of slot, retrying refusals with backoff until ctx ends.
func (r *Router) route(ctx context.Context, slot uint16, local func() error, remote func(addr string) error) error {
	backoff := 5 * time.Millisecond
	for {
		isLocal, addr := r.Locate(slot)
		var err error
		switch {
		case isLocal:
			err = local()
		case addr == "":
			err = ErrNoOwner
		case hopsOf(ctx) >= r.cfg.MaxHops:
			return fmt.Errorf("%w: forwarding limit reached", group.ErrWrongGroup)
		default:
			err = remote(addr)
		}
		if !retryable(err) {
			return err
		}
		if errors.Is(err, group.ErrWrongGroup) || errors.Is(err, ErrNoOwner) {
			r.cfg.Refresh()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// forward sends a command to addr as SHOAL.FWD with the hop count and the caller's session.
func (r *Router) forward(ctx context.Context, addr string, args ...[]byte) (resp.Value, error) {
	fwd := make([][]byte, 0, len(args)+6)
	fwd = append(fwd, []byte("SHOAL.FWD"), strconv.AppendInt(nil, int64(hopsOf(ctx)+1), 10))
	if s, ok := group.SessionFrom(ctx); ok {
		fwd = append(fwd, []byte("SHOAL.AT"), strconv.AppendUint(nil, s.ClientID, 10),
			strconv.AppendUint(nil, s.Seq, 10), strconv.AppendUint(nil, s.Acked, 10))
	}
	fwd = append(fwd, args...)
	v, err := r.cfg.Peers.Do(ctx, addr, fwd...)
	if err != nil {
		// The request may or may not have run there: not retryable here, the client decides.
		return v, err
	}
	if v.Type == '-' {
		return v, RemoteError(string(v.Str))
	}
	return v, nil
}

// RemoteError maps an error reply from another node back to the error the local group would
// have returned, so that a forwarded request fails the same way a local one does.
func RemoteError(text string) error {
	code, _, _ := strings.Cut(text, " ")
	switch code {
	case "MOVED", "CLUSTERDOWN":
		return fmt.Errorf("%w: %s", group.ErrWrongGroup, text)
	case "TRYAGAIN":
		if strings.Contains(text, "moving") {
			return fmt.Errorf("%w: %s", group.ErrMoving, text)
		}
		return fmt.Errorf("%w: %s", group.ErrNotLeader, text)
	case "STALE":
		return group.ErrStale
	}
	switch {
	case strings.Contains(text, group.ErrNotInteger.Error()):
		return group.ErrNotInteger
	case strings.Contains(text, group.ErrOverflow.Error()):
		return group.ErrOverflow
	case strings.Contains(text, group.ErrTooLarge.Error()):
		return group.ErrTooLarge
	}
	return errors.New(text)
}

// Get implements server.Backend.
func (r *Router) Get(ctx context.Context, key []byte) (val []byte, ok bool, err error) {
	return r.GetAppend(ctx, key, nil)
}

// GetAppend implements server.ValueAppender: Get, with the value appended to dst.
func (r *Router) GetAppend(ctx context.Context, key, dst []byte) (val []byte, ok bool, err error) {
	slot := keyspace.Slot(key)
	err = r.route(ctx, slot, func() error {
		var err error
		val, ok, err = r.cfg.Local.GetAppendSlot(ctx, key, slot, dst)
		return err
	}, func(addr string) error {
		v, err := r.forward(ctx, addr, []byte("GET"), key)
		ok = err == nil && !v.Null
		if ok {
			val = append(dst, v.Str...)
		}
		return err
	})
	return val, ok, err
}

// Set implements server.Backend.
func (r *Router) Set(ctx context.Context, a group.SetArgs) (res group.SetResult, err error) {
	err = r.route(ctx, keyspace.Slot(a.Key), func() error {
		var err error
		res, err = r.cfg.Local.Set(ctx, a)
		return err
	}, func(addr string) error {
		args := [][]byte{[]byte("SET"), a.Key, a.Val}
		if a.NX {
			args = append(args, []byte("NX"))
		}
		if a.XX {
			args = append(args, []byte("XX"))
		}
		if a.Get {
			args = append(args, []byte("GET"))
		}
		switch {
		case a.KeepTTL:
			args = append(args, []byte("KEEPTTL"))
		case a.ExpireAt != 0:
			// PXAT takes only positive times; any time already past deletes the key alike.
			args = append(args, []byte("PXAT"), strconv.AppendInt(nil, max(a.ExpireAt, 1), 10))
		}
		v, err := r.forward(ctx, addr, args...)
		if err != nil {
			return err
		}
		// SET answers OK or nil; with GET it answers the old value (nil if none) and whether
		// it wrote is not visible, as in Redis.
		if a.Get {
			res = group.SetResult{Done: true, Old: v.Str, HadOld: !v.Null}
		} else {
			res = group.SetResult{Done: !v.Null}
		}
		return nil
	})
	return res, err
}

// Expire implements server.Backend. A forwarded expiry is absolute (PEXPIREAT), so it means
// the same instant on the owner as here.
func (r *Router) Expire(ctx context.Context, a group.ExpireArgs) (done bool, err error) {
	err = r.route(ctx, keyspace.Slot(a.Key), func() error {
		var err error
		done, err = r.cfg.Local.Expire(ctx, a)
		return err
	}, func(addr string) error {
		var args [][]byte
		if a.Persist {
			args = [][]byte{[]byte("PERSIST"), a.Key}
		} else {
			args = [][]byte{[]byte("PEXPIREAT"), a.Key, strconv.AppendInt(nil, a.At, 10)}
			for _, f := range []struct {
				on   bool
				name string
			}{{a.NX, "NX"}, {a.XX, "XX"}, {a.GT, "GT"}, {a.LT, "LT"}} {
				if f.on {
					args = append(args, []byte(f.name))
				}
			}
		}
		v, err := r.forward(ctx, addr, args...)
		done = v.Int == 1
		return err
	})
	return done, err
}

// ExpireTime implements server.Backend.
func (r *Router) ExpireTime(ctx context.Context, key []byte) (at int64, ok bool, err error) {
	err = r.route(ctx, keyspace.Slot(key), func() error {
		var err error
		at, ok, err = r.cfg.Local.ExpireTime(ctx, key)
		return err
	}, func(addr string) error {
		v, err := r.forward(ctx, addr, []byte("PEXPIRETIME"), key)
		if err != nil {
			return err
		}
		// PEXPIRETIME answers -2 for a missing key and -1 for one without expiry.
		switch {
		case v.Int == -2:
			at, ok = 0, false
		case v.Int == -1:
			at, ok = 0, true
		default:
			at, ok = v.Int, true
		}
		return nil
	})
	return at, ok, err
}

// GetEx implements server.Backend. A forwarded expiry is absolute (PXAT), as for Expire.
func (r *Router) GetEx(ctx context.Context, a group.ExpireArgs) (val []byte, ok bool, err error) {
	err = r.route(ctx, keyspace.Slot(a.Key), func() error {
		var err error
		val, ok, err = r.cfg.Local.GetEx(ctx, a)
		return err
	}, func(addr string) error {
		args := [][]byte{[]byte("GETEX"), a.Key, []byte("PERSIST")}
		if !a.Persist {
			// PXAT takes only positive times; any time already past deletes the key alike.
			args = [][]byte{args[0], a.Key, []byte("PXAT"), strconv.AppendInt(nil, max(a.At, 1), 10)}
		}
		v, err := r.forward(ctx, addr, args...)
		val, ok = v.Str, !v.Null
		return err
	})
	return val, ok, err
}

// GetDel implements server.Backend.
func (r *Router) GetDel(ctx context.Context, key []byte) (val []byte, ok bool, err error) {
	err = r.route(ctx, keyspace.Slot(key), func() error {
		var err error
		val, ok, err = r.cfg.Local.GetDel(ctx, key)
		return err
	}, func(addr string) error {
		v, err := r.forward(ctx, addr, []byte("GETDEL"), key)
		val, ok = v.Str, !v.Null
		return err
	})
	return val, ok, err
}

// Append implements server.Backend.
func (r *Router) Append(ctx context.Context, key, val []byte) (n int64, err error) {
	err = r.route(ctx, keyspace.Slot(key), func() error {
		var err error
		n, err = r.cfg.Local.Append(ctx, key, val)
		return err
	}, func(addr string) error {
		v, err := r.forward(ctx, addr, []byte("APPEND"), key, val)
		n = v.Int
		return err
	})
	return n, err
}

// IncrBy implements server.Backend.
func (r *Router) IncrBy(ctx context.Context, key []byte, delta int64) (n int64, err error) {
	err = r.route(ctx, keyspace.Slot(key), func() error {
		var err error
		n, err = r.cfg.Local.IncrBy(ctx, key, delta)
		return err
	}, func(addr string) error {
		v, err := r.forward(ctx, addr, []byte("INCRBY"), key, strconv.AppendInt(nil, delta, 10))
		n = v.Int
		return err
	})
	return n, err
}

// CompareAndSwap sets key to val if it currently holds old (or is absent when !oldPresent).
func (r *Router) CompareAndSwap(ctx context.Context, key, old []byte, oldPresent bool, val []byte) (ok bool, err error) {
	err = r.route(ctx, keyspace.Slot(key), func() error {
		var err error
		ok, err = r.cfg.Local.CompareAndSwap(ctx, key, old, oldPresent, val)
		return err
	}, func(addr string) error {
		args := [][]byte{[]byte("SHOAL.CAS"), key}
		if oldPresent {
			args = append(args, []byte("VALUE"), old, val)
		} else {
			args = append(args, []byte("ABSENT"), val)
		}
		v, err := r.forward(ctx, addr, args...)
		ok = v.Int == 1
		return err
	})
	return ok, err
}

// DBSize implements server.Backend: the keys of this node's group, as DBSIZE on a Redis Cluster
// node counts that node's keys (cluster clients sum over masters, per COMMAND's tips).
func (r *Router) DBSize(ctx context.Context) (int64, error) { return r.cfg.Local.DBSize(ctx) }

// Info implements server.Backend.
func (r *Router) Info(section string) string {
	s := r.cfg.Local.Info(section)
	if section == "cluster" {
		if c := r.latest.Load(); c != nil {
			s += fmt.Sprintf("shoal_config_num:%d\r\nshoal_groups:%d\r\n", c.Num, len(c.Groups))
		}
	}
	return s
}

// ErrNotLocal is returned by StartWrite for a write that cannot be started without waiting:
// some key is not served by the local group right now. The caller runs it the ordinary way.
var ErrNotLocal = errors.New("write not served locally")

// StartWrite proposes a write whose keys the local group serves and returns without waiting
// for it to apply, so that a pipeline of writes shares commit latency.
func (r *Router) StartWrite(ctx context.Context, w group.Write) (group.Wait, error) {
	serves := func(k []byte) bool { return r.cfg.Local.Serves(keyspace.Slot(k)) }
	switch w.Op {
	case group.WriteSet:
		if !serves(w.Set.Key) {
			return group.Wait{}, ErrNotLocal
		}
	case group.WriteMSet:
		for i := 0; i < len(w.Args); i += 2 {
			if !serves(w.Args[i]) {
				return group.Wait{}, ErrNotLocal
			}
		}
	case group.WriteDel:
		for _, k := range w.Args {
			if !serves(k) {
				return group.Wait{}, ErrNotLocal
			}
		}
	default:
		if len(w.Args) == 0 || !serves(w.Args[0]) {
			return group.Wait{}, ErrNotLocal
		}
	}
	return r.cfg.Local.Start(ctx, w)
}
