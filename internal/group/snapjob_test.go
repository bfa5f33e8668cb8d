package group

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/snap"
	"github.com/shoal-kv/shoal/internal/table"
)

// stateDump is everything a snapshot must reproduce, in comparable form.
type stateDump struct {
	pairs     map[string]string
	sessions  map[int]string // encodeSessions of slots with records
	slots     [keyspace.NumSlots]slotState
	cfg, prev string
}

// dump reads g's replicated state; the caller keeps the apply path still.
func dump(t *testing.T, g *Group) stateDump {
	t.Helper()
	d := stateDump{pairs: map[string]string{}, sessions: map[int]string{}}
	g.tab.Range(keyspace.All(), func(k, v []byte) bool {
		d.pairs[string(k)] = string(v)
		return true
	})
	for s, ss := range g.sessions {
		if ss != nil && len(ss.clients) > 0 {
			d.sessions[s] = string(encodeSessions(nil, ss))
		}
	}
	g.own.RLock()
	defer g.own.RUnlock()
	d.slots = g.cs.slots
	for _, p := range []struct {
		c   *controller.Config
		dst *string
	}{{g.cs.cfg, &d.cfg}, {g.cs.prev, &d.prev}} {
		if p.c != nil {
			b, err := json.Marshal(p.c)
			if err != nil {
				t.Fatal(err)
			}
			*p.dst = string(b)
		}
	}
	return d
}

func sameState(t *testing.T, what string, got, want stateDump) {
	t.Helper()
	if got.cfg != want.cfg || got.prev != want.prev {
		t.Fatalf("%s: configurations %s / %s, want %s / %s", what, got.cfg, got.prev, want.cfg, want.prev)
	}
	if got.slots != want.slots {
		for s := range got.slots {
			if got.slots[s] != want.slots[s] {
				t.Fatalf("%s: slot %d state %d, want %d", what, s, got.slots[s], want.slots[s])
			}
		}
	}
	if !maps.Equal(got.sessions, want.sessions) {
		t.Fatalf("%s: at-most-once records of %d slots differ from the %d at capture", what, len(got.sessions), len(want.sessions))
	}
	if !maps.Equal(got.pairs, want.pairs) {
		for k, v := range want.pairs {
			if g, ok := got.pairs[k]; !ok || g != v {
				t.Fatalf("%s: %q = %q (present %v), want %q", what, k, g, ok, v)
			}
		}
		for k, v := range got.pairs {
			if _, ok := want.pairs[k]; !ok {
				t.Fatalf("%s: %q = %q was not there at capture", what, k, v)
			}
		}
	}
}

// gatedWriter lets the exporter write one chunk per token (all of them once tokens is closed),
// so a test can change the state between chunks.
type gatedWriter struct {
	buf    bytes.Buffer
	tokens chan struct{}
	wrote  chan struct{}
}

func newGatedWriter() *gatedWriter {
	return &gatedWriter{tokens: make(chan struct{}), wrote: make(chan struct{}, 1)}
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	<-w.tokens
	w.buf.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default: // free-running after close(tokens): nobody waits
	}
	return len(p), nil
}

// step lets one chunk through and waits until it is written; false once Stream returned.
func (w *gatedWriter) step(errc <-chan error, err *error) bool {
	select {
	case w.tokens <- struct{}{}:
		<-w.wrote
		return true
	case *err = <-errc:
		return false
	}
}

// mutator issues a deterministic mix of writes touching many slots: overwrites, deletes, appends,
// new keys, counters, multi-slot MSETs and at-most-once sessions.
type mutator struct {
	g    *Group
	rng  *rand.Rand
	keys int
	seq  [6]uint64
}

func (m *mutator) key() []byte { return fmt.Appendf(nil, "k%d", m.rng.IntN(m.keys)) }

