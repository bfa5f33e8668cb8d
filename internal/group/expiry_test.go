package group

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/table"
)

// storedValue reads key's value from tab without its header.
func storedValue(tab *table.Table, key []byte) ([]byte, bool) {
	v, ok := tab.Get(key, nil)
	val, _ := unwrapValue(v)
	return val, ok
}

// plainTable copies tab's pairs without their headers, as tables held them before expiry.
func plainTable(tab *table.Table) *table.Table {
	p := table.New()
	tab.Range(keyspace.All(), func(k, v []byte) bool {
		val, _ := unwrapValue(v)
		p.Set(k, val)
		return true
	})
	return p
}

func TestValueHeaders(t *testing.T) {
	for _, c := range []struct {
		val string
		at  int64
	}{{"", 0}, {"v", 0}, {"", 1}, {"value", 1 << 62}, {"x", -5}} {
		w := wrapValue([]byte("pre"), []byte(c.val), c.at)
		if len(w) != 3+headerLen(c.at)+len(c.val) {
			t.Errorf("wrap(%q, %d) is %d bytes", c.val, c.at, len(w))
		}
		val, at := unwrapValue(w[3:])
		if string(val) != c.val || at != c.at {
			t.Errorf("unwrap(wrap(%q, %d)) = %q, %d", c.val, c.at, val, at)
		}
		if _, at := unwrapValue(w[3 : 3+headerLen(c.at)]); at != c.at {
			t.Errorf("header alone of %d reads %d", c.at, at)
		}
	}
	// A truncated or unknown header reads as a value without expiry rather than failing.
	if val, at := unwrapValue([]byte{valExpiring, 1, 2}); at != 0 || len(val) != 2 {
		t.Errorf("short header: %q, %d", val, at)
	}
	if val, at := unwrapValue(nil); at != 0 || len(val) != 0 {
		t.Errorf("empty: %q, %d", val, at)
	}
}

// TestRestoreVersion3 restores a snapshot in the format before values had headers: the same
// layout as today's with values stored bare.
func TestRestoreVersion3(t *testing.T) {
	_, gs := newGroups(1)
	g := gs[0]
	m := &mutator{g: g, rng: rand.New(rand.NewPCG(7, 8)), keys: 300}
	m.run(t, 600)
	want := dump(t, g)

	// Today's encoder over the same state with bare values, then the old magic (and the head's
	// checksum, which covers it).
	old := New(Config{GroupID: 1, Table: plainTable(g.tab)})
	old.cs = g.cs
	old.sessions = g.sessions
	data, err := old.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	copy(data, snapshotMagicV3)
	head := len(snapshotMagic) + 2 + keyspace.NumSlots
	if old.cs.cfg != nil || old.cs.prev != nil {
		t.Fatal("the test expects a group without configurations")
	}
	sum := crc32.Checksum(data[:head], crc32.MakeTable(crc32.Castagnoli))
	data[head], data[head+1], data[head+2], data[head+3] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)

	r := New(Config{GroupID: 1, Table: table.New()})
	if err := r.RestoreFrom(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	sameState(t, "version 3", dump(t, r), want)
}

// fakeClock is a settable clock for Config.Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// clockedGroups is newGroups with a clock of its own for each replica.
func clockedGroups(clocks ...*fakeClock) []*Group {
	l := &loopback{}
	for _, c := range clocks {
		g := New(Config{GroupID: 1, Table: table.New(), Clock: c.Now})
		g.Bind(l)
		l.groups = append(l.groups, g)
	}
	return l.groups
}

// clockedGroup is one replica on a fake clock set to a fixed time.
func clockedGroup() (*Group, *fakeClock, context.Context) {
	c := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	return clockedGroups(c)[0], c, context.Background()
}

