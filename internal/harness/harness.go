// Package harness starts, kills and restarts real `shoal server` processes on 127.0.0.1 for the
// demo, the integration and fault tests, and the benchmarks. It records them in nodes.json, whose
// argv restarts a node exactly.
package harness

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/resp"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

// NodeSpec describes one server process.
type NodeSpec struct {
	ID         uint64   `json:"id"`
	Group      uint64   `json:"group"`
	RaftID     uint64   `json:"raft_id,omitempty"` // id within its group, when it differs from ID
	Role       string   `json:"role"`
	PID        int      `json:"pid"`
	ClientAddr string   `json:"client_addr"`
	PeerAddr   string   `json:"peer_addr"`
	Dir        string   `json:"dir"`
	Log        string   `json:"log"`
	Argv       []string `json:"argv"`
}

// NodesFile is the JSON document written to <dir>/nodes.json.
type NodesFile struct {
	Nodes []NodeSpec `json:"nodes"`
}

// Cluster is a set of server processes this harness started and owns.
type Cluster struct {
	Dir   string
	mu    sync.Mutex
	Specs []NodeSpec
	procs map[uint64]*proc
	// ports picked the cluster's ports; fault tools pick theirs from it too, so none repeats.
	ports *freeport.Picker
	// Access is how the harness itself reaches the processes (TLS, AUTH); set it before use
	// when their argv enables either.
	Access Access
	// Env is added to the environment of every process started (e.g. GOMAXPROCS=1 for
	// processes sharing a small machine); set it before starting them.
	Env []string
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Options describe a new group.
type Options struct {
	Exe      string // the shoal binary
	Dir      string
	Replicas int
	// Ports gives client ports; peer ports are Ports+10000 when PeerPorts is nil. When both are
	// nil, free ports are picked.
	ClientPorts, PeerPorts []int
	ExtraArgs              []string // e.g. --tick 50ms
}

// NewGroup describes a fresh group of Replicas processes in opts.Dir (not started yet).
func NewGroup(opts Options) (*Cluster, error) {
	if opts.Replicas < 1 {
		return nil, errors.New("harness: replicas must be >= 1")
	}
	members := make(map[uint64]node.Member, opts.Replicas)
	pk := new(freeport.Picker)
	for i := range opts.Replicas {
		var cp, pp int
		var err error
		switch {
		case opts.ClientPorts != nil:
			cp = opts.ClientPorts[i]
			pp = cp + 10000
			if opts.PeerPorts != nil {
				pp = opts.PeerPorts[i]
			}
		default:
			if cp, err = pk.Port(); err != nil {
				return nil, err
			}
			if pp, err = pk.Port(); err != nil {
				return nil, err
			}
		}
		members[uint64(i+1)] = node.Member{ClientAddr: "127.0.0.1:" + strconv.Itoa(cp), PeerAddr: "127.0.0.1:" + strconv.Itoa(pp)}
	}
	peers := node.FormatMembers(members)
	c := &Cluster{Dir: opts.Dir, procs: make(map[uint64]*proc), ports: pk}
	for i := range opts.Replicas {
		id := uint64(i + 1)
		ndir := filepath.Join(opts.Dir, fmt.Sprintf("node%d", id))
		argv := []string{opts.Exe, "server", "--id", strconv.FormatUint(id, 10), "--group", "1", "--dir", ndir, "--peers", peers}
		argv = append(argv, opts.ExtraArgs...)
		c.Specs = append(c.Specs, NodeSpec{
			ID: id, Group: 1, ClientAddr: members[id].ClientAddr, PeerAddr: members[id].PeerAddr,
			Dir: ndir, Log: filepath.Join(opts.Dir, fmt.Sprintf("node%d.log", id)), Argv: argv,
		})
	}
	return c, nil
}

// Load reads <dir>/nodes.json, describing a cluster whose processes may or may not run.
func Load(dir string) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(dir, "nodes.json"))
	if err != nil {
		return nil, err
	}
	var nf NodesFile
	if err := json.Unmarshal(b, &nf); err != nil {
		return nil, fmt.Errorf("%s/nodes.json: %w", dir, err)
	}
	return &Cluster{Dir: dir, Specs: nf.Nodes, procs: make(map[uint64]*proc), ports: new(freeport.Picker)}, nil
}

// StartAll starts every node and records them in nodes.json.
func (c *Cluster) StartAll() error {
	for _, s := range c.Specs {
		if err := c.Start(s.ID); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) spec(id uint64) *NodeSpec {
	for i := range c.Specs {
		if c.Specs[i].ID == id {
			return &c.Specs[i]
		}
	}
	return nil
}

// Start starts (or restarts) one node from its recorded argv.
func (c *Cluster) Start(id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.spec(id)
	if s == nil {
		return fmt.Errorf("harness: no node %d", id)
	}
	if p := c.procs[id]; p != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("harness: node %d is running", id)
		}
	}
	if err := os.MkdirAll(filepath.Dir(s.Log), 0o750); err != nil {
		return err
	}
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	// Own process group, so a terminal's Ctrl-C reaches only the owner, which stops nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("harness: start node %d: %w", id, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	c.procs[id] = p
	s.PID = cmd.Process.Pid
	return c.writeLocked()
}

