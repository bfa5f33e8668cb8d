// Package bench measures Shoal side by side with its peers — a single redis-server, a 3-master
// Redis Cluster and a 3-member etcd cluster — on this machine, in one run, and writes the
// results as docs/BENCHMARKS.md with PNG plots.
//
// Two load generators drive every target so that each comparison uses the same client:
// redis-benchmark (for the RESP targets; its --csv output is parsed here) and the package's own
// Go generator, which speaks RESP (routing by slot with CLUSTER SLOTS for cluster targets) and
// drives etcd through etcd's own Go client (clientv3, gRPC). The Go generator adds what
// redis-benchmark lacks: a fixed-duration concurrency sweep, zipfian keys, read/write mixes, an
// etcd driver and a latency histogram.
//
// A scaling phase starts one more Shoal cluster with a single replica group, joins groups to it
// one at a time through the shard controller and measures GET and SET at every size, giving the
// throughput curve as groups are added and the time each join took to rebalance.
//
// The package starts the peers itself as child processes on 127.0.0.1 in a temporary directory
// and stops exactly those processes, by pid, however the run ends.
package bench
