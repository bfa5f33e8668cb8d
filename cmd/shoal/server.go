package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/check"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/server"
)

func runServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	id := fs.Uint64("id", 0, "this node's replica id (positive, unique in the group, never reused)")
	groupID := fs.Uint64("group", 1, "replica group id")
	dir := fs.String("dir", "", "data directory (WAL and snapshots)")
	peers := fs.String("peers", "", "every replica of the group: id=clientaddr/peeraddr,... (this node included)")
	tick := fs.Duration("tick", 100*time.Millisecond, "raft tick; the election timeout is 10 ticks")
	snapEntries := fs.Uint64("snapshot-entries", 20000, "applied entries between snapshots")
	proposeWindow := fs.Duration("propose-window", time.Millisecond, "while writes keep arriving concurrently, the shortest time between two raft proposals, so the writes arriving meanwhile share one log entry; the wait ends early once as many writes as the previous entry held are queued, and grows up to twice this with more than 16 writers waiting at once (0: none; a client writing alone is never delayed; groups of one replica never wait)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	ctl := fs.String("controller", "", "shard controller client addresses (comma-separated); empty: standalone group serving every slot")
	peerListen := fs.String("peer-listen", "", "address to accept raft peer connections on, when it differs from this node's peer address in --peers (e.g. behind a proxy)")
	rate := fs.Int64("migrate-rate", 0, "cap on bytes per second pulled during shard hand-offs (0: unlimited)")
	sec := addSecurityFlags(fs)
	var maxMemory byteSize
	fs.Var(&maxMemory, "maxmemory", "refuse writes that add data (-OOM) once the table holds this many bytes, e.g. 2gb (0: no limit); reads and DEL go on, nothing is evicted")
	maxClients := fs.Int("maxclients", server.DefaultMaxClients, "most client connections served at once; more get -ERR max number of clients reached")
	var idle seconds
	fs.Var(&idle, "timeout", "close client connections idle this long, in seconds or as a duration (0: never), as Redis's timeout")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this loopback address (developers only)")
	faultInjection := fs.Bool("fault-injection", false, "developers only: delay every WAL fsync by the duration written in DIR/"+check.DiskFaultFile+" (shoal check --faults disk)")
	hideFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("node", *id)
	if *id == 0 || *dir == "" || *peers == "" {
		return fmt.Errorf("--id, --dir and --peers are required")
	}
	members, err := node.ParseMembers(*peers)
	if err != nil {
		return fmt.Errorf("--peers: %w", err)
	}
	security, err := sec.load(true)
	if err != nil {
		return err
	}
	a := security.auth
	if *pprofAddr != "" {
		addr, stop, err := startPprof(*pprofAddr, logger)
		if err != nil {
			return err
		}
		defer stop()
		logger.Info("pprof", "addr", addr)
	}
	var beforeSync func()
	if *faultInjection {
		df := watchDiskFault(ctx, filepath.Join(*dir, check.DiskFaultFile), logger)
		defer df.close()
		beforeSync = df.beforeSync
	}
	n, err := node.Start(ctx, node.Config{
		ID: *id, GroupID: *groupID, Dir: *dir, Members: members, PeerListen: *peerListen,
		TickInterval: *tick, SnapshotEntries: *snapEntries, ProposeWindow: *proposeWindow, Logger: logger,
		Controller: splitList(*ctl), MigrateRate: *rate,
		NewController: node.ControllerClientWith(security.dialTLS(), a.Username, a.Password),
		Auth:          a.Store, InternalUser: a.Username, InternalPassword: a.Password,
		ClientTLS: security.serverTLS(), PeerTLS: security.peerTLS(), DialTLS: security.dialTLS(),
		MaxMemory: int64(maxMemory), MaxClients: *maxClients, IdleTimeout: time.Duration(idle),
		BeforeWALSync: beforeSync,
	})
	if err != nil {
		return err
	}
	logger.Info("serving", "client", n.ClientAddr(), "peer", members[*id].PeerAddr, "dir", *dir)
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
		return n.Close()
	case <-n.Failed():
		// Exit rather than linger refusing every request: a supervisor (or the operator)
		// restarts the process once the disk is fixed, and it recovers from its WAL.
		err := n.FailErr()
		n.Close()
		return fmt.Errorf("stopped after a storage failure: %w", err)
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
