package rpc

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/resp"
)

// echoServer answers every command with its first argument as a bulk string, or an error reply
// for "FAIL", and never answers "HANG".
func echoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
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
			go func() {
				defer nc.Close()
				r := resp.NewReader(nc, resp.DefaultLimits())
				w := resp.NewWriter(nc)
				for {
					args, err := r.ReadCommand()
					if err != nil {
						return
					}
					switch string(args[0]) {
					case "FAIL":
						w.Error("ERR failed")
					case "HANG":
						continue
					default:
						w.Bulk(args[0])
					}
					if w.Flush() != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestDoReusesConnectionsAndReportsErrors(t *testing.T) {
	addr := echoServer(t)
	p := New(2)
	defer p.Close()
	ctx := context.Background()
	for range 3 {
		v, err := p.Do(ctx, addr, []byte("hello"))
		if err != nil || string(v.Str) != "hello" {
			t.Fatalf("Do = %q, %v", v.Str, err)
		}
	}
	if n := len(p.idle[addr]); n != 1 {
		t.Fatalf("idle connections = %d, want 1 reused", n)
	}
	v, err := p.Do(ctx, addr, []byte("FAIL"))
	if err != nil || v.Type != '-' || string(v.Str) != "ERR failed" {
		t.Fatalf("error reply = %+v, %v", v, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := p.Do(tctx, addr, []byte("HANG")); err == nil {
		t.Fatal("hung call returned no error")
	}
	if _, err := p.Do(ctx, "127.0.0.1:1", []byte("x")); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
	p.Close()
	if _, err := p.Do(ctx, addr, []byte("x")); err != ErrClosed {
		t.Fatalf("after Close: %v", err)
	}
}
