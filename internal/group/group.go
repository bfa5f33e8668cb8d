// Package group is the replicated state machine of one replica group: it encodes writes as
// commands, proposes them through raft, applies committed commands in log order to the table,
// keeps the at-most-once records per slot, hands each proposer the result of its own command once
// applied, and serves linearizable reads behind a ReadIndex barrier.
package group

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/raftnode"
	"github.com/shoal-kv/shoal/internal/table"
)

// Replicator is what the group needs from its raft node.
type Replicator interface {
	Propose(ctx context.Context, data []byte) error
	ReadBarrier(ctx context.Context) error
	Status() raftnode.Status
}

// Session identifies a client's write for at-most-once execution: ClientID is unique per client,
// Seq increases with every write the client issues, and Acked is a sequence number below or at
// which the client has received every reply (so the records for those can be forgotten).
type Session struct {
	ClientID, Seq, Acked uint64
}

type sessionKey struct{}

// WithSession attaches an at-most-once session to the context of a write.
func WithSession(ctx context.Context, s Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// SessionFrom returns the session attached to ctx, if any.
func SessionFrom(ctx context.Context) (Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(Session)
	return s, ok
}

// ErrStale is returned for a write whose sequence number the client already acknowledged: its
// reply was delivered before, and the record needed to repeat it has been discarded.
var ErrStale = errors.New("stale request: sequence number already acknowledged")

// Config configures a Group.
type Config struct {
	// GroupID is the replica group's id.
	GroupID uint64
	// Controlled groups follow the shard controller's configurations and start owning nothing;
	// an uncontrolled (standalone) group serves every slot.
	Controlled bool
	Table      *table.Table
	Logger     *slog.Logger
	// Window is the shortest time between two proposals while writes keep arriving, unless the
	// queued batch already matches the previous one (see drain), doubled at most as more writers
	// wait at once (scaledWindow); 0 proposes every batch as soon as the previous one was handed
	// to raft.
	Window time.Duration
	// MaxValueLen is the longest value APPEND builds (0: MaxValueLen). Every replica of a group
	// must have the same, since each decides when it applies the write.
	MaxValueLen int
	// Clock is the time by which this replica proposes writes and judges expiry on reads (nil:
	// time.Now). Tests set it.
	Clock func() time.Time
}

// Group is one replica's view of the group state machine. It implements raftnode.StateMachine.
type Group struct {
	cfg   Config
	log   *slog.Logger
	tab   *table.Table
	r     Replicator
	props proposals

	waitMu  sync.Mutex
	waiters map[uint64]chan result
	// chans recycles the one-slot channels that carry results from Apply to proposers: a fresh
	// channel per write cost two allocations (its header and its buffer, since result holds
	// pointers) on the hottest write path.
	chans sync.Pool

	// sessions is touched only by the apply path (Apply, Snapshot, Restore), which raftnode runs
	// on one goroutine, so it needs no lock. One record set per slot, so records move with a
	// shard.
	sessions [keyspace.NumSlots]*slotSessions

	// snap is the snapshot being written out, if any (see snapJob). Owned by the apply path like
	// sessions: every apply-path change of a slot's pairs or records calls preserve (or
	// preserveCommand) first, so the snapshot keeps the slot as it was at its capture index.
	snap *snapJob

	// own guards cs. The apply path takes it for writing when configurations or hand-offs change
	// which slots the group serves; reads hold it shared from their ownership check until they
	// have read the table, so a slot cannot be handed off between the two.
	own sync.RWMutex
	cs  clusterState

	applyCmd command // scratch, reused by the single apply goroutine
	// Also the apply goroutine's: a value header read (expiry.go) and a stored value built.
	hdr  [expiringHdr]byte
	num  [20]byte
	wbuf []byte

	// expiring counts, per slot, the writes that stored a value with an expiry since Sweep last
	// found none there (0: Sweep skips the slot).
	expiring [keyspace.NumSlots]atomic.Uint64
	marked   atomic.Int64 // slots whose expiring count is not 0: Sweep does nothing while none are
	expires  atomic.Int64 // pairs whose values have an expiry (INFO keyspace)
	sweep    sweepState

	// ops counts requests per slot (writes as applied, reads as served here), the load the
	// leader reports to the controller for load-based balancing.
	ops [keyspace.NumSlots]atomic.Uint64
}

// New creates the group state machine over a table. Bind a Replicator before serving.
func New(cfg Config) *Group {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Table == nil {
		cfg.Table = table.New()
	}
	g := &Group{cfg: cfg, log: cfg.Logger, tab: cfg.Table, waiters: make(map[uint64]chan result)}
	if !cfg.Controlled {
		for i := range g.cs.slots {
			g.cs.slots[i] = slotServing
		}
	}
	// Request ids start at a random point so that an entry proposed before a restart can never be
	// mistaken for a waiter registered after it.
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("group: crypto/rand: %v", err))
	}
	g.props.next = binary.LittleEndian.Uint64(b[:]) >> 1
	g.props.proposed = g.props.next
	g.props.full = make(chan struct{}, 1)
	return g
}

