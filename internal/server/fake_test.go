package server

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// fakeBackend is an in-memory Backend with the state-machine semantics of package group.
// fail, when set, is returned by every call; block makes every call wait for its context.
type fakeBackend struct {
	mu    sync.Mutex
	m     map[string][]byte
	fail  error
	block bool
	// maxValue, when set, stands in for group.MaxValueLen in APPEND.
	maxValue int
}

func newFakeBackend() *fakeBackend { return &fakeBackend{m: map[string][]byte{}} }

func (f *fakeBackend) check(ctx context.Context) error {
	f.mu.Lock()
	fail, block := f.fail, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return fail
}

func (f *fakeBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	return f.GetAppend(ctx, key, nil)
}

// GetAppend makes the fake a ValueAppender, so the server tests exercise the reused buffer.
func (f *fakeBackend) GetAppend(ctx context.Context, key, dst []byte) ([]byte, bool, error) {
	if err := f.check(ctx); err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[string(key)]
	if !ok {
		return dst, false, nil
	}
	return append(dst, v...), true, nil
}

func (f *fakeBackend) MGet(ctx context.Context, keys [][]byte) ([][]byte, []bool, error) {
	if err := f.check(ctx); err != nil {
		return nil, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	vals := make([][]byte, len(keys))
	found := make([]bool, len(keys))
	for i, k := range keys {
		v, ok := f.m[string(k)]
		vals[i], found[i] = bytes.Clone(v), ok
	}
	return vals, found, nil
}

func (f *fakeBackend) Exists(ctx context.Context, keys [][]byte) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, k := range keys {
		if _, ok := f.m[string(k)]; ok {
			n++
		}
	}
	return n, nil
}

func (f *fakeBackend) Set(ctx context.Context, a group.SetArgs) (group.SetResult, error) {
	if err := f.check(ctx); err != nil {
		return group.SetResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, had := f.m[string(a.Key)]
	var r group.SetResult
	if a.Get {
		r.Old, r.HadOld = bytes.Clone(old), had
	}
	if (a.NX && had) || (a.XX && !had) {
		return r, nil
	}
	f.m[string(a.Key)] = bytes.Clone(a.Val)
	r.Done = true
	return r, nil
}

func (f *fakeBackend) Del(ctx context.Context, keys [][]byte) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, k := range keys {
		if _, ok := f.m[string(k)]; ok {
			delete(f.m, string(k))
			n++
		}
	}
	return n, nil
}

func (f *fakeBackend) Append(ctx context.Context, key, val []byte) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := append(bytes.Clone(f.m[string(key)]), val...)
	if len(v) > cmp.Or(f.maxValue, group.MaxValueLen) {
		return 0, group.ErrTooLarge
	}
	f.m[string(key)] = v
	return int64(len(v)), nil
}

func (f *fakeBackend) GetDel(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := f.check(ctx); err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[string(key)]
	delete(f.m, string(key))
	return v, ok, nil
}

func (f *fakeBackend) IncrBy(ctx context.Context, key []byte, delta int64) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var cur int64
	if v, ok := f.m[string(key)]; ok {
		n, ok := parseInt(v)
		if !ok {
			return 0, group.ErrNotInteger
		}
		cur = n
	}
	if (delta > 0 && cur > (1<<63-1)-delta) || (delta < 0 && cur < (-1<<63)-delta) {
		return 0, group.ErrOverflow
	}
	cur += delta
	f.m[string(key)] = strconv.AppendInt(nil, cur, 10)
	return cur, nil
}

func (f *fakeBackend) MSet(ctx context.Context, kvs [][]byte) error {
	if err := f.check(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i+1 < len(kvs); i += 2 {
		f.m[string(kvs[i])] = bytes.Clone(kvs[i+1])
	}
	return nil
}

// Scan walks keys in sorted order; the cursor is the index of the next key.
func (f *fakeBackend) Scan(ctx context.Context, cursor uint64, match []byte, count int) (uint64, [][]byte, error) {
	if err := f.check(ctx); err != nil {
		return 0, nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.m))
	for k := range f.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out [][]byte
	i := int(min(cursor, uint64(len(keys))))
	end := min(i+count, len(keys))
	for ; i < end; i++ {
		if match == nil || globMatch(string(match), keys[i], false) {
			out = append(out, []byte(keys[i]))
		}
	}
	if end >= len(keys) {
		return 0, out, nil
	}
	return uint64(end), out, nil
}

func (f *fakeBackend) DBSize(ctx context.Context) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.m)), nil
}

func (f *fakeBackend) Info(section string) string {
	switch section {
	case "raft":
		return "raft_term:3\nraft_leader:1\n"
	case "replication":
		return "role:master\r\nconnected_slaves:2"
	}
	return ""
}

// fakeTopology presents one shard owning every slot, led by this node; addr is set once the
// server listens.
type fakeTopology struct {
	mu   sync.Mutex
	view ClusterView
}

const (
	testID1 = "1111111111111111111111111111111111111111"
	testID2 = "2222222222222222222222222222222222222222"
	testID3 = "3333333333333333333333333333333333333333"
)

func (t *fakeTopology) setAddr(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.view = ClusterView{Epoch: 7, Shards: []ShardView{{
		Ranges: []keyspace.Range{keyspace.All()},
		Nodes: []NodeView{
			{ID: testID1, Addr: addr, Leader: true, Healthy: true, Myself: true},
		},
	}}}
}

func (t *fakeTopology) set(v ClusterView) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.view = v
}

func (t *fakeTopology) View() ClusterView {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.view
}
