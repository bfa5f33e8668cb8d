// Package raftnode drives one go.etcd.io/raft/v3 node: it persists HardState and entries to a
// checksummed WAL (fsync before the messages that depend on them leave), writes snapshots of the
// state machine and compacts the log so memory and disk stay bounded, carries messages over the
// TCP transport, applies committed entries in log order, and serves batched ReadIndex barriers for
// linearizable reads.
//
// It moves opaque bytes: it knows nothing of commands, tables or RESP.
package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/shoal-kv/shoal/internal/snap"
	"github.com/shoal-kv/shoal/internal/transport"
	"github.com/shoal-kv/shoal/internal/wal"
)

// StateMachine is the replicated state the node applies committed entries to. All three methods
// are called from the node's single apply path, never concurrently with each other. A state
// machine that also implements SnapshotStreamer has its snapshots written in the background
// instead of by Snapshot, and one that implements StreamRestorer is restored from the snapshot
// file in place (at restart, and when it installs a snapshot from the leader) instead of by
// Restore.
type StateMachine interface {
	// Apply applies one committed entry's data at the given log index.
	Apply(index uint64, data []byte)
	// Snapshot serialises the whole state.
	Snapshot() ([]byte, error)
	// Restore replaces the whole state with a snapshot's data.
	Restore(data []byte) error
}

// StreamRestorer is optionally implemented by a StateMachine that can restore itself from a
// snapshot's data read in place. A restarting node, and a follower installing a snapshot its
// leader streamed into a file, then restore it straight from the snapshot file, instead of
// reading the whole file into memory first, which for a large state would need as much memory
// again as the state itself. It is optional because Restore remains necessary: state machines
// small enough not to care need not implement both, and a snapshot handed to raft with its data
// in memory is restored from there.
type StreamRestorer interface {
	// RestoreFrom replaces the whole state with the snapshot whose data is the size bytes of r,
	// as Restore does with data. It is called from the apply path, like Restore, and r is valid
	// only during the call.
	RestoreFrom(r io.ReaderAt, size int64) error
}

// Config configures a Node.
type Config struct {
	// ID is this node's raft id, non-zero and never reused.
	ID uint64
	// Peers maps every voter's raft id (this node included) to its peer address.
	Peers map[uint64]string
	// ListenAddr is where this node accepts peer connections; defaults to Peers[ID].
	ListenAddr string
	// Dir holds the WAL and snapshots.
	Dir string
	// TickInterval is one raft logical tick; election timeout is ElectionTicks of them.
	TickInterval   time.Duration
	ElectionTicks  int
	HeartbeatTicks int
	// SnapshotEntries is how many applied entries (or snapshotLogBytes of them) trigger a new
	// snapshot.
	SnapshotEntries uint64
	// CatchUpEntries is how many entries are kept in memory behind a snapshot so that slightly
	// lagging followers catch up from the log rather than from a full snapshot.
	CatchUpEntries uint64
	// CatchUpBytes bounds the same entries by size (an entry can carry a batch of writes).
	CatchUpBytes uint64
	// WrapConn optionally wraps peer connections (fault injection in tests).
	WrapConn func(net.Conn) net.Conn
	// BeforeWALSync optionally runs before every WAL fdatasync (fault injection in tests: a
	// slow or stalling disk).
	BeforeWALSync func()
	Logger        *slog.Logger
	// PeerTLS, when set, secures peer links with mutual TLS (see transport.Config.TLS).
	PeerTLS *tls.Config
	// NoLeaseReads makes every ReadBarrier run a read index round (a heartbeat quorum) instead
	// of using the leader's clock-based lease (see leaseDuration).
	NoLeaseReads bool
	// IdleTicks is how many ticks without an applied entry make a node snapshot early to drop its
	// in-memory log and return the memory (see idleTick); default 5.
	IdleTicks int
}

