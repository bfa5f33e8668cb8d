package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// Load describes one run of the Go generator.
type Load struct {
	ReadFrac  float64 // fraction of GETs: 0 all SET, 1 all GET, 0.9 a 90/10 mix
	Dist      Dist
	Keyspace  uint64 // keys drawn from [0, Keyspace)
	Prefix    string // 4-byte key prefix; "key:" when empty
	ValueSize int
	Pipeline  int // operations per batch (1: no pipelining)
	Clients   int // workers, one connection each
	Duration  time.Duration
	// Fill writes every key of [0, Keyspace) exactly once (SETs, worker w taking its share in
	// batches of Pipeline) and stops: for preloading and for the memory-per-pair load.
	Fill bool
	// Start is the first key a Fill writes: [Start, Keyspace).
	Start uint64
	Seed  uint64
}

// LoadResult is what one run of the Go generator measured.
type LoadResult struct {
	Ops     int64 // operations answered without error
	Failed  int64 // operations refused by the server
	Elapsed time.Duration
	Hist    *Histogram // per-operation latency; a batch's latency counts for each of its operations
}

// Throughput returns completed operations per second.
func (r LoadResult) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

type workerResult struct {
	ops, failed int64
	hist        Histogram
	err         error
}

// RunLoad connects l.Clients drivers, then starts every worker at once and runs them for
// l.Duration (or until the fill is done), returning the combined result. Connections are set
// up before the clock starts, so dial time is not measured. A worker whose connection breaks
// stops; RunLoad then returns its error with the partial result.
func RunLoad(ctx context.Context, newDriver DriverFactory, l Load) (LoadResult, error) {
	l.Clients = max(l.Clients, 1)
	l.Pipeline = max(l.Pipeline, 1)
	if l.Prefix == "" {
		l.Prefix = "key:"
	}
	drivers := make([]Driver, l.Clients)
	defer func() {
		for _, d := range drivers {
			if d != nil {
				_ = d.Close()
			}
		}
	}()
	for i := range drivers {
		d, err := newDriver(ctx, i)
		if err != nil {
			return LoadResult{}, fmt.Errorf("connect client %d: %w", i, err)
		}
		drivers[i] = d
	}
	var zipf *Zipf
	if l.Dist == Zipfian && !l.Fill {
		zipf = NewZipf(l.Keyspace, ZipfTheta)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]workerResult, l.Clients)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for w := range l.Clients {
		wg.Go(func() {
			<-start
			results[w] = runWorker(runCtx, drivers[w], l, w, zipf)
		})
	}
	t0 := time.Now()
	close(start)
	if !l.Fill {
		timer := time.AfterFunc(l.Duration, cancel)
		defer timer.Stop()
	}
	wg.Wait()
	res := LoadResult{Elapsed: time.Since(t0), Hist: new(Histogram)}
	var errs []error
	for i := range results {
		res.Ops += results[i].ops
		res.Failed += results[i].failed
		res.Hist.Merge(&results[i].hist)
		if results[i].err != nil {
			errs = append(errs, fmt.Errorf("client %d: %w", i, results[i].err))
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, errors.Join(errs...)
}

// runWorker is one client's loop. It stops when ctx is cancelled (the duration elapsed) and
// treats that as a clean end, not an error.
func runWorker(ctx context.Context, d Driver, l Load, w int, zipf *Zipf) workerResult {
	var res workerResult
	seed := l.Seed*1_000_003 + uint64(w) + 1
	keys := NewKeyChooser(l.Dist, l.Keyspace, zipf, seed)
	value := make([]byte, l.ValueSize)
	vr := rand.New(rand.NewPCG(seed, 42))
	for i := range value {
		value[i] = 'a' + byte(vr.IntN(26))
	}
	ops := make([]Op, l.Pipeline)
	keyBuf := make([]byte, l.Pipeline*KeyLen)
	next := l.Start + uint64(w) // Fill: worker w writes keys Start+w, Start+w+Clients, ...
	for ctx.Err() == nil {
		n := 0
		for n < l.Pipeline {
			var k uint64
			kind := OpSet
			if l.Fill {
				if next >= l.Keyspace {
					break
				}
				k = next
				next += uint64(l.Clients)
			} else {
				k = keys.Next()
				if keys.Float() < l.ReadFrac {
					kind = OpGet
				}
			}
			key := AppendKey(keyBuf[n*KeyLen:n*KeyLen], l.Prefix, k)
			ops[n] = Op{Kind: kind, Key: key, Value: value}
			n++
		}
		if n == 0 {
			break
		}
		t := time.Now()
		failed, err := d.Do(ctx, ops[:n])
		lat := time.Since(t)
		if err != nil {
			if ctx.Err() != nil {
				break // the duration ended mid-batch; that batch is not counted
			}
			res.err = err
			break
		}
		res.hist.RecordN(lat, n-failed)
		res.ops += int64(n - failed)
		res.failed += int64(failed)
	}
	return res
}
