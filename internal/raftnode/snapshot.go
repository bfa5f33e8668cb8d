package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/snap"
)

// SnapshotStreamer is optionally implemented by a StateMachine whose snapshots can be written
// while entries keep being applied. The node then captures a snapshot in the apply path (cheap)
// and streams it to its file from a background goroutine, so writes are not held up for the time
// it takes to serialise and save the whole state, and the state is never copied whole in memory.
// State machines without it are snapshotted in line with Snapshot.
type SnapshotStreamer interface {
	// StartSnapshot captures the state as of the last applied entry and returns the job that
	// writes it. It is called from the apply path, so it must be cheap; Apply calls made after it
	// must not change what the job writes. The node keeps at most one job open.
	StartSnapshot() (SnapshotJob, error)
}

// SnapshotJob writes one captured snapshot.
type SnapshotJob interface {
	// Stream writes the snapshot's data to w. The node calls it once, on a goroutine of its own,
	// concurrently with Apply; it must return soon after ctx is cancelled.
	Stream(ctx context.Context, w io.Writer) error
	// Close ends the job. The node calls it from the apply path once Stream returned, whether or
	// not it succeeded, and before any Restore.
	Close()
}

// snapshotJob is the node's side of a running SnapshotJob. It belongs to the raft loop.
type snapshotJob struct {
	md     raftpb.SnapshotMetadata
	job    SnapshotJob
	cancel context.CancelFunc
	done   chan snapshotResult // receives exactly once, buffered so the writer never blocks
	start  time.Time
}

type snapshotResult struct {
	bytes int64
	err   error
}

// startSnapshot captures the state machine at applied and starts writing it out.
func (n *Node) startSnapshot(ss SnapshotStreamer, applied uint64) error {
	// The term is taken now, while the entry is certainly in storage: nothing compacts the log
	// before this job finishes.
	term, err := n.storage.Term(applied)
	if err != nil {
		return fmt.Errorf("term of %d: %w", applied, err)
	}
	job, err := ss.StartSnapshot()
	if err != nil {
		return fmt.Errorf("state machine snapshot: %w", err)
	}
	// ConfState's slices are replaced, never changed in place, when a configuration change
	// applies, so the copy stays as of applied.
	md := raftpb.SnapshotMetadata{Index: applied, Term: term, ConfState: n.confState}
	ctx, cancel := context.WithCancel(context.Background())
	j := &snapshotJob{md: md, job: job, cancel: cancel, done: make(chan snapshotResult, 1), start: time.Now()}
	n.snapJob = j
	go func() {
		size, err := n.snaps.SaveStream(md, func(w io.Writer) error { return job.Stream(ctx, w) })
		j.done <- snapshotResult{bytes: size, err: err}
	}()
	return nil
}

// snapshotDone is the channel the running job reports on, or nil (never ready) when none runs.
func (n *Node) snapshotDone() <-chan snapshotResult {
	if n.snapJob == nil {
		return nil
	}
	return n.snapJob.done
}

// finishSnapshot does in the raft loop what follows a saved snapshot: raft's storage learns it,
// the WAL records it, and the log and WAL before it are released. On failure nothing refers to
// the snapshot (SaveStream leaves no file), and the next one is taken once the log has grown
// again.
func (n *Node) finishSnapshot(res snapshotResult) {
	j := n.snapJob
	n.snapJob = nil
	j.cancel()
	j.job.Close()
	if res.err != nil {
		n.log.Warn("snapshot failed", "index", j.md.Index, "err", res.err)
		return
	}
	if err := n.installSnapshot(j.md); err != nil {
		n.log.Warn("snapshot failed", "index", j.md.Index, "err", err)
		return
	}
	n.log.Info("snapshot", "index", j.md.Index, "bytes", res.bytes, "took", time.Since(j.start))
}

// installSnapshot records a snapshot whose file is durable.
func (n *Node) installSnapshot(md raftpb.SnapshotMetadata) error {
	cs := md.ConfState
	if _, err := n.storage.CreateSnapshot(md.Index, &cs, nil); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			// A newer snapshot was installed meanwhile; this one is superseded (its file goes
			// with retention).
			return nil
		}
		return fmt.Errorf("create snapshot: %w", err)
	}
	n.snaps.Keep(md.Index) // before the marker names it (see snap.Keep)
	if err := n.wal.SaveSnapshot(md.Index, md.Term); err != nil {
		return fmt.Errorf("wal snapshot marker: %w", err)
	}
	atomic.StoreUint64(&n.snapshotIndex, md.Index)
	if err := n.storage.Compact(n.compactIndex(md.Index)); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("compact: %w", err)
	}
	// The snapshot file and marker are durable, so WAL segments wholly before it are not needed
	// for recovery any more.
	if err := n.wal.ReleaseTo(md.Index); err != nil {
		return fmt.Errorf("release wal: %w", err)
	}
	return nil
}

