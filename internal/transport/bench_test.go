package transport

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkSendMsgApp measures one-way throughput of small MsgApp messages (one 64-byte entry)
// over one loopback link, sent in batches of 64 as a raft Ready loop would. The sender keeps at
// most half a queue in flight so the benchmark measures delivery, not the drop path.
func BenchmarkSendMsgApp(b *testing.B) {
	const (
		batchSize = 64
		window    = DefaultQueueSize / 2
	)
	var got, dropped atomic.Int64
	notify := make(chan struct{}, 1)
	wake := func() {
		select {
		case notify <- struct{}{}:
		default:
		}
	}
	recv := newNode(b, 2, func(c *Config) {
		c.Handler = func(context.Context, raftpb.Message) error {
			if n := got.Add(1); n%256 == 0 {
				wake()
			}
			return nil
		}
	})
	send := newNode(b, 1, func(c *Config) {
		c.Unreachable = func(uint64) { dropped.Add(1); wake() }
	})
	connect(send, recv)

	msg := raftpb.Message{Type: raftpb.MsgApp, From: 1, To: 2, Term: 5, LogTerm: 5, Index: 1000,
		Commit: 999, Entries: []raftpb.Entry{{Term: 5, Index: 1001, Data: make([]byte, 64)}}}
	b.SetBytes(int64(msg.Size() + frameHeaderSize))
	batch := make([]raftpb.Message, batchSize)
	for i := range batch {
		batch[i] = msg
	}
	// waitFor blocks until at most lag messages are unaccounted for.
	waitFor := func(sent, lag int64) {
		for sent-got.Load()-dropped.Load() > lag {
			select {
			case <-notify:
			case <-time.After(time.Millisecond):
			}
		}
	}

	b.ReportAllocs()
	b.ResetTimer()
	var sent int64
	for sent < int64(b.N) {
		n := min(int64(batchSize), int64(b.N)-sent)
		waitFor(sent, window-n)
		send.Send(batch[:n])
		sent += n
	}
	waitFor(sent, 0)
	b.StopTimer()
	if d := dropped.Load(); d > 0 {
		b.Logf("%d of %d messages dropped", d, b.N)
	}
}