func (m *mutator) run(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	for range n {
		var err error
		switch m.rng.IntN(7) {
		case 0:
			_, err = m.g.Set(ctx, SetArgs{Key: m.key(), Val: fmt.Appendf(nil, "v%d", m.rng.Int())})
		case 1:
			_, err = m.g.Del(ctx, [][]byte{m.key(), m.key()})
		case 2:
			_, err = m.g.Append(ctx, m.key(), []byte("+"))
		case 3:
			m.keys++ // a key that did not exist
			_, err = m.g.Set(ctx, SetArgs{Key: fmt.Appendf(nil, "k%d", m.keys-1), Val: []byte("new")})
		case 4:
			_, err = m.g.IncrBy(ctx, fmt.Appendf(nil, "n%d", m.rng.IntN(50)), 1)
		case 5:
			err = m.g.MSet(ctx, [][]byte{m.key(), []byte("m1"), m.key(), []byte("m2"), m.key(), []byte("m3")})
		case 6:
			c := m.rng.IntN(len(m.seq))
			m.seq[c]++
			sctx := WithSession(ctx, Session{ClientID: uint64(c + 1), Seq: m.seq[c], Acked: m.seq[c] - min(m.seq[c], 3)})
			_, err = m.g.Append(sctx, m.key(), []byte("s"))
		}
		if err != nil && !errors.Is(err, ErrNotInteger) {
			t.Fatal(err)
		}
	}
}

