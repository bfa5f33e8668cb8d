package accept

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

// TestLoopHandsOverAndStops: every accepted connection reaches handle, and Loop returns once
// the listener is closed.
func TestLoopHandsOverAndStops(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan net.Conn, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(context.Background(), ln, quiet, func(c net.Conn) { got <- c })
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case s := <-got:
			s.Close()
		case <-time.After(10 * time.Second):
			t.Fatal("connection not handed over")
		}
	}
	ln.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop did not return after the listener closed")
	}
}

// flakyListener fails its first fails Accepts, then returns one connection, then reports closed.
type flakyListener struct {
	mu    sync.Mutex
	fails int
	calls []time.Time
	given bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, time.Now())
	switch {
	case l.fails > 0:
		l.fails--
		return nil, errors.New("accept: too many open files")
	case !l.given:
		l.given = true
		c, _ := net.Pipe()
		return c, nil
	}
	return nil, net.ErrClosed
}

func (l *flakyListener) Close() error   { return nil }
func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestLoopBacksOff: failed Accepts are retried after doubling delays (5, 10, 20 ms), not in a
// tight loop, and the connection that follows is still handed over.
func TestLoopBacksOff(t *testing.T) {
	l := &flakyListener{fails: 3}
	handled := 0
	Loop(context.Background(), l, quiet, func(c net.Conn) { handled++; c.Close() })
	if handled != 1 {
		t.Fatalf("handled %d connections, want 1", handled)
	}
	if len(l.calls) != 5 {
		t.Fatalf("%d Accept calls, want 5 (3 failures, a connection, closed)", len(l.calls))
	}
	for i, want := range []time.Duration{5, 10, 20} {
		if gap := l.calls[i+1].Sub(l.calls[i]); gap < want*time.Millisecond {
			t.Fatalf("retry %d after %v, want at least %v", i+1, gap, want*time.Millisecond)
		}
	}
}

// TestLoopStopsWhileBackingOff: cancelling ctx ends a Loop waiting to retry.
func TestLoopStopsWhileBackingOff(t *testing.T) {
	l := &flakyListener{fails: 1 << 30}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, l, quiet, func(c net.Conn) { c.Close() })
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Loop did not return after its context was cancelled")
	}
}
