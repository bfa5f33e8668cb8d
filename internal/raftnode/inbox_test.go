package raftnode

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// A reader that finds the inbox full waits until the loop takes the queue, then gets in.
func TestInboxStepWaitsForRoom(t *testing.T) {
	closed := make(chan struct{})
	in := newInbox(closed)
	ctx := context.Background()
	for i := range maxInboxSteps {
		if err := in.step(ctx, raftpb.Message{Index: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- in.step(ctx, raftpb.Message{Index: maxInboxSteps}) }()
	select {
	case err := <-done:
		t.Fatalf("step into a full inbox returned at once (err %v)", err)
	case <-time.After(50 * time.Millisecond):
	}
	ops := in.take(nil)
	if len(ops) != maxInboxSteps || ops[0].msg.Index != 0 || ops[len(ops)-1].msg.Index != maxInboxSteps-1 {
		t.Fatalf("took %d ops, want %d in order", len(ops), maxInboxSteps)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ops = in.take(ops)
	if len(ops) != 1 || ops[0].msg.Index != maxInboxSteps {
		t.Fatalf("after room: took %+v", ops)
	}
	// A waiting reader gives up with its context, and when the node stops.
	for range maxInboxSteps {
		in.step(ctx, raftpb.Message{})
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := in.step(cctx, raftpb.Message{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("full inbox, expired context: %v", err)
	}
	close(closed)
	if err := in.step(ctx, raftpb.Message{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("full inbox, stopped node: %v", err)
	}
}

// A proposal waits for the loop's verdict, and not past a stop.
func TestInboxProposeResult(t *testing.T) {
	closed := make(chan struct{})
	in := newInbox(closed)
	want := errors.New("dropped")
	go func() {
		<-in.wake
		for _, o := range in.take(nil) {
			if o.kind == opPropose && string(o.data) == "x" {
				o.done <- want
			}
		}
	}()
	if err := in.propose(context.Background(), []byte("x")); !errors.Is(err, want) {
		t.Fatalf("propose: %v, want %v", err, want)
	}
	close(closed)
	if err := in.propose(context.Background(), []byte("y")); !errors.Is(err, ErrStopped) {
		t.Fatalf("propose after stop: %v", err)
	}
}
