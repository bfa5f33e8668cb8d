package group

import (
	"context"
	"errors"
	"math/bits"
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

// Wait is a started write, returned by Start. It is a plain value (no closure, no pointer to a
// fresh record) so that a pipelined write allocates nothing for it. Its zero value is not a
// write. Result must be called exactly once.
type Wait struct {
	p  pending
	op WriteOp
}

// Result blocks until the write applied on this replica, or ctx ends, and returns its outcome.
func (w Wait) Result(ctx context.Context) (WriteResult, error) {
	res, err := w.p.wait(ctx)
	if err != nil {
		return WriteResult{}, err
	}
	if w.op == WriteSet {
		return WriteResult{Set: SetResult{Done: res.ok, Old: res.val, HadOld: res.n == 1}}, nil
	}
	return WriteResult{N: res.n}, nil
}

var errBadWrite = errors.New("group: malformed write")

// Start proposes a write and returns at once; the returned Wait's Result blocks until it
// applied. Writes started by one goroutine apply in the order they were started, so a
// connection can propose a pipeline of writes back to back and answer them in order, paying
// one commit latency for the batch instead of one per command.
func (g *Group) Start(ctx context.Context, w Write) (Wait, error) {
	c := command{args: w.Args, delta: w.Delta}
	switch w.Op {
	case WriteSet:
		c = setCommand(w.Set)
	case WriteDel:
		c.op = opDel
	case WriteAppend:
		c.op = opAppend
	case WriteIncrBy:
		c.op = opIncrBy
	case WriteMSet:
		c.op = opMSet
	default:
		return Wait{}, errBadWrite
	}
	p, err := g.start(ctx, &c)
	if err != nil {
		return Wait{}, err
	}
	return Wait{p: p, op: w.Op}, nil
}

// encodedLen is the exact length of c.encode's output. The encoded command is the raft entry,
// which raft keeps in memory until the log is compacted: allocating it at its exact length
// rather than at size()'s bound puts a SET of a 16-byte key and 32-byte value in an 80-byte
// allocation instead of a 128-byte one.
func (c *command) encodedLen() int {
	n := 1 + 8 + uvarintLen(c.clientID) + uvarintLen(c.seq) + uvarintLen(c.acked) + 1 +
		varintLen(c.delta) + uvarintLen(uint64(len(c.args)))
	if c.flags&cmdAt != 0 {
		n += uvarintLen(uint64(c.at))
	}
	for _, a := range c.args {
		n += uvarintLen(uint64(len(a))) + len(a)
	}
	return n
}

// uvarintLen is the length of binary.AppendUvarint's encoding of x.
func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// varintLen is the length of binary.AppendVarint's encoding of x (zig-zag, then uvarint).
func varintLen(x int64) int {
	ux := uint64(x) << 1
	if x < 0 {
		ux = ^ux
	}
	return uvarintLen(ux)
}

// setCommand is the command of a SET.
func setCommand(a SetArgs) command {
	return command{op: opSet, args: [][]byte{a.Key, a.Val}, flags: setFlags(a), delta: a.ExpireAt}
}

func setFlags(a SetArgs) byte {
	var f byte
	if a.KeepTTL {
		f |= setKeepTTL
	}
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
