// Package server is Shoal's RESP front end: it accepts Redis protocol connections, parses
// commands with package resp, validates them exactly as Redis 7 does (arity, options, error
// texts) and executes them against a Backend, presenting the store as a Redis Cluster so that
// redis-cli, redis-benchmark and go-redis' ClusterClient work unchanged.
//
// # Connections
//
// One goroutine serves each connection: it reads a command, executes it and appends the reply
// to a buffered writer. Replies are flushed only when the server is about to block waiting for
// more input (the reader asks the network for bytes), so a pipelined batch of requests is
// answered with one write, and a lone request is answered at once. Replies are always written
// in request order.
//
// # Errors
//
// State-machine errors from the backend (group.ErrNotInteger, group.ErrOverflow) become the
// exact Redis error texts. Any other backend error — no raft leader, a request timeout, a
// closed node — means "not available right now" and is answered with
//
//	-TRYAGAIN <reason>
//
// which every cluster client (go-redis, redis-py, ...) retries with backoff. TRYAGAIN was
// chosen over CLUSTERDOWN because the condition is per shard and transient, and because
// redis-py reacts to CLUSTERDOWN by rebuilding its whole slot map. Note that a timed-out write
// may still be applied later, exactly as with a Redis timeout.
//
// # Deliberate differences from Redis
//
//   - Relative expiry times (SET ... EX/PX, SETEX, EXPIRE, ...) are added to the clock of the
//     node that received the command, and travel on as absolute times (SET ... PXAT,
//     PEXPIREAT) when the command is forwarded; the owning group judges expiry by the clock of
//     the node that proposed each write. INFO keyspace counts the keys with an expiry
//     (expires=) but reports avg_ttl=0.
//   - Only string values exist, so SCAN ... TYPE returns keys only for TYPE string.
//   - HELLO 3 is answered with "NOPROTO unsupported protocol version": the server speaks RESP2
//     only, and clients fall back to RESP2 on that error.
//   - Only database 0 exists (as in Redis cluster mode).
//
// # Access control and limits
//
// With Config.Auth set, every command passes conn.permit (access.go) after lookup and arity:
// NOAUTH before AUTH, NOPERM for a user without the command's rights, and with Config.MaxMemory
// set, OOM for commands that may add data to this node's group while the table is full. The
// texts are Redis 7's (see package auth).
//
// # Routing
//
// Every keyed command passes through Server.route before it executes. Today one group serves
// all slots and route always allows; with many groups it will answer MOVED for keys whose slot
// this node does not serve.
package server
