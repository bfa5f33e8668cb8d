package group

import (
	"context"
	"errors"
)

// WriteOp names a write that can be started before the previous one finished.
type WriteOp uint8

// Writes that can be pipelined.
const (
	WriteSet WriteOp = iota + 1
	WriteDel
	WriteAppend
	WriteIncrBy
	WriteMSet
)

// Write describes one write for Start. Args are the command's keys (Del), key and value
// (Append), key (IncrBy) or alternating keys and values (MSet); Set uses SetArgs.
type Write struct {
	Op    WriteOp
	Set   SetArgs
	Args  [][]byte
	Delta int64
}

// WriteResult is a started write's outcome: N for Del, Append and IncrBy, Set for Set.
type WriteResult struct {
	N   int64
	Set SetResult
}

// Wait returns a started write's result.
type Wait func(ctx context.Context) (WriteResult, error)

var errBadWrite = errors.New("group: malformed write")

// Start proposes a write and returns at once; the returned Wait blocks until it applied. Writes
// started by one goroutine apply in the order they were started, so a connection can propose a
// pipeline of writes back to back and answer them in order, paying one commit latency for the
// batch instead of one per command.
func (g *Group) Start(ctx context.Context, w Write) (Wait, error) {
	c := command{args: w.Args, delta: w.Delta}
	switch w.Op {
	case WriteSet:
		c.op, c.args = opSet, [][]byte{w.Set.Key, w.Set.Val}
		c.flags = setFlags(w.Set)
	case WriteDel:
		c.op = opDel
	case WriteAppend:
		c.op = opAppend
	case WriteIncrBy:
		c.op = opIncrBy
	case WriteMSet:
		c.op = opMSet
	default:
		return nil, errBadWrite
	}
	p, err := g.start(ctx, &c)
	if err != nil {
		return nil, err
	}
	op := w.Op
	return func(ctx context.Context) (WriteResult, error) {
		res, err := p.wait(ctx)
		if err != nil {
			return WriteResult{}, err
		}
		if op == WriteSet {
			return WriteResult{Set: SetResult{Done: res.ok, Old: res.val, HadOld: res.n == 1}}, nil
		}
		return WriteResult{N: res.n}, nil
	}, nil
}

func setFlags(a SetArgs) byte {
	var f byte
	if a.NX {
		f |= setNX
	}
	if a.XX {
		f |= setXX
	}
	if a.Get {
		f |= setGet
	}
	return f
}
