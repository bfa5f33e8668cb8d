package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/shoal-kv/shoal/internal/resp"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

// authServer is a TLS echo server that requires "AUTH internal pw" first.
func authServer(t *testing.T, cfg *tls.Config) string {
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func(nc net.Conn) {
				defer nc.Close()
				r := resp.NewReader(nc, resp.DefaultLimits())
				w := resp.NewWriter(nc)
				authed := false
				for {
					args, err := r.ReadCommand()
					if err != nil {
						return
					}
					switch {
					case string(args[0]) == "AUTH":
						if len(args) == 3 && string(args[1]) == "internal" && string(args[2]) == "pw" {
							authed = true
							w.SimpleString("OK")
						} else {
							w.Error("WRONGPASS invalid username-password pair or user is disabled.")
						}
					case !authed:
						w.Error("NOAUTH Authentication required.")
					default:
						w.Bulk(args[0])
					}
					if w.Flush() != nil {
						return
					}
				}
			}(nc)
		}
	}()
	return l.Addr().String()
}

func TestTLSAndAuth(t *testing.T) {
	set, err := tlsconf.DemoSet(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	addr := authServer(t, set.Server)
	ctx := context.Background()

	p := NewPool(Options{MaxIdle: 2, TLS: set.Client, Username: "internal", Password: "pw"})
	defer p.Close()
	for range 3 {
		v, err := p.Do(ctx, addr, []byte("hello"))
		if err != nil || string(v.Str) != "hello" {
			t.Fatalf("Do = %q, %v", v.Str, err)
		}
	}

	bad := NewPool(Options{MaxIdle: 2, TLS: set.Client, Username: "internal", Password: "nope"})
	defer bad.Close()
	if _, err := bad.Do(ctx, addr, []byte("hello")); !errors.Is(err, ErrAuth) {
		t.Fatalf("wrong password: %v", err)
	}

	plain := New(2) // no TLS: the handshake fails
	defer plain.Close()
	if v, err := plain.Do(ctx, addr, []byte("hello")); err == nil {
		t.Fatalf("plain connection to a TLS port answered %+v", v)
	}
}
