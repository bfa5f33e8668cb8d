package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/harness"
	"github.com/shoal-kv/shoal/internal/resp"
)

// Protocol is how the Go generator talks to a target.
type Protocol string

// Protocols of the targets.
const (
	ProtoRESP Protocol = "resp"
	ProtoEtcd Protocol = "etcd"
)

// Target names, as they appear in the report.
const (
	TRedis        = "redis"
	TRedisCluster = "redis-cluster"
	TEtcd         = "etcd-3"
	TShoal1       = "shoal-1"
	TShoal3       = "shoal-3"
	TShoalCluster = "shoal-3x3"
)

// ServerProc is one server process of a target: its client address and pid.
type ServerProc struct {
	Addr string
	PID  int
}

// Target is one system under test, running.
type Target struct {
	Name  string
	Desc  string
	Proto Protocol
	// Cluster makes redis-benchmark run with --cluster, so it sends each key to its slot's
	// master (for Shoal: the group leader) like the Go generator does.
	Cluster bool
	// Copies is how many full copies of the data the target keeps (replicas per group), to turn
	// the summed RSS growth of its processes into memory per stored pair.
	Copies int
	Nodes  []ServerProc // every server process that stores data
	// Endpoints are where clients connect: host:port for RESP, client URLs for etcd.
	Endpoints []string
}

// IsShoal reports whether t is one of Shoal's deployments.
func (t *Target) IsShoal() bool { return strings.HasPrefix(t.Name, "shoal") }

// Factory returns the DriverFactory that spreads workers over the target's endpoints.
func (t *Target) Factory() DriverFactory {
	return func(ctx context.Context, i int) (Driver, error) {
		ep := t.Endpoints[i%len(t.Endpoints)]
		if t.Proto == ProtoEtcd {
			d, err := NewEtcdDriver(ctx, ep)
			if err != nil {
				return nil, err // not a nil *EtcdDriver inside a non-nil Driver
			}
			return d, nil
		}
		return NewRESPDriver(ctx, ep)
	}
}

// Env is every target of a run plus what must be stopped at the end.
type Env struct {
	Dir     string
	Targets []*Target
	procs   *Procs
	shoals  []*harness.Cluster
	ports   freeport.Picker // every peer's ports, so no two are handed the same
}

// Stop stops every process the Env started, by pid. It is safe to call more than once.
func (e *Env) Stop() {
	for _, c := range e.shoals {
		c.StopAll()
	}
	e.shoals = nil
	e.procs.StopAll()
}

// Target returns the target called name, or nil.
func (e *Env) Target(name string) *Target {
	for _, t := range e.Targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// TargetNames lists every target in the order a run starts and measures them.
var TargetNames = []string{TRedis, TRedisCluster, TEtcd, TShoal1, TShoal3, TShoalCluster}

// TShoalScale names the scaling phase (one Shoal cluster grown group by group, measured at
// every size; see runScale) for --targets. It is not a target of the side-by-side rows: the
// phase starts its own cluster. Selecting TShoalCluster selects it too, since the phase answers
// the same question (how Shoal's cluster compares) along another axis.
const TShoalScale = "shoal-scale"

// CheckTargets reports an error naming the first entry of names that is neither a target nor
// TShoalScale.
func CheckTargets(names []string) error {
	for _, n := range names {
		if !slices.Contains(TargetNames, n) && n != TShoalScale {
			return fmt.Errorf("unknown target %q (targets: %s, %s)", n, strings.Join(TargetNames, ", "), TShoalScale)
		}
	}
	return nil
}

// ScaleSelected reports whether a run restricted to only (empty: everything) includes the
// scaling phase: when only names TShoalScale or TShoalCluster.
func ScaleSelected(only []string) bool {
	return len(only) == 0 || slices.Contains(only, TShoalScale) || slices.Contains(only, TShoalCluster)
}

// StartEnv starts the targets named in only (every target when only is empty) in dir: the
// peers as child processes and Shoal through the harness from the binary exe. On error it stops
// what it had started.
func StartEnv(ctx context.Context, exe, dir string, procs *Procs, only []string) (_ *Env, err error) {
	if err := CheckTargets(only); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, procs: procs}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()
	steps := []struct {
		name  string
		start func(context.Context) (*Target, error)
	}{
		{TRedis, e.startRedis},
		{TRedisCluster, e.startRedisCluster},
		{TEtcd, e.startEtcd},
		{TShoal1, func(ctx context.Context) (*Target, error) { return e.startShoalGroup(ctx, exe, TShoal1, 1) }},
		{TShoal3, func(ctx context.Context) (*Target, error) { return e.startShoalGroup(ctx, exe, TShoal3, 3) }},
		{TShoalCluster, func(ctx context.Context) (*Target, error) { return e.startShoalCluster(ctx, exe) }},
	}
	for _, s := range steps {
		if len(only) > 0 && !slices.Contains(only, s.name) {
			continue
		}
		t, err := s.start(ctx)
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", s.name, err)
		}
		e.Targets = append(e.Targets, t)
	}
	return e, nil
}