// Exited returns a channel closed when node id's current process exits, or nil if not started.
func (c *Cluster) Exited(id uint64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[id]; p != nil {
		return p.done
	}
	return nil
}

// Kill sends SIGKILL to node id and waits for it to exit.
func (c *Cluster) Kill(id uint64) error { return c.signal(id, syscall.SIGKILL, 10*time.Second) }

// Stop sends SIGTERM to node id and waits (SIGKILL after 10 s).
func (c *Cluster) Stop(id uint64) error {
	if err := c.signal(id, syscall.SIGTERM, 10*time.Second); err != nil {
		return c.Kill(id)
	}
	return nil
}

// Signal sends sig to node id's process without waiting (SIGSTOP/SIGCONT pauses).
func (c *Cluster) Signal(id uint64, sig syscall.Signal) error {
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("harness: node %d not started", id)
	}
	return p.cmd.Process.Signal(sig)
}

func (c *Cluster) signal(id uint64, sig syscall.Signal, wait time.Duration) error {
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("harness: node %d did not exit after %v", id, sig)
	}
}

// StopAll stops every node this harness started (by pid).
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for _, s := range c.Specs {
		wg.Go(func() { _ = c.Stop(s.ID) })
	}
	wg.Wait()
}

func (c *Cluster) writeLocked() error {
	b, err := json.MarshalIndent(NodesFile{Nodes: c.Specs}, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.Dir, "nodes.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.Dir, "nodes.json"))
}

// Save rewrites nodes.json (roles, pids).
func (c *Cluster) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeLocked()
}

// WaitLeader polls the nodes' INFO raft until one that is running reports itself leader and the
// others agree, then records roles.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) (uint64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if id := c.leader(); id != 0 {
			c.mu.Lock()
			for i := range c.Specs {
				c.Specs[i].Role = "follower"
				if c.Specs[i].ID == id {
					c.Specs[i].Role = "leader"
				}
			}
			err := c.writeLocked()
			c.mu.Unlock()
			return id, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return 0, errors.New("harness: no leader elected in time")
}

func (c *Cluster) leader() uint64 {
	for _, s := range c.Specs {
		v, err := c.Access.Call(s.ClientAddr, "INFO", "raft")
		if err != nil {
			continue
		}
		if InfoField(string(v.Str), "raft_state") == "StateLeader" {
			return s.ID
		}
	}
	return 0
}

// Addr returns node id's client address.
func (c *Cluster) Addr(id uint64) string {
	if s := c.spec(id); s != nil {
		return s.ClientAddr
	}
	return ""
}

// InfoField extracts one "name:value" field from an INFO reply.
func InfoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == name {
			return v
		}
	}
	return ""
}

// Call sends one command on a fresh connection and returns the reply; an error reply is an error.
func Call(addr string, args ...string) (resp.Value, error) { return Access{}.Call(addr, args...) }

// Access is how to reach processes started with TLS or access control: the zero value is
// plain TCP without AUTH.
type Access struct {
	// TLS, when set, dials with TLS (ServerName from the address when empty).
	TLS *tls.Config
	// Username and Password, when Password is set, are sent with AUTH first.
	Username, Password string
}

// Call sends one command on a fresh connection (after AUTH when a password is set) and
// returns the reply; an error reply is an error.
func (a Access) Call(addr string, args ...string) (resp.Value, error) {
	var conn net.Conn
	var err error
	if a.TLS != nil {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: tlsconf.ForAddr(a.TLS, addr)}
		conn, err = d.Dial("tcp", addr)
	} else {
		conn, err = net.DialTimeout("tcp", addr, time.Second)
	}
	if err != nil {
		return resp.Value{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := resp.NewReader(conn, resp.DefaultLimits())
	if a.Password != "" {
		auth := []string{"AUTH", a.Password}
		if a.Username != "" {
			auth = []string{"AUTH", a.Username, a.Password}
		}
		if v, err := roundTrip(conn, r, auth); err != nil {
			return v, fmt.Errorf("%s: AUTH: %w", addr, err)
		}
	}
	v, err := roundTrip(conn, r, args)
	if err != nil {
		return v, fmt.Errorf("%s: %w", addr, err)
	}
	return v, nil
}

// roundTrip sends one command and reads its reply; an error reply is an error.
func roundTrip(conn net.Conn, r *resp.Reader, args []string) (resp.Value, error) {
	bargs := make([][]byte, len(args))
	for i, a := range args {
		bargs[i] = []byte(a)
	}
	if _, err := conn.Write(resp.AppendCommand(nil, bargs...)); err != nil {
		return resp.Value{}, err
	}
	v, err := r.ReadValue()
	if err != nil {
		return resp.Value{}, err
	}
	if v.Type == '-' {
		return v, errors.New(string(v.Str))
	}
	return v, nil
}

// ControllerClient returns a client of the controller replicas at addrs that uses a.
func (a Access) ControllerClient(addrs []string) *controller.Client {
	cl := controller.NewClient(addrs)
	cl.TLS, cl.Username, cl.Password = a.TLS, a.Username, a.Password
	return cl
}
