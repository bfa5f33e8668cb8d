package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/snap"
)

// streamSM is a listSM whose snapshots are streamed: StartSnapshot captures the list, and Stream
// writes it only once the test lets it (gate), or fails part-way when told to (fail).
type streamSM struct {
	listSM
	started chan int      // the captured entry count of every job started
	gate    chan struct{} // Stream waits for a value, or for it to be closed
	fail    chan struct{} // closed: Stream fails after writing part of its data
}

func newStreamSM(open bool) *streamSM {
	s := &streamSM{started: make(chan int, 100), gate: make(chan struct{}), fail: make(chan struct{})}
	if open {
		close(s.gate)
	}
	return s
}

type streamJob struct {
	sm   *streamSM
	data []string
}

func (s *streamSM) StartSnapshot() (SnapshotJob, error) {
	j := &streamJob{sm: s, data: s.snapshotOf()}
	s.started <- len(j.data)
	return j, nil
}

func (j *streamJob) Stream(ctx context.Context, w io.Writer) error {
	var b []byte
	for _, d := range j.data {
		b = binary.AppendUvarint(b, uint64(len(d)))
		b = append(b, d...)
	}
	if _, err := w.Write(b[:len(b)/2]); err != nil {
		return err
	}
	select {
	case <-j.sm.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-j.sm.fail:
		return errors.New("state machine failed mid-snapshot")
	default:
	}
	_, err := w.Write(b[len(b)/2:])
	return err
}

func (j *streamJob) Close() {}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// startNode opens and starts one replica over sm in dir.
func startNode(t *testing.T, id uint64, peers map[uint64]string, dir string, sm StateMachine) *Node {
	t.Helper()
	n, err := New(Config{ID: id, Peers: peers, Dir: dir, TickInterval: 20 * time.Millisecond,
		SnapshotEntries: 50, CatchUpEntries: 10, Logger: quietLogger()}, sm)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return n
}

