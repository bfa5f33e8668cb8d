package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/client"
	"github.com/shoal-kv/shoal/internal/linearize"
)

// write is one SET, APPEND or DEL as the workload issued it, kept for the read-back check.
type write struct {
	kind       linearize.Kind
	key, value string
	call, ret  int64 // recorder timestamps; ret is math.MaxInt64 when the outcome is unknown
	acked      bool
}

// workload runs the clients and records their history.
type workload struct {
	cfg   *Config
	seeds []string
	rec   *linearize.Recorder
	start time.Time

	ids   atomic.Int64  // porcupine client ids: a client that lost track of a write gets a new one
	token atomic.Uint64 // makes every written value unique

	mu                  sync.Mutex
	ok, failed, unknown int
	writes              []write
	keys                []string // every key used so far, in order of first use
}

func newWorkload(cfg *Config, seeds []string) *workload {
	return &workload{cfg: cfg, seeds: seeds, rec: linearize.NewRecorder(), start: time.Now()}
}

// currentKeys returns the keys of the current key epoch. The clients move to fresh keys every
// cfg.KeyEpoch: linearizability is compositional, so checking each key on its own is exact, and
// bounded per-key histories keep porcupine's search (which grows fast with history length and
// concurrency) tractable however long the run.
func (w *workload) currentKeys() []string {
	epoch := int(time.Since(w.start) / w.cfg.KeyEpoch)
	keys := make([]string, w.cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("check:%d:e%d:k%d", w.cfg.Seed%1000000, epoch, i)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Contains(w.keys, keys[0]) {
		w.keys = append(w.keys, keys...)
	}
	return keys
}

// usedKeys returns every key used so far.
func (w *workload) usedKeys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.keys)
}

// run runs cfg.Clients clients until stop closes (each finishes the operation it is in) or ctx
// ends.
func (w *workload) run(ctx context.Context, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for i := range w.cfg.Clients {
		wg.Go(func() { w.client(ctx, stop, i) })
	}
	wg.Wait()
}

// connect makes a client with its own session, retrying while the cluster is unreachable.
func (w *workload) connect(ctx context.Context, stop <-chan struct{}) *client.Client {
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cl, err := client.New(cctx, client.Options{
			Seeds: w.seeds, Sessions: client.SessionsRequired,
			// Retries are bounded by each operation's context only, so an operation outlives a
			// failover and is rarely left with an unknown outcome.
			MaxRetries: -1,
			// A paused node holds its connections open without answering; give up on it sooner
			// than the default so the retry goes to another replica.
			ReadTimeout: 6 * time.Second,
		})
		cancel()
		if err == nil {
			return cl
		}
		w.cfg.Logger.Debug("client: connect", "err", err)
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// client is one client's loop: random operations on random keys, each recorded.
func (w *workload) client(ctx context.Context, stop <-chan struct{}, idx int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(100+idx)))
	var cl *client.Client
	var id int
	defer func() {
		if cl != nil {
			_ = cl.Close()
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		if cl == nil {
			if cl = w.connect(ctx, stop); cl == nil {
				return
			}
			id = int(w.ids.Add(1))
		}
		keys := w.currentKeys()
		key := keys[rng.IntN(len(keys))]
		in := linearize.Input{Key: key}
		var out linearize.Output
		var err error
		opCtx, cancel := context.WithTimeout(ctx, w.cfg.OpTimeout)
		call := w.rec.Now()
		switch r := rng.IntN(100); {
		case r < 35:
			in.Kind = linearize.Get
			var v []byte
			v, err = cl.Get(opCtx, key)
			switch {
			case errors.Is(err, client.ErrNotFound):
				err = nil
			case err == nil:
				out = linearize.Output{Value: string(v), Found: true}
			}
		case r < 55:
			in.Kind, in.Value = linearize.Put, fmt.Sprintf("s%d.%d;", idx, w.token.Add(1))
			err = cl.Put(opCtx, key, []byte(in.Value))
		case r < 90:
			in.Kind, in.Value = linearize.Append, fmt.Sprintf("a%d.%d;", idx, w.token.Add(1))
			_, err = cl.Append(opCtx, key, []byte(in.Value))
		default:
			in.Kind = linearize.Delete
			_, err = cl.Delete(opCtx, key)
		}
		ret := w.rec.Now()
		cancel()
		if err != nil {
			w.cfg.Logger.Debug("client: operation failed", "client", idx, "op", in.Kind, "key", key, "err", err)
			w.mu.Lock()
			if in.Kind == linearize.Get {
				w.failed++ // a read has no effect: leave it out of the history
				w.mu.Unlock()
				continue
			}
			w.unknown++
			w.writes = append(w.writes, write{kind: in.Kind, key: key, value: in.Value, call: call, ret: math.MaxInt64})
			w.mu.Unlock()
			w.rec.Add(id, call, in, linearize.Output{Unknown: true})
			// The write may still take effect at any later time: continue as a new client with a
			// new session, as a linearizability checker requires of a client with an operation
			// pending forever.
			_ = cl.Close()
			cl = nil
			continue
		}
		w.mu.Lock()
		w.ok++
		if in.Kind != linearize.Get {
			w.writes = append(w.writes, write{kind: in.Kind, key: key, value: in.Value, call: call, ret: ret, acked: true})
		}
		w.mu.Unlock()
		w.rec.Add(id, call, in, out)
	}
}

