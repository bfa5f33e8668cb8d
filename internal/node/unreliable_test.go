package node_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shoal-kv/shoal/client"
	"github.com/shoal-kv/shoal/internal/linearize"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// flakyConn delays writes and now and then breaks the connection, so raft messages between
// replicas are delayed, lost (when a connection dies with messages queued) and reordered across
// reconnections.
type flakyConn struct {
	net.Conn
	mu  sync.Mutex
	rng *rand.Rand
}

func (f *flakyConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	r := f.rng.Float64()
	d := time.Duration(f.rng.IntN(3000)) * time.Microsecond
	f.mu.Unlock()
	time.Sleep(d)
	if r < 0.02 {
		f.Conn.Close()
		return 0, errors.New("flaky network: connection dropped")
	}
	return f.Conn.Write(p)
}

// TestUnreliableNetwork runs clients with sessions (the Go client) against groups whose raft
// traffic is delayed and dropped while shards move, and checks that the history is linearizable
// and that every acknowledged append is present exactly once.
func TestUnreliableNetwork(t *testing.T) {
	var seed sync.Mutex
	n := uint64(0)
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 3, Replicas: 3, WrapPeerConn: func(conn net.Conn) net.Conn {
		seed.Lock()
		n++
		s := n
		seed.Unlock()
		return &flakyConn{Conn: conn, rng: rand.New(rand.NewPCG(s, 99))}
	}})
	cfg := c.Join(1)
	c.WaitSettled(cfg.Num)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	rec := linearize.NewRecorder()
	keys := []string{"u1", "u2", "u3", "u4", "u5"}
	var mu sync.Mutex
	acked := map[string][]string{} // key -> appended tokens acknowledged
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for id := range 4 {
		wg.Go(func() {
			cl, err := client.New(ctx, client.Options{Seeds: c.Addrs(), Sessions: client.SessionsRequired})
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			rng := rand.New(rand.NewPCG(uint64(id), 5))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := keys[rng.IntN(len(keys))]
				call := rec.Now()
				octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
				if rng.IntN(2) == 0 {
					v, err := cl.Get(octx, key)
					out := linearize.Output{Value: string(v), Found: err == nil}
					if err != nil && !errors.Is(err, client.ErrNotFound) {
						out = linearize.Output{Unknown: true}
					}
					rec.Add(id, call, linearize.Input{Kind: linearize.Get, Key: key}, out)
				} else {
					tok := fmt.Sprintf("<%d.%d>", id, i)
					_, err := cl.Append(octx, key, []byte(tok))
					rec.Add(id, call, linearize.Input{Kind: linearize.Append, Key: key, Value: tok}, linearize.Output{Unknown: err != nil})
					if err == nil {
						mu.Lock()
						acked[key] = append(acked[key], tok)
						mu.Unlock()
					}
				}
				ocancel()
			}
		})
	}
	for _, change := range []func(){func() { c.Join(2) }, func() { c.Join(3) }, func() { c.Leave(1) }, func() { c.Join(1) }} {
		time.Sleep(time.Second)
		change()
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	start := time.Now()
	res, err := rec.Check(60*time.Second, filepath.Join(t.TempDir(), "history.html"))
	t.Logf("%d operations; linearizability check took %v", len(rec.Operations()), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if res != porcupine.Ok {
		t.Fatalf("history not linearizable: %v", res)
	}
	cl, err := client.New(ctx, client.Options{Seeds: c.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	total := 0
	for _, k := range keys {
		v, err := cl.Get(ctx, k)
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Fatal(err)
		}
		for _, tok := range acked[k] {
			if got := strings.Count(string(v), tok); got != 1 {
				t.Fatalf("%s holds acknowledged append %s %d times", k, tok, got)
			}
			total++
		}
	}
	t.Logf("%d operations, %d acknowledged appends each present exactly once", len(rec.Operations()), total)
	if total < 20 {
		t.Fatalf("only %d appends acknowledged: the cluster barely served", total)
	}
}
