package group

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// op is the kind of a replicated write.
type op byte

const (
	opSet op = iota + 1
	opDel
	opAppend
	opIncrBy
	opMSet
	opCAS
	// Cluster-management ops, from opConfig to opCleaned (see Group.applyAdmin).
	opConfig
	opInstall
	opDrop
	opCleaned
)

// Data ops added since: numbered past the admin ops, because op numbers are in the log.
const (
	opExpire op = 32 + iota // EXPIRE and its kin, PERSIST: flags expNX...expPersist, delta the time
	opReap                  // deletes those of its keys that have expired by the command's time
)

// needsTime reports whether applying c depends on the time: whether it looks at a value that may
// have expired, or gives one an expiry. A plain SET and MSET do neither, and the hottest writes
// then log no time (6 bytes each).
func (c *command) needsTime() bool {
	switch {
	case c.op.admin(), c.op == opMSet:
		return false
	case c.op == opSet:
		return c.flags&(setNX|setXX|setGet|setKeepTTL) != 0 || c.delta != 0
	}
	return true
}

// admin reports whether o is a cluster-management op.
func (o op) admin() bool { return o >= opConfig && o <= opCleaned }

const (
	setNX = 1 << iota
	setXX
	setGet
	setKeepTTL // SET ... KEEPTTL; otherwise delta is the new expiry (0: none)
)

// Flags of opExpire.
const (
	expNX = 1 << iota
	expXX
	expGT
	expLT
	expPersist
	expGetValue // GETEX: the result carries the value
)

// cmdAt marks a command that carries its proposer's clock (at). Commands logged by versions
// before expiry lack it; they never meet a value that expires.
const cmdAt = 0x80

// delGet on an opDel of one key is GETDEL: the result carries the value deleted. (A binary that
// predates it ignores the flag and deletes alike, so replicas of mixed versions stay equal.)
const delGet = setGet

// command is one replicated write as it travels through the raft log. Encoding (little-endian):
//
//	op u8 | reqID u64 | clientID uvarint | seq uvarint | acked uvarint | flags u8 |
//	[at uvarint, if flags has cmdAt] | delta varint | nargs uvarint | (len uvarint, bytes)*
//
// reqID identifies the proposer's waiter (unique per process run); clientID/seq/acked form the
// at-most-once session (clientID 0 = none). at is the proposer's clock in Unix milliseconds:
// every replica judges whether a value has expired by it, never by its own clock, so that all
// reach the same state.
type command struct {
	op       op
	reqID    uint64
	clientID uint64
	seq      uint64
	acked    uint64
	flags    byte
	at       int64
	delta    int64
	args     [][]byte
}

func (c *command) encode(dst []byte) []byte {
	dst = append(dst, byte(c.op))
	dst = binary.LittleEndian.AppendUint64(dst, c.reqID)
	dst = binary.AppendUvarint(dst, c.clientID)
	dst = binary.AppendUvarint(dst, c.seq)
	dst = binary.AppendUvarint(dst, c.acked)
	dst = append(dst, c.flags)
	if c.flags&cmdAt != 0 {
		dst = binary.AppendUvarint(dst, uint64(c.at))
	}
	dst = binary.AppendVarint(dst, c.delta)
	dst = binary.AppendUvarint(dst, uint64(len(c.args)))
	for _, a := range c.args {
		dst = binary.AppendUvarint(dst, uint64(len(a)))
		dst = append(dst, a...)
	}
	return dst
}

var errCorrupt = errors.New("group: corrupt command")

// decode parses a command; args alias data.
func (c *command) decode(data []byte) error {
	if len(data) < 9 {
		return errCorrupt
	}
	c.op = op(data[0])
	c.reqID = binary.LittleEndian.Uint64(data[1:9])
	p := data[9:]
	var ok bool
	if c.clientID, p, ok = uvarint(p); !ok {
		return errCorrupt
	}
	if c.seq, p, ok = uvarint(p); !ok {
		return errCorrupt
	}
	if c.acked, p, ok = uvarint(p); !ok {
		return errCorrupt
	}
	if len(p) < 1 {
		return errCorrupt
	}
	c.flags = p[0]
	p = p[1:]
	c.at = 0
	if c.flags&cmdAt != 0 {
		var at uint64
		if at, p, ok = uvarint(p); !ok || at > maxInt64 {
			return errCorrupt
		}
		c.at = int64(at)
	}
	d, n := binary.Varint(p)
	if n <= 0 {
		return errCorrupt
	}
	c.delta, p = d, p[n:]
	var nargs uint64
	if nargs, p, ok = uvarint(p); !ok || nargs > uint64(len(p)) {
		return errCorrupt
	}
	c.args = c.args[:0]
	for range nargs {
		var l uint64
		if l, p, ok = uvarint(p); !ok || l > uint64(len(p)) {
			return errCorrupt
		}
		c.args = append(c.args, p[:l:l])
		p = p[l:]
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(p))
	}
	return nil
}

func uvarint(p []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(p)
	if n <= 0 {
		return 0, p, false
	}
	return v, p[n:], true
}

// result is the outcome of applying a command, delivered to the proposer's waiter and kept in the
// at-most-once record so a retried command gets the same answer.
type result struct {
	n   int64
	val []byte
	ok  bool
	err error
}