// Bind connects the group to its raft node.
func (g *Group) Bind(r Replicator) { g.r = r }

// Table returns the table the group applies to.
func (g *Group) Table() *table.Table { return g.tab }

// propose replicates a command and waits for its result.
func (g *Group) propose(ctx context.Context, c *command) (result, error) {
	p, err := g.start(ctx, c)
	if err != nil {
		return result{}, err
	}
	return p.wait(ctx)
}

// pending is a proposed command whose result has not arrived yet. It is a value, and its
// channel comes from a pool (Group.chans), so that starting a write allocates nothing beyond the log
// entry itself. Exactly one of wait or release must be called for it, once.
type pending struct {
	g  *Group
	id uint64
	ch chan result
}

// start queues a command for proposing and returns without waiting for it to commit. Commands
// started by one goroutine enter the log in the order they were started.
func (g *Group) start(ctx context.Context, c *command) (pending, error) {
	// A reap is the group's own write on behalf of a read: it must not take the sequence number
	// of a client's session the read may run in.
	if s, ok := SessionFrom(ctx); ok && c.op != opReap {
		c.clientID, c.seq, c.acked = s.ClientID, s.Seq, s.Acked
	}
	ch := g.resultChan()
	return pending{g: g, id: g.enqueue(c, ch), ch: ch}, nil
}

// deliver hands the result of command id to its proposer, if one waits on this replica. The
// send happens under waitMu and removes the registration, so that release knows a result can
// no longer arrive once it has removed the registration itself, and one registration never
// receives twice (which would block the apply loop on the one-slot channel).
func (g *Group) deliver(id uint64, res result) {
	g.waitMu.Lock()
	if ch, ok := g.waiters[id]; ok {
		delete(g.waiters, id)
		ch <- res
	}
	g.waitMu.Unlock()
}

// release gives up waiting for p: it unregisters p and recycles its channel, emptied of a
// result that deliver may have sent before the registration was removed.
func (p pending) release() {
	p.g.waitMu.Lock()
	delete(p.g.waiters, p.id)
	p.g.waitMu.Unlock()
	select {
	case <-p.ch:
	default:
	}
	p.g.chans.Put(p.ch)
}

// wait returns the command's result once this replica applied it.
func (p pending) wait(ctx context.Context) (result, error) {
	select {
	case res := <-p.ch:
		// deliver unregistered the channel when it sent: nothing else refers to it now.
		p.g.chans.Put(p.ch)
		return res, res.err
	case <-ctx.Done():
		p.release()
		if p.g.withdraw(p.id) {
			// Raft never took it (no leader was known for as long as the caller waited), and
			// now never will.
			return result{}, fmt.Errorf("%w: %w", ErrNotLeader, ctx.Err())
		}
		return result{}, fmt.Errorf("waiting for commit: %w", ctx.Err())
	}
}