// appendApplied proposes data on a single-node cluster and waits until it is applied. This is a
// liveness guard, not a timing assertion: the deadline is minutes away from normal.
func appendApplied(t *testing.T, n *Node, sm *streamSM, data string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := n.Propose(context.Background(), []byte(data)); err == nil {
			for range 500 {
				if d := sm.snapshotOf(); len(d) > 0 && d[len(d)-1] == data {
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%q was not applied (applied %d entries)", data, len(sm.snapshotOf()))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan int, what string) int {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("gave up waiting for %s", what)
		return 0
	}
}

// snapFiles lists the snapshot directory: complete files and temporary ones.
func snapFiles(t *testing.T, dir string) (complete, temporary []string) {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		switch {
		case strings.HasSuffix(de.Name(), ".snap"):
			complete = append(complete, de.Name())
		default:
			temporary = append(temporary, de.Name())
		}
	}
	return complete, temporary
}

func decodeList(t *testing.T, b []byte) []string {
	t.Helper()
	var l listSM
	if err := l.Restore(b); err != nil {
		t.Fatal(err)
	}
	return l.snapshotOf()
}

// TestWritesGoOnDuringStreamedSnapshot holds a snapshot job in the middle of writing its file
// while hundreds of entries are proposed and applied, then lets it finish and checks the file
// holds exactly the state at its capture, and that a restart from it and the WAL recovers
// everything.
func TestWritesGoOnDuringStreamedSnapshot(t *testing.T) {
	dir := t.TempDir()
	peers := map[uint64]string{1: freeAddr(t, nil)}
	sm := newStreamSM(false)
	n := startNode(t, 1, peers, dir, sm)
	defer func() { n.Stop() }()

	i := 0
	for ; len(sm.started) == 0; i++ {
		appendApplied(t, n, sm, fmt.Sprintf("e%d", i))
	}
	captured := receive(t, sm.started, "the first snapshot")
	// The job is stuck half-way through its file; the raft loop keeps applying.
	for range 300 {
		appendApplied(t, n, sm, fmt.Sprintf("e%d", i))
		i++
	}
	if st := n.Status(); st.SnapshotIndex != 0 {
		t.Fatalf("snapshot %d recorded before its file was written", st.SnapshotIndex)
	}
	if len(sm.started) != 0 {
		t.Fatal("a second snapshot job started while the first runs")
	}
	if complete, _ := snapFiles(t, dir); len(complete) != 0 {
		t.Fatalf("snapshot files before the job finished: %v", complete)
	}

	close(sm.gate)
	waitFor(t, "the snapshot to be recorded", func() bool { return n.Status().SnapshotIndex != 0 })
	idx := n.Status().SnapshotIndex
	s, err := n.snaps.LoadIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	all := sm.snapshotOf()
	if got := decodeList(t, s.Data); !slices.Equal(got, all[:captured]) {
		t.Fatalf("snapshot %d holds %d entries, want the %d applied at its capture", idx, len(got), captured)
	}
	if s.Metadata.Term == 0 || len(s.Metadata.ConfState.Voters) != 1 {
		t.Fatalf("snapshot metadata %+v", s.Metadata)
	}

	// Later snapshots stream straight through; a restart recovers from the newest plus the WAL.
	for range 100 {
		appendApplied(t, n, sm, fmt.Sprintf("e%d", i))
		i++
	}
	waitFor(t, "a later snapshot", func() bool { return n.Status().SnapshotIndex > idx })
	all = sm.snapshotOf()
	n.Stop()
	if _, tmp := snapFiles(t, dir); len(tmp) != 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	sm2 := newStreamSM(true)
	n = startNode(t, 1, peers, dir, sm2)
	if restored := n.Status().SnapshotIndex; restored <= idx {
		t.Fatalf("restarted from snapshot %d, want a newer one than %d", restored, idx)
	}
	appendApplied(t, n, sm2, "after restart")
	if got := sm2.snapshotOf(); !slices.Equal(got[:len(got)-1], all) {
		t.Fatalf("recovered %d entries, want %d", len(got)-1, len(all))
	}
}

// TestFailedAndAbandonedSnapshots: a job that fails part-way and a job cut short by Stop leave
// no snapshot file, temporary file or WAL marker behind, and the node recovers from its WAL.
func TestFailedAndAbandonedSnapshots(t *testing.T) {
	dir := t.TempDir()
	peers := map[uint64]string{1: freeAddr(t, nil)}
	sm := newStreamSM(false)
	close(sm.fail)
	n := startNode(t, 1, peers, dir, sm)
	defer func() { n.Stop() }()

	i := 0
	for ; len(sm.started) == 0; i++ {
		appendApplied(t, n, sm, fmt.Sprintf("e%d", i))
	}
	receive(t, sm.started, "the first snapshot")
	sm.gate <- struct{}{} // let it reach its failure
	// The loop starts the next job only once it has handled the failed one, at a Ready after
	// that: keep writing until it does.
	for len(sm.started) == 0 {
		appendApplied(t, n, sm, fmt.Sprintf("e%d", i))
		i++
	}
	receive(t, sm.started, "a retry")
	// (The retry may have its own temporary file open by now.)
	if complete, _ := snapFiles(t, dir); len(complete) != 0 {
		t.Fatalf("a failed snapshot left files: %v", complete)
	}
	if st := n.Status(); st.SnapshotIndex != 0 {
		t.Fatalf("failed snapshot recorded at %d", st.SnapshotIndex)
	}

	// The retry is stuck; Stop abandons it.
	for range 20 {
		appendApplied(t, n, sm, fmt.Sprintf("e%d", i))
		i++
	}
	all := sm.snapshotOf()
	n.Stop()
	if complete, tmp := snapFiles(t, dir); len(complete)+len(tmp) != 0 {
		t.Fatalf("an abandoned snapshot left files: %v %v", complete, tmp)
	}
	sm2 := newStreamSM(true)
	n = startNode(t, 1, peers, dir, sm2)
	if st := n.Status(); st.SnapshotIndex != 0 {
		t.Fatalf("restarted from snapshot %d that was never completed", st.SnapshotIndex)
	}
	appendApplied(t, n, sm2, "after restart")
	if got := sm2.snapshotOf(); !slices.Equal(got[:len(got)-1], all) {
		t.Fatalf("recovered %d entries, want %d", len(got)-1, len(all))
	}
	waitFor(t, "a snapshot after restart", func() bool { return n.Status().SnapshotIndex != 0 })
}

// TestCatchUpFromStreamedSnapshot: a follower that missed entries the leader compacted away is
// sent a snapshot whose file was streamed, and installs it (aborting its own job if one runs).
func TestCatchUpFromStreamedSnapshot(t *testing.T) {
	c := newSnapCluster(t)
	start := func(id uint64) {
		sm := newStreamSM(true)
		c.nodes[id] = startNode(t, id, c.peers, filepath.Join(c.dir, fmt.Sprint(id)), sm)
		c.sms[id] = &sm.listSM
	}
	ctx := c.startAll(start)
	want, _ := c.leaveNode3Behind(ctx, 100, 400)
	start(3)
	if got := c.waitLen(ctx, 3, len(want)); !slices.Equal(got[:len(want)], want) {
		t.Fatal("node 3 caught up to a different log")
	}
}

// TestCompactKeepsCatchUpWithinBounds: behind a snapshot the in-memory log keeps the newest
// entries for lagging followers, but never more than CatchUpEntries of them nor more than
// CatchUpBytes of data, whichever comes first (entries carrying batches are large).
func TestCompactKeepsCatchUpWithinBounds(t *testing.T) {
	ms := raft.NewMemoryStorage()
	var ents []raftpb.Entry
	for i := uint64(1); i <= 100; i++ {
		size := 10
		if i > 90 {
			size = 1000 // the newest entries are big
		}
		ents = append(ents, raftpb.Entry{Index: i, Term: 1, Data: make([]byte, size)})
	}
	if err := ms.Append(ents); err != nil {
		t.Fatal(err)
	}
	n := &Node{storage: &storage{MemoryStorage: ms}}
	entSize := func(i uint64) uint64 { return uint64(ents[i-1].Size()) }
	for _, c := range []struct {
		name          string
		entries, size uint64
		want          uint64 // first index kept
	}{
		{"by count", 20, 1 << 20, 81},
		{"by bytes", 50, 3*entSize(100) + 1, 98},
		{"not even one", 50, entSize(100) - 1, 101},
		{"more than there is", 500, 1 << 20, 1},
	} {
		n.cfg.CatchUpEntries, n.cfg.CatchUpBytes = c.entries, c.size
		if got := n.compactIndex(100) + 1; got != c.want {
			t.Errorf("%s: keeps entries from %d, want %d", c.name, got, c.want)
		}
	}
}

// restorerSM is a streamSM that can restore from a reader, and counts how it was restored.
type restorerSM struct {
	*streamSM
	fromReader, fromMemory atomic.Int32
	size                   atomic.Int64 // the size RestoreFrom was given
}

func (s *restorerSM) Restore(b []byte) error {
	s.fromMemory.Add(1)
	return s.streamSM.Restore(b)
}

func (s *restorerSM) RestoreFrom(r io.ReaderAt, size int64) error {
	s.fromReader.Add(1)
	s.size.Store(size)
	b, err := io.ReadAll(io.NewSectionReader(r, 0, size))
	if err != nil {
		return err
	}
	return s.streamSM.Restore(b)
}

// TestRestartRestoresFromReader: a node restarted over a snapshot restores a state machine that
// implements StreamRestorer through RestoreFrom, reading the snapshot's data from its file, not
// through Restore; and a damaged snapshot file stops the restart with the damage reported.
func TestRestartRestoresFromReader(t *testing.T) {
	dir := t.TempDir()
	peers := map[uint64]string{1: freeAddr(t, nil)}
	sm := &restorerSM{streamSM: newStreamSM(true)}
	n := startNode(t, 1, peers, dir, sm)
	defer func() { n.Stop() }()
	i := 0
	for ; n.Status().SnapshotIndex == 0; i++ {
		appendApplied(t, n, sm.streamSM, fmt.Sprintf("e%d", i))
	}
	for range 10 { // entries after the snapshot, for the WAL to replay
		appendApplied(t, n, sm.streamSM, fmt.Sprintf("e%d", i))
		i++
	}
	all := sm.snapshotOf()
	n.Stop()
	if sm.fromReader.Load()+sm.fromMemory.Load() != 0 {
		t.Fatal("a node started afresh restored a snapshot")
	}

	sm2 := &restorerSM{streamSM: newStreamSM(true)}
	n = startNode(t, 1, peers, dir, sm2)
	idx := n.Status().SnapshotIndex
	if idx == 0 {
		t.Fatal("restarted without a snapshot")
	}
	if got, mem := sm2.fromReader.Load(), sm2.fromMemory.Load(); got != 1 || mem != 0 {
		t.Fatalf("restart restored %d times through RestoreFrom and %d through Restore, want 1 and 0", got, mem)
	}
	s, err := n.snaps.LoadIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	if size := sm2.size.Load(); size != int64(len(s.Data)) {
		t.Fatalf("RestoreFrom was given %d bytes, the snapshot holds %d", size, len(s.Data))
	}
	appendApplied(t, n, sm2.streamSM, "after restart")
	if got := sm2.snapshotOf(); !slices.Equal(got[:len(got)-1], all) {
		t.Fatalf("recovered %d entries, want %d", len(got)-1, len(all))
	}
	n.Stop()

	// Every snapshot file damaged in its data: the one the WAL names among them.
	complete, _ := snapFiles(t, dir)
	for _, name := range complete {
		p := filepath.Join(dir, "snap", name)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-20] ^= 1 // in the data, before the trailer
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sm3 := &restorerSM{streamSM: newStreamSM(true)}
	_, err = New(Config{ID: 1, Peers: peers, Dir: dir, TickInterval: 20 * time.Millisecond, Logger: quietLogger()}, sm3)
	if !errors.Is(err, snap.ErrCorrupt) {
		t.Fatalf("restart over a damaged snapshot: %v", err)
	}
	if sm3.fromReader.Load()+sm3.fromMemory.Load() != 0 {
		t.Fatal("a damaged snapshot reached the state machine")
	}
}

// TestFollowerInstallsStreamedSnapshot: a follower behind the leader's compacted log is caught
// up by a snapshot whose data the leader's transport streams from its file into the follower's
// (raft's storage holds no snapshot data): the file the follower installs is the leader's, its
// state machine is restored from the file in place (RestoreFrom, never Restore), and a restart
// afterwards restores from that same file.
func TestFollowerInstallsStreamedSnapshot(t *testing.T) {
	c := newSnapCluster(t)
	rsms := map[uint64]*restorerSM{}
	start := func(id uint64) {
		sm := &restorerSM{streamSM: newStreamSM(true)}
		c.nodes[id] = startNode(t, id, c.peers, filepath.Join(c.dir, fmt.Sprint(id)), sm)
		c.sms[id] = &sm.listSM
		rsms[id] = sm
	}
	ctx := c.startAll(start)
	want, behind := c.leaveNode3Behind(ctx, 30, 300)
	for _, id := range []uint64{1, 2} {
		if sn, err := c.nodes[id].storage.Snapshot(); err != nil || sn.Data != nil {
			t.Fatalf("node %d: raft's storage returns snapshot data (%d bytes, err %v)", id, len(sn.Data), err)
		}
	}

	start(3)
	restores := rsms[3].fromReader.Load() // New may have restored an older snapshot of its own
	if got := c.waitLen(ctx, 3, len(want)); !slices.Equal(got[:len(want)], want) {
		t.Fatal("node 3 caught up to a different log")
	}
	n3 := c.nodes[3]
	idx := n3.Status().SnapshotIndex
	if idx <= behind {
		t.Fatalf("node 3 caught up without a snapshot (snapshot index %d, was behind at %d)", idx, behind)
	}
	if got, mem := rsms[3].fromReader.Load()-restores, rsms[3].fromMemory.Load(); got != 1 || mem != 0 {
		t.Fatalf("installing the snapshot restored %d times through RestoreFrom and %d through Restore, want 1 and 0", got, mem)
	}
	mine, err := n3.snaps.LoadIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, id := range []uint64{1, 2} {
		theirs, err := c.nodes[id].snaps.LoadIndex(idx)
		if err != nil {
			continue // this one may have snapshotted at other indexes
		}
		found = true
		if string(theirs.Data) != string(mine.Data) || theirs.Metadata.Term != mine.Metadata.Term {
			t.Fatalf("node 3's snapshot %d differs from node %d's", idx, id)
		}
	}
	if !found {
		t.Fatalf("no other node has snapshot %d", idx)
	}
	if size := rsms[3].size.Load(); size != int64(len(mine.Data)) {
		t.Fatalf("RestoreFrom was given %d bytes, the snapshot holds %d", size, len(mine.Data))
	}

	// A restart restores from the installed file (or a newer one of node 3's own), in place.
	c.stop(3)
	start(3)
	if got := c.nodes[3].Status().SnapshotIndex; got < idx {
		t.Fatalf("restarted from snapshot %d, older than the installed %d", got, idx)
	}
	if got, mem := rsms[3].fromReader.Load(), rsms[3].fromMemory.Load(); got != 1 || mem != 0 {
		t.Fatalf("restart restored %d times through RestoreFrom and %d through Restore, want 1 and 0", got, mem)
	}
	if got := c.waitLen(ctx, 3, len(want)); !slices.Equal(got[:len(want)], want) {
		t.Fatal("node 3 restarted to a different log")
	}
}

// TestReceiveStaleSnapshotSkipped: a streamed snapshot at or below the applied index is not
// written (raft would ignore it), and the transport skips its data.
func TestReceiveStaleSnapshotSkipped(t *testing.T) {
	dir := t.TempDir()
	n := &Node{log: quietLogger()}
	var err error
	if n.snaps, err = snap.New(filepath.Join(dir, "snap"), nil); err != nil {
		t.Fatal(err)
	}
	n.applied.Store(100)
	m := raftpb.Message{Type: raftpb.MsgSnap, From: 2, To: 1,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Index: 100, Term: 2}}}
	if err := n.receiveSnapshot(m, strings.NewReader("stale"), 5); err != nil {
		t.Fatal(err)
	}
	if complete, _ := snapFiles(t, dir); len(complete) != 0 {
		t.Fatalf("stale snapshot written: %v", complete)
	}
	m.Snapshot.Metadata.Index = 101
	if err := n.receiveSnapshot(m, strings.NewReader("fresh"), 5); err != nil {
		t.Fatal(err)
	}
	s, err := n.snaps.LoadIndex(101)
	if err != nil || string(s.Data) != "fresh" || s.Metadata.Term != 2 {
		t.Fatalf("received snapshot: %q %+v %v", s.Data, s.Metadata, err)
	}
	// A stream that ends early leaves no file.
	m.Snapshot.Metadata.Index = 102
	if err := n.receiveSnapshot(m, strings.NewReader("shor"), 5); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
	if _, err := n.snaps.LoadIndex(102); !errors.Is(err, snap.ErrNoSnapshot) {
		t.Fatalf("truncated snapshot saved: %v", err)
	}
}

