package node

import (
	"context"
	"time"
)

// Expired keys that nothing reads are reaped by a sweep on the leader: sweepBudget keys looked at
// every sweepEvery, and again at once while a tenth or more of them had expired (up to
// sweepRounds times), as Redis's active expiry adapts to how much has expired.
const (
	sweepEvery   = 100 * time.Millisecond
	sweepTimeout = 2 * time.Second // a reap lost in a leader change is never answered
	sweepBudget  = 2000
	sweepRounds  = 10
)

// sweep runs every interval until ctx ends.
func (n *Node) sweep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range sweepRounds {
			if !n.raft.IsLeader() {
				break
			}
			sctx, cancel := context.WithTimeout(ctx, sweepTimeout)
			reaped, err := n.group.Sweep(sctx, sweepBudget)
			cancel()
			if err != nil {
				n.log.Debug("expiry sweep", "err", err)
				break
			}
			if reaped < sweepBudget/10 {
				break
			}
		}
	}
}
