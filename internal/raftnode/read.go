package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// ErrReadTimeout is returned when no leader confirmed a read index in time.
var ErrReadTimeout = errors.New("raftnode: read index timed out (no leader?)")

// readBatcher collects concurrent ReadBarrier calls so that one ReadIndex round (one heartbeat
// quorum at the leader) serves every read that arrived while the previous round was in flight,
// as etcd's linearizable read loop does.
type readBatcher struct {
	mu      sync.Mutex
	pending *readBatch
	wake    chan struct{}
	states  chan raft.ReadState
	nextID  uint64
	rounds  atomic.Uint64 // read index requests made, for tests and stats

	// The leader's read lease (see leaseRead): valid while the monotonic clock, in nanoseconds
	// since epoch, is below leaseUntil, in term leaseTerm. noLeaseTerm is a term in which a
	// leadership transfer was asked for: the transferee campaigns without waiting for the
	// followers' election timeout, so no lease may be taken or used in that term.
	epoch       time.Time
	leaseUntil  atomic.Int64
	leaseTerm   atomic.Uint64
	noLeaseTerm atomic.Uint64
	// voteGuardUntil (nanoseconds since epoch) is when a restarted node starts answering vote
	// requests again (see Start).
	voteGuardUntil int64
}

type readBatch struct {
	done chan struct{}
	err  error
}

func (b *readBatcher) init() {
	b.wake = make(chan struct{}, 1)
	b.states = make(chan raft.ReadState, 64)
}

func (b *readBatcher) now() int64 { return int64(time.Since(b.epoch)) }

// leaseDuration is how long after a read index round started the leader may serve reads
// without another round.
//
// Why that is safe: the round's heartbeats were sent after it started, and a quorum answered
// them. With CheckQuorum, a follower ignores vote (and pre-vote) requests until ElectionTicks
// of its own ticks have passed since it last heard from its leader, and those ticks cannot come
// faster than the wall clock (a Go ticker drops ticks rather than bursting; one queued tick is
// why one tick is subtracted). Any new leader needs a vote from that quorum, so none can be
// elected, let alone commit a write, before the round's start plus (ElectionTicks-1) ticks. The
// 10% margin covers clock rate differences between machines. The clock is the monotonic clock,
// which keeps running while a process is paused (SIGSTOP), unlike raft's logical ticks: etcd
// raft's own ReadOnlyLeaseBased counts ticks and would serve stale reads from a leader that was
// paused past its lease, so it is not used. A restarted follower has forgotten whom it heard
// from; it refuses votes for a lease's length after it starts (see Start).
func (n *Node) leaseDuration() time.Duration {
	ticks := n.cfg.ElectionTicks - 1
	return time.Duration(ticks) * n.cfg.TickInterval * 9 / 10
}

