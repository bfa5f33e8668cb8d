package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/resp"
)

// cluster is an in-process replica group of real nodes on 127.0.0.1.
type cluster struct {
	dir     string
	members map[uint64]node.Member
	mu      sync.Mutex
	nodes   map[uint64]*node.Node
}

// startCluster starts an n-node group and waits for a leader.
func startCluster(n int) (*cluster, error) {
	dir, err := os.MkdirTemp("", "shoal-client-test-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, members: map[uint64]node.Member{}, nodes: map[uint64]*node.Node{}}
	var pk freeport.Picker
	for i := 1; i <= n; i++ {
		cp, err := pk.Port()
		if err != nil {
			return nil, err
		}
		pp, err := pk.Port()
		if err != nil {
			return nil, err
		}
		c.members[uint64(i)] = node.Member{ClientAddr: "127.0.0.1:" + strconv.Itoa(cp), PeerAddr: "127.0.0.1:" + strconv.Itoa(pp)}
	}
	for id := range c.members {
		if err := c.start(id); err != nil {
			c.close()
			return nil, err
		}
	}
	if _, err := c.waitLeader(10 * time.Second); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *cluster) start(id uint64) error {
	n, err := node.Start(context.Background(), node.Config{
		ID: id, Dir: fmt.Sprintf("%s/node%d", c.dir, id), Members: c.members,
		TickInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return nil
}

// stop closes node id (its connections drop, its peers elect a new leader if needed).
func (c *cluster) stop(id uint64) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		n.Close()
	}
}

func (c *cluster) close() {
	c.mu.Lock()
	ids := make([]uint64, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.stop(id)
	}
	os.RemoveAll(c.dir)
}

func (c *cluster) seeds() []string {
	var s []string
	for _, m := range c.members {
		s = append(s, m.ClientAddr)
	}
	slices.Sort(s)
	return s
}

// leader returns the id every running node agrees is leader, or 0.
func (c *cluster) leader() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l uint64
	for _, n := range c.nodes {
		st := n.Raft().Status()
		if st.Leader == 0 || (l != 0 && st.Leader != l) {
			return 0
		}
		l = st.Leader
	}
	if _, ok := c.nodes[l]; !ok {
		return 0
	}
	return l
}

func (c *cluster) waitLeader(timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.leader(); l != 0 {
			return l, nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, errors.New("no leader elected")
}

// exampleCluster starts a 3-node group for a runnable example and returns its addresses and a
// function that stops it. It panics on failure (examples have no *testing.T).
func exampleCluster() (seeds []string, stop func()) {
	c, err := startCluster(3)
	if err != nil {
		panic(err)
	}
	return c.seeds(), c.close
}

// proxy forwards RESP traffic to one node, one command at a time, and can delay replies or drop
// the reply of the first APPEND (closing the client's connection after the server answered).
type proxy struct {
	ln         net.Listener
	target     string
	dropAppend atomic.Int32           // APPEND replies still to drop
	dropKey    atomic.Pointer[string] // drop, once, the reply to a session write (SHOAL.AT) of this key
	dropped    atomic.Int32
	delay      atomic.Int64 // nanoseconds added before every reply to a keyed command
	mu         sync.Mutex
	conns      []net.Conn
	wg         sync.WaitGroup
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return
		}
		sc, err := net.Dial("tcp", p.target)
		if err != nil {
			cc.Close()
			continue
		}
		p.track(cc)
		p.track(sc)
		p.wg.Add(1)
		go p.serve(cc, sc)
	}
}

func (p *proxy) serve(cc, sc net.Conn) {
	defer p.wg.Done()
	defer cc.Close()
	defer sc.Close()
	crd := resp.NewReader(cc, resp.Limits{})
	srd := resp.NewReader(sc, resp.Limits{})
	cw := resp.NewWriter(cc)
	for {
		args, err := crd.ReadCommand()
		if err != nil {
			return
		}
		name := strings.ToUpper(string(args[0]))
		isAppend := name == "APPEND" || (name == "SHOAL.AT" && len(args) > 4 && strings.EqualFold(string(args[4]), "APPEND"))
		if _, err := sc.Write(resp.AppendCommand(nil, args...)); err != nil {
			return
		}
		v, err := srd.ReadValue()
		if err != nil {
			return
		}
		if k := p.dropKey.Load(); k != nil && name == "SHOAL.AT" && len(args) > 5 && string(args[5]) == *k &&
			p.dropKey.CompareAndSwap(k, nil) {
			p.dropped.Add(1)
			return // executed, unanswered, and the connection with the rest of the pipeline gone
		}
		if isAppend && p.dropAppend.Load() > 0 {
			p.dropAppend.Add(-1)
			p.dropped.Add(1)
			return // the server executed it; the client never hears back
		}
		if d := p.delay.Load(); d > 0 && name != "CLIENT" && name != "CLUSTER" && name != "COMMAND" {
			time.Sleep(time.Duration(d))
		}
		cw.Value(v)
		if crd.Buffered() == 0 {
			if err := cw.Flush(); err != nil {
				return
			}
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// proxies puts a proxy in front of every node of c and returns them and a Dialer that sends
// the client's connections through them.
func proxies(c *cluster) (map[string]*proxy, func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	ps := map[string]*proxy{}
	for _, m := range c.members {
		p, err := newProxy(m.ClientAddr)
		if err != nil {
			return nil, nil, err
		}
		ps[m.ClientAddr] = p
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p := ps[addr]; p != nil {
			addr = p.addr()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return ps, dial, nil
}
