package group

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/shoal-kv/shoal/internal/table"
)

// held binds a fresh group to l, whose hold/fail settings script the proposals.
func held(l *loopback) *Group {
	g := New(Config{GroupID: 1, Table: table.New()})
	g.Bind(l)
	l.groups = append(l.groups, g)
	return g
}

// TestWritesShareEntries holds the first proposal while a pipeline of writes is started: they
// must reach raft as a few batch entries (not one entry each), split at the batch limit, and
// apply in the order they were started, each answered with its own result.
func TestWritesShareEntries(t *testing.T) {
	s := &loopback{hold: make(chan struct{}), entered: make(chan struct{})}
	g := held(s)
	ctx := context.Background()
	key := []byte("ctr")
	const n = maxBatchCmds + 500
	waits := make([]Wait, n)
	for i := range waits {
		w, err := g.Start(ctx, Write{Op: WriteIncrBy, Args: [][]byte{key}, Delta: 1})
		if err != nil {
			t.Fatal(err)
		}
		waits[i] = w
		if i == 0 {
			<-s.entered
		}
	}
	close(s.hold)
	for i, w := range waits {
		res, err := w.Result(ctx)
		if err != nil || res.N != int64(i+1) {
			t.Fatalf("write %d: got %d, %v; want %d", i, res.N, err, i+1)
		}
	}
	// The first write went alone (it was being proposed when the rest arrived); the others
	// filled one full batch and one partial one.
	if got := s.entryCount(); got != 3 {
		t.Fatalf("%d writes became %d entries, want 3", n, got)
	}
	for i, e := range s.proposals {
		cmds := 0
		if err := forEachCommand(e, func([]byte) { cmds++ }); err != nil {
			t.Fatal(err)
		}
		if cmds > maxBatchCmds {
			t.Fatalf("entry %d holds %d commands, over the limit %d", i, cmds, maxBatchCmds)
		}
		if cmds == 1 && op(e[0]) == opBatch {
			t.Fatalf("entry %d: a lone command should be proposed bare", i)
		}
	}
	// A second replica applying the same entries reaches the same state.
	other := New(Config{GroupID: 1, Table: table.New()})
	for i, e := range s.proposals {
		other.Apply(uint64(i+1), e)
	}
	if v, ok := storedValue(other.tab, key); !ok || string(v) != "1524" {
		t.Fatalf("replayed counter = %q, want 1524", v)
	}
}

