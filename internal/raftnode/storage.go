package raftnode

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// storage is raft's log storage: a MemoryStorage for the entries and the snapshot's metadata,
// with the snapshot's data left on disk. MemoryStorage would otherwise keep a full copy of the
// state machine in memory for as long as the snapshot is the newest, doubling the memory of a
// large table. Its Snapshot returns the metadata alone (Data nil), which is all raft needs: when
// raft sends the snapshot to a follower that fell behind the log, the transport streams the data
// from its file (Node.openSnapshot), so no step holds the whole snapshot in memory.
type storage struct {
	*raft.MemoryStorage
}

// applySnapshot installs a snapshot's metadata (its data is already in its file).
func (s *storage) applySnapshot(sn raftpb.Snapshot) error {
	sn.Data = nil
	return s.MemoryStorage.ApplySnapshot(sn)
}
