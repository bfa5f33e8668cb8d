// Package controller is Shoal's shard controller: a Raft-replicated service (its own group, on
// internal/raftnode) that holds the numbered sequence of cluster configurations. A configuration
// says which replica group owns each slot range (shard) and where each group's nodes listen.
//
// The package has three layers, from the inside out:
//
//   - A pure, deterministic core: [Config] and [State]. State applies Join, Leave, Move, Split,
//     Merge, Report and Rebalance to the configuration history. It does no I/O and reads no
//     clock, so every replica that applies the same operations in the same order reaches the
//     same configurations, and tests can drive it directly.
//   - The replicated service: [StateMachine] (a raftnode.StateMachine adding at-most-once
//     de-duplication of client requests) and [Service], which proposes operations and waits for
//     their results, serves linearizable queries behind a ReadIndex barrier, and runs the
//     optional automatic load rebalancing on the leader.
//   - The wire: [Server], a small RESP server answering PING and the CTL admin commands, and
//     [Client], which group servers and `shoal ctl` use to talk to any controller node.
//
// Balancing has two modes. Join and Leave balance by slots: afterwards every group owns a number
// of slots within one (largest) shard's size of every other group's, and the fewest slots move.
// Rebalance balances by load: groups report per-shard ops/s and bytes, and the controller splits
// hot shards and moves shards from the busiest group to the least busy until the busiest carries
// at most LoadRatio (1.25) times the load of the least busy, where the load allows it.
package controller