func (c *Config) fill() {
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 20000
	}
	if c.IdleTicks == 0 {
		c.IdleTicks = 5
	}
	if c.CatchUpEntries == 0 {
		c.CatchUpEntries = 5000
	}
	if c.CatchUpBytes == 0 {
		c.CatchUpBytes = 4 << 20
	}
	if c.ListenAddr == "" {
		c.ListenAddr = c.Peers[c.ID]
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// walPreallocate is how far ahead of the log the WAL writes zeros (see wal.Options.Preallocate):
// one journal commit per MiB of log instead of one per fsynced Ready.
const walPreallocate = 1 << 20

// ErrStopped is returned by calls made after the node stopped.
var ErrStopped = errors.New("raftnode: stopped")

// Node is one running raft replica.
type Node struct {
	cfg   Config
	log   *slog.Logger
	sm    StateMachine
	raft  *raft.RawNode // the raft state: the raft loop's alone (see inbox)
	inbox *inbox
	spare []op // the inbox's other buffer (raft loop only)
	// waiting holds, per follower, when (reads clock) it last forwarded a proposal or a read
	// index request: such a follower waits for commits and is sent every commit notice (see
	// commitOnly). Raft loop only.
	waiting map[uint64]int64
	storage *storage
	wal     *wal.WAL
	snaps   *snap.Snapshotter
	trans   *transport.Transport

	confState     raftpb.ConfState
	snapshotIndex uint64
	logBytes      int64        // entry bytes applied since the last snapshot
	snapJob       *snapshotJob // the snapshot being written in the background, if any (raft loop only)
	applied       atomic.Uint64
	leader        atomic.Uint64
	term          atomic.Uint64
	commit        atomic.Uint64 // commit index of the newest HardState, published before its messages leave
	state         atomic.Uint64 // raft.StateType of the newest SoftState
	dropped       atomic.Uint64 // commit notices not sent (commitOnly)
	persisted     uint64        // index of the last entry written to the WAL (raft loop only)

	// appliedMu guards appliedWaiters: barriers waiting for the apply index to reach a value.
	appliedMu      sync.Mutex
	appliedWaiters []appliedWaiter

	reads readBatcher
	idle  idleState

	stopped chan struct{}
	failure atomic.Pointer[error] // why the node stopped on its own, if it did
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

type appliedWaiter struct {
	index uint64
	ch    chan struct{}
}

// New opens (or creates) the node's on-disk state, restores the state machine from the newest
// snapshot, replays the WAL, and prepares the raft node. Call Start to run it.
func New(cfg Config, sm StateMachine) (*Node, error) {
	cfg.fill()
	if cfg.ID == 0 {
		return nil, errors.New("raftnode: id must be non-zero")
	}
	if _, ok := cfg.Peers[cfg.ID]; !ok {
		return nil, fmt.Errorf("raftnode: peers do not include this node's id %d", cfg.ID)
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("raft", cfg.ID), sm: sm, stopped: make(chan struct{})}
	n.inbox = newInbox(n.stopped)
	n.waiting = make(map[uint64]int64, len(cfg.Peers))
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftnode: data dir: %w", err)
	}
	var err error
	if n.snaps, err = snap.New(filepath.Join(cfg.Dir, "snap"), n.log); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.storage = &storage{MemoryStorage: raft.NewMemoryStorage()}
	if n.wal, err = wal.OpenWithOptions(filepath.Join(cfg.Dir, "wal"), wal.Options{Logger: n.log, Preallocate: walPreallocate, BeforeSync: cfg.BeforeWALSync}); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	st, err := n.wal.ReadAll()
	if err != nil {
		n.wal.Close()
		return nil, fmt.Errorf("raftnode: replay wal: %w", err)
	}
	// Restore the snapshot the WAL's newest marker names: a crash between writing a snapshot file
	// and its marker can leave a newer file the log does not agree with. Only its metadata is kept
	// here: raft's storage leaves the data in its file.
	var snapshot raftpb.Snapshot
	if st.Snapshot.Index > 0 {
		if snapshot.Metadata, err = n.restoreSnapshot(st.Snapshot.Index, st.Snapshot.Term); err != nil {
			n.wal.Close()
			return nil, err
		}
		// Retention must not remove it in favour of newer files the WAL does not name.
		n.snaps.Keep(st.Snapshot.Index)
	}
	restart := !raft.IsEmptySnap(snapshot) || !raft.IsEmptyHardState(st.HardState) || len(st.Entries) > 0
	n.reads.epoch = time.Now()
	if restart {
		// This node may have promised a leader, before it stopped, not to vote for a while;
		// it no longer knows when, so it keeps that promise for a whole lease from now.
		n.reads.voteGuardUntil = int64(time.Duration(cfg.ElectionTicks) * cfg.TickInterval)
	}
	if !raft.IsEmptySnap(snapshot) {
		if err := n.storage.applySnapshot(snapshot); err != nil {
			return nil, fmt.Errorf("raftnode: apply snapshot: %w", err)
		}
		n.confState = snapshot.Metadata.ConfState
		n.snapshotIndex = snapshot.Metadata.Index
		n.applied.Store(snapshot.Metadata.Index)
		// The commit index in the HardState may have been written without fsync (raft only asks
		// for a sync when entries or vote change); the snapshot proves everything up to its index
		// was committed, so never restart with a commit index below it (etcd-io/etcd#7899).
		if st.HardState.Commit < snapshot.Metadata.Index {
			st.HardState.Commit = snapshot.Metadata.Index
		}
	}
	if !raft.IsEmptyHardState(st.HardState) {
		// raft reports a HardState only when it changes: publish the restored one now, or Status
		// and INFO would show term 0 until the next election or commit.
		n.term.Store(st.HardState.Term)
		n.commit.Store(st.HardState.Commit)
		if err := n.storage.SetHardState(st.HardState); err != nil {
			return nil, fmt.Errorf("raftnode: %w", err)
		}
	}
	if err := n.storage.Append(st.Entries); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	n.persisted = snapshot.Metadata.Index
	if len(st.Entries) > 0 {
		n.persisted = st.Entries[len(st.Entries)-1].Index
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   n.storage,
		Applied:                   n.applied.Load(),
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  64 << 20,
		MaxUncommittedEntriesSize: 256 << 20,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		Logger:                    &raftLogger{l: n.log},
	}
	if n.raft, err = raft.NewRawNode(rc); err != nil {
		n.wal.Close()
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	if !restart {
		peers := make([]raft.Peer, 0, len(cfg.Peers))
		for id := range cfg.Peers {
			peers = append(peers, raft.Peer{ID: id})
		}
		if err := n.raft.Bootstrap(peers); err != nil {
			n.wal.Close()
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	return n, nil
}

// restoreSnapshot restores the state machine from the snapshot file at index and returns the
// snapshot's metadata. A StreamRestorer reads the file's data in place; any other state machine
// is given it in memory. A non-zero term must be the file's, or nothing is restored.
func (n *Node) restoreSnapshot(index, term uint64) (raftpb.SnapshotMetadata, error) {
	sr, ok := n.sm.(StreamRestorer)
	if !ok {
		s, err := n.snaps.LoadIndex(index)
		if err != nil {
			return raftpb.SnapshotMetadata{}, fmt.Errorf("raftnode: load snapshot %d: %w", index, err)
		}
		if err := checkTerm(s.Metadata, term); err != nil {
			return raftpb.SnapshotMetadata{}, err
		}
		if err := n.sm.Restore(s.Data); err != nil {
			return raftpb.SnapshotMetadata{}, fmt.Errorf("raftnode: restore snapshot %d: %w", index, err)
		}
		return s.Metadata, nil
	}
	f, err := n.snaps.OpenIndex(index)
	if err != nil {
		return raftpb.SnapshotMetadata{}, fmt.Errorf("raftnode: load snapshot %d: %w", index, err)
	}
	// Closed as soon as the state is restored: only reads were made, so a failing close loses
	// nothing, but it is logged.
	defer func() {
		if err := f.Close(); err != nil {
			n.log.Warn("close snapshot", "index", index, "err", err)
		}
	}()
	if err := checkTerm(f.Metadata, term); err != nil {
		return raftpb.SnapshotMetadata{}, err
	}
	if err := sr.RestoreFrom(f.Data, f.Data.Size()); err != nil {
		return raftpb.SnapshotMetadata{}, fmt.Errorf("raftnode: restore snapshot %d: %w", index, err)
	}
	return f.Metadata, nil
}

// checkTerm reports a snapshot file whose term is not the one expected (a non-zero term).
func checkTerm(md raftpb.SnapshotMetadata, term uint64) error {
	if term != 0 && md.Term != term {
		return fmt.Errorf("raftnode: snapshot %d: file has term %d, want %d", md.Index, md.Term, term)
	}
	return nil
}

// Start starts the transport and the node's loops. They run until ctx is cancelled or Stop.
func (n *Node) Start(ctx context.Context) error {
	ctx, n.cancel = context.WithCancel(ctx)
	peers := make(map[uint64]string, len(n.cfg.Peers))
	for id, addr := range n.cfg.Peers {
		if id != n.cfg.ID {
			peers[id] = addr
		}
	}
	tcfg := transport.Config{
		ID:         n.cfg.ID,
		ListenAddr: n.cfg.ListenAddr,
		Peers:      peers,
		Handler: func(ctx context.Context, m raftpb.Message) error {
			if n.dropVote(m) {
				return nil
			}
			return n.inbox.step(ctx, m)
		},
		Unreachable: func(id uint64) { n.inbox.post(op{kind: opUnreachable, id: id}) },
		SnapshotStatus: func(id uint64, failed bool) {
			n.inbox.post(op{kind: opSnapStatus, id: id, failed: failed})
		},
		OpenSnapshot:    n.openSnapshot,
		ReceiveSnapshot: n.receiveSnapshot,
		Logger:          n.log,
	}
	if n.cfg.WrapConn != nil {
		tcfg.Wrap = n.cfg.WrapConn
	}
	tcfg.TLS = n.cfg.PeerTLS
	var err error
	if n.trans, err = transport.New(tcfg); err != nil {
		n.cancel()
		return fmt.Errorf("raftnode: transport: %w", err)
	}
	if err := n.trans.Start(ctx); err != nil {
		n.cancel()
		return fmt.Errorf("raftnode: transport: %w", err)
	}
	n.reads.init()
	n.wg.Add(2)
	go func() { defer n.wg.Done(); n.run(ctx) }()
	go func() { defer n.wg.Done(); n.readLoop(ctx) }()
	return nil
}

// Done is closed when the node stops, by Stop or on its own after a storage failure (see Err).
func (n *Node) Done() <-chan struct{} { return n.stopped }

// Err returns the storage failure that stopped the node, or nil.
func (n *Node) Err() error {
	if e := n.failure.Load(); e != nil {
		return *e
	}
	return nil
}

// Stop stops the node and releases its files. It is safe to call more than once.
func (n *Node) Stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.wg.Wait()
	n.cancel = nil
}

// Propose hands data to raft to be replicated. It returns once raft accepted the proposal (not
// once it committed); the state machine learns the outcome when the entry is applied. A follower
// forwards the proposal to the leader; with no leader known the proposal is dropped
// (raft.ErrProposalDropped) and the caller should retry.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	select {
	case <-n.stopped:
		return ErrStopped
	default:
	}
	return n.inbox.propose(ctx, data)
}

// Status is a summary of the node's raft state.
type Status struct {
	ID, Leader, Term, Commit, Applied, SnapshotIndex uint64
	State                                            string
	Voters                                           []uint64
	// NoticesDropped counts the commit notices this node, as leader, did not send (commitOnly).
	NoticesDropped uint64
}

// Status reports the node's current raft state.
func (n *Node) Status() Status {
	voters := make([]uint64, 0, len(n.cfg.Peers))
	for id := range n.cfg.Peers {
		voters = append(voters, id)
	}
	return Status{ID: n.cfg.ID, Leader: n.leader.Load(), Term: n.term.Load(), Commit: n.commit.Load(),
		Applied: n.applied.Load(), SnapshotIndex: atomic.LoadUint64(&n.snapshotIndex),
		State: raft.StateType(n.state.Load()).String(), Voters: voters, NoticesDropped: n.dropped.Load()}
}

// Leader returns the id of the leader this node believes in, or 0 when none is known.
func (n *Node) Leader() uint64 { return n.leader.Load() }

// IsLeader reports whether this node believes it is the leader.
func (n *Node) IsLeader() bool { return n.leader.Load() == n.cfg.ID }

// ID returns this node's raft id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// TransferLeadership asks the leader to hand leadership to the given node.
func (n *Node) TransferLeadership(to uint64) {
	n.revokeLease()
	n.inbox.post(op{kind: opTransfer, id: to})
}

func (n *Node) run(ctx context.Context) {
	defer close(n.stopped)
	defer func() {
		// The transport first: a snapshot being received holds the snapshotter's save lock while
		// it reads the connection, and the job abortSnapshot waits for may be queued behind it.
		if err := n.trans.Close(); err != nil {
			n.log.Debug("transport close", "err", err)
		}
		// The job's goroutine is the raft loop's: it ends before the loop does.
		n.abortSnapshot()
		if err := n.wal.Close(); err != nil {
			n.log.Warn("wal close", "err", err)
		}
	}()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		// Before the first wait too: a restarted node may have committed entries to apply.
		for n.raft.HasReady() {
			if err := n.handleReady(n.raft.Ready()); err != nil {
				// A failed fsync means we cannot promise durability for what we would ack: stop
				// rather than acknowledge writes that may be lost (the fsyncgate lesson).
				n.log.Error("raft ready handling failed; stopping node", "err", err)
				n.failure.Store(&err)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			n.raft.Tick()
			n.idleTick()
		case res := <-n.snapshotDone():
			n.finishSnapshot(res)
		case <-n.inbox.wake:
			n.takeInbox()
		}
	}
}

// takeInbox feeds raft everything queued for it since the last wake-up.
func (n *Node) takeInbox() {
	ops := n.inbox.take(n.spare)
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opStep:
			if t := o.msg.Type; t == raftpb.MsgProp || t == raftpb.MsgReadIndex {
				n.waiting[o.msg.From] = n.reads.now()
			}
			if err := n.raft.Step(o.msg); err != nil {
				n.log.Debug("step", "type", o.msg.Type, "from", o.msg.From, "err", err)
			}
		case opPropose:
			if err := o.ctx.Err(); err != nil {
				o.done <- err // its caller is gone: not proposing it keeps the outcome unambiguous
				continue
			}
			o.done <- n.raft.Propose(o.data)
		case opReadIndex:
			n.raft.ReadIndex(o.data)
		case opUnreachable:
			n.raft.ReportUnreachable(o.id)
		case opSnapStatus:
			st := raft.SnapshotFinish
			if o.failed {
				st = raft.SnapshotFailure
			}
			n.raft.ReportSnapshot(o.id, st)
		case opTransfer:
			n.raft.TransferLeader(o.id)
		}
	}
	clear(ops) // drop the messages (entries can be large) before the next wake-up
	n.spare = ops[:0]
}