// settle waits until the replicas sharing g's loopback applied every proposal: the loopback
// answers the proposer as soon as the first replica applied.
func settle(g *Group) {
	l := g.r.(*loopback)
	// An empty critical section: Propose holds mu until every replica applied.
	l.mu.Lock()
	l.mu.Unlock()
}

// sameTables fails unless every replica holds the same stored pairs, headers included.
func sameTables(t *testing.T, what string, gs []*Group) {
	t.Helper()
	settle(gs[0])
	for i := 1; i < len(gs); i++ {
		sameState(t, fmt.Sprintf("%s: replica %d", what, i), dump(t, gs[i]), dump(t, gs[0]))
	}
}

func TestExpiryIsDecidedThroughTheLog(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	c0 := &fakeClock{now: base}
	c1 := &fakeClock{now: base.Add(-time.Hour)} // a replica whose clock lags an hour
	gs := clockedGroups(c0, c1)
	g0, g1, ctx := gs[0], gs[1], context.Background()
	k := []byte("k")
	at := base.Add(time.Second).UnixMilli()

	if _, err := g0.Set(ctx, SetArgs{Key: k, Val: []byte("v"), ExpireAt: at}); err != nil {
		t.Fatal(err)
	}
	settle(g0)
	if got, ok, _ := g0.ExpireTime(ctx, k); !ok || got != at {
		t.Fatalf("ExpireTime = %d, %v; want %d", got, ok, at)
	}
	c0.add(999 * time.Millisecond)
	if v, ok, _ := g0.Get(ctx, k); !ok || string(v) != "v" {
		t.Fatalf("GET a millisecond before expiry = %q, %v", v, ok)
	}
	c0.add(time.Millisecond)
	// The lagging replica still sees the value; the first reader past its expiry reaps it
	// through the log, and then no replica has it, whatever its clock says.
	if _, ok, _ := g1.Get(ctx, k); !ok {
		t.Fatal("the lagging replica lost the value before its expiry by its clock")
	}
	if v, ok, err := g0.Get(ctx, k); err != nil || ok {
		t.Fatalf("GET at expiry = %q, %v, %v", v, ok, err)
	}
	settle(g0)
	if _, ok, _ := g1.Get(ctx, k); ok {
		t.Fatal("a value reaped through the log came back on a lagging replica")
	}
	sameTables(t, "after the reap", gs)
}

