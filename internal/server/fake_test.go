package server

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// fakeBackend is an in-memory Backend with the state-machine semantics of package group,
// expiry included: a value whose expiry is not after the fake's clock is gone.
// fail, when set, is returned by every call; block makes every call wait for its context.
type fakeBackend struct {
	mu    sync.Mutex
	m     map[string]fakeValue
	fail  error
	block bool
	// maxValue, when set, stands in for group.MaxValueLen in APPEND.
	maxValue int
	// now, when set, replaces time.Now; tests share it with the server (Config.Clock).
	now func() time.Time
}

// fakeValue is a stored value and its expiry in Unix milliseconds (0: never).
type fakeValue struct {
	val []byte
	at  int64
}

func newFakeBackend() *fakeBackend { return &fakeBackend{m: map[string]fakeValue{}} }

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

// nowMillis is the fake's clock; f.mu is held.
func (f *fakeBackend) nowMillis() int64 {
	if f.now != nil {
		return f.now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// live returns key's value if it exists and has not expired, deleting it if it has; f.mu is
// held.
func (f *fakeBackend) live(key []byte) (fakeValue, bool) {
	v, ok := f.m[string(key)]
	if ok && v.at != 0 && v.at <= f.nowMillis() {
		delete(f.m, string(key))
		return fakeValue{}, false
	}
	return v, ok
}

// store writes val expiring at at, or deletes key when at is not in the future, as group
// does; f.mu is held.
func (f *fakeBackend) store(key, val []byte, at int64) {
	if at != 0 && at <= f.nowMillis() {
		delete(f.m, string(key))
		return
	}
	f.m[string(key)] = fakeValue{val: bytes.Clone(val), at: at}
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
	v, ok := f.live(key)
	if !ok {
		return dst, false, nil
	}
	return append(dst, v.val...), true, nil
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
		v, ok := f.live(k)
		vals[i], found[i] = bytes.Clone(v.val), ok
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
		if _, ok := f.live(k); ok {
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
	old, had := f.live(a.Key)
	var r group.SetResult
	if a.Get {
		r.Old, r.HadOld = bytes.Clone(old.val), had
	}
	if (a.NX && had) || (a.XX && !had) {
		return r, nil
	}
	at := a.ExpireAt
	if a.KeepTTL {
		at = old.at
	}
	f.store(a.Key, a.Val, at)
	r.Done = true
	return r, nil
}

// Expire follows group.Group.Expire: conditions judged against the live key, a key without
// expiry counting as expiring never, and a time not in the future deleting the key.
func (f *fakeBackend) Expire(ctx context.Context, a group.ExpireArgs) (bool, error) {
	if err := f.check(ctx); err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.live(a.Key)
	if !ok {
		return false, nil
	}
	if a.Persist {
		if v.at == 0 {
			return false, nil
		}
		f.store(a.Key, v.val, 0)
		return true, nil
	}
	if a.NX && v.at != 0 || a.XX && v.at == 0 || a.GT && (v.at == 0 || a.At <= v.at) ||
		a.LT && v.at != 0 && a.At >= v.at {
		return false, nil
	}
	at := a.At
	if at <= 0 {
		at = -1 // as in group: 0 is as past as any time before 1970, not "no expiry"
	}
	f.store(a.Key, v.val, at)
	return true, nil
}

// GetEx is Expire without its conditions, answering the value.
func (f *fakeBackend) GetEx(ctx context.Context, a group.ExpireArgs) ([]byte, bool, error) {
	if err := f.check(ctx); err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.live(a.Key)
	if !ok {
		return nil, false, nil
	}
	at := a.At
	if a.Persist {
		at = 0
	} else if at <= 0 {
		at = -1
	}
	f.store(a.Key, v.val, at)
	return v.val, true, nil
}

func (f *fakeBackend) ExpireTime(ctx context.Context, key []byte) (int64, bool, error) {
	if err := f.check(ctx); err != nil {
		return 0, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.live(key)
	return v.at, ok, nil
}

func (f *fakeBackend) Del(ctx context.Context, keys [][]byte) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int64
	for _, k := range keys {
		if _, ok := f.live(k); ok {
			delete(f.m, string(k))
			n++
		}
	}
	return n, nil
}

// Append keeps the key's expiry, as Redis does.
func (f *fakeBackend) Append(ctx context.Context, key, val []byte) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, _ := f.live(key)
	v := append(bytes.Clone(old.val), val...)
	if len(v) > cmp.Or(f.maxValue, group.MaxValueLen) {
		return 0, group.ErrTooLarge
	}
	f.m[string(key)] = fakeValue{val: v, at: old.at}
	return int64(len(v)), nil
}

func (f *fakeBackend) GetDel(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := f.check(ctx); err != nil {
		return nil, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.live(key)
	delete(f.m, string(key))
	return v.val, ok, nil
}

// IncrBy keeps the key's expiry, as Redis does.
func (f *fakeBackend) IncrBy(ctx context.Context, key []byte, delta int64) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var cur int64
	old, had := f.live(key)
	if had {
		n, ok := parseInt(old.val)
		if !ok {
			return 0, group.ErrNotInteger
		}
		cur = n
	}
	if (delta > 0 && cur > (1<<63-1)-delta) || (delta < 0 && cur < (-1<<63)-delta) {
		return 0, group.ErrOverflow
	}
	cur += delta
	f.m[string(key)] = fakeValue{val: strconv.AppendInt(nil, cur, 10), at: old.at}
	return cur, nil
}

// MSet removes the keys' expiries, as Redis does.
func (f *fakeBackend) MSet(ctx context.Context, kvs [][]byte) error {
	if err := f.check(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i+1 < len(kvs); i += 2 {
		f.store(kvs[i], kvs[i+1], 0)
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
	f.reap()
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

// reap deletes every expired key; f.mu is held.
func (f *fakeBackend) reap() {
	for k := range f.m {
		f.live([]byte(k))
	}
}

func (f *fakeBackend) DBSize(ctx context.Context) (int64, error) {
	if err := f.check(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reap()
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
