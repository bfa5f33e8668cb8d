// Package client is the Go client of Shoal, a sharded, Raft-replicated, linearizable key/value
// store speaking the Redis protocol in cluster mode.
//
// # Connecting and routing
//
// [New] takes one or more seed addresses, loads the cluster's slot map (CLUSTER SLOTS) and
// caches it. Every key is routed to the group owning its hash slot (CRC16 of the key or of its
// {hash tag}, as in Redis Cluster), preferring the group's leader. A MOVED reply reloads the map
// and follows the redirection; ASK is followed for one request. Leader changes (TRYAGAIN,
// CLUSTERDOWN, LOADING), timeouts and lost connections are retried on the group's other nodes
// with capped, jittered exponential backoff, bounded by [Options.MaxRetries] and by the
// context.Context every call takes: when the context ends, the call returns an error wrapping
// ctx.Err().
//
// # Errors
//
// A missing key is [ErrNotFound] for [Client.Get] (and [GetJSON]/[GetAs]); an existing key with
// an empty value is found, with an empty non-nil value. Calls for which absence is an ordinary
// outcome report it with a bool ([Client.Swap], [Client.Delete], [Client.Exists],
// [Client.PutIfAbsent], [Client.CompareAndSwap], [Item.Found]). Errors a retry cannot fix
// (e.g. INCR of a non-integer) are a [*ServerError] carrying the server's text. Bulk calls
// report per-key failures in a [*BatchError]. All errors wrap their cause, for errors.Is/As.
//
// # At-most-once writes
//
// Each Client has a random non-zero session id; every write is sent as
// "SHOAL.AT <id> <seq> <acked> <command...>" with a sequence number that grows by one per write
// and is kept across that write's retries, and acked the highest number below which every
// write has finished. A server that already executed (id, seq) answers the original reply
// instead of executing it again, so a write retried after a timeout, a lost connection or a
// failover executes once. See [Options.Sessions] for servers without sessions.
//
// # Calls
//
//   - Single keys: [Client.Get], [Client.Put], [Client.Swap] (put returning the previous value),
//     [Client.PutIfAbsent], [Client.Delete], [Client.Exists], [Client.Append], [Client.Incr],
//     [Client.CompareAndSwap].
//   - Expiry: [Client.PutTTL] (put with a time to live), [Client.Expire], [Client.Persist],
//     [Client.TTL]. An expired key is gone for every reader at once, linearizably.
//   - Bulk: [Client.GetMany], [Client.PutMany], [Client.DeleteMany] group keys by owning node and
//     send each node's commands in pipelined batches over all its connections, every node in
//     parallel.
//   - Iteration: [Client.Scan] returns an iter.Seq2[string, []byte] walking every shard.
//   - Typed values: [GetJSON], [PutJSON], and [GetAs]/[PutAs] with any [Codec].
//
// # Connections
//
// The client keeps [Options.PoolSize] connections per node. Each has a writer goroutine that
// writes every request waiting in its queue in one write, and a reader goroutine that matches
// replies to requests in order, so many goroutines share few connections and no goroutine is
// started per call. [Options.TLS] and [Options.Username]/[Options.Password] (AUTH) apply to
// every connection. [Client.Close] refuses new calls, waits for the calls in flight, then
// closes the connections and waits for their goroutines.
//
// # Server commands used
//
// GET, SET (NX, GET), DEL, EXISTS, APPEND, INCRBY, SCAN (MATCH, COUNT), CLUSTER SLOTS,
// COMMAND INFO SHOAL.AT (session probe), CLIENT CAPA redirect (sent on every connection, to get
// MOVED rather than server-side forwarding), ASKING, AUTH, SHOAL.AT and
// "SHOAL.CAS key VALUE old new".
package client
