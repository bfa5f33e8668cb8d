package wal

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// TestPreallocatedRestart writes with zeros kept ahead of the log, reopens, and checks that the
// zero tail is taken as the clean end of the log (not repaired as a torn write), that writing
// resumes over it, and that nothing is lost across segments cut meanwhile.
func TestPreallocatedRestart(t *testing.T) {
	dir := t.TempDir()
	var logged bytes.Buffer
	opts := Options{Preallocate: 4096, SegmentSize: 16 << 10, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
	w, _ := reopen(t, dir, opts)
	for i := uint64(1); i <= 10; i++ {
		mustSave(t, w, raftpb.HardState{Term: 1, Commit: i}, ents(i, i, 1))
	}
	seg := segFiles(t, dir)[0]
	if fi, _ := os.Stat(seg); fi.Size() <= w.off || fi.Size() > w.off+4096+4096 {
		t.Fatalf("segment is %d bytes for a log ending at %d: want zeros written ahead", fi.Size(), w.off)
	}
	end := w.off
	w.Close()

	w, st := reopen(t, dir, opts)
	checkEnts(t, st.Entries, ents(1, 10, 1))
	if w.off != end {
		t.Fatalf("reopened at %d, want the end of the log %d", w.off, end)
	}
	if bytes.Contains(logged.Bytes(), []byte("torn")) {
		t.Fatalf("a preallocated tail was repaired as torn: %s", logged.String())
	}
	// Enough to cut several segments: every closed segment is trimmed to its records.
	big := bytes.Repeat([]byte("v"), 3000)
	for i := uint64(11); i <= 40; i++ {
		e := raftpb.Entry{Index: i, Term: 2, Data: big}
		if err := w.Save(raftpb.HardState{Term: 2, Commit: i}, []raftpb.Entry{e}, true); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want several segments, got %d", len(segs))
	}
	for _, s := range segs[:len(segs)-1] {
		b, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) >= headerSize && bytes.Equal(b[len(b)-headerSize:], make([]byte, headerSize)) {
			t.Fatalf("closed segment %s still ends in preallocated zeros", s)
		}
	}
	w, st = reopen(t, dir, opts)
	defer w.Close()
	if len(st.Entries) != 40 || st.Entries[39].Index != 40 || !bytes.Equal(st.Entries[39].Data, big) {
		t.Fatalf("after cuts: %d entries, last %v", len(st.Entries), idxs(st.Entries[len(st.Entries)-1:]))
	}
	if st.HardState.Commit != 40 {
		t.Fatalf("hard state %+v, want commit 40", st.HardState)
	}
}

// TestPreallocatedTornRecord: a record torn in the middle of the preallocated zeros is repaired
// like any torn tail, and a zero tail left in an older segment (a crash before its trim reached
// the disk) is skipped rather than reported as damage.
func TestPreallocatedTornRecord(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Preallocate: 4096}
	w, _ := reopen(t, dir, opts)
	var ends []int64
	for i := uint64(1); i <= 3; i++ {
		mustSave(t, w, raftpb.HardState{}, ents(i, i, 1))
		ends = append(ends, w.off)
	}
	w.Close()
	seg := segFiles(t, dir)[0]
	f, err := os.OpenFile(seg, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Zero the end of the third record: what a crash between its header and its payload
	// reaching the disk leaves.
	if _, err := f.WriteAt(make([]byte, 8), ends[2]-8); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w, st := reopen(t, dir, opts)
	checkEnts(t, st.Entries, ents(1, 2, 1))
	mustSave(t, w, raftpb.HardState{}, ents(3, 4, 2))
	w.Close()
	w, st = reopen(t, dir, opts)
	checkEnts(t, st.Entries, append(ents(1, 2, 1), ents(3, 4, 2)...))
	w.Close()

	// Pad the first segment with zeros and start a second one behind it.
	f, err = os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 4096))
	f.Close()
	w, _ = reopen(t, dir, opts)
	if err := w.cut(5); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, raftpb.HardState{}, ents(5, 5, 2))
	w.Close()
	for _, n := range []int{4096, headerSize - 1} { // zeros longer and shorter than a header
		f, _ = os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
		f.Write(make([]byte, n))
		f.Close()
		w, st = reopen(t, dir, opts)
		checkEnts(t, st.Entries, append(ents(1, 2, 1), ents(3, 5, 2)...))
		w.Close()
		if err := truncateSync(seg, segEnd(t, seg)); err != nil {
			t.Fatal(err)
		}
	}
}

