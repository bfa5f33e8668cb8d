package node_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/shoal-kv/shoal/client"
	"github.com/shoal-kv/shoal/internal/linearize"
	"github.com/shoal-kv/shoal/internal/node"
	"github.com/shoal-kv/shoal/internal/node/nodetest"
)

// ttlInput is an operation of TestExpiryUnderSkewAndLeaderChanges: a GET, a PUT without expiry
// or a PUT with one.
type ttlInput struct {
	key string
	op  byte // 'g', 'p' or 't'
	val string
}

// ttlOutput is what a GET found; unknown marks a write whose outcome the client never learnt.
type ttlOutput struct {
	found, unknown bool
	val            string
}

// ttlState is one key's state in the model.
type ttlState struct {
	present, expiring bool
	val               string
}

// ttlModel specifies a register whose values, when written with an expiry, may vanish at any
// moment after the write (when exactly depends on clocks the model does not know), but never
// come back: a value is seen again only if written again.
var ttlModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		return linearize.PartitionBy(h, func(in any) string { return in.(ttlInput).key })
	},
	Init: func() []any { return []any{ttlState{}} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(ttlState), input.(ttlInput), output.(ttlOutput)
		cands := []ttlState{s}
		if s.present && s.expiring {
			cands = append(cands, ttlState{}) // it expired before this operation
		}
		var next []any
		for _, st := range cands {
			switch in.op {
			case 'g':
				if out.unknown || out.found == st.present && (!st.present || out.val == st.val) {
					next = append(next, st)
				}
			case 'p':
				next = append(next, ttlState{present: true, val: in.val})
			case 't':
				next = append(next, ttlState{present: true, expiring: true, val: in.val})
			}
		}
		return next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(ttlInput), output.(ttlOutput)
		switch {
		case in.op == 'g':
			return fmt.Sprintf("get(%s) -> %v %q", in.key, out.found, out.val)
		case in.op == 't':
			return fmt.Sprintf("put(%s, %q, ttl)", in.key, in.val)
		}
		return fmt.Sprintf("put(%s, %q)", in.key, in.val)
	},
}

// TestExpiryUnderSkewAndLeaderChanges runs clients writing values with and without short
// expiries and reading them against one group whose three replicas' clocks disagree by more than
// the expiries, stopping and restarting the leader meanwhile, and checks the history against
// ttlModel: whichever replica leads, by whatever clock, a value once seen expired never returns,
// and values written without expiry stay.
func TestExpiryUnderSkewAndLeaderChanges(t *testing.T) {
	skew := map[uint64]time.Duration{1: 0, 2: -3 * time.Second, 3: 3 * time.Second}
	c := nodetest.NewClusterWith(t, nodetest.Options{Groups: 1, Replicas: 3, Configure: func(cfg *node.Config) {
		d := skew[cfg.ID]
		cfg.Clock = func() time.Time { return time.Now().Add(d) }
		cfg.SweepInterval = -1 // the sweep would reap most of what reads find expired: reads alone are tested
	}})
	c.WaitSettled(c.Join(1).Num)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := client.New(ctx, client.Options{Seeds: c.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// Enough keys that each is rewritten less often than its values expire.
	keys := make([]string, 512)
	for i := range keys {
		keys[i] = fmt.Sprintf("e%d", i)
	}
	var (
		mu        sync.Mutex
		ops       []porcupine.Operation
		written   = map[string]int64{} // key -> earliest return time of an acknowledged write
		vanished  atomic.Int64         // GETs that found nothing after a write was acknowledged
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		clientIDs atomic.Int64
	)
	record := func(o porcupine.Operation) {
		mu.Lock()
		ops = append(ops, o)
		mu.Unlock()
	}
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			id := int(clientIDs.Add(1))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[rng.IntN(len(keys))]
				in := ttlInput{key: k}
				octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
				call := time.Now().UnixNano()
				var out ttlOutput
				var err error
				// Mostly reads: a value read as expired is then seldom rewritten before a leader
				// with a slower clock takes over, which is what could bring it back.
				switch r := rng.IntN(20); {
				case r < 17:
					in.op = 'g'
					var v []byte
					v, err = cl.Get(octx, k)
					if errors.Is(err, client.ErrNotFound) {
						err = nil
						mu.Lock()
						if at, ok := written[k]; ok && at < call {
							vanished.Add(1)
						}
						mu.Unlock()
					} else if err == nil {
						out = ttlOutput{found: true, val: string(v)}
					}
				case r < 19:
					in.op, in.val = 't', fmt.Sprintf("w%d-%d", w, n)
					err = cl.PutTTL(octx, k, []byte(in.val), time.Duration(20+rng.IntN(300))*time.Millisecond)
				default:
					in.op, in.val = 'p', fmt.Sprintf("w%d-%d", w, n)
					err = cl.Put(octx, k, []byte(in.val))
				}
				ocancel()
				ret := time.Now().UnixNano()
				if err != nil {
					if in.op == 'g' {
						continue // a read that failed changed nothing
					}
					out.unknown, ret = true, math.MaxInt64 // it may apply at any later time
				} else if in.op != 'g' {
					mu.Lock()
					if _, ok := written[k]; !ok {
						written[k] = ret
					}
					mu.Unlock()
				}
				record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret})
			}
		})
	}
	// The dangerous hand-over is from a replica whose clock runs ahead to one whose clock lags:
	// values the first saw expire (and readers were told are gone) are live again by the
	// second's clock. So the fast replica (3) is made to lead, serves a while, and is stopped.
	newLeader := func(except uint64) uint64 {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if l := c.Leader(1); l != 0 && l != except {
				return l
			}
		}
		t.Fatal("no new leader")
		return 0
	}
	for range 3 {
		for l := c.Leader(1); l != 3; l = c.Leader(1) {
			if l == 0 {
				l = newLeader(0)
				continue
			}
			c.Stop(1, l)
			newLeader(l)
			c.Start(1, l)
		}
		time.Sleep(time.Second)
		c.Stop(1, 3)
		t.Logf("leader %d took over from the fast replica", newLeader(3))
		time.Sleep(500 * time.Millisecond)
		c.Start(1, 3)
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	res, info := porcupine.CheckOperationsVerbose(ttlModel.ToModel(), ops, 60*time.Second)
	t.Logf("%d operations, %d reads found a written key expired", len(ops), vanished.Load())
	if res != porcupine.Ok {
		path := t.TempDir() + "/history.html"
		if err := porcupine.VisualizePath(ttlModel.ToModel(), info, path); err == nil {
			t.Logf("history: %s", path)
		}
		t.Fatalf("history not linearizable under expiry: %v", res)
	}
	if vanished.Load() == 0 {
		t.Fatal("no read found a key expired: the test did not exercise expiry")
	}
}
