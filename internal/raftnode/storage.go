package raftnode

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/snap"
)

// storage is raft's log storage: a MemoryStorage for the entries and the snapshot's metadata,
// with the snapshot's data left on disk. MemoryStorage would otherwise keep a full copy of the
// state machine in memory for as long as the snapshot is the newest, doubling the memory of a
// large table; the data is read back from its file only when raft needs to send it to a
// follower that fell behind the log.
type storage struct {
	*raft.MemoryStorage
	snaps *snap.Snapshotter
}

// Snapshot implements raft.Storage.
func (s *storage) Snapshot() (raftpb.Snapshot, error) {
	sn, err := s.MemoryStorage.Snapshot()
	if err != nil || raft.IsEmptySnap(sn) {
		return sn, err
	}
	full, err := s.snaps.LoadIndex(sn.Metadata.Index)
	if err != nil {
		// raft retries later; the file may be mid-replacement by a newer snapshot.
		return raftpb.Snapshot{}, raft.ErrSnapshotTemporarilyUnavailable
	}
	return full, nil
}

// applySnapshot installs a snapshot's metadata (its data is already in its file).
func (s *storage) applySnapshot(sn raftpb.Snapshot) error {
	sn.Data = nil
	return s.MemoryStorage.ApplySnapshot(sn)
}