// segEnd is the end of the last record of a closed segment: its size less any zero tail.
func segEnd(t *testing.T, path string) int64 {
	t.Helper()
	res, err := scanSegment(path, false, -1, func(byte, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return res.end
}

// lostPageSetup writes entries 1..5 in synced Saves, then one more Save of entries 6..13 large
// enough to span several pages of a preallocated segment, and returns the segment, the offset
// where the last Save began, and the offset where it ended.
func lostPageSetup(t *testing.T, dir string, opts Options) (seg string, from, to int64) {
	t.Helper()
	w, _ := reopen(t, dir, opts)
	for i := uint64(1); i <= 5; i++ {
		mustSave(t, w, raftpb.HardState{Term: 1, Commit: i}, ents(i, i, 1))
	}
	from = w.off
	var last []raftpb.Entry
	for i := uint64(6); i <= 13; i++ {
		last = append(last, raftpb.Entry{Index: i, Term: 1, Data: bytes.Repeat([]byte{byte(i)}, 1500)})
	}
	mustSave(t, w, raftpb.HardState{Term: 1, Commit: 13}, last)
	to = w.off
	w.Close()
	return segFiles(t, dir)[0], from, to
}

// A crash during the last Save can keep a later page of it and lose an earlier one (pages reach
// the disk in any order until fdatasync returns): the lost page reads as the zeros written
// ahead. Nothing of that Save was acknowledged, so the log is cut where the hole starts and the
// node comes back with every acknowledged entry, instead of refusing to start.
func TestLostPageInLastWriteIsTorn(t *testing.T) {
	for _, hole := range []struct {
		name string
		at   func(from, to int64) int64
	}{
		{"page in the middle", func(from, to int64) int64 { return (from/4096 + 1) * 4096 }},
		{"page after the batch record", func(from, to int64) int64 { return (from+batchSize)/pageSize*pageSize + pageSize }},
	} {
		t.Run(hole.name, func(t *testing.T) {
			dir := t.TempDir()
			var logged bytes.Buffer
			opts := Options{Preallocate: 64 << 10, Logger: slog.New(slog.NewTextHandler(&logged, nil))}
			seg, from, to := lostPageSetup(t, dir, opts)
			at := hole.at(from, to)
			if at < from+batchSize || at+4096 >= to {
				t.Fatalf("hole %d not inside the last write's records [%d, %d)", at, from+batchSize, to)
			}
			damage(t, seg, func(b []byte) {
				copy(b[at:at+4096], make([]byte, 4096))
			})
			w, st := reopen(t, dir, opts)
			defer w.Close()
			// The torn Save is cut whole: its records before the hole were replayed at first, and
			// must not be in the state either.
			checkEnts(t, st.Entries, ents(1, 5, 1))
			if st.HardState.Commit != 5 {
				t.Fatalf("HardState %+v: want the last acknowledged one (commit 5)", st.HardState)
			}
			if !bytes.Contains(logged.Bytes(), []byte("torn")) {
				t.Fatalf("no torn-tail repair logged: %s", logged.String())
			}
			// The log goes on from the cut, and a second restart agrees.
			next := st.Entries[len(st.Entries)-1].Index + 1
			mustSave(t, w, raftpb.HardState{Term: 2, Commit: next}, ents(next, next, 2))
			w.Close()
			w2, st2 := reopen(t, dir, opts)
			defer w2.Close()
			if got := st2.Entries[len(st2.Entries)-1]; got.Index != next || got.Term != 2 {
				t.Fatalf("after the repair the log ends at %d/%d, want %d/2", got.Index, got.Term, next)
			}
		})
	}
}

// The same hole in a segment that is not the last one is damage to data that was synced before
// the next segment was created: an error, never a silent cut.
func TestLostPageInEarlierSegmentIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Preallocate: 64 << 10}
	seg, from, _ := lostPageSetup(t, dir, opts)
	w, _ := reopen(t, dir, opts)
	if err := w.cut(w.lastIndex + 1); err != nil { // a newer segment follows
		t.Fatal(err)
	}
	mustSave(t, w, raftpb.HardState{Term: 1, Commit: 14}, ents(14, 14, 1))
	w.Close()
	damage(t, seg, func(b []byte) {
		at := (from/4096 + 1) * 4096
		copy(b[at:at+4096], make([]byte, 4096))
	})
	if ce := wantCorrupt(t, dir, opts); ce.File != seg {
		t.Fatalf("want *CorruptError in %s, got %v", seg, ce)
	}
}