// TestSnapshotWhileWriting streams snapshots while writes change slots before, during and after
// their export, and checks that each restores to exactly the state at its capture index.
func TestSnapshotWhileWriting(t *testing.T) {
	l, gs := newGroups(1)
	g := gs[0]
	m := &mutator{g: g, rng: rand.New(rand.NewPCG(1, 2)), keys: 3000}
	for i := range m.keys {
		if _, err := g.Set(context.Background(), SetArgs{Key: fmt.Appendf(nil, "k%d", i), Val: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	m.run(t, 2000)

	// capture starts a job the way the raft node does, between two applied entries.
	capture := func() (stateDump, *snapJob) {
		l.mu.Lock()
		defer l.mu.Unlock()
		want := dump(t, g)
		job, err := g.StartSnapshot()
		if err != nil {
			t.Fatal(err)
		}
		j := job.(*snapJob)
		j.budget = 256 // a few pairs per chunk: hundreds of chunks to interleave writes with
		return want, j
	}
	finish := func(what string, j *snapJob, data []byte, want stateDump) {
		t.Helper()
		l.mu.Lock()
		j.Close()
		if g.snap != nil {
			t.Fatal("job still attached after Close")
		}
		if now := dump(t, g); maps.Equal(now.pairs, want.pairs) {
			t.Fatalf("%s: no write changed the state during the snapshot", what)
		}
		l.mu.Unlock()
		r := New(Config{GroupID: 1, Table: table.New()})
		if err := r.Restore(data); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sameState(t, what, dump(t, r), want)
	}

	// Lock-step: a batch of writes between every two chunks.
	want, j := capture()
	if _, err := g.StartSnapshot(); err == nil {
		t.Fatal("a second snapshot started while one is open")
	}
	if err := g.Restore(nil); err == nil {
		t.Fatal("Restore ran under an open snapshot")
	}
	w := newGatedWriter()
	errc := make(chan error, 1)
	go func() { errc <- j.Stream(context.Background(), w) }()
	var err error
	chunks := 0
	ended := false
	for chunks < 400 {
		if !w.step(errc, &err) {
			ended = true
			break
		}
		chunks++
		m.run(t, 5)
	}
	if chunks < 50 {
		t.Fatalf("stream ended after %d writes: the test did not interleave", chunks)
	}
	if !ended {
		close(w.tokens) // the rest without writes in between
		err = <-errc
	}
	if err != nil {
		t.Fatal(err)
	}
	finish("lock-step", j, w.buf.Bytes(), want)

	// Free-running: writes race with the exporter, so some wait on a slot it has claimed.
	for round := range 3 {
		want, j := capture()
		var buf bytes.Buffer
		errc := make(chan error, 1)
		go func() { errc <- j.Stream(context.Background(), &buf) }()
		var err error
	race:
		for {
			select {
			case err = <-errc:
				break race
			default:
				m.run(t, 5)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		finish(fmt.Sprintf("free-running %d", round), j, buf.Bytes(), want)
	}

	// A cancelled or closed job stops with an error instead of writing a mix.
	want, j = capture()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := j.Stream(ctx, &bytes.Buffer{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Stream = %v", err)
	}
	l.mu.Lock()
	j.Close()
	l.mu.Unlock()
	if err := j.Stream(context.Background(), &bytes.Buffer{}); !errors.Is(err, errJobClosed) {
		t.Fatalf("Stream after Close = %v", err)
	}
	_ = want
}

// newControlled returns a group that follows shard configurations, on its own loopback log.
func newControlled(id uint64) (*loopback, *Group) {
	l := &loopback{}
	g := New(Config{GroupID: id, Controlled: true, Table: table.New()})
	g.Bind(l)
	l.groups = append(l.groups, g)
	return l, g
}

// moveConfigs returns two configurations of groups 1 and 2: in the first group 1 serves every
// slot, in the second moved (slots [0,100)) has gone to group 2.
func moveConfigs() (moved keyspace.Range, cfgs []*controller.Config) {
	groups := map[uint64]controller.Group{
		1: {ID: 1, Nodes: []controller.Node{{ID: 1, Addr: "a:1"}}},
		2: {ID: 2, Nodes: []controller.Node{{ID: 1, Addr: "b:1"}}},
	}
	moved = keyspace.Range{Lo: 0, Hi: 100}
	return moved, []*controller.Config{
		{Num: 1, Shards: []controller.Shard{{Range: keyspace.All(), Group: 1}}, Groups: groups},
		{Num: 2, Shards: []controller.Shard{{Range: moved, Group: 2}, {Range: keyspace.Range{Lo: 100, Hi: keyspace.NumSlots}, Group: 1}}, Groups: groups},
	}
}

// TestSnapshotWhileMigrating hands slots [0,100) from group 1 to group 2 while both are writing
// a snapshot: the giver's snapshot must keep the dropped data (Giving), the receiver's must not
// hold the installed data (Pulling), each exactly as at its capture.
func TestSnapshotWhileMigrating(t *testing.T) {
	ctx := context.Background()
	la, a := newControlled(1)
	lb, b := newControlled(2)
	moved, cfgs := moveConfigs()
	for _, cfg := range cfgs[:1] {
		for _, g := range []*Group{a, b} {
			if ok, err := g.ProposeConfig(ctx, cfg); err != nil || !ok {
				t.Fatalf("config %d: %v %v", cfg.Num, ok, err)
			}
		}
	}
	var inMoved int
	for i := 0; inMoved < 60; i++ {
		k := fmt.Appendf(nil, "k%d", i)
		if moved.Contains(keyspace.Slot(k)) {
			inMoved++
		}
		sctx := WithSession(ctx, Session{ClientID: 7, Seq: uint64(i + 1), Acked: uint64(i)})
		if _, err := a.Set(sctx, SetArgs{Key: k, Val: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []*Group{a, b} {
		if ok, err := g.ProposeConfig(ctx, cfgs[1]); err != nil || !ok {
			t.Fatalf("config 2: %v %v", ok, err)
		}
	}

	type run struct {
		l    *loopback
		g    *Group
		want stateDump
		j    *snapJob
		w    *gatedWriter
		errc chan error
	}
	var runs []*run
	for _, p := range []struct {
		l *loopback
		g *Group
	}{{la, a}, {lb, b}} {
		r := &run{l: p.l, g: p.g, w: newGatedWriter(), errc: make(chan error, 1)}
		p.l.mu.Lock()
		r.want = dump(t, p.g)
		job, err := p.g.StartSnapshot()
		p.l.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		r.j = job.(*snapJob)
		r.j.budget = 64
		go func() { r.errc <- r.j.Stream(ctx, r.w) }()
		runs = append(runs, r)
	}
	// The giver's exporter gets a few chunks ahead (the header and the first slots); the
	// receiver's, whose table is empty and fits one chunk, only writes its header. Then the
	// hand-off happens under them.
	for i, r := range runs {
		var err error
		for range []int{4, 1}[i] {
			if !r.w.step(r.errc, &err) {
				t.Fatalf("stream ended early: %v", err)
			}
		}
	}
	for next := moved.Lo; next < moved.Hi; {
		data, n, _, err := a.Export(ctx, 2, keyspace.Range{Lo: next, Hi: moved.Hi}, 200)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Install(ctx, 2, data); err != nil {
			t.Fatal(err)
		}
		next = n
	}
	if err := a.DropGiven(ctx, 2, moved); err != nil {
		t.Fatal(err)
	}
	if err := b.MarkCleaned(ctx, 2, moved); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := b.Set(ctx, SetArgs{Key: fmt.Appendf(nil, "k%d", i), Val: []byte("at b")}); err != nil && !errors.Is(err, ErrWrongGroup) {
			t.Fatal(err)
		}
	}
	for i, r := range runs {
		close(r.w.tokens)
		if err := <-r.errc; err != nil {
			t.Fatal(err)
		}
		r.l.mu.Lock()
		r.j.Close()
		r.l.mu.Unlock()
		got := New(Config{GroupID: r.g.cfg.GroupID, Controlled: true, Table: table.New()})
		if err := got.Restore(r.w.buf.Bytes()); err != nil {
			t.Fatal(err)
		}
		sameState(t, fmt.Sprintf("group %d", i+1), dump(t, got), r.want)
	}
	// The captures were taken mid-hand-off, and the hand-off did happen since.
	ra, rb := runs[0].want, runs[1].want
	if ra.slots[0] != slotGiving || rb.slots[0] != slotPulling || len(rb.pairs) != 0 {
		t.Fatalf("capture: giver slot 0 %d, receiver slot 0 %d with %d pairs", ra.slots[0], rb.slots[0], len(rb.pairs))
	}
	if now := dump(t, b); now.slots[0] != slotServing || len(now.pairs) < inMoved {
		t.Fatalf("receiver now: slot 0 %d with %d pairs", now.slots[0], len(now.pairs))
	}
	if now := dump(t, a); now.slots[0] != slotNotOwned || len(now.pairs) >= len(ra.pairs) {
		t.Fatalf("giver now: slot 0 %d with %d pairs (had %d)", now.slots[0], len(now.pairs), len(ra.pairs))
	}
}

// TestRestoreVersion2 restores a snapshot in the format written before snapshots were streamed.
func TestRestoreVersion2(t *testing.T) {
	_, gs := newGroups(1)
	g := gs[0]
	m := &mutator{g: g, rng: rand.New(rand.NewPCG(3, 4)), keys: 500}
	m.run(t, 1000)
	want := dump(t, g)

	// The encoder of the previous version, verbatim but for the buffer handling.
	var buf bytes.Buffer
	buf.WriteString(snapshotMagicV2)
	for _, c := range []*controller.Config{g.cs.cfg, g.cs.prev} {
		var b []byte
		if c != nil {
			b, _ = json.Marshal(c)
		}
		writeLenPrefixed(&buf, b)
	}
	for _, s := range g.cs.slots {
		buf.WriteByte(byte(s))
	}
	var n uint64
	for _, s := range g.sessions {
		if s != nil && len(s.clients) > 0 {
			n++
		}
	}
	buf.Write(binary.AppendUvarint(nil, n))
	for slot, s := range g.sessions {
		if s == nil || len(s.clients) == 0 {
			continue
		}
		buf.Write(binary.LittleEndian.AppendUint16(nil, uint16(slot)))
		writeLenPrefixed(&buf, encodeSessions(nil, s))
	}
	if _, err := plainTable(g.tab).Export(&buf, keyspace.All()); err != nil {
		t.Fatal(err)
	}

	r := New(Config{GroupID: 1, Table: table.New()})
	if err := r.Restore(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	sameState(t, "version 2", dump(t, r), want)
	// A restarting replica reads it through RestoreFrom.
	r = New(Config{GroupID: 1, Table: table.New()})
	if err := r.RestoreFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	sameState(t, "version 2 through RestoreFrom", dump(t, r), want)
}

// TestRestoreRejectsDamage cuts and flips a streamed snapshot: every damaged copy is refused, and
// leaves the state it would have replaced untouched.
func TestRestoreRejectsDamage(t *testing.T) {
	_, gs := newGroups(1)
	g := gs[0]
	m := &mutator{g: g, rng: rand.New(rand.NewPCG(5, 6)), keys: 200}
	m.run(t, 300)
	data, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := New(Config{GroupID: 1, Table: table.New()})
	if err := r.Restore(data); err != nil {
		t.Fatal(err)
	}
	want := dump(t, g)
	sameState(t, "intact", dump(t, r), want)
	m.run(t, 50) // g moves on; r keeps the snapshot's state
	other, err := g.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	head := len(snapshotMagic) + 2 + keyspace.NumSlots
	var damaged [][]byte
	for _, cut := range []int{head, head + 3, len(other) / 2, len(other) - 1} {
		damaged = append(damaged, other[:cut])
	}
	damaged = append(damaged, append(slices.Clone(other), 0))
	for _, at := range []int{head + 1, head + 6, len(other) / 3, len(other) / 2, len(other) - 3} {
		b := slices.Clone(other)
		b[at] ^= 0x10
		damaged = append(damaged, b)
	}
	for i, b := range damaged {
		if err := r.Restore(b); err == nil {
			t.Fatalf("damaged snapshot %d restored", i)
		}
		sameState(t, fmt.Sprintf("after damaged snapshot %d", i), dump(t, r), want)
	}
}

// streamed takes a snapshot of g the way the raft node does, with chunks of about budget pair
// bytes, and returns its bytes and where its chunks start.
func streamed(t *testing.T, g *Group, budget int64) (data []byte, chunks int) {
	t.Helper()
	job, err := g.StartSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	job.(*snapJob).budget = budget
	var buf bytes.Buffer
	if err := job.Stream(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), len(job.(*snapJob).header)
}

// richGroup returns a controlled group with two configurations, slots in different states,
// at-most-once records, and values both small and larger than restoreBuffer.
func richGroup(t *testing.T, seed uint64, keys, big int) (*Group, *mutator) {
	t.Helper()
	ctx := context.Background()
	_, g := newControlled(1)
	_, cfgs := moveConfigs()
	if ok, err := g.ProposeConfig(ctx, cfgs[0]); err != nil || !ok {
		t.Fatalf("config 1: %v %v", ok, err)
	}
	m := &mutator{g: g, rng: rand.New(rand.NewPCG(seed, 7)), keys: keys}
	m.run(t, 3*keys)
	for i := range big {
		// Values of restoreBuffer and more, and some that straddle the reader's buffer.
		val := bytes.Repeat([]byte{byte('a' + i)}, restoreBuffer*(i%3)/2+restoreBuffer/3+i)
		if _, err := g.Set(ctx, SetArgs{Key: fmt.Appendf(nil, "big%d", i), Val: val}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := g.ProposeConfig(ctx, cfgs[1]); err != nil || !ok {
		t.Fatalf("config 2: %v %v", ok, err)
	}
	return g, m
}

// readAtRecorder records the largest single read made through it.
type readAtRecorder struct {
	r       io.ReaderAt
	largest int
	reads   int
}

func (r *readAtRecorder) ReadAt(p []byte, off int64) (int, error) {
	r.largest = max(r.largest, len(p))
	r.reads++
	return r.r.ReadAt(p, off)
}

// TestRestoreFromMatchesRestore restores the same streamed snapshot from memory (Restore), through
// a reader (RestoreFrom) and from a snapshot file opened in place (snap.OpenIndex, as a restarting
// replica does): all three give the state at capture, and RestoreFrom never reads more than its
// buffer at a time, although some values are larger than it.
func TestRestoreFromMatchesRestore(t *testing.T) {
	g, _ := richGroup(t, 11, 400, 6)
	want := dump(t, g)
	if want.cfg == "" || want.prev == "" || len(want.sessions) == 0 || want.slots[0] == want.slots[200] {
		t.Fatalf("the state lacks what the test must cover: %d records, slots %d/%d", len(want.sessions), want.slots[0], want.slots[200])
	}
	for _, budget := range []int64{64, chunkBytes} {
		data, _ := streamed(t, g, budget)
		fromMemory := New(Config{GroupID: 1, Controlled: true, Table: table.New()})
		if err := fromMemory.Restore(data); err != nil {
			t.Fatal(err)
		}
		sameState(t, "Restore", dump(t, fromMemory), want)

		rec := &readAtRecorder{r: bytes.NewReader(data)}
		fromReader := New(Config{GroupID: 1, Controlled: true, Table: table.New()})
		if err := fromReader.RestoreFrom(rec, int64(len(data))); err != nil {
			t.Fatal(err)
		}
		sameState(t, "RestoreFrom", dump(t, fromReader), want)
		if rec.largest > restoreBuffer {
			t.Fatalf("budget %d: RestoreFrom read %d bytes at once, more than its %d buffer", budget, rec.largest, restoreBuffer)
		}
		if rec.reads < 2*len(data)/restoreBuffer {
			t.Fatalf("budget %d: %d reads for two passes over %d bytes", budget, rec.reads, len(data))
		}
	}

	// The file a restarting replica finds.
	snaps, err := snap.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	job, err := g.StartSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	md := raftpb.SnapshotMetadata{Index: 42, Term: 3}
	if _, err := snaps.SaveStream(md, func(w io.Writer) error { return job.Stream(context.Background(), w) }); err != nil {
		t.Fatal(err)
	}
	job.Close()
	f, err := snaps.OpenIndex(42)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fromFile := New(Config{GroupID: 1, Controlled: true, Table: table.New()})
	if err := fromFile.RestoreFrom(f.Data, f.Data.Size()); err != nil {
		t.Fatal(err)
	}
	sameState(t, "RestoreFrom a snapshot file", dump(t, fromFile), want)

	// Like Restore, it refuses to run under an open snapshot job, and rejects what is not a
	// snapshot.
	job, err = g.StartSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.RestoreFrom(f.Data, f.Data.Size()); err == nil {
		t.Fatal("RestoreFrom ran under an open snapshot")
	}
	job.Close()
	if err := fromFile.RestoreFrom(strings.NewReader("garbage"), 7); err == nil {
		t.Fatal("RestoreFrom accepted garbage")
	}
	sameState(t, "after garbage", dump(t, fromFile), want)
}

// failingReaderAt fails every read that reaches past limit.
type failingReaderAt struct {
	r     io.ReaderAt
	limit int64
}

var errDisk = errors.New("disk failed")

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, errDisk
	}
	return f.r.ReadAt(p, off)
}

// TestRestoreFromRejectsDamage flips every byte of a streamed snapshot's chunks (and some of its
// head), cuts it at a fifth of those lengths and makes the source fail: RestoreFrom refuses each, as damage
// (or the source's own error), and leaves the state it would have replaced untouched.
func TestRestoreFromRejectsDamage(t *testing.T) {
	g, m := richGroup(t, 13, 40, 0)
	data, _ := streamed(t, g, 64)
	r := New(Config{GroupID: 1, Controlled: true, Table: table.New()})
	if err := r.RestoreFrom(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	want := dump(t, r)
	sameState(t, "intact", want, dump(t, g))
	// Another state, which a damaged snapshot must not half replace r's with.
	m.run(t, 100)
	other, head := streamed(t, g, 64)
	restore := func(what string, src io.ReaderAt, size int64, wantErr error) {
		t.Helper()
		err := r.RestoreFrom(src, size)
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: RestoreFrom = %v, want %v", what, err, wantErr)
		}
		sameState(t, what, dump(t, r), want)
	}
	var at []int
	for i := len(snapshotMagic); i < head; i += 97 {
		at = append(at, i)
	}
	for i := head; i < len(other); i++ {
		at = append(at, i)
	}
	for _, i := range at {
		b := slices.Clone(other)
		b[i] ^= 0x10
		restore(fmt.Sprintf("byte %d of %d flipped", i, len(other)), bytes.NewReader(b), int64(len(b)), errCorrupt)
	}
	for i := 0; i < len(at); i += 5 {
		cut := at[i]
		restore(fmt.Sprintf("cut at %d", cut), bytes.NewReader(other[:cut]), int64(cut), errCorrupt)
	}
	b := append(slices.Clone(other), 0)
	restore("byte appended", bytes.NewReader(b), int64(len(b)), errCorrupt)
	// A size larger than the source: the reads come up short.
	restore("source shorter than its size", bytes.NewReader(other), int64(len(other))+10, io.ErrUnexpectedEOF)
	for _, limit := range []int64{10, int64(len(other) / 2), int64(len(other)) - 1} {
		restore(fmt.Sprintf("source failing at %d", limit), failingReaderAt{bytes.NewReader(other), limit}, int64(len(other)), errDisk)
	}
}
