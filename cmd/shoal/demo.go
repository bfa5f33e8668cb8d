package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/shoal-kv/shoal/internal/harness"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

func runDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	dir := fs.String("dir", "shoal-demo", "directory for the cluster's data, logs and nodes.json")
	basePort := fs.Int("base-port", 7379, "first client port (groups' nodes first, then the controller's); peers listen 10000 above")
	groups := fs.Int("groups", 3, "replica groups")
	replicas := fs.Int("replicas", 3, "replicas per group")
	controllers := fs.Int("controllers", 3, "shard controller replicas")
	useTLS := fs.Bool("tls", false, "generate a throwaway CA and node certificate in DIR/tls and run every port (client, peer, controller) over TLS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replicas < 1 || *replicas > 9 || *groups < 1 || *groups > 16 || *controllers < 1 || *controllers > 9 {
		return errors.New("--groups must be 1-16, --replicas and --controllers 1-9")
	}
	total := *groups**replicas + *controllers
	if *basePort < 1 || *basePort+10000+total > 65535 {
		return errors.New("--base-port must leave room for peer ports 10000 above it")
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return err
	}
	tlsDir := filepath.Join(abs, "tls")
	if _, err := os.Stat(filepath.Join(tlsDir, tlsconf.CAFile)); err == nil {
		*useTLS = true // a TLS demo restarted on its directory stays TLS
	}
	var extra []string
	var access harness.Access
	var files tlsconf.Files
	if *useTLS {
		if files, err = tlsconf.GenerateDemo(tlsDir); err != nil {
			return err
		}
		set, err := tlsconf.Load(files)
		if err != nil {
			return err
		}
		extra = []string{"--tls-cert", files.Cert, "--tls-key", files.Key, "--tls-ca", files.CA}
		access.TLS = set.Client
	}
	c, err := demoCluster(abs, *basePort, *groups, *replicas, *controllers, extra...)
	if err != nil {
		return err
	}
	c.Access = access
	defer c.StopAll()
	if err := c.StartAll(); err != nil {
		return err
	}
	fmt.Printf("started %d processes in %s: a %d-replica shard controller and %d groups of %d replicas\n",
		len(c.Specs), abs, *controllers, *groups, *replicas)
	if err := c.JoinAll(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("%w; see the logs in %s", err, abs)
	}
	if err := showWorking(c); err != nil {
		return err
	}
	fmt.Printf("\nnodes: %s\n", filepath.Join(abs, "nodes.json"))
	for _, n := range c.Specs {
		role := n.Role
		if n.Group != 0 {
			role = fmt.Sprintf("group %d", n.Group)
		}
		fmt.Printf("  %-10s pid %-7d client %s  log %s\n", role, n.PID, n.ClientAddr, n.Log)
	}
	ctl := c.ControllerAddrs()[0]
	if *useTLS {
		fmt.Printf("\nTLS on every port; CA %s, node certificate %s\n", files.CA, files.Cert)
		fmt.Printf("connect with:  redis-cli --tls --cacert %s -c -p %d\n", files.CA, *basePort)
		fmt.Printf("benchmark:     redis-benchmark --tls --cacert %s -p %d -t set,get -n 100000 -c 50\n", files.CA, *basePort)
		fmt.Printf("operate:       go run ./cmd/shoal ctl --tls-ca %s --addr %s status\n", files.CA, ctl)
	} else {
		fmt.Printf("\nconnect with:  redis-cli -c -p %d        (any node; plain clients are forwarded to the owner)\n", *basePort)
		fmt.Printf("benchmark:     redis-benchmark -p %d -t set,get -n 100000 -c 50\n", *basePort)
		fmt.Printf("operate:       go run ./cmd/shoal ctl --addr %s status   (also join, leave, move, split, merge, rebalance)\n", ctl)
	}
	fmt.Println("press Ctrl-C to stop the cluster (run the demo again on the same --dir to bring it back with its data)")
	exited := make(chan uint64, len(c.Specs))
	for _, s := range c.Specs {
		ch := c.Exited(s.ID)
		go func() {
			select {
			case <-ch:
				exited <- s.ID
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Println("\nstopping the cluster")
			return nil
		case id := <-exited:
			fmt.Printf("process %d exited (see its log); the others keep serving\n", id)
		}
	}
}

