package raftnode

import (
	"runtime/debug"
	"sync/atomic"
)

// idleLogBytes is how much log an idle node must be holding before it snapshots to drop it.
const idleLogBytes = 1 << 20

// idleState tracks quiet periods for idleTick. It belongs to the raft loop.
type idleState struct {
	lastApplied uint64
	quietTicks  int
	releasedAt  uint64 // snapshot index when memory was last returned to the OS
}

// idleTick runs on every tick. Snapshots are spaced by log growth (half the state's size), so
// after a burst of writes a node can hold up to that much log in memory, with the Go heap's
// headroom on top, for as long as no more writes come. Once the node has applied nothing for
// IdleTicks ticks it snapshots anyway, which compacts that log away; and once a snapshot (this
// one or a regular one that finished meanwhile) has freed the log of a quiet node, the freed
// heap goes back to the operating system instead of staying as headroom: a loaded, quiet node's
// memory is the table's and little else.
func (n *Node) idleTick() {
	s := &n.idle
	applied := n.applied.Load()
	if applied != s.lastApplied {
		s.lastApplied, s.quietTicks = applied, 0
		return
	}
	s.quietTicks++
	if s.quietTicks < n.cfg.IdleTicks || n.snapJob != nil {
		return
	}
	if n.logBytes >= idleLogBytes {
		n.logBytes = 0
		if err := n.takeSnapshot(applied); err != nil {
			n.log.Warn("idle snapshot failed", "index", applied, "err", err)
		}
		return
	}
	if idx := atomic.LoadUint64(&n.snapshotIndex); idx != s.releasedAt {
		s.releasedAt = idx
		n.wg.Add(1)
		go func() { defer n.wg.Done(); debug.FreeOSMemory() }()
	}
}
