package check

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// helloLen is the length of the raft transport's hello frame including its 4-byte length
// header: length, magic, version, flags, from, to (see internal/transport's wire format). The
// proxy reads it to learn which node dialed, since transport connections are one-way (the
// dialer only writes) and each carries the messages of one directed link.
const helloLen = 4 + 4 + 2 + 2 + 8 + 8

// Link is a directed pair of nodes (harness node ids): messages From sends To.
type Link struct{ From, To uint64 }

// rule is the fault applied to one link.
type rule struct {
	blocked bool
	delay   time.Duration
}

// Network is a set of fault-injecting TCP proxies, one in front of each node's raft peer port:
// the node listens on a private address and advertises the proxy's, so every raft message a
// node receives passes through its proxy. Per directed link the network can block (close the
// link's connections and refuse new ones, so raft sees the peer as unreachable), add delay, and
// heal. Links between groups are not proxied: groups talk through client addresses.
//
// A Network owns its listeners, connections and goroutines; Close releases them all.
type Network struct {
	log *slog.Logger

	mu     sync.Mutex
	rules  map[Link]rule
	conns  map[*pipe]struct{}
	raw    map[net.Conn]struct{} // accepted connections not yet piped (reading the hello)
	lns    []net.Listener
	closed bool

	wg sync.WaitGroup
}

// pipe is one proxied connection.
type pipe struct {
	link     Link
	src, dst net.Conn
	once     sync.Once
}

func (p *pipe) close() {
	p.once.Do(func() {
		p.src.Close()
		p.dst.Close()
	})
}

// NewNetwork returns an empty network; add proxies with Listen.
func NewNetwork(logger *slog.Logger) *Network {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Network{log: logger, rules: make(map[Link]rule), conns: make(map[*pipe]struct{}), raw: make(map[net.Conn]struct{})}
}

// Listen starts the proxy of node `to`: it accepts on listen (the node's advertised peer
// address) and forwards to target (the node's private listen address). sender maps the raft id
// in a connection's hello to the dialing node's harness id (raft ids repeat across groups).
func (n *Network) Listen(to uint64, listen, target string, sender func(raftID uint64) (uint64, bool)) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("check: proxy for node %d: %w", to, err)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		ln.Close()
		return errors.New("check: network closed")
	}
	n.lns = append(n.lns, ln)
	n.mu.Unlock()
	n.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed by Close
			}
			n.mu.Lock()
			if n.closed {
				n.mu.Unlock()
				c.Close()
				return
			}
			n.raw[c] = struct{}{}
			n.mu.Unlock()
			n.wg.Go(func() {
				defer func() {
					n.mu.Lock()
					delete(n.raw, c)
					n.mu.Unlock()
				}()
				n.serve(c, to, target, sender)
			})
		}
	})
	return nil
}

// serve proxies one accepted connection.
func (n *Network) serve(src net.Conn, to uint64, target string, sender func(uint64) (uint64, bool)) {
	var hello [helloLen]byte
	_ = src.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(src, hello[:]); err != nil {
		src.Close()
		return
	}
	_ = src.SetReadDeadline(time.Time{})
	from, ok := sender(binary.BigEndian.Uint64(hello[12:20]))
	if !ok {
		n.log.Warn("proxy: unknown sender", "to", to, "raft_id", binary.BigEndian.Uint64(hello[12:20]))
		src.Close()
		return
	}
	link := Link{From: from, To: to}
	if n.rule(link).blocked {
		src.Close() // refused: the dialer sees the connection drop and backs off
		return
	}
	dst, err := net.DialTimeout("tcp", target, 2*time.Second)
	if err != nil {
		src.Close() // the node is down; the dialer retries as it would without a proxy
		return
	}
	p := &pipe{link: link, src: src, dst: dst}
	n.mu.Lock()
	if n.closed || n.rules[link].blocked {
		n.mu.Unlock()
		p.close()
		return
	}
	n.conns[p] = struct{}{}
	n.mu.Unlock()
	defer func() {
		p.close()
		n.mu.Lock()
		delete(n.conns, p)
		n.mu.Unlock()
	}()
	if _, err := dst.Write(hello[:]); err != nil {
		return
	}
	var wg sync.WaitGroup
	// The acceptor never writes on a transport connection, but copy that way too so the proxy
	// stays transparent (and notices the node closing it).
	wg.Go(func() {
		_, _ = io.Copy(src, dst)
		p.close()
	})
	n.forward(p)
	p.close()
	wg.Wait()
}

// chunk is data read from a link, to be written at a given time.
type chunk struct {
	data []byte
	at   time.Time
}

// forward copies src to dst, holding each read back by the link's delay at the time it was
// read; order is kept, so a delayed link is slow, not reordering.
func (n *Network) forward(p *pipe) {
	q := make(chan chunk, 256)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			k, err := p.src.Read(buf)
			if k > 0 {
				q <- chunk{data: buf[:k], at: time.Now().Add(n.rule(p.link).delay)}
			}
			if err != nil {
				return
			}
		}
	})
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := p.dst.Write(c.data); err != nil {
			p.close() // unblocks the reader, which closes q
			for range q {
			}
			break
		}
	}
	wg.Wait()
}

func (n *Network) rule(l Link) rule {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rules[l]
}

// Block cuts the directed link from -> to: its open connections are closed and new ones are
// refused until Heal.
func (n *Network) Block(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := Link{From: from, To: to}
	r := n.rules[l]
	r.blocked = true
	n.rules[l] = r
	for p := range n.conns {
		if p.link == l {
			p.close()
		}
	}
}

// Delay holds every byte sent over the directed link from -> to back by d until Heal.
func (n *Network) Delay(from, to uint64, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := Link{From: from, To: to}
	r := n.rules[l]
	r.delay = d
	n.rules[l] = r
}

// Heal removes every block and delay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.rules)
}

// Close stops every proxy and closes every proxied connection, and waits for the goroutines.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	for _, ln := range n.lns {
		ln.Close()
	}
	for p := range n.conns {
		p.close()
	}
	for c := range n.raw {
		c.Close()
	}
	n.mu.Unlock()
	n.wg.Wait()
	return nil
}

// waitCtx sleeps for d or until ctx ends, reporting whether the full time passed.
func waitCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
