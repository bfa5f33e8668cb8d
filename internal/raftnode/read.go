package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
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
}

type readBatch struct {
	done chan struct{}
	err  error
}

func (b *readBatcher) init() {
	b.wake = make(chan struct{}, 1)
	b.states = make(chan raft.ReadState, 64)
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
		if batch == nil {
			continue
		}
		batch.err = n.readIndexRound(ctx)
		close(batch.done)
	}
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
		if err := n.raft.ReadIndex(ctx, rctx[:]); err != nil {
			return fmt.Errorf("read index: %w", err)
		}
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
