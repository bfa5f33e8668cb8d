package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateAndLoad(t *testing.T) {
	dir := t.TempDir()
	f, err := GenerateDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(f.Key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", st, err)
	}
	before, _ := os.ReadFile(f.Cert)
	if _, err := GenerateDemo(dir); err != nil { // kept on a second run
		t.Fatal(err)
	}
	after, _ := os.ReadFile(f.Cert)
	if string(before) != string(after) {
		t.Fatal("GenerateDemo replaced existing files")
	}
	set, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}

	// Mutual TLS between two "nodes" sharing the CA works.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", set.Peer)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		_, err = c.Write([]byte("hi"))
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: ForAddr(set.Peer, ln.Addr().String())}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q, %v", b, err)
	}
	c.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}

	// A client without a certificate is refused by the peer port.
	go func() {
		c, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		errc <- c.(*tls.Conn).HandshakeContext(ctx)
	}()
	anon, err := ClientOnly(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	d = tls.Dialer{Config: ForAddr(anon, ln.Addr().String())}
	if c, err := d.DialContext(ctx, "tcp", ln.Addr().String()); err == nil {
		// TLS 1.3: the client learns of the refusal on its first read.
		_, err = c.Read(b)
		c.Close()
		if err == nil {
			t.Fatal("peer port accepted a client without a certificate")
		}
	}
	if err := <-errc; err == nil {
		t.Fatal("server handshake succeeded without a client certificate")
	}
}

func TestLoadErrors(t *testing.T) {
	if s, err := Load(Files{}); s != nil || err != nil {
		t.Fatalf("no files: %v, %v", s, err)
	}
	if _, err := Load(Files{Cert: "a"}); err == nil {
		t.Fatal("partial files accepted")
	}
	dir := t.TempDir()
	f, err := GenerateDemo(dir)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	if _, err := Load(Files{Cert: f.Cert, Key: f.Key, CA: bad}); err == nil {
		t.Fatal("bad CA accepted")
	}
	if _, err := Load(Files{Cert: f.Cert, Key: f.Key, CA: filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing CA: %v", err)
	}
}

func TestForAddr(t *testing.T) {
	if ForAddr(nil, "x:1") != nil {
		t.Fatal("nil config")
	}
	c := ForAddr(&tls.Config{}, "127.0.0.1:7379")
	if c.ServerName != "127.0.0.1" {
		t.Fatalf("ServerName %q", c.ServerName)
	}
	c = ForAddr(&tls.Config{ServerName: "node"}, "127.0.0.1:7379")
	if c.ServerName != "node" {
		t.Fatalf("ServerName %q", c.ServerName)
	}
}
