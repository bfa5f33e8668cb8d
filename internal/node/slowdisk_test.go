package node_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoal-kv/shoal/internal/linearize"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// disk is one replica's injected disk fault: every WAL fdatasync takes slow longer, and none
// completes before stallUntil (a deadline, so that a stall ends when its phase does however many
// syncs were waiting).
type disk struct {
	slow       atomic.Int64 // nanoseconds
	stallUntil atomic.Int64 // unix nanoseconds
}

func (d *disk) beforeSync() {
	time.Sleep(time.Duration(d.slow.Load()))
	if wait := time.Until(time.Unix(0, d.stallUntil.Load())); wait > 0 {
		time.Sleep(wait)
	}
}

// TestLinearizableWithSlowDisks: a 3-replica group whose disks turn slow and then stall, one at
// a time, the leader's too, while clients read and write: the history stays linearizable; writes
// through the leader keep completing while only a follower's disk is stalled (a majority is
// enough); and a leader whose disk stalls for several election timeouts loses its leadership
// (its lease must not let it answer reads from a stale state once its disk comes back).
func TestLinearizableWithSlowDisks(t *testing.T) {
	var disks [4]disk // by replica id
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 1, Replicas: 3, Configure: func(cfg *node.Config) {
		cfg.BeforeWALSync = disks[cfg.ID].beforeSync
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c.WaitSettled(c.Join(1).Num)
	leader := func() uint64 {
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if l := c.Leader(1); l != 0 {
				return l
			}
		}
		t.Fatal("no leader")
		return 0
	}

	var stalledLeader, leaderAfter uint64
	var duringStall int64
	checkLinearizable(t, ctx, c.Addrs(), func(*linearize.Recorder) {
		slow := func(id uint64) {
			disks[id].slow.Store(int64(20 * time.Millisecond))
			time.Sleep(time.Second)
			disks[id].slow.Store(0)
			time.Sleep(300 * time.Millisecond)
		}
		slow(leader()%3 + 1) // a follower
		slow(leader())

		// A follower's disk stalls for 2 s: a writer aimed at the leader keeps completing.
		l := leader()
		f := l%3 + 1
		end := time.Now().Add(2 * time.Second)
		disks[f].stallUntil.Store(end.UnixNano())
		duringStall = writeUntil(ctx, c.GroupAddrs(1)[l-1], end)
		time.Sleep(300 * time.Millisecond)

		stalledLeader = leader()
		disks[stalledLeader].stallUntil.Store(time.Now().Add(time.Second).UnixNano()) // 5 election timeouts
		time.Sleep(2 * time.Second)
		leaderAfter = leader()
	})
	if duringStall < 10 {
		t.Fatalf("%d writes through the leader completed while a follower's disk was stalled, want at least 10", duringStall)
	}
	t.Logf("%d writes through the leader completed while a follower's disk was stalled", duringStall)
	if leaderAfter == stalledLeader {
		t.Fatalf("replica %d stayed leader through a disk stall of 5 election timeouts", stalledLeader)
	}
}

// writeUntil writes through addr, one SET at a time, until end, and returns how many were
// acknowledged before end.
func writeUntil(ctx context.Context, addr string, end time.Time) int64 {
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1})
	defer cl.Close()
	var n int64
	for i := 0; time.Now().Before(end); i++ {
		wctx, cancel := context.WithDeadline(ctx, end)
		err := cl.Set(wctx, fmt.Sprintf("stall:%d", i), "x", 0).Err()
		cancel()
		if err == nil && time.Now().Before(end) {
			n++
		}
	}
	return n
}