// TestBatchedRetriesApplyOnce sends the same session write twice into one held batch: the
// at-most-once records work per command inside a batch entry, so it applies once.
func TestBatchedRetriesApplyOnce(t *testing.T) {
	s := &loopback{hold: make(chan struct{}), entered: make(chan struct{})}
	g := held(s)
	key := []byte("k")
	first, err := g.Start(context.Background(), Write{Op: WriteSet, Set: SetArgs{Key: []byte("x"), Val: []byte("y")}})
	if err != nil {
		t.Fatal(err)
	}
	<-s.entered
	ctx := WithSession(context.Background(), Session{ClientID: 7, Seq: 1})
	var waits []Wait
	for range 2 {
		w, err := g.Start(ctx, Write{Op: WriteAppend, Args: [][]byte{key, []byte("ab")}})
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	close(s.hold)
	if _, err := first.Result(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, w := range waits {
		if res, err := w.Result(context.Background()); err != nil || res.N != 2 {
			t.Fatalf("attempt %d: got %d, %v; want length 2 (the first attempt's answer)", i, res.N, err)
		}
	}
	if v, _ := storedValue(g.tab, key); string(v) != "ab" {
		t.Fatalf("value %q: the retried append applied twice", v)
	}
	if s.entryCount() != 2 {
		t.Fatalf("%d entries, want 2 (the held write, then both attempts in one batch)", s.entryCount())
	}
}

// TestDroppedBatchProposedAgain: raft drops proposals while it knows no leader; the batch is
// proposed again until taken, and applies once.
func TestDroppedBatchProposedAgain(t *testing.T) {
	s := &loopback{fail: func(call int) error {
		if call < 3 {
			return raft.ErrProposalDropped
		}
		return nil
	}}
	g := held(s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := g.IncrBy(ctx, []byte("ctr"), 5)
	if err != nil || n != 5 {
		t.Fatalf("IncrBy = %d, %v; want 5", n, err)
	}
	if s.entryCount() != 1 {
		t.Fatalf("%d entries applied, want 1", s.entryCount())
	}
}

// TestProposalFailures: a failure other than a drop reaches every writer of the batch, and a
// write raft never took by the time its caller gives up reports that no leader was known.
func TestProposalFailures(t *testing.T) {
	stopped := errors.New("node stopped")
	s := &loopback{hold: make(chan struct{}), entered: make(chan struct{}), fail: func(int) error { return stopped }}
	g := held(s)
	var waits []Wait
	for range 5 {
		w, err := g.Start(context.Background(), Write{Op: WriteDel, Args: [][]byte{[]byte("k")}})
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, w)
	}
	close(s.hold)
	for i, w := range waits {
		if _, err := w.Result(context.Background()); !errors.Is(err, stopped) {
			t.Fatalf("write %d: got %v, want the proposal's failure", i, err)
		}
	}

	s = &loopback{fail: func(int) error { return raft.ErrProposalDropped }}
	g = held(s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.IncrBy(ctx, []byte("ctr"), 1); !errors.Is(err, ErrNotLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("never placed: got %v, want ErrNotLeader and the deadline", err)
	}
	// Nobody waits for the dropped batch any more: proposing stops instead of retrying forever.
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.props.mu.Lock()
		running := g.props.running
		g.props.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still proposing a batch nobody waits for")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.entryCount() != 0 {
		t.Fatalf("a dropped write applied")
	}

	// A caller giving up while its batch is inside Propose cannot be told "no leader": raft may
	// be taking it at that moment (and here does).
	s = &loopback{hold: make(chan struct{}), entered: make(chan struct{})}
	g = held(s)
	w, err := g.Start(context.Background(), Write{Op: WriteIncrBy, Args: [][]byte{[]byte("ctr")}, Delta: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-s.entered
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := w.Result(short); errors.Is(err, ErrNotLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("gave up during Propose: got %v, want a plain deadline error", err)
	}
	close(s.hold)
	deadline = time.Now().Add(5 * time.Second)
	for s.entryCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the held write never applied")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWithdrawnWriteNeverApplies: a write queued behind a batch that raft has not taken yet is
// told "no leader" when its caller gives up, and is then left out of the log for good, so a
// client that retries it cannot apply it twice; writes still waited for go through.
func TestWithdrawnWriteNeverApplies(t *testing.T) {
	s := &loopback{hold: make(chan struct{}), entered: make(chan struct{})}
	g := held(s)
	key := []byte("ctr")
	first, err := g.Start(context.Background(), Write{Op: WriteIncrBy, Args: [][]byte{key}, Delta: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-s.entered // the first write is inside Propose; the next ones queue behind it
	gaveUp, err := g.Start(context.Background(), Write{Op: WriteIncrBy, Args: [][]byte{key}, Delta: 10})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := g.Start(context.Background(), Write{Op: WriteIncrBy, Args: [][]byte{key}, Delta: 100})
	if err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := gaveUp.Result(expired); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("queued write given up: got %v, want ErrNotLeader", err)
	}
	close(s.hold)
	if res, err := first.Result(context.Background()); err != nil || res.N != 1 {
		t.Fatalf("first write: %d, %v", res.N, err)
	}
	if res, err := kept.Result(context.Background()); err != nil || res.N != 101 {
		t.Fatalf("write after the withdrawn one: got %d, %v; want 101 (the withdrawn +10 left out)", res.N, err)
	}
	if v, _ := storedValue(g.tab, key); string(v) != "101" {
		t.Fatalf("counter %q, want 101", v)
	}
	if got := s.entryCount(); got != 2 {
		t.Fatalf("%d entries, want 2", got)
	}
	if e := s.proposals[1]; op(e[0]) == opBatch {
		t.Fatalf("the batch left with one write should be proposed bare")
	}
}

// startWrites starts n increments on g and returns their waits.
func startWrites(t *testing.T, ctx context.Context, g *Group, n int) []Wait {
	t.Helper()
	waits := make([]Wait, n)
	for i := range waits {
		w, err := g.Start(ctx, Write{Op: WriteIncrBy, Args: [][]byte{[]byte("ctr")}, Delta: 1})
		if err != nil {
			t.Fatal(err)
		}
		waits[i] = w
	}
	return waits
}

// awaitWrites waits for every write of waits.
func awaitWrites(t *testing.T, ctx context.Context, waits []Wait) {
	t.Helper()
	for i, w := range waits {
		if _, err := w.Result(ctx); err != nil {
			t.Fatalf("write %d of %d: %v", i, len(waits), err)
		}
	}
}

// windowGroup returns a group with the given window whose first entry holds one write and whose
// second holds n: the first proposal is held while the n are started, so they share one entry,
// proposed at once (a lone write before it means no wait).
func windowGroup(t *testing.T, ctx context.Context, window time.Duration, n int) (*loopback, *Group) {
	t.Helper()
	l := &loopback{hold: make(chan struct{}), entered: make(chan struct{})}
	g := New(Config{GroupID: 1, Table: table.New(), Window: window})
	g.Bind(l)
	l.groups = append(l.groups, g)
	first := startWrites(t, ctx, g, 1)
	<-l.entered
	rest := startWrites(t, ctx, g, n)
	close(l.hold)
	awaitWrites(t, ctx, append(first, rest...))
	return l, g
}

// TestWindowEndsWhenWritersAreBack: with a window far longer than the test, a batch that holds as
// many writes as the previous one (all of its writers are back) is proposed at once.
func TestWindowEndsWhenWritersAreBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := earlyBatch + 2
	l, g := windowGroup(t, ctx, time.Hour, n)
	// As many as before, twice: one entry each, at once (with the window, the test would time
	// out). Starting more than n would be racy here: once n are in, the batch goes, and writes
	// arriving after it would wait out the hour.
	for range 2 {
		awaitWrites(t, ctx, startWrites(t, ctx, g, n))
	}
	if got, want := entrySizes(t, l), []int{1, n, n, n}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries hold %v writes, want %v", got, want)
	}
}

// TestWindowEndsForFewWritersWhenNothingIsInFlight: fewer than earlyBatch writers, all back and
// nothing else in flight, are proposed at once too (only a batch still being answered is worth
// waiting for).
func TestWindowEndsForFewWritersWhenNothingIsInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := earlyBatch / 2
	l, g := windowGroup(t, ctx, time.Hour, n)
	for range 3 {
		awaitWrites(t, ctx, startWrites(t, ctx, g, n))
	}
	if got, want := entrySizes(t, l), []int{1, n, n, n, n}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries hold %v writes, want %v", got, want)
	}
}

// TestWindowHoldsSmallerBatches: a batch smaller than the previous one waits out the window, so
// the writes of a lighter load still share entries.
func TestWindowHoldsSmallerBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const window = 200 * time.Millisecond
	n := earlyBatch + 2
	l, g := windowGroup(t, ctx, window, n)
	awaitWrites(t, ctx, startWrites(t, ctx, g, earlyBatch))
	if got, want := entrySizes(t, l), []int{1, n, earlyBatch}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries hold %v writes, want %v", got, want)
	}
	// The last entry went no sooner than a window after the one before it started (that start
	// precedes its arrival at the loopback by a moment, hence the slack).
	if gap := l.times[2].Sub(l.times[1]); gap < window*3/4 {
		t.Fatalf("a smaller batch was proposed %v after the previous one, want about %v", gap, window)
	}
}

