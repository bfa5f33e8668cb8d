package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/node"
)

// runController runs one replica of the shard controller: its raft node and its RESP server.
func runController(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("controller", flag.ContinueOnError)
	id := fs.Uint64("id", 0, "this controller replica's id (positive, unique, never reused)")
	dir := fs.String("dir", "", "data directory (WAL and snapshots)")
	peers := fs.String("peers", "", "every controller replica: id=clientaddr/peeraddr,... (this one included)")
	tick := fs.Duration("tick", 100*time.Millisecond, "raft tick; the election timeout is 10 ticks")
	snapEntries := fs.Uint64("snapshot-entries", 1000, "applied entries between snapshots")
	autoEvery := fs.Duration("auto-interval", controller.DefaultAutoInterval, "period of automatic load rebalancing (when turned on with 'shoal ctl auto on')")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	peerListen := fs.String("peer-listen", "", "address to accept raft peer connections on, when it differs from this replica's peer address in --peers (e.g. behind a proxy)")
	sec := addSecurityFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("controller", *id)
	if *id == 0 || *dir == "" || *peers == "" {
		return fmt.Errorf("--id, --dir and --peers are required")
	}
	members, err := node.ParseMembers(*peers)
	if err != nil {
		return fmt.Errorf("--peers: %w", err)
	}
	me, ok := members[*id]
	if !ok {
		return fmt.Errorf("--peers does not list this replica's id %d", *id)
	}
	security, err := sec.load(false)
	if err != nil {
		return err
	}
	raftPeers := make(map[uint64]string, len(members))
	for mid, m := range members {
		raftPeers[mid] = m.PeerAddr
	}
	svc, err := controller.StartService(ctx, controller.ServiceConfig{
		ID: *id, Peers: raftPeers, ListenAddr: *peerListen, Dir: *dir, TickInterval: *tick,
		SnapshotEntries: *snapEntries, AutoInterval: *autoEvery, Logger: logger,
		PeerTLS: security.peerTLS(),
	})
	if err != nil {
		return err
	}
	defer svc.Close()
	srv := controller.NewServer(controller.ServerConfig{Addr: me.ClientAddr, Backend: svc, Logger: logger,
		Auth: security.auth.Store, TLS: security.serverTLS()})
	if err := srv.Start(ctx); err != nil {
		return err
	}
	logger.Info("controller serving", "client", srv.Addr().String(), "peer", me.PeerAddr, "dir", *dir)
	<-ctx.Done()
	logger.Info("shutting down")
	return srv.Close()
}
