package client

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

var (
	cmdPExpire = []byte("PEXPIRE")
	cmdPersist = []byte("PERSIST")
	cmdPTTL    = []byte("PTTL")
	optPX      = []byte("PX")
)

// ttlMillis converts a time to live for the wire: whole milliseconds, rounded up so that a
// positive duration never becomes 0 (which the server refuses).
func ttlMillis(ttl time.Duration) ([]byte, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("shoal: time to live %v: must be positive", ttl)
	}
	return strconv.AppendInt(nil, int64((ttl+time.Millisecond-1)/time.Millisecond), 10), nil
}

// PutTTL sets key to val, creating or replacing it, to expire after ttl. The server adds ttl to
// its own clock when the write arrives; a key expires for every reader once a replica's clock
// has passed that time and reaped it through the log, so expiry is linearizable like any write.
func (c *Client) PutTTL(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	ms, err := ttlMillis(ttl)
	if err != nil {
		return err
	}
	v, err := c.exec(ctx, newOp(key, true, cmdSet, []byte(key), val, optPX, ms))
	if err != nil {
		return err
	}
	if v.Type != '+' {
		return unexpected("SET PX", key, v)
	}
	return nil
}

// Expire makes key expire after ttl, replacing any expiry it had, and reports whether key
// exists.
func (c *Client) Expire(ctx context.Context, key string, ttl time.Duration) (existed bool, err error) {
	ms, err := ttlMillis(ttl)
	if err != nil {
		return false, err
	}
	n, err := c.intCmd(ctx, newOp(key, true, cmdPExpire, []byte(key), ms))
	return n == 1, err
}

// Persist removes key's expiry and reports whether it had one.
func (c *Client) Persist(ctx context.Context, key string) (removed bool, err error) {
	n, err := c.intCmd(ctx, newOp(key, true, cmdPersist, []byte(key)))
	return n == 1, err
}

// TTL returns the time key has left to live, with expires false when it never expires, or an
// error wrapping [ErrNotFound] if key does not exist.
func (c *Client) TTL(ctx context.Context, key string) (ttl time.Duration, expires bool, err error) {
	n, err := c.intCmd(ctx, newOp(key, false, cmdPTTL, []byte(key)))
	switch {
	case err != nil:
		return 0, false, err
	case n == -2:
		return 0, false, fmt.Errorf("shoal: PTTL %q: %w", key, ErrNotFound)
	case n == -1:
		return 0, false, nil
	case n < 0:
		return 0, false, fmt.Errorf("shoal: PTTL %q: unexpected reply %d", key, n)
	}
	return time.Duration(n) * time.Millisecond, true, nil
}