// counts returns the operations completed, failed and with unknown outcome.
func (w *workload) counts() (ok, failed, unknown int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok, w.failed, w.unknown
}

// finalValue is a key's value read after the run.
type finalValue struct {
	val   string
	found bool
}

// readBack reads every key through a fresh client once the cluster has settled, and records the
// reads in the history too, so porcupine checks the final state against every acknowledged write.
func (w *workload) readBack(ctx context.Context) (map[string]finalValue, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cl := w.connect(ctx, nil)
	if cl == nil {
		return nil, fmt.Errorf("check: connect for the final read: %w", ctx.Err())
	}
	defer cl.Close()
	id := int(w.ids.Add(1))
	keys := w.usedKeys()
	out := make(map[string]finalValue, len(keys))
	for _, key := range keys {
		var lastErr error
		for attempt := 0; ; attempt++ {
			call := w.rec.Now()
			v, err := cl.Get(ctx, key)
			if err == nil || errors.Is(err, client.ErrNotFound) {
				fv := finalValue{val: string(v), found: err == nil}
				w.rec.Add(id, call, linearize.Input{Kind: linearize.Get, Key: key}, linearize.Output{Value: fv.val, Found: fv.found})
				out[key] = fv
				break
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, fmt.Errorf("check: final read of %q: %w", key, lastErr)
			}
			waitCtx(ctx, time.Second)
		}
	}
	return out, nil
}

// lost counts the acknowledged appends that the final values should hold but do not. Written
// values are unique tokens ending in ';', so a final value names the writes it holds: if it
// starts with a SET's token, that SET was the last overwrite, and every append invoked after it
// was acknowledged must follow; otherwise the last overwrite was a DEL (or there was none), and
// every acknowledged append invoked after every DEL completed must be there. An overwrite whose
// outcome is unknown may have taken effect at any time, so it excuses every append.
func (w *workload) lost(final map[string]finalValue) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	var detail []string
	for _, key := range w.keys {
		fv := final[key]
		present := map[string]bool{}
		var first string
		for tok := range strings.SplitAfterSeq(fv.val, ";") {
			if tok == "" {
				continue
			}
			if first == "" {
				first = tok
			}
			present[tok] = true
		}
		var after int64 // appends invoked after this must be present
		if strings.HasPrefix(first, "s") {
			after = math.MaxInt64 // a value no SET wrote: porcupine reports it
			for _, x := range w.writes {
				if x.key == key && x.kind == linearize.Put && x.value == first {
					after = x.ret
				}
			}
		} else {
			for _, x := range w.writes {
				if x.key == key && x.kind == linearize.Delete {
					after = max(after, x.ret)
				}
			}
		}
		for _, a := range w.writes {
			if a.key == key && a.kind == linearize.Append && a.acked && a.call > after && !present[a.value] {
				n++
				if len(detail) < 10 {
					detail = append(detail, fmt.Sprintf("%s: acknowledged append %q missing from final value %q", key, a.value, fv.val))
				}
			}
		}
	}
	return n, detail
}
