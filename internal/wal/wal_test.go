package wal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func ents(lo, hi, term uint64) []raftpb.Entry {
	var es []raftpb.Entry
	for i := lo; i <= hi; i++ {
		es = append(es, raftpb.Entry{Index: i, Term: term, Type: raftpb.EntryNormal,
			Data: fmt.Appendf(nil, "entry-%d-term-%d", i, term)})
	}
	return es
}

func mustOpen(t testing.TB, dir string, opts Options) *WAL {
	t.Helper()
	w, err := OpenWithOptions(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w
}

func mustSave(t testing.TB, w *WAL, hs raftpb.HardState, es []raftpb.Entry) {
	t.Helper()
	if err := w.Save(hs, es, true); err != nil {
		t.Fatalf("save: %v", err)
	}
}

func reopen(t testing.TB, dir string, opts Options) (*WAL, State) {
	t.Helper()
	w := mustOpen(t, dir, opts)
	st, err := w.ReadAll()
	if err != nil {
		t.Fatalf("readall: %v", err)
	}
	return w, st
}

func checkEnts(t *testing.T, got, want []raftpb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d (got first %v)", len(got), len(want), idxs(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) {
			t.Fatalf("entry %d: got %+v want %+v", i, g, w)
		}
	}
}

func idxs(es []raftpb.Entry) []uint64 {
	var r []uint64
	for _, e := range es {
		r = append(r, e.Index)
	}
	return r
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestRoundTripAndRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w, st := reopen(t, dir, Options{})
	if len(st.Entries) != 0 || st.HardState != (raftpb.HardState{}) || st.Snapshot != (SnapMark{}) {
		t.Fatalf("fresh WAL not empty: %+v", st)
	}
	hs := raftpb.HardState{Term: 1, Vote: 1, Commit: 3}
	mustSave(t, w, hs, ents(1, 5, 1))
	if err := w.Save(raftpb.HardState{}, nil, true); err != nil { // no-op
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Save(hs, nil, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("save after close: %v", err)
	}

	w, st = reopen(t, dir, Options{})
	if st.HardState != hs {
		t.Fatalf("hard state %+v want %+v", st.HardState, hs)
	}
	checkEnts(t, st.Entries, ents(1, 5, 1))
	hs2 := raftpb.HardState{Term: 2, Vote: 2, Commit: 7}
	mustSave(t, w, raftpb.HardState{}, ents(6, 8, 2)) // entries only: hs unchanged
	mustSave(t, w, hs2, nil)                          // hs only
	w.Close()

	w, st = reopen(t, dir, Options{})
	defer w.Close()
	if st.HardState != hs2 {
		t.Fatalf("hard state %+v want %+v", st.HardState, hs2)
	}
	checkEnts(t, st.Entries, append(ents(1, 5, 1), ents(6, 8, 2)...))

	// A second ReadAll re-reads from disk and sees later saves.
	mustSave(t, w, raftpb.HardState{}, ents(9, 9, 2))
	st, err := w.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	checkEnts(t, st.Entries, append(ents(1, 5, 1), ents(6, 9, 2)...))
}

func TestOverwrite(t *testing.T) {
	dir := t.TempDir()
	w, _ := reopen(t, dir, Options{})
	mustSave(t, w, raftpb.HardState{Term: 1}, ents(1, 10, 1))
	mustSave(t, w, raftpb.HardState{Term: 2}, ents(5, 7, 2)) // truncates 8..10
	mustSave(t, w, raftpb.HardState{Term: 3}, ents(8, 8, 3))
	if err := w.Save(raftpb.HardState{}, ents(10, 10, 3), true); err == nil {
		t.Fatal("save leaving a gap succeeded")
	}
	w.Close()
	w, st := reopen(t, dir, Options{})
	defer w.Close()
	want := append(append(ents(1, 4, 1), ents(5, 7, 2)...), ents(8, 8, 3)...)
	checkEnts(t, st.Entries, want)
	if st.HardState.Term != 3 {
		t.Fatalf("hs %+v", st.HardState)
	}
}

// writeBatches saves one entry per Save and returns the file offset after
// each record, so tests can cut at known boundaries.
func writeBatches(t *testing.T, dir string, n uint64) []int64 {
	t.Helper()
	w, _ := reopen(t, dir, Options{})
	defer w.Close()
	var ends []int64
	for i := uint64(1); i <= n; i++ {
		mustSave(t, w, raftpb.HardState{}, ents(i, i, 1))
		ends = append(ends, w.off)
	}
	return ends
}

func TestTornTailChopped(t *testing.T) {
	for _, chop := range []int64{1, 4, headerSize, headerSize + 3} {
		t.Run(fmt.Sprint(chop), func(t *testing.T) {
			dir := t.TempDir()
			ends := writeBatches(t, dir, 5)
			seg := segFiles(t, dir)[0]
			if err := os.Truncate(seg, ends[4]-chop); err != nil {
				t.Fatal(err)
			}
			w, st := reopen(t, dir, Options{})
			checkEnts(t, st.Entries, ents(1, 4, 1))
			if fi, _ := os.Stat(seg); fi.Size() != ends[3] {
				t.Fatalf("file not truncated to last good record: size %d want %d", fi.Size(), ends[3])
			}
			// Writing continues cleanly after the repaired tail.
			mustSave(t, w, raftpb.HardState{Term: 1, Commit: 5}, ents(5, 6, 1))
			w.Close()
			w, st = reopen(t, dir, Options{})
			defer w.Close()
			checkEnts(t, st.Entries, ents(1, 6, 1))
		})
	}
}

func TestTornTailZeroFilled(t *testing.T) {
	t.Run("appended zeros", func(t *testing.T) {
		dir := t.TempDir()
		ends := writeBatches(t, dir, 3)
		seg := segFiles(t, dir)[0]
		f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(make([]byte, 8192))
		f.Close()
		w, st := reopen(t, dir, Options{})
		defer w.Close()
		checkEnts(t, st.Entries, ents(1, 3, 1))
		if w.off != ends[2] {
			t.Fatalf("write offset %d want %d", w.off, ends[2])
		}
	})
	t.Run("zeroed last record", func(t *testing.T) {
		dir := t.TempDir()
		ends := writeBatches(t, dir, 3)
		seg := segFiles(t, dir)[0]
		f, err := os.OpenFile(seg, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Keep the header, zero the payload's end and pad with zeros.
		f.WriteAt(make([]byte, 4096), ends[1]+headerSize+2)
		f.Close()
		w, st := reopen(t, dir, Options{})
		checkEnts(t, st.Entries, ents(1, 2, 1))
		mustSave(t, w, raftpb.HardState{}, ents(3, 4, 2))
		w.Close()
		w, st = reopen(t, dir, Options{})
		defer w.Close()
		checkEnts(t, st.Entries, append(ents(1, 2, 1), ents(3, 4, 2)...))
	})
}

func TestCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	ends := writeBatches(t, dir, 5)
	seg := segFiles(t, dir)[0]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[ends[1]+headerSize+3] ^= 0x40 // payload of the third record
	os.WriteFile(seg, b, 0o644)
	_, err = OpenWithOptions(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("want *CorruptError, got %v", err)
	}
	if ce.File != seg || ce.Offset != ends[1] {
		t.Fatalf("corrupt error names %s@%d, want %s@%d", ce.File, ce.Offset, seg, ends[1])
	}
	if !strings.Contains(err.Error(), seg) || !strings.Contains(err.Error(), fmt.Sprint(ends[1])) {
		t.Fatalf("message lacks file/offset: %v", err)
	}
}

func TestCorruptNonLastSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 256}
	w, _ := reopen(t, dir, opts)
	for i := uint64(1); i <= 20; i++ {
		mustSave(t, w, raftpb.HardState{}, ents(i, i, 1))
	}
	w.Close()
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	// A chopped tail is tolerated only in the last segment.
	fi, _ := os.Stat(segs[0])
	os.Truncate(segs[0], fi.Size()-2)
	_, err := OpenWithOptions(dir, opts)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.File != segs[0] {
		t.Fatalf("want *CorruptError in %s, got %v", segs[0], err)
	}
}

