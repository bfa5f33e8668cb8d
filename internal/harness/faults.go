package harness

import (
	"slices"
	"strconv"
)

// This file holds what fault-injection tools need beyond starting and stopping processes: private
// peer listen addresses for a proxy to forward to, and how a process ended.

// usePrivatePeers gives every node a private peer listen address (a free port) in its argv.
func (c *Cluster) usePrivatePeers() error {
	for i := range c.Specs {
		p, err := c.ports.Port()
		if err != nil {
			return err
		}
		c.Specs[i].Argv = append(c.Specs[i].Argv, "--peer-listen", "127.0.0.1:"+strconv.Itoa(p))
	}
	return nil
}

// PeerListenAddr returns the private address node id accepts raft peer connections on when its
// argv carries --peer-listen (ClusterOptions.PrivatePeers), or "" when it listens on its
// advertised PeerAddr.
func (c *Cluster) PeerListenAddr(id uint64) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.spec(id)
	if s == nil {
		return ""
	}
	if i := slices.Index(s.Argv, "--peer-listen"); i >= 0 && i+1 < len(s.Argv) {
		return s.Argv[i+1]
	}
	return ""
}

// ExitCode reports how node id's current process ended: its exit code (-1 when killed by a
// signal) and true, or false while it runs or if it was never started by this harness.
func (c *Cluster) ExitCode(id uint64) (int, bool) {
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return 0, false
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	default:
		return 0, false
	}
}