func (n *Node) handleReady(rd raft.Ready) error {
	if rd.SoftState != nil {
		n.leader.Store(rd.SoftState.Lead)
		n.state.Store(uint64(rd.SoftState.RaftState))
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.Term)
		n.commit.Store(rd.HardState.Commit)
	}
	if len(rd.ReadStates) > 0 {
		n.reads.deliver(rd.ReadStates)
	}
	// A leader's appends and heartbeats go out before its own fsync, so that followers persist
	// in parallel with it (Raft thesis §10.2.1, as etcd does): raft v3.6 counts the leader's own
	// acknowledgement only after Advance, i.e. after this Ready is durable, so nothing commits
	// on the strength of an entry the leader has not persisted. Everything else, above all the
	// responses that acknowledge this node's log or vote, waits for the fsync.
	later := rd.Messages
	if n.leader.Load() == n.cfg.ID {
		early := make([]raftpb.Message, 0, len(rd.Messages))
		later = make([]raftpb.Message, 0, 4)
		for _, m := range rd.Messages {
			switch m.Type {
			case raftpb.MsgApp:
				if len(m.Entries) == 0 && n.commitOnly(m) {
					n.dropped.Add(1)
					continue
				}
				early = append(early, m)
			case raftpb.MsgHeartbeat, raftpb.MsgSnap:
				early = append(early, m)
			default:
				later = append(later, m)
			}
		}
		n.trans.Send(early)
	}
	// Durability first: a snapshot file before its WAL marker, then entries and HardState, fsynced
	// when raft says so, all before any message that acknowledges them leaves this node.
	if !raft.IsEmptySnap(rd.Snapshot) {
		// A snapshot being written reads the state Restore is about to replace.
		n.abortSnapshot()
		// A snapshot without its data in memory was streamed by the leader: receiveSnapshot
		// wrote its file durably before raft was given the message.
		if rd.Snapshot.Data != nil {
			if err := n.snaps.Save(rd.Snapshot); err != nil {
				return fmt.Errorf("save snapshot: %w", err)
			}
		}
		n.snaps.Keep(rd.Snapshot.Metadata.Index) // before the marker names it (see snap.Keep)
		if err := n.wal.SaveSnapshot(rd.Snapshot.Metadata.Index, rd.Snapshot.Metadata.Term); err != nil {
			return fmt.Errorf("wal snapshot marker: %w", err)
		}
	}
	// Committed entries this node had already persisted (in earlier Readys, and not rewritten by
	// this one) are applied before this Ready's fsync rather than after it, as etcd overlaps
	// apply with persistence: a write is acknowledged one fsync sooner. On the leader every
	// committed entry is stable (raft counts its own acknowledgement only after Advance); a
	// follower may learn of commits beyond what it has persisted, and those wait for the fsync.
	committed := rd.CommittedEntries
	if raft.IsEmptySnap(rd.Snapshot) {
		stable := n.persisted
		if len(rd.Entries) > 0 && rd.Entries[0].Index <= stable {
			stable = rd.Entries[0].Index - 1
		}
		k := 0
		for k < len(committed) && committed[k].Index <= stable {
			k++
		}
		if err := n.apply(committed[:k]); err != nil {
			return err
		}
		committed = committed[k:]
	}
	if err := n.wal.Save(rd.HardState, rd.Entries, rd.MustSync); err != nil {
		return fmt.Errorf("wal save: %w", err)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		n.persisted = rd.Snapshot.Metadata.Index
	}
	if len(rd.Entries) > 0 {
		n.persisted = rd.Entries[len(rd.Entries)-1].Index
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.storage.applySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("apply snapshot to storage: %w", err)
		}
		if rd.Snapshot.Data != nil {
			if err := n.sm.Restore(rd.Snapshot.Data); err != nil {
				return fmt.Errorf("restore state machine: %w", err)
			}
		} else if _, err := n.restoreSnapshot(rd.Snapshot.Metadata.Index, rd.Snapshot.Metadata.Term); err != nil {
			return fmt.Errorf("restore state machine: %w", err)
		}
		n.confState = rd.Snapshot.Metadata.ConfState
		atomic.StoreUint64(&n.snapshotIndex, rd.Snapshot.Metadata.Index)
		n.setApplied(rd.Snapshot.Metadata.Index)
		if err := n.wal.ReleaseTo(rd.Snapshot.Metadata.Index); err != nil {
			n.log.Warn("release wal", "err", err)
		}
	}
	if err := n.storage.Append(rd.Entries); err != nil {
		return fmt.Errorf("append to storage: %w", err)
	}
	n.trans.Send(later)
	if err := n.apply(committed); err != nil {
		return err
	}
	n.maybeSnapshot()
	n.raft.Advance(rd)
	return nil
}