// TestWritesJudgeExpiryByTheirTime: a write treats a value expired by its command's time as
// absent, and deletes it, on every replica alike, whatever the replicas' own clocks say.
func TestWritesJudgeExpiryByTheirTime(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	c0, c1 := &fakeClock{now: base}, &fakeClock{now: base.Add(time.Hour)}
	gs := clockedGroups(c0, c1)
	g, ctx := gs[0], context.Background()
	soon := base.Add(time.Second).UnixMilli()
	set := func(key, val string, at int64) {
		t.Helper()
		if _, err := g.Set(ctx, SetArgs{Key: []byte(key), Val: []byte(val), ExpireAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"nx", "xx", "incr", "append", "del", "getdel", "cas", "get"} {
		set(k, "7", soon)
	}
	set("keep", "7", soon)
	c0.add(time.Second) // everything above has expired for the proposer's next writes

	if r, _ := g.Set(ctx, SetArgs{Key: []byte("nx"), Val: []byte("new"), NX: true}); !r.Done {
		t.Error("SET NX over an expired value did not write")
	}
	if r, _ := g.Set(ctx, SetArgs{Key: []byte("xx"), Val: []byte("new"), XX: true}); r.Done {
		t.Error("SET XX over an expired value wrote")
	}
	if r, _ := g.Set(ctx, SetArgs{Key: []byte("get"), Val: []byte("new"), Get: true}); !r.Done || r.HadOld {
		t.Errorf("SET GET over an expired value = %+v, want no old value", r)
	}
	if n, _ := g.IncrBy(ctx, []byte("incr"), 1); n != 1 {
		t.Errorf("INCR of an expired 7 = %d, want 1", n)
	}
	if n, _ := g.Append(ctx, []byte("append"), []byte("ab")); n != 2 {
		t.Errorf("APPEND to an expired value = %d, want 2", n)
	}
	if n, _ := g.Del(ctx, [][]byte{[]byte("del")}); n != 0 {
		t.Errorf("DEL of an expired key = %d, want 0", n)
	}
	if _, ok, _ := g.GetDel(ctx, []byte("getdel")); ok {
		t.Error("GETDEL returned an expired value")
	}
	if ok, _ := g.CompareAndSwap(ctx, []byte("cas"), []byte("7"), true, []byte("8")); ok {
		t.Error("CAS matched an expired value")
	}
	for _, k := range []string{"nx", "incr", "append"} {
		if at, ok, _ := g.ExpireTime(ctx, []byte(k)); !ok || at != 0 {
			t.Errorf("%s: expiry %d, %v after rewriting an expired value; want none", k, at, ok)
		}
	}
	// The lagging-ahead replica applied the same commands by the same times: same state, and
	// the values the writes found expired are gone from both (SET XX's too).
	sameTables(t, "after the writes", gs)
	for _, k := range []string{"xx", "del", "getdel", "cas"} {
		if gs[0].tab.Has([]byte(k)) {
			t.Errorf("%s: an expired value a write observed is still stored", k)
		}
	}
	if !gs[0].tab.Has([]byte("keep")) {
		t.Error("a value no write touched was deleted before any read")
	}
}

func TestExpiryKeptAndCleared(t *testing.T) {
	g, c, ctx := clockedGroup()
	later := c.now.Add(time.Hour).UnixMilli()
	k := []byte("k")
	expiry := func() int64 {
		t.Helper()
		at, ok, err := g.ExpireTime(ctx, k)
		if err != nil || !ok {
			t.Fatalf("ExpireTime = %d, %v, %v", at, ok, err)
		}
		return at
	}
	g.Set(ctx, SetArgs{Key: k, Val: []byte("1"), ExpireAt: later})
	g.IncrBy(ctx, k, 5)
	if expiry() != later {
		t.Error("INCR dropped the expiry")
	}
	g.Append(ctx, k, []byte("0"))
	if v, _, _ := g.Get(ctx, k); string(v) != "60" || expiry() != later {
		t.Errorf("APPEND: value %q, expiry %d", v, expiry())
	}
	g.Set(ctx, SetArgs{Key: k, Val: []byte("x"), KeepTTL: true})
	if expiry() != later {
		t.Error("SET KEEPTTL dropped the expiry")
	}
	g.Set(ctx, SetArgs{Key: k, Val: []byte("y")})
	if expiry() != 0 {
		t.Error("SET kept the expiry")
	}
	g.Set(ctx, SetArgs{Key: k, Val: []byte("y"), ExpireAt: later})
	g.MSet(ctx, [][]byte{k, []byte("z")})
	if expiry() != 0 {
		t.Error("MSET kept the expiry")
	}
	// A time not after now deletes, as SET ... PXAT in the past does in Redis.
	if r, _ := g.Set(ctx, SetArgs{Key: k, Val: []byte("gone"), ExpireAt: c.now.UnixMilli()}); !r.Done {
		t.Error("SET with a past expiry reported not done")
	}
	if _, ok, _ := g.Get(ctx, k); ok {
		t.Error("SET with a past expiry left the key")
	}
}

func TestExpireConditions(t *testing.T) {
	g, c, ctx := clockedGroup()
	now := c.now.UnixMilli()
	t1, t2 := now+10_000, now+20_000
	k := []byte("k")
	type step struct {
		a    ExpireArgs
		want bool
		at   int64 // expiry after the step
	}
	g.Set(ctx, SetArgs{Key: k, Val: []byte("v")})
	for i, s := range []step{
		{ExpireArgs{At: t1, XX: true}, false, 0}, // no expiry yet
		{ExpireArgs{At: t1, GT: true}, false, 0}, // none counts as never: t1 is not later
		{ExpireArgs{Persist: true}, false, 0},
		{ExpireArgs{At: t2, LT: true}, true, t2},
		{ExpireArgs{At: t1, NX: true}, false, t2},
		{ExpireArgs{At: t1, GT: true}, false, t2},
		{ExpireArgs{At: t2, GT: true}, false, t2}, // equal is not later
		{ExpireArgs{At: t1, LT: true}, true, t1},
		{ExpireArgs{At: t2, XX: true, GT: true}, true, t2},
		{ExpireArgs{At: t1}, true, t1},
		{ExpireArgs{Persist: true}, true, 0},
		{ExpireArgs{At: t2, NX: true}, true, t2},
	} {
		s.a.Key = k
		if got, err := g.Expire(ctx, s.a); err != nil || got != s.want {
			t.Fatalf("step %d %+v = %v, %v; want %v", i, s.a, got, err, s.want)
		}
		if at, ok, _ := g.ExpireTime(ctx, k); !ok || at != s.at {
			t.Fatalf("step %d: expiry %d, %v; want %d", i, at, ok, s.at)
		}
	}
	if got, _ := g.Expire(ctx, ExpireArgs{Key: []byte("missing"), At: t1}); got {
		t.Error("EXPIRE of a missing key reported done")
	}
	// A time already past deletes the key and counts as done, once the conditions hold.
	if got, _ := g.Expire(ctx, ExpireArgs{Key: k, At: now - 1, GT: true}); got {
		t.Error("EXPIRE GT with an earlier time applied")
	}
	g.Set(ctx, SetArgs{Key: []byte("zero"), Val: []byte("v")})
	if got, _ := g.Expire(ctx, ExpireArgs{Key: []byte("zero"), At: 0}); !got || g.tab.Has([]byte("zero")) {
		t.Error("EXPIREAT 0 did not delete the key")
	}
	if got, _ := g.Expire(ctx, ExpireArgs{Key: k, At: now - 1}); !got {
		t.Error("EXPIRE in the past reported not done")
	}
	if _, ok, _ := g.Get(ctx, k); ok {
		t.Error("EXPIRE in the past left the key")
	}
}

func TestReadsHideExpiredKeys(t *testing.T) {
	g, c, ctx := clockedGroup()
	soon, later := c.now.Add(time.Second).UnixMilli(), c.now.Add(time.Hour).UnixMilli()
	for i := range 20 {
		at := later
		if i%2 == 0 {
			at = soon
		}
		g.Set(ctx, SetArgs{Key: fmt.Appendf(nil, "k%d", i), Val: []byte("v"), ExpireAt: at})
	}
	g.Set(ctx, SetArgs{Key: []byte("plain"), Val: []byte("v")})
	c.add(time.Second)
	_, keys, _ := g.Scan(ctx, 0, nil, 1000)
	if len(keys) != 11 {
		t.Errorf("SCAN returned %d keys, want the 11 unexpired", len(keys))
	}
	if n, _ := g.Exists(ctx, [][]byte{[]byte("k0"), []byte("k1"), []byte("plain"), []byte("k2")}); n != 2 {
		t.Errorf("EXISTS = %d, want 2", n)
	}
	vals, found, _ := g.MGet(ctx, [][]byte{[]byte("k3"), []byte("k4"), []byte("k5")})
	if !found[0] || found[1] || !found[2] || string(vals[0]) != "v" {
		t.Errorf("MGET = %q, %v", vals, found)
	}
	if _, ok, _ := g.ExpireTime(ctx, []byte("k6")); ok {
		t.Error("ExpireTime found an expired key")
	}
	// What the reads found expired, SCAN's included, they reaped.
	for i := 0; i < 20; i += 2 {
		if k := fmt.Appendf(nil, "k%d", i); g.tab.Has(k) {
			t.Errorf("%s: read as expired but not reaped", k)
		}
	}
	// A GET's buffer keeps its capacity: the value is moved over the header.
	buf := make([]byte, 0, 64)
	v, ok, _ := g.GetAppend(ctx, []byte("k1"), buf)
	if !ok || string(v) != "v" || cap(v) != 64 || &v[0] != &buf[:1][0] {
		t.Errorf("GetAppend = %q (cap %d), %v", v, cap(v), ok)
	}
}

func TestCommandCarriesItsTime(t *testing.T) {
	c := command{op: opSet, reqID: 9, flags: setNX | cmdAt, at: 1_700_000_000_123, delta: -4, args: [][]byte{[]byte("k"), []byte("v")}}
	b := c.encode(nil)
	if len(b) != c.encodedLen() {
		t.Fatalf("encoded %d bytes, encodedLen %d", len(b), c.encodedLen())
	}
	var d command
	if err := d.decode(b); err != nil || d.at != c.at || d.delta != c.delta || d.flags != c.flags || len(d.args) != 2 {
		t.Fatalf("decode = %+v, %v", d, err)
	}
	// A command logged before expiry existed has no time, and decodes with at 0.
	c.flags, c.at = setNX, 0
	if err := d.decode(c.encode(nil)); err != nil || d.at != 0 || d.flags != setNX {
		t.Fatalf("decode of a timeless command = %+v, %v", d, err)
	}
}

func TestSnapshotKeepsExpiries(t *testing.T) {
	g, c, ctx := clockedGroup()
	at := c.now.Add(time.Hour).UnixMilli()
	g.Set(ctx, SetArgs{Key: []byte("t"), Val: []byte("v"), ExpireAt: at})
	g.Set(ctx, SetArgs{Key: []byte("p"), Val: []byte("v")})
	data, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{GroupID: 1, Table: table.New(), Clock: c.Now})
	r.Bind(&loopback{groups: []*Group{r}})
	if err := r.Restore(data); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := r.ExpireTime(ctx, []byte("t")); !ok || got != at {
		t.Errorf("restored expiry = %d, %v; want %d", got, ok, at)
	}
	if got, ok, _ := r.ExpireTime(ctx, []byte("p")); !ok || got != 0 {
		t.Errorf("restored plain key: expiry %d, %v", got, ok)
	}
}

func TestSweepReapsUnreadKeys(t *testing.T) {
	c := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	gs := clockedGroups(c, &fakeClock{now: c.now})
	g, ctx := gs[0], context.Background()
	soon, later := c.now.Add(time.Second).UnixMilli(), c.now.Add(time.Hour).UnixMilli()
	const n = 3000
	for i := range n {
		at := int64(0)
		switch i % 3 {
		case 0:
			at = soon
		case 1:
			at = later
		}
		g.Set(ctx, SetArgs{Key: fmt.Appendf(nil, "k%d", i), Val: []byte("v"), ExpireAt: at})
	}
	if got, _ := g.Sweep(ctx, 10*n); got != 0 {
		t.Fatalf("swept %d keys before any expired", got)
	}
	c.add(time.Second)
	total := 0
	for range 100 {
		got, err := g.Sweep(ctx, 200) // small steps: the walk resumes where it stopped
		if err != nil {
			t.Fatal(err)
		}
		total += got
	}
	if total != n/3 {
		t.Errorf("swept %d keys, want %d", total, n/3)
	}
	if l := g.tab.Len(); l != n-n/3 {
		t.Errorf("%d pairs left, want %d", l, n-n/3)
	}
	sameTables(t, "after the sweep", gs)
	// Slots whose expiring values are gone are skipped from then on; one that gets an
	// expiring value again is walked again.
	for i := 1; i < n; i += 3 {
		if ok, err := g.Expire(ctx, ExpireArgs{Key: fmt.Appendf(nil, "k%d", i), Persist: true}); !ok || err != nil {
			t.Fatalf("PERSIST k%d = %v, %v", i, ok, err)
		}
	}
	g.Sweep(ctx, 10*n)
	marked := 0
	for s := range g.expiring {
		if g.expiring[s].Load() != 0 {
			marked++
		}
	}
	if marked != 0 || g.marked.Load() != 0 {
		t.Errorf("%d slots (counted %d) still marked after a walk found no expiry", marked, g.marked.Load())
	}
	g.Set(ctx, SetArgs{Key: []byte("late"), Val: []byte("v"), ExpireAt: c.now.Add(time.Second).UnixMilli()})
	if g.marked.Load() != 1 {
		t.Errorf("%d slots counted marked after one expiring write, want 1", g.marked.Load())
	}
	c.add(time.Second)
	if got, _ := g.Sweep(ctx, 10*n); got != 1 {
		t.Errorf("swept %d keys after a new expiring write, want 1", got)
	}
}

// TestReapTakesNoSession: a read inside a client's session that reaps must not use up the
// session's sequence number, or the client's write with it would be answered as a duplicate.
func TestReapTakesNoSession(t *testing.T) {
	c := &fakeClock{now: time.UnixMilli(1_700_000_000_000)}
	g := clockedGroups(c)[0]
	ctx := context.Background()
	// Sessions are kept per slot: both keys are in one.
	g.Set(ctx, SetArgs{Key: []byte("{t}k"), Val: []byte("v"), ExpireAt: c.now.Add(time.Second).UnixMilli()})
	c.add(time.Second)
	sctx := WithSession(ctx, Session{ClientID: 7, Seq: 1})
	if _, ok, err := g.Get(sctx, []byte("{t}k")); ok || err != nil {
		t.Fatalf("GET = %v, %v", ok, err)
	}
	if n, err := g.IncrBy(sctx, []byte("{t}n"), 5); err != nil || n != 5 {
		t.Fatalf("INCRBY with the session's first seq = %d, %v; want it applied", n, err)
	}
}

func TestWhichCommandsCarryTime(t *testing.T) {
	k, v := []byte("k"), []byte("v")
	for _, c := range []struct {
		name string
		c    command
		want bool
	}{
		{"SET", setCommand(SetArgs{Key: k, Val: v}), false},
		{"MSET", command{op: opMSet, args: [][]byte{k, v}}, false},
		{"SET NX", setCommand(SetArgs{Key: k, Val: v, NX: true}), true},
		{"SET GET", setCommand(SetArgs{Key: k, Val: v, Get: true}), true},
		{"SET PX", setCommand(SetArgs{Key: k, Val: v, ExpireAt: 1}), true},
		{"SET KEEPTTL", setCommand(SetArgs{Key: k, Val: v, KeepTTL: true}), true},
		{"DEL", command{op: opDel, args: [][]byte{k}}, true},
		{"INCR", command{op: opIncrBy, args: [][]byte{k}}, true},
		{"EXPIRE", command{op: opExpire, args: [][]byte{k}}, true},
		{"config", command{op: opConfig}, false},
	} {
		if got := c.c.needsTime(); got != c.want {
			t.Errorf("%s: needsTime = %v", c.name, got)
		}
	}
}

// TestHandoffOfBareValues: hand-off data from a version before expiry (no marker: pulled from a
// group not upgraded yet, or an install entry replayed from an old WAL) gets headers on install;
// today's data, which has the marker, is installed as it is, and a version before expiry would
// refuse it (0xFFFF is no slot).
func TestHandoffOfBareValues(t *testing.T) {
	g, c, ctx := clockedGroup()
	later := c.now.Add(time.Hour).UnixMilli()
	g.Set(ctx, SetArgs{Key: []byte("{a}plain"), Val: []byte("\x01234567890abc")}) // a bare value that looks like a header
	g.Set(ctx, SetArgs{Key: []byte("{a}exp"), Val: []byte("v"), ExpireAt: later})
	slot := keyspace.Slot([]byte("{a}plain"))

	var today bytes.Buffer
	today.Write(handoffMarker)
	if _, err := g.writeSlotChunk(&today, slot); err != nil {
		t.Fatal(err)
	}
	if err := readSlotChunks(today.Bytes(), func(uint16, []byte, []byte) error { return nil }); err == nil {
		t.Error("an old reader accepted data with the marker")
	}
	old := New(Config{GroupID: 1, Table: plainTable(g.tab)})
	var bare bytes.Buffer
	if _, err := old.writeSlotChunk(&bare, slot); err != nil {
		t.Fatal(err)
	}

	for _, data := range [][]byte{today.Bytes(), bare.Bytes()} {
		r, _, _ := clockedGroup()
		r.cs.cfg = &controller.Config{Num: 2}
		r.cs.slots[slot] = slotPulling
		if res := r.applyInstall(2, data); res.err != nil || !res.ok {
			t.Fatalf("install: %+v", res)
		}
		r.cs.slots[slot] = slotServing
		if v, ok, _ := r.Get(ctx, []byte("{a}plain")); !ok || string(v) != "\x01234567890abc" {
			t.Errorf("installed value = %q, %v", v, ok)
		}
		want := later
		if data[0] != 0xFF {
			want = 0 // bare values had no expiry to carry
		}
		if at, ok, _ := r.ExpireTime(ctx, []byte("{a}exp")); !ok || at != want {
			t.Errorf("installed expiry = %d, %v; want %d", at, ok, want)
		}
		if n := r.expires.Load(); n != b2i(want != 0) {
			t.Errorf("expires after install = %d", n)
		}
		// Given away again: the count drops with the slot.
		r.cs.slots[slot] = slotGiving
		if res := r.applyDrop(2, keyspace.SlotRange(slot)); res.err != nil || r.expires.Load() != 0 || r.tab.Len() != 0 {
			t.Errorf("drop: %+v, expires %d, %d pairs left", res, r.expires.Load(), r.tab.Len())
		}
	}
}

func TestGetEx(t *testing.T) {
	g, c, ctx := clockedGroup()
	k := []byte("k")
	later := c.now.Add(time.Hour).UnixMilli()
	if _, ok, err := g.GetEx(ctx, ExpireArgs{Key: k, At: later}); ok || err != nil {
		t.Fatalf("GETEX of a missing key = %v, %v", ok, err)
	}
	if g.tab.Has(k) {
		t.Fatal("GETEX created a key")
	}
	g.Set(ctx, SetArgs{Key: k, Val: []byte("v")})
	// The conditions of EXPIRE do not apply to GETEX.
	if v, ok, _ := g.GetEx(ctx, ExpireArgs{Key: k, At: later, XX: true}); !ok || string(v) != "v" {
		t.Fatalf("GETEX = %q, %v", v, ok)
	}
	if at, _, _ := g.ExpireTime(ctx, k); at != later {
		t.Fatalf("expiry after GETEX = %d, want %d", at, later)
	}
	if v, ok, _ := g.GetEx(ctx, ExpireArgs{Key: k, Persist: true}); !ok || string(v) != "v" {
		t.Fatalf("GETEX PERSIST = %q, %v", v, ok)
	}
	if at, ok, _ := g.ExpireTime(ctx, k); !ok || at != 0 {
		t.Fatalf("expiry after GETEX PERSIST = %d, %v", at, ok)
	}
	// A time already past answers the value and deletes the key, as in Redis.
	if v, ok, _ := g.GetEx(ctx, ExpireArgs{Key: k, At: c.now.UnixMilli()}); !ok || string(v) != "v" {
		t.Fatalf("GETEX in the past = %q, %v", v, ok)
	}
	if g.tab.Has(k) {
		t.Fatal("GETEX in the past left the key")
	}
}

// countAll counts the stored pairs with an expiry the slow way.
func countAll(g *Group) (n int64) {
	for s := range keyspace.NumSlots {
		n += g.countExpiring(uint16(s))
	}
	return n
}

// TestExpiresCount: the count of keys with an expiry (INFO keyspace's expires) follows every
// kind of change, through reaps, the sweep and a restore.
func TestExpiresCount(t *testing.T) {
	g, c, ctx := clockedGroup()
	rng := rand.New(rand.NewPCG(11, 12))
	key := func() []byte { return fmt.Appendf(nil, "k%d", rng.IntN(40)) }
	ttl := func() int64 { return c.now.Add(time.Duration(rng.IntN(50)) * time.Millisecond).UnixMilli() }
	for step := range 3000 {
		switch rng.IntN(12) {
		case 0:
			g.Set(ctx, SetArgs{Key: key(), Val: []byte("v")})
		case 1:
			g.Set(ctx, SetArgs{Key: key(), Val: []byte("v"), ExpireAt: ttl()})
		case 2:
			g.Set(ctx, SetArgs{Key: key(), Val: []byte("v"), KeepTTL: true, NX: rng.IntN(2) == 0})
		case 3:
			g.Expire(ctx, ExpireArgs{Key: key(), At: ttl(), GT: rng.IntN(3) == 0})
		case 4:
			g.Expire(ctx, ExpireArgs{Key: key(), Persist: true})
		case 5:
			g.Del(ctx, [][]byte{key(), key()})
		case 6:
			g.GetDel(ctx, key())
		case 7:
			g.IncrBy(ctx, key(), 1)
		case 8:
			g.Append(ctx, key(), []byte("x"))
		case 9:
			g.GetEx(ctx, ExpireArgs{Key: key(), At: ttl(), Persist: rng.IntN(2) == 0})
		case 10:
			g.Get(ctx, key())
			g.MSet(ctx, [][]byte{key(), []byte("m")})
		case 11:
			c.add(time.Duration(rng.IntN(30)) * time.Millisecond)
			if rng.IntN(4) == 0 {
				g.Sweep(ctx, 1000)
			}
		}
		if want := countAll(g); g.expires.Load() != want {
			t.Fatalf("step %d: expires = %d, counted %d", step, g.expires.Load(), want)
		}
	}
	data, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r, _, _ := clockedGroup()
	if err := r.Restore(data); err != nil {
		t.Fatal(err)
	}
	if want := countAll(g); r.expires.Load() != want || want == 0 {
		t.Fatalf("restored expires = %d, want %d (and some)", r.expires.Load(), want)
	}
	if info := r.Info("keyspace"); !strings.Contains(info, fmt.Sprintf(",expires=%d,", r.expires.Load())) {
		t.Errorf("INFO keyspace = %q", info)
	}
}

// TestGetAllocatesNothing: a GET into a reused buffer, of a value with an expiry or without,
// allocates nothing (the reaping path, with its closures, is off the hot path).
func TestGetAllocatesNothing(t *testing.T) {
	g, c, ctx := clockedGroup()
	g.Set(ctx, SetArgs{Key: []byte("plain"), Val: []byte("value")})
	g.Set(ctx, SetArgs{Key: []byte("exp"), Val: []byte("value"), ExpireAt: c.now.Add(time.Hour).UnixMilli()})
	buf := make([]byte, 0, 64)
	for _, k := range []string{"plain", "exp"} {
		key := []byte(k)
		if n := testing.AllocsPerRun(200, func() {
			if v, ok, err := g.GetAppend(ctx, key, buf[:0]); !ok || err != nil || string(v) != "value" {
				t.Fatalf("GET %s = %q, %v, %v", k, v, ok, err)
			}
		}); n != 0 {
			t.Errorf("GET %s: %v allocations", k, n)
		}
	}
}
