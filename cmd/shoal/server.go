package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/node"
)

func runServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	id := fs.Uint64("id", 0, "this node's replica id (positive, unique in the group, never reused)")
	groupID := fs.Uint64("group", 1, "replica group id")
	dir := fs.String("dir", "", "data directory (WAL and snapshots)")
	peers := fs.String("peers", "", "every replica of the group: id=clientaddr/peeraddr,... (this node included)")
	tick := fs.Duration("tick", 100*time.Millisecond, "raft tick; the election timeout is 10 ticks")
	snapEntries := fs.Uint64("snapshot-entries", 20000, "applied entries between snapshots")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	ctl := fs.String("controller", "", "shard controller client addresses (comma-separated); empty: standalone group serving every slot")
	peerListen := fs.String("peer-listen", "", "address to accept raft peer connections on, when it differs from this node's peer address in --peers (e.g. behind a proxy)")
	rate := fs.Int64("migrate-rate", 0, "cap on bytes per second pulled during shard hand-offs (0: unlimited)")
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
	n, err := node.Start(ctx, node.Config{
		ID: *id, GroupID: *groupID, Dir: *dir, Members: members, PeerListen: *peerListen,
		TickInterval: *tick, SnapshotEntries: *snapEntries, Logger: logger,
		Controller: splitList(*ctl), NewController: node.ControllerClient, MigrateRate: *rate,
	})
	if err != nil {
		return err
	}
	logger.Info("serving", "client", n.ClientAddr(), "peer", members[*id].PeerAddr, "dir", *dir)
	<-ctx.Done()
	logger.Info("shutting down")
	return n.Close()
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
