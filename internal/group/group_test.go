package group

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/raftnode"
	"github.com/shoal-kv/shoal/internal/table"
)

// loopback is a Replicator that commits every proposal at once, in order, on the local group and
// on any followers, standing in for raft to test the state machine alone. Optionally it holds
// the first proposal until hold is closed (closing entered once it does) and answers proposals
// with fail's error.
type loopback struct {
	mu        sync.Mutex
	index     uint64
	groups    []*Group
	proposals [][]byte
	times     []time.Time // when each proposal reached the loopback

	hold, entered chan struct{}
	fail          func(call int) error // error for the call-th proposal (from 0), or nil
	calls         int
}

func (l *loopback) Propose(_ context.Context, data []byte) error {
	l.mu.Lock()
	call := l.calls
	l.calls++
	l.mu.Unlock()
	if call == 0 && l.hold != nil {
		close(l.entered)
		<-l.hold
	}
	if l.fail != nil {
		if err := l.fail(call); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.index++
	l.proposals = append(l.proposals, append([]byte(nil), data...))
	l.times = append(l.times, time.Now())
	for _, g := range l.groups {
		g.Apply(l.index, data)
	}
	return nil
}

// entryCount is how many proposals were committed.
func (l *loopback) entryCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.proposals)
}

func (l *loopback) ReadBarrier(context.Context) error { return nil }
func (l *loopback) Status() raftnode.Status           { return raftnode.Status{ID: 1, Leader: 1} }

func newGroups(n int) (*loopback, []*Group) {
	l := &loopback{}
	for range n {
		g := New(Config{GroupID: 1, Table: table.New()})
		g.Bind(l)
		l.groups = append(l.groups, g)
	}
	return l, l.groups
}