// leaseRead reports whether this node is the leader holding a valid read lease. It asks the read
// loop to renew the lease in the background once half of it has passed, so a steady stream of
// reads never waits for a round.
func (n *Node) leaseRead() bool {
	b := &n.reads
	if n.cfg.NoLeaseReads || n.leader.Load() != n.cfg.ID {
		return false
	}
	term := n.term.Load()
	if b.leaseTerm.Load() != term || b.noLeaseTerm.Load() == term {
		return false
	}
	left := b.leaseUntil.Load() - b.now()
	if left <= 0 {
		return false
	}
	if left < int64(n.leaseDuration()/2) {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	return true
}

// extendLease records a read index round that started at start (nanoseconds since epoch) in term
// and was confirmed by a quorum while this node led that term.
func (n *Node) extendLease(start int64, term uint64) {
	b := &n.reads
	if n.cfg.NoLeaseReads || b.noLeaseTerm.Load() == term {
		return
	}
	until := start + int64(n.leaseDuration())
	if b.leaseTerm.Load() == term && b.leaseUntil.Load() >= until {
		return
	}
	// Only the read loop writes the lease, so these two stores need no lock; a reader seeing the
	// new term with the old deadline (or the reverse) sees an older, shorter lease at worst,
	// because a new term's lease is stored with its deadline first.
	b.leaseUntil.Store(until)
	b.leaseTerm.Store(term)
}

// revokeLease stops lease reads for the current term (a leadership transfer is starting).
func (n *Node) revokeLease() {
	n.reads.noLeaseTerm.Store(n.term.Load())
	n.reads.leaseUntil.Store(0)
}

// dropVote reports whether an incoming message is a vote request a freshly restarted node must
// not answer yet (see leaseDuration).
func (n *Node) dropVote(m raftpb.Message) bool {
	if m.Type != raftpb.MsgVote && m.Type != raftpb.MsgPreVote {
		return false
	}
	return n.reads.now() < n.reads.voteGuardUntil
}

// deliver hands read states from a Ready to the read loop without blocking the Ready loop.
func (b *readBatcher) deliver(rs []raft.ReadState) {
	for _, r := range rs {
		select {
		case b.states <- r:
		default: // the read loop retries on timeout; never stall raft for a read
		}
	}
}

// ReadBarrier returns once this node's state machine has applied everything the leader had
// committed when the barrier was requested; reads served after it are linearizable.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.leaseRead() {
		// Every write acknowledged anywhere was committed at or below the commit index this
		// leader has published (followers learn commits only from its messages, sent after it
		// recorded that index), so applying up to it is enough.
		return n.waitApplied(ctx, n.commit.Load())
	}
	b := &n.reads
	b.mu.Lock()
	batch := b.pending
	if batch == nil {
		batch = &readBatch{done: make(chan struct{})}
		b.pending = batch
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	select {
	case <-batch.done:
		return batch.err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopped:
		return ErrStopped
	}
}

func (n *Node) readLoop(ctx context.Context) {
	b := &n.reads
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		b.mu.Lock()
		batch := b.pending
		b.pending = nil
		b.mu.Unlock()
		if batch == nil && !n.leaseRenewalDue() {
			continue
		}
		err := n.readIndexRound(ctx)
		if batch != nil {
			batch.err = err
			close(batch.done)
		}
	}
}

// leaseRenewalDue reports whether a wake-up without pending reads asks for a lease renewal.
func (n *Node) leaseRenewalDue() bool {
	return n.leader.Load() == n.cfg.ID && n.reads.leaseUntil.Load()-n.reads.now() < int64(n.leaseDuration()/2)
}

// readIndexRound asks raft for a read index and waits until it is applied locally. Requests can be
// dropped silently (no leader, leader change), so it re-asks with a fresh id until it gets an
// answer or gives up.
func (n *Node) readIndexRound(ctx context.Context) error {
	deadline := time.Now().Add(5 * time.Second)
	retry := 4 * n.cfg.TickInterval * time.Duration(n.cfg.HeartbeatTicks)
	if retry < 50*time.Millisecond {
		retry = 50 * time.Millisecond
	}
	for time.Now().Before(deadline) {
		n.reads.nextID++
		var rctx [8]byte
		binary.BigEndian.PutUint64(rctx[:], n.reads.nextID)
		start, term, led := n.reads.now(), n.term.Load(), n.leader.Load() == n.cfg.ID
		n.reads.rounds.Add(1)
		n.inbox.post(op{kind: opReadIndex, data: rctx[:]})
		timer := time.NewTimer(retry)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			case <-timer.C:
				break wait
			case rs := <-n.reads.states:
				if len(rs.RequestCtx) != 8 || binary.BigEndian.Uint64(rs.RequestCtx) != n.reads.nextID {
					continue // answer to an earlier, abandoned round
				}
				timer.Stop()
				if led && n.leader.Load() == n.cfg.ID && n.term.Load() == term {
					n.extendLease(start, term)
				}
				wctx, cancel := context.WithDeadline(ctx, deadline)
				err := n.waitApplied(wctx, rs.Index)
				cancel()
				return err
			}
		}
		if retry < time.Second {
			retry *= 2
		}
	}
	return ErrReadTimeout
}