// abortSnapshot cancels the running job, if any, and waits for its goroutine: before the raft
// loop installs a snapshot from the leader (the job reads the state Restore replaces) and before
// it stops. The partial file is removed by SaveStream.
func (n *Node) abortSnapshot() {
	j := n.snapJob
	if j == nil {
		return
	}
	n.snapJob = nil
	j.cancel()
	res := <-j.done
	j.job.Close()
	if res.err == nil {
		// It completed before it saw the cancellation: the file is durable, so record it
		// rather than waste it.
		if err := n.installSnapshot(j.md); err != nil {
			n.log.Warn("snapshot failed", "index", j.md.Index, "err", err)
		}
		return
	}
	n.log.Info("snapshot abandoned", "index", j.md.Index, "err", res.err)
}

// compactIndex is where to compact the in-memory log behind a snapshot at idx: it keeps the
// newest entries up to idx for followers slightly behind, at most CatchUpEntries of them and at
// most CatchUpBytes of data. Both bounds matter since an entry may hold a batch of a thousand
// writes: counting entries alone kept whole bulk loads in memory.
func (n *Node) compactIndex(idx uint64) uint64 {
	first, err := n.storage.FirstIndex()
	if err != nil || idx < first {
		return idx
	}
	lo := first
	if idx+1-lo > n.cfg.CatchUpEntries {
		lo = idx + 1 - n.cfg.CatchUpEntries
	}
	ents, err := n.storage.Entries(lo, idx+1, math.MaxUint64)
	if err != nil {
		return idx
	}
	keep, size := idx+1, uint64(0) // entries keep..idx stay
	for i := len(ents) - 1; i >= 0; i-- {
		if size += uint64(ents[i].Size()); size > n.cfg.CatchUpBytes {
			break
		}
		keep = ents[i].Index
	}
	return keep - 1 // Compact(i) drops the entries before i and keeps i as its marker
}

// openSnapshot is the transport's OpenSnapshot: it opens the data of the snapshot raft is
// sending to a follower, for the transport to stream from the file, validated (snap.OpenIndex
// checksums it) and held open so that retention leaves it until the transport is done.
func (n *Node) openSnapshot(md raftpb.SnapshotMetadata) (io.ReadCloser, int64, error) {
	f, err := n.snaps.OpenIndex(md.Index)
	if err != nil {
		return nil, 0, fmt.Errorf("raftnode: open snapshot %d: %w", md.Index, err)
	}
	if f.Metadata.Term != md.Term {
		_ = f.Close() // only read
		return nil, 0, fmt.Errorf("raftnode: snapshot %d: file has term %d, raft's has %d",
			md.Index, f.Metadata.Term, md.Term)
	}
	return openedReader{f}, f.Data.Size(), nil
}

// openedReader reads an open snapshot file's data from its start.
type openedReader struct{ *snap.Opened }

func (o openedReader) Read(b []byte) (int, error) { return o.Data.Read(b) }

// receiveSnapshot is the transport's ReceiveSnapshot: it writes the data of a snapshot the
// leader streamed durably as the snapshot file for its (term, index), before the message reaches
// raft, so that once raft hands the snapshot back in a Ready (with Data nil) the file is there to
// record in the WAL and restore from in place. On error the message is dropped and the
// transport closes the link; the leader learns the snapshot failed and sends it again.
//
// A snapshot at or below the applied index is not written: raft ignores any snapshot at or
// below its commit index, which is never below the applied index, so the file would only be
// waste. Raft may still ignore one written here (its commit index can be ahead of what is
// applied); such a file is removed by retention, which always spares the snapshot the WAL names
// (Snapshotter.Keep).
func (n *Node) receiveSnapshot(m raftpb.Message, data io.Reader, size int64) error {
	md := m.Snapshot.Metadata
	if applied := n.applied.Load(); md.Index <= applied {
		n.log.Debug("skip stale snapshot", "from", m.From, "index", md.Index, "applied", applied)
		return nil // the transport skips the data; raft answers the message as stale
	}
	start := time.Now()
	got, err := n.snaps.SaveStream(md, func(w io.Writer) error {
		_, err := io.CopyN(w, data, size)
		return err
	})
	if err != nil {
		return fmt.Errorf("raftnode: save snapshot %d from %d: %w", md.Index, m.From, err)
	}
	n.log.Info("received snapshot", "from", m.From, "index", md.Index, "term", md.Term,
		"bytes", got, "took", time.Since(start))
	return nil
}