func redisArgs(port int, dir string, extra ...string) []string {
	return append([]string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--protected-mode", "no"}, extra...)
}

func (e *Env) startRedis(ctx context.Context) (*Target, error) {
	port, err := e.ports.PortWith(0)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.Dir, "redis")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("redis dir: %w", err)
	}
	p, err := e.procs.Start("redis", dir, filepath.Join(e.Dir, "redis.log"), redisArgs(port, dir)...)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitFor(ctx, 10*time.Second, "redis-server", func() error { return ping(ctx, addr) }); err != nil {
		return nil, err
	}
	return &Target{Name: TRedis, Desc: "one redis-server, no persistence (save \"\", appendonly no)", Proto: ProtoRESP,
		Copies: 1, Nodes: []ServerProc{{addr, p.PID()}}, Endpoints: []string{addr}}, nil
}

func (e *Env) startRedisCluster(ctx context.Context) (*Target, error) {
	t := &Target{Name: TRedisCluster, Desc: "Redis Cluster, 3 masters, no replicas, no persistence", Proto: ProtoRESP,
		Cluster: true, Copies: 1}
	for i := range 3 {
		port, err := e.ports.PortWith(10000) // the cluster bus listens 10000 above
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(e.Dir, fmt.Sprintf("redis-cluster-%d", i+1))
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("redis cluster dir: %w", err)
		}
		p, err := e.procs.Start(fmt.Sprintf("redis-cluster-%d", i+1), dir, dir+".log",
			redisArgs(port, dir, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")...)
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		t.Nodes = append(t.Nodes, ServerProc{addr, p.PID()})
		t.Endpoints = append(t.Endpoints, addr)
		if err := waitFor(ctx, 10*time.Second, "redis-server "+addr, func() error { return ping(ctx, addr) }); err != nil {
			return nil, err
		}
	}
	args := append([]string{"--cluster", "create"}, t.Endpoints...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(cctx, "redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	for _, addr := range t.Endpoints {
		err := waitFor(ctx, 30*time.Second, "redis cluster state ok on "+addr, func() error {
			v, err := callOnce(ctx, addr, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if harness.InfoField(string(v.Str), "cluster_state") != "ok" {
				return errors.New("cluster_state not ok")
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (e *Env) startEtcd(ctx context.Context) (*Target, error) {
	t := &Target{Name: TEtcd, Desc: "etcd, 3 members, default fsync, linearizable reads", Proto: ProtoEtcd, Copies: 3}
	type member struct{ client, peer int }
	ms := make([]member, 3)
	var initial []string
	for i := range ms {
		c, err := e.ports.PortWith(0)
		if err != nil {
			return nil, err
		}
		p, err := e.ports.PortWith(0)
		if err != nil {
			return nil, err
		}
		ms[i] = member{c, p}
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, p))
	}
	for i, m := range ms {
		name := fmt.Sprintf("e%d", i+1)
		dir := filepath.Join(e.Dir, "etcd-"+name)
		curl := fmt.Sprintf("http://127.0.0.1:%d", m.client)
		purl := fmt.Sprintf("http://127.0.0.1:%d", m.peer)
		p, err := e.procs.Start("etcd-"+name, e.Dir, dir+".log", "etcd", "--name", name, "--data-dir", dir,
			"--listen-client-urls", curl, "--advertise-client-urls", curl,
			"--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "shoal-bench",
			"--initial-cluster-state", "new", "--logger", "zap", "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		t.Nodes = append(t.Nodes, ServerProc{curl, p.PID()})
		t.Endpoints = append(t.Endpoints, curl)
	}
	for _, ep := range t.Endpoints {
		err := waitFor(ctx, 30*time.Second, "etcd "+ep, func() error {
			d, err := NewEtcdDriver(ctx, ep)
			if err != nil {
				return err
			}
			defer d.Close()
			f, err := d.Do(ctx, []Op{{Kind: OpSet, Key: []byte("bench:probe"), Value: []byte("1")}})
			if err == nil && f > 0 {
				err = errors.New("put refused")
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (e *Env) startShoalGroup(ctx context.Context, exe, name string, replicas int) (*Target, error) {
	dir := filepath.Join(e.Dir, name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("%s dir: %w", name, err)
	}
	c, err := harness.NewGroup(harness.Options{Exe: exe, Dir: dir, Replicas: replicas})
	if err != nil {
		return nil, err
	}
	c.Env = e.procs.Env
	e.shoals = append(e.shoals, c)
	if err := c.StartAll(); err != nil {
		return nil, err
	}
	if _, err := c.WaitLeader(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	desc := "Shoal, one process (raft group of 1, WAL fsync)"
	if replicas > 1 {
		desc = fmt.Sprintf("Shoal, one raft group of %d processes (WAL fsync on a majority)", replicas)
	}
	t := &Target{Name: name, Desc: desc, Proto: ProtoRESP, Copies: replicas}
	for _, s := range c.Specs {
		t.Nodes = append(t.Nodes, ServerProc{s.ClientAddr, s.PID})
		t.Endpoints = append(t.Endpoints, s.ClientAddr)
	}
	return t, waitServing(ctx, t)
}

func (e *Env) startShoalCluster(ctx context.Context, exe string) (*Target, error) {
	dir := filepath.Join(e.Dir, TShoalCluster)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("%s dir: %w", TShoalCluster, err)
	}
	c, err := harness.NewCluster(harness.ClusterOptions{Exe: exe, Dir: dir, Groups: 3, Replicas: 3, Controllers: 1})
	if err != nil {
		return nil, err
	}
	c.Env = e.procs.Env
	e.shoals = append(e.shoals, c)
	if err := c.StartAll(); err != nil {
		return nil, err
	}
	if err := c.JoinAll(ctx, 90*time.Second); err != nil {
		return nil, fmt.Errorf("%w (logs in %s)", err, dir)
	}
	t := &Target{Name: TShoalCluster, Desc: "Shoal, 3 raft groups of 3 processes + 1 shard controller", Proto: ProtoRESP,
		Cluster: true, Copies: 3}
	for _, s := range c.Specs {
		if s.Group == 0 {
			continue
		}
		t.Nodes = append(t.Nodes, ServerProc{s.ClientAddr, s.PID})
		t.Endpoints = append(t.Endpoints, s.ClientAddr)
	}
	return t, waitServing(ctx, t)
}

// waitServing waits until a SET and a GET through the Go driver succeed on every slot owner,
// so the first measurement does not include elections or the first configuration.
func waitServing(ctx context.Context, t *Target) error {
	return waitFor(ctx, 60*time.Second, t.Name+" serving", func() error {
		d, err := NewRESPDriver(ctx, t.Endpoints[0])
		if err != nil {
			return err
		}
		defer d.Close()
		var ops []Op
		for i := range uint64(64) {
			k := AppendKey(nil, "key:", i)
			ops = append(ops, Op{Kind: OpSet, Key: k, Value: []byte("probe")}, Op{Kind: OpGet, Key: k})
		}
		f, err := d.Do(ctx, ops)
		if err == nil && f > 0 {
			err = fmt.Errorf("%d of %d probe operations refused", f, len(ops))
		}
		return err
	})
}

func ping(ctx context.Context, addr string) error {
	_, err := callOnce(ctx, addr, "PING")
	return err
}

// callOnce sends one command on a fresh connection; an error reply is an error.
func callOnce(ctx context.Context, addr string, args ...string) (_ resp.Value, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := dialRESP(ctx, addr)
	if err != nil {
		return resp.Value{}, err
	}
	defer c.conn.Close()
	v, err := c.call(ctx, args...)
	if err != nil {
		return resp.Value{}, fmt.Errorf("%s %s: %w", addr, args[0], err)
	}
	if v.Type == '-' {
		return v, fmt.Errorf("%s %s: %s", addr, args[0], v.Str)
	}
	return v, nil
}
