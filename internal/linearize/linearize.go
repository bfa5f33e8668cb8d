// Package linearize records histories of key/value operations and checks them for
// linearizability with porcupine, one key at a time.
package linearize

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kind is an operation kind.
type Kind uint8

// Operation kinds of the key/value model.
const (
	Get Kind = iota
	Put
	Append
	Delete
)

func (k Kind) String() string {
	return [...]string{"get", "put", "append", "delete"}[k]
}

// Input is what a client asked.
type Input struct {
	Kind  Kind
	Key   string
	Value string
}

// Output is what it was told. Unknown marks an operation whose outcome the client never learned
// (timeout, connection lost): it may or may not have taken effect.
type Output struct {
	Value   string
	Found   bool
	Unknown bool
}

// PartitionBy splits a history by key (key returns an operation input's), in order of each key's
// first operation: keys are independent registers, and porcupine checks each alone.
func PartitionBy(h []porcupine.Operation, key func(input any) string) [][]porcupine.Operation {
	byKey := make(map[string][]porcupine.Operation)
	var order []string
	for _, op := range h {
		k := key(op.Input)
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	out := make([][]porcupine.Operation, 0, len(order))
	for _, k := range order {
		out = append(out, byKey[k])
	}
	return out
}

// Model is the porcupine model of a string key/value store; a missing key reads as not found.
func Model() porcupine.Model {
	type state struct {
		val   string
		found bool
	}
	return porcupine.Model{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			return PartitionBy(h, func(in any) string { return in.(Input).Key })
		},
		Init: func() any { return state{} },
		Step: func(s, in, out any) (bool, any) {
			st, i, o := s.(state), in.(Input), out.(Output)
			switch i.Kind {
			case Get:
				if o.Unknown {
					return true, st
				}
				return o.Found == st.found && o.Value == st.val, st
			case Put:
				return true, state{val: i.Value, found: true}
			case Append:
				return true, state{val: st.val + i.Value, found: true}
			case Delete:
				return true, state{}
			}
			return false, st
		},
		DescribeOperation: func(in, out any) string {
			i, o := in.(Input), out.(Output)
			switch {
			case o.Unknown:
				return fmt.Sprintf("%s(%q, %q) -> ?", i.Kind, i.Key, i.Value)
			case i.Kind == Get && !o.Found:
				return fmt.Sprintf("get(%q) -> nil", i.Key)
			case i.Kind == Get:
				return fmt.Sprintf("get(%q) -> %q", i.Key, o.Value)
			}
			return fmt.Sprintf("%s(%q, %q)", i.Kind, i.Key, i.Value)
		},
		DescribeState: func(s any) string {
			st := s.(state)
			if !st.found {
				return "nil"
			}
			return fmt.Sprintf("%q", st.val)
		},
	}
}

// Recorder collects a concurrent history. Safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

// NewRecorder starts a history.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now returns the recorder's monotonic timestamp, to pass as an operation's call time.
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add records a completed operation that was invoked at call. An operation with an unknown
// outcome is given an open-ended return time: it may take effect at any point after its call.
func (r *Recorder) Add(client int, call int64, in Input, out Output) {
	ret := r.Now()
	if out.Unknown {
		if in.Kind == Get {
			return // a read with no answer constrains nothing
		}
		ret = math.MaxInt64
	}
	r.mu.Lock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	r.mu.Unlock()
}

// Summary counts a history's operations.
type Summary struct {
	OK, Failed, Unknown int
}

// Operations returns a copy of the history.
func (r *Recorder) Operations() []porcupine.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Operation(nil), r.ops...)
}

// Check checks the history; when it is not linearizable and vizPath is not empty, it writes
// porcupine's HTML visualisation there.
func (r *Recorder) Check(timeout time.Duration, vizPath string) (porcupine.CheckResult, error) {
	m := Model()
	res, info := porcupine.CheckOperationsVerbose(m, r.Operations(), timeout)
	if res == porcupine.Illegal && vizPath != "" {
		if err := porcupine.VisualizePath(m, info, vizPath); err != nil {
			return res, fmt.Errorf("write visualisation: %w", err)
		}
	}
	return res, nil
}

// Store is what a random workload drives: three operations on string values. Get reports a
// missing key with found false.
type Store interface {
	Get(ctx context.Context, key string) (val string, found bool, err error)
	Put(ctx context.Context, key, val string) error
	Append(ctx context.Context, key, val string) error
}

// RunClient performs random GET (40%), PUT (20%) and APPEND (40%) operations on keys, each
// through one of stores picked at random, until stop closes or ctx ends, and records them in
// rec as client id. Every written value is unique, so a read identifies the writes it saw. An
// operation that fails is recorded with an unknown outcome, and the client pauses briefly.
func RunClient(ctx context.Context, rec *Recorder, id int, seed uint64, keys []string, stores []Store, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(id), seed))
	for n := 0; ctx.Err() == nil; n++ {
		select {
		case <-stop:
			return
		default:
		}
		st := stores[rng.IntN(len(stores))]
		key := keys[rng.IntN(len(keys))]
		val := fmt.Sprintf("%d.%d;", id, n)
		in := Input{Key: key, Value: val}
		call := rec.Now()
		var out Output
		var err error
		switch r := rng.IntN(10); {
		case r < 4:
			in.Kind, in.Value = Get, ""
			out.Value, out.Found, err = st.Get(ctx, key)
		case r < 6:
			in.Kind = Put
			err = st.Put(ctx, key, val)
		default:
			in.Kind = Append
			err = st.Append(ctx, key, val)
		}
		if err != nil {
			out = Output{Unknown: true}
			time.Sleep(20 * time.Millisecond)
		}
		rec.Add(id, call, in, out)
	}
}
