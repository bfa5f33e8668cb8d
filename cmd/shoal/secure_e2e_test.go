package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/freeport"
	"github.com/shoal-kv/shoal/internal/harness"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

// TestSecureProcesses runs real processes with TLS on every port, a users file and the
// server limits given as flags, and drives them with shoal ctl and redis-cli.
func TestSecureProcesses(t *testing.T) {
	dir := t.TempDir()
	files, err := tlsconf.GenerateDemo(filepath.Join(dir, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := tlsconf.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("internal int-pw all\nreader rd-pw read\nops ops-pw admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := harness.NewCluster(harness.ClusterOptions{Exe: shoalExe, Dir: dir, Groups: 2, Replicas: 1, Controllers: 1,
		ExtraArgs: []string{"--tick", "50ms", "--tls-cert", files.Cert, "--tls-key", files.Key, "--tls-ca", files.CA,
			"--users", users, "--internal-user", "internal"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Specs {
		if c.Specs[i].Group != 0 {
			c.Specs[i].Argv = append(c.Specs[i].Argv, "--maxclients", "20", "--timeout", "2", "--maxmemory", "100mb")
		}
	}
	c.Access = harness.Access{TLS: set.Client, Username: "internal", Password: "int-pw"}
	startOwned(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := c.JoinAll(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	var data []harness.NodeSpec
	for _, s := range c.Specs {
		if s.Group != 0 {
			data = append(data, s)
		}
	}
	for i := range 50 {
		if _, err := c.Access.Call(data[i%2].ClientAddr, "SET", fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("set k%d: %v", i, err)
		}
	}
	reader := harness.Access{TLS: set.Client, Username: "reader", Password: "rd-pw"}
	for i := range 50 {
		if v, err := reader.Call(data[(i+1)%2].ClientAddr, "GET", fmt.Sprintf("k%d", i)); err != nil || string(v.Str) != "v" {
			t.Fatalf("get k%d: %q, %v", i, v.Str, err)
		}
	}
	if _, err := reader.Call(data[0].ClientAddr, "SET", "k", "v"); err == nil || !strings.Contains(err.Error(), "NOPERM User reader has no permissions to run the 'set' command") {
		t.Fatalf("reader SET: %v", err)
	}
	// The limits given as flags are in force.
	for _, p := range [][2]string{{"maxclients", "20"}, {"timeout", "2"}, {"maxmemory", "104857600"}} {
		v, err := c.Access.Call(data[0].ClientAddr, "CONFIG", "GET", p[0])
		if err != nil || len(v.Array) != 2 || string(v.Array[1].Str) != p[1] {
			t.Fatalf("CONFIG GET %s: %+v, %v", p[0], v, err)
		}
	}
	idle, err := tls.Dial("tcp", data[0].ClientAddr, tlsconf.ForAddr(set.Client, data[0].ClientAddr))
	if err != nil {
		t.Fatal(err)
	}
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := idle.Read(make([]byte, 1)); err == nil || time.Since(start) > 8*time.Second {
		t.Fatalf("idle connection not closed by --timeout 2: %v after %v", err, time.Since(start))
	}
	idle.Close()
	var flood []net.Conn
	defer func() {
		for _, f := range flood {
			f.Close()
		}
	}()
	for range 25 {
		f, err := tls.Dial("tcp", data[1].ClientAddr, tlsconf.ForAddr(set.Client, data[1].ClientAddr))
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, f)
	}
	refused := 0
	for _, f := range flood {
		f.Write([]byte("PING\r\n"))
		f.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(f).ReadString('\n')
		if line == "-ERR max number of clients reached\r\n" {
			refused++
		}
	}
	if refused < 5 {
		t.Fatalf("%d of 25 connections refused with --maxclients 20", refused)
	}

	// shoal ctl over TLS with users: status needs read, changes need admin.
	ctlAddr := c.ControllerAddrs()[0]
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := ctl(ctx, append([]string{"--tls-ca", files.CA, "--addr", ctlAddr, "--timeout", "5s"}, args...), &out)
		return out.String(), err
	}
	if out, err := run("--user", "reader", "--pass", "rd-pw", "status"); err != nil || !strings.Contains(out, "group 2") {
		t.Fatalf("ctl status as reader: %v\n%s", err, out)
	}
	if _, err := run("--user", "reader", "--pass", "rd-pw", "auto", "on"); err == nil || !strings.Contains(err.Error(), "NOPERM User reader has no permissions to run the 'ctl|auto' command") {
		t.Fatalf("ctl auto as reader: %v", err)
	}
	if _, err := run("--user", "ops", "--pass", "wrong", "status"); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("ctl with a wrong password: %v", err)
	}
	if _, err := run("--user", "ops", "--pass", "ops-pw", "auto", "off"); err != nil {
		t.Fatalf("ctl auto as ops: %v", err)
	}
	if _, err := harness.Call(ctlAddr, "PING"); err == nil {
		t.Fatal("plaintext PING answered by a TLS controller")
	}

	if cli, err := exec.LookPath("redis-cli"); err == nil {
		host, port, _ := strings.Cut(data[0].ClientAddr, ":")
		out, err := exec.CommandContext(ctx, cli, "--tls", "--cacert", files.CA, "-h", host, "-p", port,
			"--user", "reader", "--pass", "rd-pw", "--no-auth-warning", "get", "k1").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "v" {
			t.Fatalf("redis-cli --tls get: %v %s", err, out)
		}
	}
}

// TestDemoTLS runs `shoal demo --tls` on a small cluster and connects to it as it says.
func TestDemoTLS(t *testing.T) {
	base := demoPorts(t, 3)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shoalExe, "demo", "--tls", "--dir", dir, "--base-port", fmt.Sprint(base),
		"--groups", "2", "--replicas", "1", "--controllers", "1")
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "press Ctrl-C") {
				ready <- true
			}
		}
		ready <- false
	}()
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		cmd.Wait()
		pw.Close()
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("demo exited:\n%s", output())
		}
	case <-ctx.Done():
		t.Fatalf("demo did not start in time; its output so far:\n%s", output())
	}
	ca := filepath.Join(dir, "tls", tlsconf.CAFile)
	if !strings.Contains(output(), "redis-cli --tls --cacert "+ca) {
		t.Fatalf("demo does not say how to connect with TLS:\n%s", output())
	}
	anon, err := tlsconf.ClientOnly(ca)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", base)
	v, err := harness.Access{TLS: anon}.Call(addr, "GET", "demo:greeting")
	if err != nil || string(v.Str) != "hello from shoal" {
		t.Fatalf("GET over TLS: %q, %v", v.Str, err)
	}
	if _, err := harness.Call(addr, "PING"); err == nil {
		t.Fatal("demo --tls answered plaintext")
	}
}

// demoPorts finds a base port with n consecutive free client ports and their peer ports (10000
// above), in the band freeport keeps for such blocks: the ports stay unbound while the demo
// starts its processes, and no other picker draws from that band.
func demoPorts(t *testing.T, n int) int {
	p, err := freeport.Block(n, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