// When the page holding the last Save's batch record is the one lost, nothing bounds that
// write any more: the hole could as well be in synced data, so opening reports corruption
// rather than guessing (the operator decides).
func TestLostBatchRecordIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Preallocate: 64 << 10}
	seg, from, _ := lostPageSetup(t, dir, opts)
	damage(t, seg, func(b []byte) {
		end := (from/pageSize + 1) * pageSize // the page holding the batch record, from it on
		copy(b[from:end], make([]byte, end-from))
	})
	if ce := wantCorrupt(t, dir, opts); ce.Offset != from {
		t.Fatalf("want *CorruptError at %d, got %v", from, ce)
	}
}

// A record of synced data that holds a whole aligned page of zeros of its own (a value of
// zeros) and then gets a flipped bit is corruption, not a torn write, when later Saves follow
// it: the zero page is not in the last write.
func TestZeroSectorInSyncedDataIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Preallocate: 64 << 10}
	w, _ := reopen(t, dir, opts)
	mustSave(t, w, raftpb.HardState{Term: 1, Vote: 2, Commit: 1}, ents(1, 1, 1))
	at := w.off
	mustSave(t, w, raftpb.HardState{Term: 1, Vote: 2, Commit: 2}, []raftpb.Entry{{Index: 2, Term: 1, Data: make([]byte, 2*pageSize)}}) // holds a whole aligned page wherever it starts
	for i := uint64(3); i <= 10; i++ {
		mustSave(t, w, raftpb.HardState{Term: 1, Vote: 2, Commit: i}, ents(i, i, 1))
	}
	w.Close()
	seg := segFiles(t, dir)[0]
	damage(t, seg, func(b []byte) {
		b[at+batchSize+headerSize+2] ^= 0x10 // inside entry 2's record, before its zeros
	})
	wantCorrupt(t, dir, opts)
}

// After a torn Save was cut, later synced writes are judged on their own: damage to them is
// corruption, not a second torn write measured against the cut Save's bounds.
func TestDamageAfterRepairIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Preallocate: 64 << 10}
	seg, from, _ := lostPageSetup(t, dir, opts)
	damage(t, seg, func(b []byte) {
		at := (from/pageSize + 1) * pageSize
		copy(b[at:at+pageSize], make([]byte, pageSize))
	})
	w, st := reopen(t, dir, opts) // repairs: cuts the last Save
	checkEnts(t, st.Entries, ents(1, 5, 1))
	if err := w.SaveSnapshot(3, 1); err != nil {
		t.Fatal(err)
	}
	marker := w.off - headerSize - snapMarkSize
	mustSave(t, w, raftpb.HardState{Term: 1, Commit: 6}, ents(6, 6, 1))
	w.Close()
	damage(t, seg, func(b []byte) {
		copy(b[marker:marker+headerSize], make([]byte, headerSize))
	})
	if ce := wantCorrupt(t, dir, opts); ce.Offset != marker {
		t.Fatalf("want *CorruptError at %d (the snapshot marker), got %v", marker, ce)
	}
}

// A flipped bit in a record's length field, in the last (synced) Save, is corruption: the
// length contradicts the batch, so the record cannot be the torn end of a write.
func TestBadLengthInLastSaveIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Preallocate: 64 << 10}
	w, _ := reopen(t, dir, opts)
	for i := uint64(1); i <= 5; i++ {
		mustSave(t, w, raftpb.HardState{Term: 1, Commit: i}, ents(i, i, 1))
	}
	at := w.off
	mustSave(t, w, raftpb.HardState{Term: 1, Commit: 8}, ents(6, 8, 1))
	w.Close()
	seg := segFiles(t, dir)[0]
	damage(t, seg, func(b []byte) {
		b[at+batchSize+1] ^= 0x04 // entry 6's length: 1 KiB longer, into the zeros after the log
	})
	wantCorrupt(t, dir, opts)
}

// damage rewrites the segment file seg through change.
func damage(t *testing.T, seg string, change func(b []byte)) {
	t.Helper()
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	change(b)
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantCorrupt opens the WAL in dir and fails unless that reports a *CorruptError, which it returns.
func wantCorrupt(t *testing.T, dir string, opts Options) *CorruptError {
	t.Helper()
	_, err := OpenWithOptions(dir, opts)
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("want *CorruptError, got %v", err)
	}
	return ce
}
