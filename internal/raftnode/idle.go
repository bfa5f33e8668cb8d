package raftnode

import "runtime/debug"

// idleLogBytes is how much log an idle node must be holding before it snapshots to drop it.
const idleLogBytes = 1 << 20

// idleState tracks quiet periods for idleTick. It belongs to the raft loop.
type idleState struct {
	lastApplied uint64
	quietTicks  int
	release     bool // an idle snapshot was started; give memory back once it is installed
}

// idleTick runs on every tick. Snapshots are spaced by log growth (half the state's size), so
// after a burst of writes a node can hold up to that much log in memory, with the Go heap's
// headroom on top, for as long as no more writes come. Once the node has applied nothing for
// IdleTicks ticks it snapshots anyway, which compacts that log away, and then returns the freed
// heap to the operating system instead of keeping it as headroom: a loaded, quiet node's
// memory is the table's and little else.
func (n *Node) idleTick() {
	s := &n.idle
	if s.release && n.snapJob == nil {
		s.release = false
		n.wg.Add(1)
		go func() { defer n.wg.Done(); debug.FreeOSMemory() }()
	}
	applied := n.applied.Load()
	if applied != s.lastApplied {
		s.lastApplied, s.quietTicks = applied, 0
		return
	}
	s.quietTicks++
	if s.quietTicks != n.cfg.IdleTicks || n.snapJob != nil || n.logBytes < idleLogBytes {
		return
	}
	n.logBytes = 0
	if err := n.takeSnapshot(applied); err != nil {
		n.log.Warn("idle snapshot failed", "index", applied, "err", err)
		return
	}
	s.release = true
}