// demoCluster describes the cluster: the previous one from nodes.json when the directory holds
// one, so a second run brings the same cluster back with its data; a new one otherwise.
func demoCluster(dir string, basePort, groups, replicas, controllers int, extraArgs ...string) (*harness.Cluster, error) {
	exe, err := installBinary(dir)
	if err != nil {
		return nil, err
	}
	if c, err := harness.Load(dir); err == nil {
		fmt.Printf("restarting the cluster recorded in %s\n", filepath.Join(dir, "nodes.json"))
		return c, nil
	}
	for p := basePort; p < basePort+groups*replicas+controllers; p++ {
		for _, port := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return nil, fmt.Errorf("port %d is taken (%w); choose another --base-port", port, err)
			}
			l.Close()
		}
	}
	return harness.NewCluster(harness.ClusterOptions{Exe: exe, Dir: dir, Groups: groups, Replicas: replicas,
		Controllers: controllers, BasePort: basePort, ExtraArgs: extraArgs})
}

// installBinary copies the running executable into the demo directory: `go run` builds into a
// temporary directory that disappears, and nodes.json must hold an argv that can restart a node.
func installBinary(dir string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "bin", "shoal")
	if self == dst {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return "", err
	}
	src, err := os.Open(self)
	if err != nil {
		return "", err
	}
	defer src.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp, dst)
}

// showExpiry sets a key with a short time to live through one node and watches it go through
// another (which forwards to the owner when it is not).
func showExpiry(c *harness.Cluster, w, r harness.NodeSpec) error {
	if _, err := c.Access.Call(w.ClientAddr, "SET", "demo:flash", "gone soon", "PX", "1500"); err != nil {
		return err
	}
	v, err := c.Access.Call(r.ClientAddr, "PTTL", "demo:flash")
	if err != nil {
		return err
	}
	fmt.Printf("SET demo:flash \"gone soon\" PX 1500, then PTTL via group %d: %d ms left\n", r.Group, v.Int)
	time.Sleep(1600 * time.Millisecond)
	if v, err = c.Access.Call(r.ClientAddr, "GET", "demo:flash"); err != nil {
		return err
	}
	state := fmt.Sprintf("%q", v.Str)
	if v.Null {
		state = "(nil): expired, and gone on every replica"
	}
	fmt.Printf("GET demo:flash 1.6 s later: %s\n", state)
	return nil
}

// showWorking writes through one node and reads the value back through every data node, some
// of which forward to the group that owns the key.
func showWorking(c *harness.Cluster) error {
	var data []harness.NodeSpec
	for _, s := range c.Specs {
		if s.Group != 0 {
			data = append(data, s)
		}
	}
	first := data[0]
	fmt.Printf("\nSET demo:greeting \"hello from shoal\" via group %d: ", first.Group)
	v, err := c.Access.Call(first.ClientAddr, "SET", "demo:greeting", "hello from shoal")
	if err != nil {
		return err
	}
	fmt.Println(string(v.Str))
	for _, n := range data {
		v, err := c.Access.Call(n.ClientAddr, "GET", "demo:greeting")
		if err != nil {
			return err
		}
		fmt.Printf("GET demo:greeting via %s (group %d): %q\n", n.ClientAddr, n.Group, v.Str)
	}
	v, err = c.Access.Call(data[len(data)-1].ClientAddr, "INCR", "demo:runs")
	if err != nil {
		return err
	}
	fmt.Printf("INCR demo:runs: %d (counts demo runs on this data dir)\n", v.Int)
	if err := showExpiry(c, first, data[len(data)-1]); err != nil {
		return err
	}
	v, err = c.Access.Call(first.ClientAddr, "CLUSTER", "NODES")
	if err != nil {
		return err
	}
	fmt.Printf("\nCLUSTER NODES:\n%s", v.Str)
	return nil
}