func TestRotationAndRelease(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 512}
	w, _ := reopen(t, dir, opts)
	for i := uint64(1); i <= 50; i += 2 {
		mustSave(t, w, raftpb.HardState{Term: 1, Commit: i}, ents(i, i+1, 1))
	}
	segs := segFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("want rotation, got %d segments", len(segs))
	}
	// Each segment's name carries the index of its first entry.
	for i, p := range segs {
		s, ok := parseSegName(filepath.Base(p))
		if !ok || s.seq != uint64(i) {
			t.Fatalf("bad segment name %s", p)
		}
		first := uint64(0)
		if _, err := scanSegment(p, false, -1, func(typ byte, b []byte) error {
			if typ == recEntry && first == 0 {
				var e raftpb.Entry
				e.Unmarshal(b)
				first = e.Index
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if i > 0 && first != s.first {
			t.Fatalf("segment %s starts with entry %d", p, first)
		}
	}
	if err := w.SaveSnapshot(30, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.ReleaseTo(30); err != nil {
		t.Fatal(err)
	}
	left := segFiles(t, dir)
	if len(left) >= len(segs) {
		t.Fatalf("nothing released: %d -> %d", len(segs), len(left))
	}
	s0, _ := parseSegName(filepath.Base(left[0]))
	if s0.first > 30 {
		t.Fatalf("released the segment holding index 30: first left %s", left[0])
	}
	mustSave(t, w, raftpb.HardState{Term: 1, Commit: 52}, ents(51, 52, 1))
	w.Close()

	w, st := reopen(t, dir, opts)
	defer w.Close()
	if st.Snapshot != (SnapMark{Index: 30, Term: 1}) {
		t.Fatalf("snapshot %+v", st.Snapshot)
	}
	checkEnts(t, st.Entries, ents(31, 52, 1))
	if st.HardState.Commit != 52 {
		t.Fatalf("hs %+v", st.HardState)
	}
}

func TestSnapshotMarkerFiltering(t *testing.T) {
	cases := []struct {
		name  string
		mark  SnapMark
		after []raftpb.Entry
		want  []raftpb.Entry
	}{
		{"local snapshot keeps later entries", SnapMark{10, 1}, nil, ents(11, 20, 1)},
		{"snapshot at last index", SnapMark{20, 1}, ents(21, 22, 2), ents(21, 22, 2)},
		{"leader snapshot beyond log", SnapMark{30, 3}, ents(31, 32, 3), ents(31, 32, 3)},
		{"leader snapshot with other term replaces log", SnapMark{15, 2}, ents(16, 17, 2), ents(16, 17, 2)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			w, _ := reopen(t, dir, Options{})
			mustSave(t, w, raftpb.HardState{Term: 1}, ents(1, 20, 1))
			if err := w.SaveSnapshot(c.mark.Index, c.mark.Term); err != nil {
				t.Fatal(err)
			}
			if c.after != nil {
				mustSave(t, w, raftpb.HardState{}, c.after)
			}
			w.Close()
			w, st := reopen(t, dir, Options{})
			defer w.Close()
			if st.Snapshot != c.mark {
				t.Fatalf("snapshot %+v want %+v", st.Snapshot, c.mark)
			}
			checkEnts(t, st.Entries, c.want)
		})
	}
}

func TestMissingSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 256}
	w, _ := reopen(t, dir, opts)
	for i := uint64(1); i <= 20; i++ {
		mustSave(t, w, raftpb.HardState{}, ents(i, i, 1))
	}
	w.Close()
	segs := segFiles(t, dir)
	os.Remove(segs[1])
	if _, err := OpenWithOptions(dir, opts); err == nil {
		t.Fatal("open with a missing middle segment succeeded")
	}
}