// resultChan returns an empty one-slot result channel.
func (g *Group) resultChan() chan result {
	if ch, ok := g.chans.Get().(chan result); ok {
		return ch
	}
	return make(chan result, 1)
}

// Apply implements raftnode.StateMachine.
func (g *Group) Apply(index uint64, data []byte) {
	if err := forEachCommand(data, func(cmd []byte) { g.applyCommand(index, cmd) }); err != nil {
		// Every replica sees the same bytes, so every replica stops at the same point.
		g.log.Error("skipping rest of undecodable entry", "index", index, "err", err)
	}
}

// applyCommand applies one command of the entry at index and hands its result to its proposer.
func (g *Group) applyCommand(index uint64, data []byte) {
	c := &g.applyCmd
	if err := c.decode(data); err != nil {
		// Every replica sees the same bytes, so every replica skips the same command.
		g.log.Error("skipping undecodable command", "index", index, "err", err)
		return
	}
	if !c.op.admin() {
		g.preserveCommand(c) // admin ops preserve the slots they change themselves
	}
	var res result
	switch {
	case c.op.admin():
		res = g.applyAdmin(c)
	case c.clientID != 0 && len(c.args) > 0:
		slot := keyspace.Slot(c.args[0])
		if prev, dup := g.sessions[slot].lookup(c.clientID, c.seq, c.acked); dup {
			res = prev
		} else {
			res = g.executeOwned(c)
			// A refusal for a slot this group does not serve is not recorded: the client will
			// retry at the owner, and must be able to retry here too if the slot comes back.
			if !errors.Is(res.err, ErrWrongGroup) && !errors.Is(res.err, ErrMoving) {
				g.slotSessions(slot).record(c.clientID, c.seq, c.acked, res)
			}
		}
	default:
		res = g.executeOwned(c)
	}
	if c.reqID == 0 {
		return
	}
	g.deliver(c.reqID, res)
}

func (g *Group) slotSessions(slot uint16) *slotSessions {
	s := g.sessions[slot]
	if s == nil {
		s = &slotSessions{}
		g.sessions[slot] = s
	}
	return s
}

// executeOwned runs a data command if the group serves all its keys' slots.
func (g *Group) executeOwned(c *command) result {
	g.own.RLock()
	defer g.own.RUnlock()
	keys := c.args
	if c.op == opSet || c.op == opAppend || c.op == opCAS {
		keys = c.args[:min(1, len(c.args))]
	}
	if c.op == opMSet {
		for i := 0; i < len(c.args); i += 2 {
			if err := g.checkKeys(c.args[i : i+1]); err != nil {
				return result{err: err}
			}
		}
	} else if err := g.checkKeys(keys); err != nil {
		return result{err: err}
	}
	if len(c.args) > 0 {
		g.ops[keyspace.Slot(c.args[0])].Add(1)
	}
	return g.execute(c)
}

// applyAdmin applies the cluster-management commands.
func (g *Group) applyAdmin(c *command) result {
	num := uint64(c.delta)
	switch c.op {
	case opConfig:
		if len(c.args) == 1 {
			return g.applyConfig(c.args[0])
		}
	case opInstall:
		if len(c.args) == 1 {
			return g.applyInstall(num, c.args[0])
		}
	case opDrop, opCleaned:
		if len(c.args) == 1 {
			r, err := decodeRange(c.args[0])
			if err != nil {
				return result{err: err}
			}
			if c.op == opDrop {
				return g.applyDrop(num, r)
			}
			return g.applyCleaned(num, r)
		}
	}
	return result{err: fmt.Errorf("%w: admin op %d", errCorrupt, c.op)}
}