// newSnapCluster returns an empty three-node testCluster with its peers' addresses picked.
func newSnapCluster(t *testing.T) *testCluster {
	c := &testCluster{t: t, dir: t.TempDir(), peers: map[uint64]string{}, nodes: map[uint64]*Node{}, sms: map[uint64]*listSM{}}
	var pk freeport.Picker
	for id := uint64(1); id <= 3; id++ {
		c.peers[id] = freeAddr(t, &pk)
	}
	return c
}

// startAll starts every node with start, stops them all when the test ends, and returns a
// context for the test's waits.
func (c *testCluster) startAll(start func(id uint64)) context.Context {
	for id := range c.peers {
		start(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c.t.Cleanup(func() {
		cancel()
		for _, n := range c.nodes {
			n.Stop()
		}
	})
	return ctx
}

// leaveNode3Behind writes before entries everywhere, stops node 3, writes after more through
// nodes 1 and 2 and waits until both compacted their logs past what node 3 holds: once the log
// node 3 would need is gone everywhere, only a snapshot can bring it back. It returns the log
// nodes 1 and 2 applied and the index node 3 had applied when it stopped.
func (c *testCluster) leaveNode3Behind(ctx context.Context, before, after int) (want []string, behind uint64) {
	for i := range before {
		c.propose(ctx, uint64(i%3+1), fmt.Sprintf("a%d", i))
	}
	c.waitLen(ctx, 3, before)
	behind = c.nodes[3].Status().Applied
	c.stop(3)
	for i := range after {
		c.propose(ctx, uint64(i%2+1), fmt.Sprintf("b%d", i))
	}
	want = c.waitLen(ctx, 1, before+after)
	waitFor(c.t, "the others to compact past node 3", func() bool {
		for _, id := range []uint64{1, 2} {
			if first, _ := c.nodes[id].storage.FirstIndex(); first <= behind+1 {
				return false
			}
		}
		return true
	})
	return want, behind
}
