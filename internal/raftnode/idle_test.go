package raftnode

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestIdleNodeSnapshotsItsLog checks that a node which wrote more than idleLogBytes and then went
// quiet snapshots at its last applied entry (dropping the log from memory) although the log is
// far below the usual threshold, and that a quiet node with a small log does not.
func TestIdleNodeSnapshotsItsLog(t *testing.T) {
	c := newTestCluster(t, 1)
	n := c.nodes[1] // SnapshotEntries is 100: the ~20 entries below never trigger a snapshot by count
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.propose(ctx, 1, "small")
	time.Sleep(time.Duration(3*n.cfg.IdleTicks) * n.cfg.TickInterval)
	if st := n.Status(); st.SnapshotIndex != 0 {
		t.Fatalf("snapshot at %d after a few bytes of log", st.SnapshotIndex)
	}
	big := strings.Repeat("x", 64<<10)
	for i := range (idleLogBytes / len(big)) + 2 {
		if err := n.Propose(ctx, []byte(big+string(rune('a'+i%26)))); err != nil {
			t.Fatal(err)
		}
	}
	c.waitLen(ctx, 1, idleLogBytes/len(big)+3)
	for {
		st := n.Status()
		if st.SnapshotIndex != 0 && st.SnapshotIndex == st.Applied {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no idle snapshot: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
