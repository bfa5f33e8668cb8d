package client

import (
	"context"

	"github.com/shoal-kv/shoal/internal/resp"
)

// Item is the result of one key of [Client.GetMany].
type Item struct {
	Key string
	// Value is the key's value when Found; never nil then, even for the empty value.
	Value []byte
	// Found is false when the key does not exist (or its read failed: see the BatchError).
	Found bool
}

// KV is one key and value for [Client.PutMany].
type KV struct {
	Key   string
	Value []byte
}

// batchErr returns nil if every entry of errs is nil, else a *BatchError.
func batchErr(errs []error) error {
	n := 0
	for _, e := range errs {
		if e != nil {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return &BatchError{Errs: errs, Failed: n}
}

// GetMany reads keys, grouping them by owning node and sending each node's commands in
// pipelined batches, all nodes in parallel. items[i] is the result for keys[i]. A key that
// could not be read has Found false and its error in the returned *BatchError; the other keys'
// results are valid.
func (c *Client) GetMany(ctx context.Context, keys []string) (items []Item, err error) {
	ops := make([]op, len(keys))
	for i, k := range keys {
		ops[i] = newOp(k, false, cmdGet, []byte(k))
	}
	vals := make([]resp.Value, len(ops))
	errs := make([]error, len(ops))
	c.run(ctx, ops, vals, errs)
	items = make([]Item, len(keys))
	for i, k := range keys {
		items[i].Key = k
		if errs[i] != nil {
			continue
		}
		v, err := bulkValue("GET", k, vals[i])
		switch {
		case err == nil:
			items[i].Value, items[i].Found = v, true
		case vals[i].Type != '$':
			errs[i] = err
		}
	}
	return items, batchErr(errs)
}

// PutMany writes every pair (each one a SET, at most once when sessions are on), grouped by
// owning node into pipelined batches sent in parallel. It returns nil when every pair was
// written, else a *BatchError whose Errs are indexed like kvs.
func (c *Client) PutMany(ctx context.Context, kvs []KV) error {
	ops := make([]op, len(kvs))
	for i, kv := range kvs {
		ops[i] = newOp(kv.Key, true, cmdSet, []byte(kv.Key), kv.Value)
	}
	vals := make([]resp.Value, len(ops))
	errs := make([]error, len(ops))
	c.run(ctx, ops, vals, errs)
	for i := range vals {
		if errs[i] == nil && vals[i].Type != '+' {
			errs[i] = unexpected("SET", kvs[i].Key, vals[i])
		}
	}
	return batchErr(errs)
}

// DeleteMany removes keys, grouped by owning node into pipelined batches sent in parallel, and
// returns how many existed. Failed keys are reported in a *BatchError indexed like keys.
func (c *Client) DeleteMany(ctx context.Context, keys []string) (deleted int, err error) {
	ops := make([]op, len(keys))
	for i, k := range keys {
		ops[i] = newOp(k, true, cmdDel, []byte(k))
	}
	vals := make([]resp.Value, len(ops))
	errs := make([]error, len(ops))
	c.run(ctx, ops, vals, errs)
	for i := range vals {
		if errs[i] != nil {
			continue
		}
		if vals[i].Type != ':' {
			errs[i] = unexpected("DEL", keys[i], vals[i])
			continue
		}
		deleted += int(vals[i].Int)
	}
	return deleted, batchErr(errs)
}
