package server

import (
	"context"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Backend is what the RESP front end needs from the replicated store. Every call is linearizable:
// reads pass a ReadIndex barrier, writes return once applied. Errors from the state machine are
// the sentinels in package group (group.ErrNotInteger, ...); anything else is an availability
// error (timeout, no leader) that the server reports as a retryable error.
type Backend interface {
	Get(ctx context.Context, key []byte) (val []byte, ok bool, err error)
	// MGet returns one entry per key; a nil entry with found[i]==false is a missing key.
	MGet(ctx context.Context, keys [][]byte) (vals [][]byte, found []bool, err error)
	Exists(ctx context.Context, keys [][]byte) (int64, error)
	Set(ctx context.Context, a group.SetArgs) (group.SetResult, error)
	Del(ctx context.Context, keys [][]byte) (int64, error)
	// GetDel deletes key and returns the value it held (ok false when absent).
	GetDel(ctx context.Context, key []byte) (val []byte, ok bool, err error)
	Append(ctx context.Context, key, val []byte) (newLen int64, err error)
	IncrBy(ctx context.Context, key []byte, delta int64) (int64, error)
	// Expire sets or removes key's expiry (EXPIRE and its kin, PERSIST). It reports true when
	// it did, or deleted the key because a.At has passed, and false when the key is missing, a
	// condition failed or PERSIST found no expiry to remove.
	Expire(ctx context.Context, a group.ExpireArgs) (bool, error)
	// ExpireTime returns when key expires, in Unix milliseconds (0: never); ok is false when
	// the key does not exist.
	ExpireTime(ctx context.Context, key []byte) (at int64, ok bool, err error)
	// GetEx returns key's value and sets (a.At) or removes (a.Persist) its expiry in the same
	// step; a.At already past deletes the key. ok is false when the key is missing.
	GetEx(ctx context.Context, a group.ExpireArgs) (val []byte, ok bool, err error)
	// MSet sets key/value pairs given as alternating elements.
	MSet(ctx context.Context, kvs [][]byte) error
	// Scan walks the keyspace with a Redis-style cursor (0 starts and ends a walk).
	Scan(ctx context.Context, cursor uint64, match []byte, count int) (next uint64, keys [][]byte, err error)
	DBSize(ctx context.Context) (int64, error)
	// Info returns INFO sections owned by the store ("replication", "raft", "keyspace", "memory"),
	// each as "name:value" lines without the "# Section" header; unknown sections return "".
	Info(section string) string
}

// ValueAppender is offered by backends that can append a value to a buffer the caller
// reuses. The server uses it for GET: one buffer per connection instead of a fresh copy of
// every value read.
type ValueAppender interface {
	// GetAppend is Get with the value appended to dst (the returned slice, when ok).
	GetAppend(ctx context.Context, key, dst []byte) (val []byte, ok bool, err error)
}

// Topology describes the cluster for CLUSTER SLOTS / SHARDS / NODES / INFO.
type Topology interface {
	View() ClusterView
}

// ClusterView is a snapshot of who serves what.
type ClusterView struct {
	Epoch  uint64
	Shards []ShardView
}

// ShardView is one replica group and the slot ranges it serves.
type ShardView struct {
	// Ranges are half-open [Lo,Hi) slot ranges.
	Ranges []keyspace.Range
	Nodes  []NodeView
}

// NodeView is one node of a group.
type NodeView struct {
	ID      string // 40 hex characters, stable across restarts
	Addr    string // client address host:port
	Leader  bool   // presented as master
	Healthy bool
	Myself  bool
}
