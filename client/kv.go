package client

import (
	"context"
	"fmt"
	"strconv"

	"github.com/shoal-kv/shoal/internal/resp"
)

// Command names, shared so that building a command allocates only its arguments.
var (
	cmdGet    = []byte("GET")
	cmdSet    = []byte("SET")
	cmdDel    = []byte("DEL")
	cmdExists = []byte("EXISTS")
	cmdAppend = []byte("APPEND")
	cmdIncrBy = []byte("INCRBY")
	cmdCAS    = []byte("SHOAL.CAS")
	optNX     = []byte("NX")
	optGet    = []byte("GET")
	optValue  = []byte("VALUE")
)

// unexpected reports a reply of the wrong type for the command.
func unexpected(cmd, key string, v resp.Value) error {
	return fmt.Errorf("shoal: %s %q: unexpected reply type %q", cmd, key, v.Type)
}

// Get returns the value of key, or an error wrapping [ErrNotFound] if key does not exist. An
// existing key holding the empty value returns an empty, non-nil slice.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := c.exec(ctx, newOp(key, false, cmdGet, []byte(key)))
	if err != nil {
		return nil, err
	}
	return bulkValue("GET", key, v)
}

// bulkValue converts a bulk reply: null is ErrNotFound, a value is never nil.
func bulkValue(cmd, key string, v resp.Value) ([]byte, error) {
	if v.Type != '$' {
		return nil, unexpected(cmd, key, v)
	}
	if v.Null {
		return nil, fmt.Errorf("shoal: %s %q: %w", cmd, key, ErrNotFound)
	}
	if v.Str == nil {
		return []byte{}, nil
	}
	return v.Str, nil
}

// Put sets key to val, creating or replacing it.
func (c *Client) Put(ctx context.Context, key string, val []byte) error {
	v, err := c.exec(ctx, newOp(key, true, cmdSet, []byte(key), val))
	if err != nil {
		return err
	}
	if v.Type != '+' {
		return unexpected("SET", key, v)
	}
	return nil
}

// Swap sets key to val and returns the value it replaced; existed is false (and prev nil) when
// the key did not exist before.
func (c *Client) Swap(ctx context.Context, key string, val []byte) (prev []byte, existed bool, err error) {
	v, err := c.exec(ctx, newOp(key, true, cmdSet, []byte(key), val, optGet))
	if err != nil {
		return nil, false, err
	}
	if v.Type != '$' {
		return nil, false, unexpected("SET GET", key, v)
	}
	if v.Null {
		return nil, false, nil
	}
	if v.Str == nil {
		return []byte{}, true, nil
	}
	return v.Str, true, nil
}

// PutIfAbsent sets key to val only if key does not exist, and reports whether it did so.
func (c *Client) PutIfAbsent(ctx context.Context, key string, val []byte) (stored bool, err error) {
	v, err := c.exec(ctx, newOp(key, true, cmdSet, []byte(key), val, optNX))
	if err != nil {
		return false, err
	}
	switch {
	case v.Type == '+':
		return true, nil
	case v.Type == '$' && v.Null:
		return false, nil
	}
	return false, unexpected("SET NX", key, v)
}

// Delete removes key and reports whether it existed.
func (c *Client) Delete(ctx context.Context, key string) (existed bool, err error) {
	n, err := c.intCmd(ctx, newOp(key, true, cmdDel, []byte(key)))
	return n > 0, err
}

// Exists reports whether key exists.
func (c *Client) Exists(ctx context.Context, key string) (bool, error) {
	n, err := c.intCmd(ctx, newOp(key, false, cmdExists, []byte(key)))
	return n > 0, err
}

// Append appends suffix to the value of key (creating it, as the empty value, if missing) and
// returns the new length of the value.
func (c *Client) Append(ctx context.Context, key string, suffix []byte) (newLen int64, err error) {
	return c.intCmd(ctx, newOp(key, true, cmdAppend, []byte(key), suffix))
}

// Incr adds delta to the integer stored at key (a missing key counts as 0) and returns the new
// value. A value that is not a decimal integer, or an overflow, returns a *ServerError.
func (c *Client) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	return c.intCmd(ctx, newOp(key, true, cmdIncrBy, []byte(key), strconv.AppendInt(nil, delta, 10)))
}

// CompareAndSwap sets key to new if and only if key exists and holds old, and reports whether
// it did so; like [Client.Put], it leaves the key without expiry. To create a key only if it is
// absent, use [Client.PutIfAbsent].
//
// It is sent as "SHOAL.CAS key VALUE old new" (reply :1 swapped, :0 not), inside the write's
// session; a server that predates the command answers an error for which [IsUnknownCommand] is
// true.
func (c *Client) CompareAndSwap(ctx context.Context, key string, old, new []byte) (swapped bool, err error) {
	n, err := c.intCmd(ctx, newOp(key, true, cmdCAS, []byte(key), optValue, old, new))
	return n == 1, err
}

func (c *Client) intCmd(ctx context.Context, o op) (int64, error) {
	v, err := c.exec(ctx, o)
	if err != nil {
		return 0, err
	}
	if v.Type != ':' {
		return 0, unexpected(string(o.args[0]), o.key, v)
	}
	return v.Int, nil
}
