package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shoal-kv/shoal/client"
	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

// TestTLSAndAuth: the client's TLS and AUTH options against nodes that require both; a
// read-only user's writes are refused with the server's NOPERM, and a wrong password fails.
func TestTLSAndAuth(t *testing.T) {
	set, err := tlsconf.DemoSet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	specs, err := auth.ParseUsers(strings.NewReader("internal int-pw all\napp app-pw read,write\nreader rd-pw read\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore(specs)
	if err != nil {
		t.Fatal(err)
	}
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 2, Replicas: 3, Configure: func(cfg *node.Config) {
		cfg.Auth, cfg.InternalUser, cfg.InternalPassword = st, "internal", "int-pw"
		cfg.ClientTLS, cfg.PeerTLS, cfg.DialTLS = set.Server, set.Peer, set.Client
	}})
	c.JoinAll()
	ctx := context.Background()
	connect := func(user, pass string) (*client.Client, error) {
		return client.New(ctx, client.Options{Seeds: c.Addrs()[:1], TLS: set.Client.Clone(), Username: user, Password: pass, MaxRetries: 2})
	}
	app, err := connect("app", "app-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.Put(ctx, "secure", []byte("v")); err != nil {
		t.Fatalf("put over TLS with AUTH: %v", err)
	}
	if v, err := app.Get(ctx, "secure"); err != nil || string(v) != "v" {
		t.Fatalf("get = %q, %v", v, err)
	}
	rd, err := connect("reader", "rd-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if v, err := rd.Get(ctx, "secure"); err != nil || string(v) != "v" {
		t.Fatalf("reader get = %q, %v", v, err)
	}
	var se *client.ServerError
	if err := rd.Put(ctx, "secure", []byte("w")); !errors.As(err, &se) || se.Code != "NOPERM" {
		t.Fatalf("reader put: %v, want a NOPERM server error", err)
	}
	if bad, err := connect("app", "wrong"); err == nil {
		err = bad.Put(ctx, "x", []byte("y"))
		bad.Close()
		if err == nil {
			t.Fatal("a wrong password could write")
		}
	}
}