// entrySizes returns how many writes each proposed entry holds.
func entrySizes(t *testing.T, l *loopback) []int {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var sizes []int
	for _, e := range l.proposals {
		n := 0
		if err := forEachCommand(e, func([]byte) { n++ }); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// TestScaledWindow: the window is Window up to windowWriters waiting writes, then grows in
// proportion up to twice Window.
func TestScaledWindow(t *testing.T) {
	for waiters, want := range map[int]time.Duration{0: 1000, 1: 1000, windowWriters: 1000,
		windowWriters * 3 / 2: 1500, 2 * windowWriters: 2000, 1000: 2000} {
		if got := scaledWindow(1000, waiters); got != want {
			t.Errorf("scaledWindow(1000, %d) = %v, want %v", waiters, got, want)
		}
	}
}

// TestWindowGrowsWithLoad: after a cycle with many writers waiting at once, a smaller batch waits
// out twice the window, so a busy group builds bigger entries.
func TestWindowGrowsWithLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const window = 100 * time.Millisecond
	n := 2 * windowWriters
	l, g := windowGroup(t, ctx, window, n) // n+1 writes were waiting at once
	awaitWrites(t, ctx, startWrites(t, ctx, g, earlyBatch))
	if got, want := entrySizes(t, l), []int{1, n, earlyBatch}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("entries hold %v writes, want %v", got, want)
	}
	if gap := l.times[2].Sub(l.times[1]); gap < 2*window*3/4 {
		t.Fatalf("a smaller batch after a busy cycle was proposed %v after the previous one, want about %v", gap, 2*window)
	}
}
