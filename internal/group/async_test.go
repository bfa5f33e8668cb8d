package group

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/raftnode"
	"github.com/shoal-kv/shoal/internal/table"
)

// queued is a Replicator that holds proposals until apply is called, so a test can make
// proposers give up before their command applies.
type queued struct {
	mu    sync.Mutex
	index uint64
	q     [][]byte
	g     *Group
}

func (r *queued) Propose(_ context.Context, data []byte) error {
	r.mu.Lock()
	r.q = append(r.q, data)
	r.mu.Unlock()
	return nil
}

func (r *queued) ReadBarrier(context.Context) error { return nil }
func (r *queued) Status() raftnode.Status           { return raftnode.Status{ID: 1, Leader: 1} }

// apply applies every queued proposal, in order, as the raft loop would.
func (r *queued) apply() {
	r.g.waitProposed()
	r.mu.Lock()
	q := r.q
	r.q = nil
	r.mu.Unlock()
	for _, data := range q {
		r.index++
		r.g.Apply(r.index, data)
	}
}

// waitProposed waits until every started command has been handed to the Replicator.
func (g *Group) waitProposed() {
	for {
		g.props.mu.Lock()
		idle := !g.props.running && len(g.props.queue) == 0
		g.props.mu.Unlock()
		if idle {
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func newQueued() (*queued, *Group) {
	g := New(Config{GroupID: 1, Table: table.New()})
	r := &queued{g: g}
	g.Bind(r)
	return r, g
}

// TestAbandonedWaitDoesNotLeak starts writes, abandons some before they apply (their results
// are delivered into channels nobody reads), then checks that later writes, which reuse the
// pooled channels, each get exactly their own result.
func TestAbandonedWaitDoesNotLeak(t *testing.T) {
	r, g := newQueued()
	key := []byte("ctr")
	var waits []Wait
	for range 8 {
		w, err := g.Start(context.Background(), Write{Op: WriteIncrBy, Args: [][]byte{key}, Delta: 1})
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	g.waitProposed() // handed to raft: abandoning them now cannot withdraw them
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	// Abandon the odd ones before they apply, the even ones after.
	for i := 1; i < len(waits); i += 2 {
		if _, err := waits[i].Result(expired); !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned wait: %v", err)
		}
	}
	r.apply()
	for i := 0; i < len(waits); i += 2 {
		res, err := waits[i].Result(context.Background())
		if err != nil || res.N != int64(i+1) {
			t.Fatalf("write %d: got %d, %v; want %d", i, res.N, err, i+1)
		}
	}
	// Every registration is gone, and the recycled channels carry nothing stale.
	g.waitMu.Lock()
	left := len(g.waiters)
	g.waitMu.Unlock()
	if left != 0 {
		t.Fatalf("%d waiters left registered", left)
	}
	for i := range 100 {
		w, err := g.Start(context.Background(), Write{Op: WriteIncrBy, Args: [][]byte{key}, Delta: 1})
		if err != nil {
			t.Fatal(err)
		}
		r.apply()
		if res, err := w.Result(context.Background()); err != nil || res.N != int64(9+i) {
			t.Fatalf("reused channel: got %d, %v; want %d", res.N, err, 9+i)
		}
	}
}

// TestConcurrentWaitersGetOwnResults runs proposers that give up at random moments against an
// applier running concurrently: every result a proposer receives must be its own (distinct
// counter values), whatever the interleaving of deliveries, abandonments and channel reuse.
func TestConcurrentWaitersGetOwnResults(t *testing.T) {
	r, g := newQueued()
	stop := make(chan struct{})
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for {
			select {
			case <-stop:
				r.apply()
				return
			default:
			}
			r.apply()
			time.Sleep(50 * time.Microsecond)
		}
	}()
	var mu sync.Mutex
	var withdrawn atomic.Int64
	seen := map[int64]bool{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration((w*7+i)%5)*20*time.Microsecond)
				n, err := g.IncrBy(ctx, []byte("ctr"), 1)
				cancel()
				if errors.Is(err, ErrNotLeader) {
					withdrawn.Add(1) // taken back before raft saw it: never applies
					continue
				}
				if err != nil {
					continue // gave up after raft took it; the increment still applies
				}
				mu.Lock()
				if seen[n] {
					mu.Unlock()
					t.Errorf("result %d delivered twice", n)
					return
				}
				seen[n] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-applied
	want := strconv.Itoa(2400 - int(withdrawn.Load()))
	if v, ok := storedValue(g.tab, []byte("ctr")); !ok || string(v) != want {
		t.Fatalf("counter = %q, want %s (every proposal not withdrawn applied once)", v, want)
	}
}

// TestEncodedLen checks encodedLen against the encoding itself, across the varint length
// boundaries of every field.
func TestEncodedLen(t *testing.T) {
	nums := []uint64{0, 1, 127, 128, 16383, 16384, 1<<32 - 1, 1 << 35, 1<<63 - 1, 1<<64 - 1}
	deltas := []int64{0, 1, -1, 63, -64, 64, -65, 1 << 40, -1 << 40, 1<<63 - 1, -1 << 63}
	for i, n := range nums {
		for j, d := range deltas {
			c := command{op: opSet, reqID: n, clientID: n, seq: nums[(i+1)%len(nums)], acked: nums[(i+j)%len(nums)],
				delta: d, args: [][]byte{make([]byte, 127), make([]byte, 128), nil, make([]byte, 20000)}}
			c.args = c.args[:(i+j)%5]
			if got, want := c.encodedLen(), len(c.encode(nil)); got != want {
				t.Fatalf("encodedLen(%+v) = %d, encoding has %d bytes", c, got, want)
			}
		}
	}
}