// commitOnly reports whether an entry-less append from the leader does nothing but tell a
// follower that has acknowledged the whole log, and waits for no commit, about a newer commit
// index. raft sends one to every follower each time the commit index moves: with a batch per
// round, that doubled the messages per write (the append, its response, the commit notice and
// its response). Dropping the notice is safe, as raft tolerates any lost message; it is also
// live, because the follower has every entry and nothing is in flight to it, so no progress
// waits on the notice. The follower learns the commit from the next append or heartbeat instead
// (within one heartbeat interval), which only delays when its replica applies. So notices still
// go to a follower that recently forwarded a proposal or a read index request (its clients wait
// for its apply), and probes and the throttled appends raft sends to unstick replication go out:
// those followers have not acknowledged everything.
func (n *Node) commitOnly(m raftpb.Message) bool {
	if t, ok := n.waiting[m.To]; ok && n.reads.now()-t < int64(n.waitingFor()) {
		return false
	}
	ok := false
	n.raft.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == m.To {
			ok = pr.State == tracker.StateReplicate && pr.Match == m.Index && pr.Next == m.Index+1
		}
	})
	return ok
}

// waitingFor is how long after its last forwarded proposal or read index request a follower
// counts as waiting for commits: one election timeout, ten heartbeats.
func (n *Node) waitingFor() time.Duration {
	return time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
}

