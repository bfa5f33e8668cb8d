package raftnode

import (
	"context"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
)

// The raft state (a raft.RawNode) belongs to the raft loop alone. Everything that reaches it
// from other goroutines (messages from peers, proposals, read-index requests, reports from the
// transport) is queued in the inbox and taken by the loop in one batch per wake-up. raft.Node
// put a goroutine of its own between every caller and the state (a channel hand-off per
// message, proposal, Ready and Advance); that measured no slower, but with one owner the loop
// can read raft's progress tracking while it sends (commitOnly) without racing that goroutine.

// opKind says what an inbox entry asks of raft.
type opKind uint8

const (
	opStep        opKind = iota + 1 // a message from a peer
	opPropose                       // a proposal; its result goes to done
	opReadIndex                     // a read-index request with context data
	opUnreachable                   // the transport could not reach peer id
	opSnapStatus                    // a snapshot to peer id finished (failed says how)
	opTransfer                      // hand leadership to peer id
)

// op is one inbox entry.
type op struct {
	kind   opKind
	msg    raftpb.Message
	data   []byte
	id     uint64
	failed bool
	done   chan error
	ctx    context.Context // the proposer's: a proposal whose caller gave up is not made
}

// maxInboxSteps bounds the peer messages queued for the loop: a transport reader that finds
// the inbox full waits, as it would for raft.Node's unbuffered receive channel, so a loop that
// is behind (a slow disk) pushes back on its peers instead of buffering without limit.
const maxInboxSteps = 4096

// inbox is the queue between the node's callers and its raft loop.
type inbox struct {
	mu     sync.Mutex
	ops    []op
	steps  int           // opStep entries in ops
	room   chan struct{} // closed when the loop takes the ops, if a reader waits for room
	wake   chan struct{} // a token for the loop: ops are waiting
	closed <-chan struct{}
}

func newInbox(closed <-chan struct{}) *inbox {
	return &inbox{wake: make(chan struct{}, 1), closed: closed}
}

// post queues o for the loop.
func (in *inbox) post(o op) {
	in.mu.Lock()
	in.ops = append(in.ops, o)
	in.mu.Unlock()
	in.signal()
}

func (in *inbox) signal() {
	select {
	case in.wake <- struct{}{}:
	default: // a token is already waiting; the loop takes every queued op when it wakes
	}
}

// step queues a peer's message, waiting while the inbox holds maxInboxSteps of them.
func (in *inbox) step(ctx context.Context, m raftpb.Message) error {
	in.mu.Lock()
	for in.steps >= maxInboxSteps {
		if in.room == nil {
			in.room = make(chan struct{})
		}
		room := in.room
		in.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		case <-in.closed:
			return ErrStopped
		}
		in.mu.Lock()
	}
	in.ops = append(in.ops, op{kind: opStep, msg: m})
	in.steps++
	in.mu.Unlock()
	in.signal()
	return nil
}

// propose queues a proposal and waits for raft's verdict on it (accepted, forwarded to the
// leader, or dropped), not for its commit.
func (in *inbox) propose(ctx context.Context, data []byte) error {
	done := make(chan error, 1)
	in.post(op{kind: opPropose, data: data, done: done, ctx: ctx})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err() // the loop may still propose it: the caller must treat it as maybe taken
	case <-in.closed:
		return ErrStopped
	}
}

// take hands the queued ops to the loop, leaving spare (emptied) as the new queue.
func (in *inbox) take(spare []op) []op {
	clear(spare)
	in.mu.Lock()
	ops := in.ops
	in.ops = spare[:0]
	in.steps = 0
	if in.room != nil {
		close(in.room)
		in.room = nil
	}
	in.mu.Unlock()
	return ops
}