// execute applies a command to the table. It must be deterministic: every replica runs it on the
// same state and must reach the same result.
func (g *Group) execute(c *command) result {
	t := g.tab
	switch c.op {
	case opSet:
		if len(c.args) != 2 {
			return result{err: errCorrupt}
		}
		key, val := c.args[0], c.args[1]
		var old []byte
		var oldAt int64
		var had bool
		switch {
		case c.flags&setGet != 0:
			old, oldAt, had = g.current(key, c.at)
		case c.flags&(setNX|setXX|setKeepTTL) != 0:
			// The header is all these need: neither the copy nor the result (which the
			// at-most-once record keeps) should hold a whole old value.
			oldAt, had = g.liveExpiry(key, c.at)
		}
		if (c.flags&setNX != 0 && had) || (c.flags&setXX != 0 && !had) {
			return result{val: old, ok: false, n: b2i(had)}
		}
		at := c.delta
		if c.flags&setKeepTTL != 0 {
			at = oldAt
		}
		g.store(key, val, at, c.at)
		return result{val: old, ok: true, n: b2i(had)}
	case opDel:
		if c.flags&delGet != 0 && len(c.args) == 1 {
			old, at, had := g.current(c.args[0], c.at)
			if had {
				g.remove(c.args[0], at)
			}
			return result{val: old, n: b2i(had)}
		}
		var n int64
		for _, k := range c.args {
			// An expired key is deleted too, but not counted: it no longer existed.
			if at, ok := g.liveExpiry(k, c.at); ok && g.remove(k, at) {
				n++
			}
		}
		return result{n: n}
	case opAppend:
		if len(c.args) != 2 {
			return result{err: errCorrupt}
		}
		key, suffix := c.args[0], c.args[1]
		limit := cmp.Or(g.cfg.MaxValueLen, MaxValueLen)
		at, ok := g.liveExpiry(key, c.at)
		if !ok {
			if len(suffix) > limit {
				return result{err: ErrTooLarge}
			}
			g.store(key, suffix, 0, c.at)
			return result{n: int64(len(suffix))}
		}
		// The header stays in front; the value's limit excludes it.
		hl := headerLen(at)
		n, ok := t.AppendWithin(key, suffix, limit+hl)
		if !ok {
			return result{err: ErrTooLarge}
		}
		return result{n: int64(n - hl)}
	case opIncrBy:
		if len(c.args) != 1 {
			return result{err: errCorrupt}
		}
		var cur int64
		v, at, ok := g.current(c.args[0], c.at)
		if ok {
			var valid bool
			if cur, valid = ParseInt(v); !valid {
				return result{err: ErrNotInteger}
			}
		}
		if (c.delta > 0 && cur > maxInt64-c.delta) || (c.delta < 0 && cur < minInt64-c.delta) {
			return result{err: ErrOverflow}
		}
		cur += c.delta
		// INCR keeps the key's expiry, as in Redis.
		g.store(c.args[0], strconv.AppendInt(g.num[:0], cur, 10), at, c.at)
		return result{n: cur}
	case opCAS:
		if len(c.args) != 3 {
			return result{err: errCorrupt}
		}
		cur, _, had := g.current(c.args[0], c.at)
		if c.flags&setNX != 0 && had || c.flags&setNX == 0 && (!had || !bytes.Equal(cur, c.args[1])) {
			return result{ok: false}
		}
		g.store(c.args[0], c.args[2], 0, c.at)
		return result{ok: true}
	case opMSet:
		for i := 0; i+1 < len(c.args); i += 2 {
			g.store(c.args[i], c.args[i+1], 0, c.at)
		}
		return result{ok: true}
	case opExpire:
		return g.executeExpire(c)
	case opReap:
		return g.executeReap(c)
	}
	return result{err: fmt.Errorf("%w: op %d", errCorrupt, c.op)}
}

const (
	maxInt64 = 1<<63 - 1
	minInt64 = -1 << 63
)

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// ParseInt parses a value the way Redis's string2ll does: optional '-', no '+', no leading zeros,
// no spaces, within int64.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	p := b
	if neg {
		p = p[1:]
	}
	if len(p) == 0 || p[0] < '1' || p[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, ch := range p {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		if v > (1<<63)/10 { // any larger v overflows int64 after the next digit
			return 0, false
		}
		v = v*10 + uint64(ch-'0')
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true
	}
	if v > maxInt64 {
		return 0, false
	}
	return int64(v), true
}
