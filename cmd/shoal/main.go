// Command shoal runs Shoal: a sharded, Raft-replicated, linearizable in-memory key/value store
// that speaks the Redis protocol.
//
//	shoal server --id 1 --dir data/1 --peers 1=127.0.0.1:7379/127.0.0.1:17379,...
//	shoal demo   [--dir D] [--base-port 7379] [--replicas 3]
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: shoal <command> [flags]

commands:
  server   run one server process (one replica of a group)
  demo     start a local cluster of server processes and show it working
  check    run clients against a cluster while injecting faults, and check linearizability
  version  print the version

Run 'shoal <command> -h' for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(ctx, os.Args[2:])
	case "demo":
		err = runDemo(ctx, os.Args[2:])
	case "controller":
		err = runController(ctx, os.Args[2:])
	case "ctl":
		err = runCtl(ctx, os.Args[2:])
	case "check":
		err = runCheck(ctx, os.Args[2:])
	case "bench":
		// Moved to a command of its own, so the server binary does not carry etcd's client.
		err = errors.New("the benchmark is its own command now: go run ./cmd/shoal-bench (or scripts/bench.sh)")
	case "version":
		fmt.Println("shoal 0.1.0")
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "shoal: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "shoal %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
