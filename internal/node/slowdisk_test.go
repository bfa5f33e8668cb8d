package node_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/linearize"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// TestLinearizableWithSlowDisks: a 3-replica group whose disks turn slow and then stall, one at
// a time, the leader's too, while clients read and write: the history stays linearizable, and
// writes keep completing while only a follower's disk is slow or stalled (a majority is enough).
// A stall longer than an election timeout on the leader makes it lose leadership; its lease
// must not let it answer reads from a stale state once its disk comes back.
func TestLinearizableWithSlowDisks(t *testing.T) {
	var delay [4]atomic.Int64 // per replica id: nanoseconds added to every fdatasync
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 1, Replicas: 3, Configure: func(cfg *node.Config) {
		d := &delay[cfg.ID]
		cfg.BeforeWALSync = func() { time.Sleep(time.Duration(d.Load())) }
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c.WaitSettled(c.Join(1).Num)
	follower := func() uint64 { return c.Leader(1)%3 + 1 }

	var stalledFollower [2]int64 // when the follower's disk stall began and ended (recorder clock)
	var stalledLeader, leaderAfter uint64
	ops := checkLinearizable(t, ctx, c.Addrs(), func(rec *linearize.Recorder) {
		phase := func(id uint64, d, length time.Duration) {
			delay[id].Store(int64(d))
			time.Sleep(length)
			delay[id].Store(0)
			time.Sleep(300 * time.Millisecond)
		}
		phase(follower(), 20*time.Millisecond, time.Second)  // a slow follower
		phase(c.Leader(1), 20*time.Millisecond, time.Second) // a slow leader
		stalledFollower[0] = rec.Now()
		phase(follower(), 2*time.Second, 2*time.Second) // a follower's disk stalls
		stalledFollower[1] = rec.Now()
		stalledLeader = c.Leader(1)
		phase(stalledLeader, time.Second, time.Second) // the leader's stalls past an election timeout
		time.Sleep(time.Second)
		leaderAfter = c.Leader(1)
	})
	if leaderAfter == stalledLeader {
		t.Fatalf("replica %d stayed leader through a disk stall of 5 election timeouts", stalledLeader)
	}
	done := 0
	for _, op := range ops {
		out := op.Output.(linearize.Output)
		if !out.Unknown && op.Input.(linearize.Input).Kind != linearize.Get &&
			op.Call >= stalledFollower[0] && op.Return <= stalledFollower[1] {
			done++
		}
	}
	if done == 0 {
		t.Fatal("no write completed while only a follower's disk was stalled")
	}
	t.Logf("%d writes completed while a follower's disk was stalled", done)
}