func (n *Node) apply(ents []raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	applied := n.applied.Load()
	for i := range ents {
		e := &ents[i]
		if e.Index <= applied {
			continue // already in the restored snapshot
		}
		switch e.Type {
		case raftpb.EntryNormal:
			if len(e.Data) > 0 {
				n.sm.Apply(e.Index, e.Data)
				n.logBytes += int64(len(e.Data))
			}
		case raftpb.EntryConfChange:
			var cc raftpb.ConfChange
			if err := cc.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("decode conf change at %d: %w", e.Index, err)
			}
			n.confState = *n.raft.ApplyConfChange(cc)
		case raftpb.EntryConfChangeV2:
			var cc raftpb.ConfChangeV2
			if err := cc.Unmarshal(e.Data); err != nil {
				return fmt.Errorf("decode conf change at %d: %w", e.Index, err)
			}
			n.confState = *n.raft.ApplyConfChange(cc)
		}
		applied = e.Index
	}
	n.setApplied(applied)
	return nil
}

// setApplied publishes the apply index and releases the barriers it satisfies.
func (n *Node) setApplied(idx uint64) {
	n.applied.Store(idx)
	n.appliedMu.Lock()
	kept := n.appliedWaiters[:0]
	for _, w := range n.appliedWaiters {
		if w.index <= idx {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	clear(n.appliedWaiters[len(kept):])
	n.appliedWaiters = kept
	n.appliedMu.Unlock()
}

// waitApplied blocks until the local apply index reaches idx.
func (n *Node) waitApplied(ctx context.Context, idx uint64) error {
	if n.applied.Load() >= idx {
		return nil
	}
	ch := make(chan struct{})
	n.appliedMu.Lock()
	if n.applied.Load() >= idx {
		n.appliedMu.Unlock()
		return nil
	}
	n.appliedWaiters = append(n.appliedWaiters, appliedWaiter{index: idx, ch: ch})
	n.appliedMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
}

// snapshotLogBytes is how many bytes of applied log count like SnapshotEntries entries: entries
// that carry batches of writes reach a few megabytes long before they reach a count meant for
// entries of one write each.
const snapshotLogBytes = 4 << 20

// Sizer is optionally implemented by a StateMachine to report the bytes its snapshot would
// hold, so snapshots can be spaced by how much the log has grown relative to the state.
type Sizer interface {
	SnapshotSize() int64
}

func (n *Node) maybeSnapshot() {
	if n.snapJob != nil {
		return // one at a time; entries applied meanwhile count towards the next
	}
	applied := n.applied.Load()
	snapIdx := atomic.LoadUint64(&n.snapshotIndex)
	if applied-snapIdx < n.cfg.SnapshotEntries && n.logBytes < snapshotLogBytes {
		return
	}
	// A snapshot rewrites the whole state; taking one only once the log since the last one has
	// grown to half the state's size keeps its cost per written byte constant however large the
	// state is (a fixed entry count would make loading a big dataset quadratic).
	if sz, ok := n.sm.(Sizer); ok && n.logBytes < sz.SnapshotSize()/2 {
		return
	}
	n.logBytes = 0
	if err := n.takeSnapshot(applied); err != nil {
		n.log.Warn("snapshot failed", "index", applied, "err", err)
	}
}

// takeSnapshot snapshots the state at applied: in the background if the state machine can
// stream, else in line.
func (n *Node) takeSnapshot(applied uint64) error {
	if ss, ok := n.sm.(SnapshotStreamer); ok {
		return n.startSnapshot(ss, applied)
	}
	return n.snapshot(applied)
}

func (n *Node) snapshot(applied uint64) error {
	start := time.Now()
	data, err := n.sm.Snapshot()
	if err != nil {
		return fmt.Errorf("state machine snapshot: %w", err)
	}
	term, err := n.storage.Term(applied)
	if err != nil {
		return fmt.Errorf("term of %d: %w", applied, err)
	}
	md := raftpb.SnapshotMetadata{Index: applied, Term: term, ConfState: n.confState}
	// The data goes to its file; raft's storage keeps only the metadata (see storage).
	if err := n.snaps.Save(raftpb.Snapshot{Metadata: md, Data: data}); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	if err := n.installSnapshot(md); err != nil {
		return err
	}
	n.log.Info("snapshot", "index", applied, "bytes", len(data), "took", time.Since(start))
	return nil
}