func TestDiskFullError(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_RDWR, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	w, _ := reopen(t, t.TempDir(), Options{})
	real := w.f
	w.f = full
	err = w.Save(raftpb.HardState{Term: 1}, ents(1, 1, 1), true)
	w.f = real
	full.Close()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("want wrapped ENOSPC mentioning disk full, got %v", err)
	}
	w.Close()
}

// BenchmarkSaveSync times fsynced Saves of a 64-entry batch, appending to the end of the file
// and overwriting zeros written ahead (Options.Preallocate): the second spares fdatasync the
// file-size and block-map journal commit. Run with -benchtime=2000x or more so that the zeros
// written ahead are mostly reused rather than freshly written.
func BenchmarkSaveSync(b *testing.B) {
	for _, c := range []struct {
		name     string
		prealloc int64
	}{{"append", 0}, {"preallocated", 1 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			w := mustOpen(b, b.TempDir(), Options{Preallocate: c.prealloc})
			defer w.Close()
			batch := make([]raftpb.Entry, 64)
			data := bytes.Repeat([]byte("x"), 100)
			b.SetBytes(int64(len(batch) * len(data)))
			idx := uint64(0)
			b.ResetTimer()
			for b.Loop() {
				for i := range batch {
					idx++
					batch[i] = raftpb.Entry{Index: idx, Term: 1, Data: data}
				}
				if err := w.Save(raftpb.HardState{Term: 1, Commit: idx}, batch, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A Save that overwrites the log's tail and cuts a new segment names it for its first entry.
// If that Save is then lost (torn and cut away, or a crash right after the cut), the empty
// segment is renamed at open for the log as it is: otherwise its name would tell ReleaseTo that
// the previous segment holds nothing live at or above it, and a snapshot there would delete
// live entries.
func TestEmptyNewestSegmentRenamed(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1024}
	w, _ := reopen(t, dir, opts)
	i := uint64(1)
	for ; len(segFiles(t, dir)) == 1 || w.off == 0; i++ {
		mustSave(t, w, raftpb.HardState{Term: 1, Commit: i}, ents(i, i, 1))
		if len(segFiles(t, dir)) > 1 {
			t.Fatal("cut before the overwrite")
		}
		if w.off > 700 {
			break
		}
	}
	lastIdx := i
	// Overwrite from lastIdx-1 in term 2, big enough to cut a new segment.
	big := []raftpb.Entry{{Index: lastIdx - 1, Term: 2, Data: make([]byte, 600)}}
	mustSave(t, w, raftpb.HardState{Term: 2, Commit: lastIdx - 2}, big)
	w.Close()
	segs := segFiles(t, dir)
	if len(segs) != 2 {
		t.Fatalf("want a cut, got %d segments", len(segs))
	}
	if s, _ := parseSegName(filepath.Base(segs[1])); s.first != lastIdx-1 {
		t.Fatalf("new segment named first=%d, want %d", s.first, lastIdx-1)
	}
	if err := os.Truncate(segs[1], 0); err != nil { // the overwriting Save never landed
		t.Fatal(err)
	}
	w, st := reopen(t, dir, opts)
	defer w.Close()
	checkEnts(t, st.Entries, ents(1, lastIdx, 1))
	segs = segFiles(t, dir)
	if s, _ := parseSegName(filepath.Base(segs[len(segs)-1])); s.first != lastIdx+1 {
		t.Fatalf("empty newest segment named first=%d, want %d", s.first, lastIdx+1)
	}
	// ReleaseTo at the old name keeps the entries above it.
	if err := w.SaveSnapshot(lastIdx-1, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.ReleaseTo(lastIdx - 1); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w2, st2 := reopen(t, dir, opts)
	defer w2.Close()
	checkEnts(t, st2.Entries, ents(lastIdx, lastIdx, 1))
}