func TestCommandsLikeRedis(t *testing.T) {
	_, gs := newGroups(1)
	g, ctx := gs[0], context.Background()
	k := []byte("k")
	if r, err := g.Set(ctx, SetArgs{Key: k, Val: []byte("1"), XX: true}); err != nil || r.Done {
		t.Fatalf("SET XX on missing key = %+v, %v", r, err)
	}
	if r, _ := g.Set(ctx, SetArgs{Key: k, Val: []byte("1"), NX: true, Get: true}); !r.Done || r.HadOld {
		t.Fatalf("SET NX GET on missing key = %+v", r)
	}
	if r, _ := g.Set(ctx, SetArgs{Key: k, Val: []byte("2"), NX: true}); r.Done {
		t.Fatalf("SET NX on present key wrote")
	}
	if r, _ := g.Set(ctx, SetArgs{Key: k, Val: []byte("5"), Get: true}); !r.Done || !r.HadOld || string(r.Old) != "1" {
		t.Fatalf("SET GET = %+v", r)
	}
	if n, err := g.IncrBy(ctx, k, 10); err != nil || n != 15 {
		t.Fatalf("INCRBY = %d, %v", n, err)
	}
	if n, err := g.Append(ctx, k, []byte("x")); err != nil || n != 3 {
		t.Fatalf("APPEND = %d, %v", n, err)
	}
	if _, err := g.IncrBy(ctx, k, 1); !errors.Is(err, ErrNotInteger) {
		t.Fatalf("INCR on non-integer: %v", err)
	}
	if _, err := g.Set(ctx, SetArgs{Key: []byte("big"), Val: []byte("9223372036854775807")}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.IncrBy(ctx, []byte("big"), 1); !errors.Is(err, ErrOverflow) {
		t.Fatalf("INCR overflow: %v", err)
	}
	if err := g.MSet(ctx, [][]byte{[]byte("a"), []byte("1"), []byte("b"), []byte("")}); err != nil {
		t.Fatal(err)
	}
	vals, found, _ := g.MGet(ctx, [][]byte{[]byte("a"), []byte("b"), []byte("missing")})
	if string(vals[0]) != "1" || !found[1] || len(vals[1]) != 0 || found[2] {
		t.Fatalf("MGET = %q %v", vals, found)
	}
	if n, _ := g.Exists(ctx, [][]byte{[]byte("a"), []byte("a"), []byte("missing")}); n != 2 {
		t.Fatalf("EXISTS counts repeats: got %d", n)
	}
	if n, _ := g.Del(ctx, [][]byte{[]byte("a"), []byte("missing")}); n != 1 {
		t.Fatalf("DEL = %d", n)
	}
	if n, _ := g.DBSize(ctx); n != 3 {
		t.Fatalf("DBSIZE = %d", n)
	}
}

func TestParseIntLikeRedis(t *testing.T) {
	good := map[string]int64{"0": 0, "-1": -1, "42": 42, "9223372036854775807": 1<<63 - 1, "-9223372036854775808": -1 << 63}
	for s, want := range good {
		if v, ok := ParseInt([]byte(s)); !ok || v != want {
			t.Errorf("ParseInt(%q) = %d, %v", s, v, ok)
		}
	}
	for _, s := range []string{"", "+1", "01", "-0", " 1", "1 ", "1a", "9223372036854775808", "-9223372036854775809", "18446744073709551619", "99999999999999999999"} {
		if _, ok := ParseInt([]byte(s)); ok {
			t.Errorf("ParseInt(%q) accepted", s)
		}
	}
}

// TestAtMostOnce replays a session write (as a client retry after a lost reply would) and checks
// it executes once and returns the original answer.
func TestAtMostOnce(t *testing.T) {
	l, gs := newGroups(2)
	g := gs[0]
	sctx := func(seq, acked uint64) context.Context {
		return WithSession(context.Background(), Session{ClientID: 7, Seq: seq, Acked: acked})
	}
	if n, err := g.Append(sctx(1, 0), []byte("k"), []byte("ab")); err != nil || n != 2 {
		t.Fatalf("first append = %d, %v", n, err)
	}
	// The retry reaches the log a second time.
	for range 3 {
		if n, err := g.Append(sctx(1, 0), []byte("k"), []byte("ab")); err != nil || n != 2 {
			t.Fatalf("retried append = %d, %v (want the original reply 2)", n, err)
		}
	}
	if n, _ := g.Append(sctx(2, 1), []byte("k"), []byte("cd")); n != 4 {
		t.Fatalf("second append = %d", n)
	}
	// Seq 1 was acknowledged by seq 2's request: a late copy of it is refused, not re-executed.
	if _, err := g.Append(sctx(1, 1), []byte("k"), []byte("ab")); !errors.Is(err, ErrStale) {
		t.Fatalf("stale retry: %v", err)
	}
	for i, gr := range gs {
		v, _, _ := gr.Get(context.Background(), []byte("k"))
		if string(v) != "abcd" {
			t.Fatalf("replica %d: k = %q, want abcd", i, v)
		}
	}
	_ = l
}

// TestSnapshotRestore checks a restored replica has the same pairs and at-most-once records.
func TestSnapshotRestore(t *testing.T) {
	_, gs := newGroups(1)
	g := gs[0]
	ctx := WithSession(context.Background(), Session{ClientID: 9, Seq: 1})
	if _, err := g.Append(ctx, []byte("s"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if _, err := g.Set(context.Background(), SetArgs{Key: fmt.Appendf(nil, "k%d", i), Val: bytes.Repeat([]byte{'v'}, i%50)}); err != nil {
			t.Fatal(err)
		}
	}
	data, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	l2, gs2 := newGroups(1)
	r := gs2[0]
	if err := r.Restore(data); err != nil {
		t.Fatal(err)
	}
	if r.Table().Len() != g.Table().Len() {
		t.Fatalf("restored %d pairs, want %d", r.Table().Len(), g.Table().Len())
	}
	for i := range 1000 {
		v, ok, _ := r.Get(context.Background(), fmt.Appendf(nil, "k%d", i))
		if !ok || len(v) != i%50 {
			t.Fatalf("k%d restored as %q, %v", i, v, ok)
		}
	}
	// The dedup record survived: the retried append is not applied again.
	if n, err := r.Append(ctx, []byte("s"), []byte("x")); err != nil || n != 1 {
		t.Fatalf("retry after restore = %d, %v", n, err)
	}
	if err := r.Restore([]byte("garbage")); err == nil {
		t.Fatal("restore accepted garbage")
	}
	_ = l2
}

func TestCommandCodecRoundTrip(t *testing.T) {
	c := command{op: opMSet, reqID: 1 << 60, clientID: 3, seq: 4, acked: 2, flags: setNX, delta: -5,
		args: [][]byte{[]byte("a"), {}, []byte("ccc")}}
	var d command
	if err := d.decode(c.encode(nil)); err != nil {
		t.Fatal(err)
	}
	if d.op != c.op || d.reqID != c.reqID || d.clientID != 3 || d.seq != 4 || d.acked != 2 || d.flags != setNX || d.delta != -5 || len(d.args) != 3 || string(d.args[2]) != "ccc" {
		t.Fatalf("round trip = %+v", d)
	}
	enc := c.encode(nil)
	for i := range len(enc) - 1 {
		if err := d.decode(enc[:i]); err == nil {
			t.Fatalf("truncated command of %d bytes decoded", i)
		}
	}
}

// TestAtMostOnceBeyondPendingLimit: a client with more unacknowledged writes to one slot than
// the records kept (a pipelined bulk append to keys sharing a hash tag) has the lowest ones
// refused as stale when retried, never executed twice; the newest still answer their originals.
func TestAtMostOnceBeyondPendingLimit(t *testing.T) {
	_, gs := newGroups(2)
	g := gs[0]
	sctx := func(seq uint64) context.Context {
		return WithSession(context.Background(), Session{ClientID: 7, Seq: seq})
	}
	const n = maxPending + 10
	// Out of order, as retries and pipelines across connections arrive: 2, 1, 4, 3, ...
	for i := uint64(1); i <= n; i += 2 {
		for _, seq := range []uint64{i + 1, i} {
			if _, err := g.Append(sctx(seq), []byte("{t}k"), []byte("x")); err != nil {
				t.Fatalf("append %d: %v", seq, err)
			}
		}
	}
	for seq := uint64(1); seq <= n; seq++ {
		got, err := g.Append(sctx(seq), []byte("{t}k"), []byte("x"))
		if seq <= n-maxPending {
			if !errors.Is(err, ErrStale) {
				t.Fatalf("retry of %d (record dropped) = %d, %v; want ErrStale", seq, got, err)
			}
			continue
		}
		// Seq s was the s-th append, but pairs ran high first: 2 then 1 gave lengths 1, 2.
		want := int64(seq + 1)
		if seq%2 == 0 {
			want = int64(seq - 1)
		}
		if err != nil || got != want {
			t.Fatalf("retry of %d = %d, %v; want the original reply %d", seq, got, err, want)
		}
	}
	for i, gr := range gs {
		if v, _, _ := gr.Get(context.Background(), []byte("{t}k")); len(v) != n {
			t.Fatalf("replica %d: %d bytes appended, want %d (each write once)", i, len(v), n)
		}
	}
}

// TestAppendLimit: APPEND refuses to grow a value past MaxValueLen, as Redis refuses past
// proto-max-bulk-len, on every replica alike; the refusal is what a retry gets too.
func TestAppendLimit(t *testing.T) {
	l := &loopback{}
	for range 2 {
		g := New(Config{GroupID: 1, Table: table.New(), MaxValueLen: 8})
		g.Bind(l)
		l.groups = append(l.groups, g)
	}
	g := l.groups[0]
	sctx := func(seq uint64) context.Context {
		return WithSession(context.Background(), Session{ClientID: 3, Seq: seq})
	}
	if n, err := g.Append(sctx(1), []byte("k"), []byte("12345")); err != nil || n != 5 {
		t.Fatalf("append = %d, %v", n, err)
	}
	for range 2 { // the write, then its retry
		if _, err := g.Append(sctx(2), []byte("k"), []byte("6789")); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("append past the limit: %v, want ErrTooLarge", err)
		}
	}
	if n, err := g.Append(sctx(3), []byte("k"), []byte("678")); err != nil || n != 8 {
		t.Fatalf("append up to the limit = %d, %v", n, err)
	}
	settle(g)
	for i, gr := range l.groups {
		if v, _, _ := gr.Get(context.Background(), []byte("k")); string(v) != "12345678" {
			t.Fatalf("replica %d: %q", i, v)
		}
	}
}

// TestSessionsForgetLeastRecentClients: a slot keeps the records of at most maxClients clients,
// forgetting those that wrote least recently: a client that keeps writing stays while many
// short-lived ones come and go, and the records' order (which decides) survives a snapshot.
func TestSessionsForgetLeastRecentClients(t *testing.T) {
	var s slotSessions
	const hot = 1
	s.record(hot, 1, 0, result{n: 1})
	for c := uint64(2); c < 3*maxClients; c++ {
		s.record(c, 1, 0, result{n: int64(c)})
		if c%100 == 0 {
			s.record(hot, c, c-1, result{n: int64(c)})
		}
	}
	if len(s.clients) != maxClients {
		t.Fatalf("%d clients kept, want %d", len(s.clients), maxClients)
	}
	last := uint64(3*maxClients-1) / 100 * 100 // the hot client's last write
	if r, ok := s.lookup(hot, last, 0); !ok || r.err != nil || r.n != int64(last) {
		t.Fatalf("the client writing all along was forgotten: %+v, %v", r, ok)
	}
	if _, ok := s.lookup(2, 1, 0); ok {
		t.Fatal("the oldest short-lived client is still remembered")
	}
	if r, ok := s.lookup(3*maxClients-1, 1, 0); !ok || r.n != 3*maxClients-1 {
		t.Fatalf("the newest client was forgotten: %+v, %v", r, ok)
	}
	d, err := decodeSessions(encodeSessions(nil, &s))
	if err != nil {
		t.Fatal(err)
	}
	s.record(9_999_999, 1, 0, result{})
	d.record(9_999_999, 1, 0, result{})
	if fmt.Sprint(d.clients) != fmt.Sprint(s.clients) {
		t.Fatal("a restored slot evicted differently from the original")
	}
}

// TestLateWriteRunsPastPendingResults: past maxPending results a client's lowest are reduced to
// the fact that they ran, so a lower seq that has not run yet (applied late, through another
// connection) still runs; only past maxRecords records is the horizon raised over it.
func TestLateWriteRunsPastPendingResults(t *testing.T) {
	var s slotSessions
	for seq := uint64(2); seq <= maxPending+2; seq++ {
		s.record(7, seq, 0, result{n: int64(seq)})
	}
	if _, ok := s.lookup(7, 1, 0); ok {
		t.Fatal("seq 1, which never ran, would be refused")
	}
	if r, ok := s.lookup(7, 2, 0); !ok || !errors.Is(r.err, ErrStale) {
		t.Fatalf("seq 2's reduced record: %+v, %v; want ErrStale", r, ok)
	}
	if r, ok := s.lookup(7, maxPending+2, 0); !ok || r.err != nil || r.n != maxPending+2 {
		t.Fatalf("the newest result: %+v, %v", r, ok)
	}
	for seq := uint64(maxPending + 3); seq <= maxRecords+2; seq++ {
		s.record(7, seq, 0, result{n: int64(seq)})
	}
	if r, ok := s.lookup(7, 1, 0); !ok || !errors.Is(r.err, ErrStale) {
		t.Fatalf("past maxRecords, seq 1: %+v, %v; want refused", r, ok)
	}
	if got := len(s.clients[0].results); got != maxRecords {
		t.Fatalf("%d records kept, want %d", got, maxRecords)
	}
}
