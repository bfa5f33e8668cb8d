package snap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

func mkSnap(term, index uint64, data string) raftpb.Snapshot {
	return raftpb.Snapshot{
		Data: []byte(data),
		Metadata: raftpb.SnapshotMetadata{
			Index:     index,
			Term:      term,
			ConfState: raftpb.ConfState{Voters: []uint64{1, 2, 3}},
		},
	}
}

func mustNew(t *testing.T, dir string, opts Options) *Snapshotter {
	t.Helper()
	s, err := NewWithOptions(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkSnap(t *testing.T, got, want raftpb.Snapshot) {
	t.Helper()
	if got.Metadata.Index != want.Metadata.Index || got.Metadata.Term != want.Metadata.Term ||
		!slices.Equal(got.Metadata.ConfState.Voters, want.Metadata.ConfState.Voters) ||
		!bytes.Equal(got.Data, want.Data) {
		t.Fatalf("got snapshot %v/%q, want %v/%q", got.Metadata, got.Data, want.Metadata, want.Data)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var r []string
	for _, de := range des {
		r = append(r, de.Name())
	}
	return r
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snap")
	s := mustNew(t, dir, Options{})
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("empty dir: %v", err)
	}
	if err := s.Save(raftpb.Snapshot{}); !errors.Is(err, ErrEmptySnapshot) {
		t.Fatalf("empty snapshot: %v", err)
	}
	want := mkSnap(2, 100, "state-at-100")
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"0000000000000002-0000000000000064.snap"}) {
		t.Fatalf("files %v", got)
	}
	// A fresh Snapshotter (restart) reads it back.
	got, err := mustNew(t, dir, Options{}).Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)

	// Empty data round-trips too.
	if err := s.Save(mkSnap(2, 101, "")); err != nil {
		t.Fatal(err)
	}
	got, err = s.Load()
	if err != nil || got.Metadata.Index != 101 || len(got.Data) != 0 {
		t.Fatalf("empty data: %v %v", got.Metadata, err)
	}
}

func TestNewestAndLoadIndex(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	for _, sn := range []raftpb.Snapshot{mkSnap(1, 10, "a"), mkSnap(3, 30, "c"), mkSnap(2, 20, "b")} {
		if err := s.Save(sn); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, mkSnap(3, 30, "c"))
	got, err = s.LoadIndex(20)
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, mkSnap(2, 20, "b"))
	if _, err := s.LoadIndex(25); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing index: %v", err)
	}
}

func TestCorruptSkipped(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	s.Save(mkSnap(1, 10, "older"))
	s.Save(mkSnap(1, 20, "newer-but-damaged"))
	p := filepath.Join(dir, fileName(1, 20))
	b, _ := os.ReadFile(p)
	b[len(b)-8] ^= 1 // inside Data
	os.WriteFile(p, b, 0o644)

	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, mkSnap(1, 10, "older"))
	if _, err := s.LoadIndex(20); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("corrupt LoadIndex: %v", err)
	}

	// Truncated file, and a file whose name does not match its metadata.
	os.Truncate(filepath.Join(dir, fileName(1, 10)), 10)
	if _, err := s.Load(); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("all corrupt: %v", err)
	}
	s.Save(mkSnap(1, 30, "x"))
	os.Rename(filepath.Join(dir, fileName(1, 30)), filepath.Join(dir, fileName(1, 40)))
	if _, err := readFile(filepath.Join(dir, fileName(1, 40)), fileInfo{term: 1, index: 40}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("renamed file: %v", err)
	}
}

func TestRetentionAndTempCleanup(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{Retain: 2})
	for i := uint64(1); i <= 5; i++ {
		if err := s.Save(mkSnap(1, i*10, "d")); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{fileName(1, 40), fileName(1, 50)}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}

	// Default retention is 3.
	dir2 := t.TempDir()
	s2 := mustNew(t, dir2, Options{})
	for i := uint64(1); i <= 5; i++ {
		s2.Save(mkSnap(1, i, "d"))
	}
	if got := len(names(t, dir2)); got != DefaultRetain {
		t.Fatalf("kept %d files, want %d", got, DefaultRetain)
	}

	// A temp file left by a crash mid-Save is removed on New and never loaded.
	tmp := filepath.Join(dir, fileName(1, 60)+".tmp")
	os.WriteFile(tmp, []byte("partial"), 0o644)
	s = mustNew(t, dir, Options{Retain: 2})
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Fatalf("temp file survived: %v", err)
	}
	got, err := s.Load()
	if err != nil || got.Metadata.Index != 50 {
		t.Fatalf("load after cleanup: %v %v", got.Metadata, err)
	}
}

// TestKeepSparesFromRetention: the snapshot Keep names survives any number of newer saves (a
// raft node's received snapshots that raft ignored must not push out the one its WAL names),
// and is removed by retention once another index is kept.
func TestKeepSparesFromRetention(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snap")
	s := mustNew(t, dir, Options{Retain: 2})
	if err := s.Save(mkSnap(1, 10, "kept")); err != nil {
		t.Fatal(err)
	}
	s.Keep(10)
	for i := uint64(11); i <= 15; i++ {
		if err := s.Save(mkSnap(1, i, "newer")); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LoadIndex(10)
	if err != nil {
		t.Fatalf("kept snapshot removed: %v", err)
	}
	checkSnap(t, got, mkSnap(1, 10, "kept"))
	if n := len(names(t, dir)); n != 3 {
		t.Fatalf("%d files, want the 2 newest and the kept one: %v", n, names(t, dir))
	}
	// The next index to keep is named before the WAL marker moves to it: until a further Keep,
	// the previous one is spared too.
	s.Keep(15)
	if err := s.Save(mkSnap(1, 16, "newer")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadIndex(10); err != nil {
		t.Fatalf("the previously kept snapshot was removed while the next was being named: %v", err)
	}
	s.Keep(16)
	if err := s.Save(mkSnap(1, 17, "newest")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadIndex(10); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("snapshot no longer kept survived retention: %v", err)
	}
}

// TestSavesDoNotWaitForEachOther: a save whose data is slow to come (a snapshot arriving from the
// leader) does not hold up another save, and both files end up whole.
func TestSavesDoNotWaitForEachOther(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "snap")
	s := mustNew(t, dir, Options{Retain: 5})
	release := make(chan struct{})
	slow := make(chan error, 1)
	go func() {
		_, err := s.SaveStream(mkSnap(1, 20, "").Metadata, func(w io.Writer) error {
			if _, err := w.Write([]byte("first half, ")); err != nil {
				return err
			}
			<-release
			_, err := w.Write([]byte("second half"))
			return err
		})
		slow <- err
	}()
	done := make(chan error, 1)
	go func() { done <- s.Save(mkSnap(1, 21, "quick")) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a save waited for another one still writing")
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
	for i, want := range map[uint64]string{20: "first half, second half", 21: "quick"} {
		got, err := s.LoadIndex(i)
		if err != nil || string(got.Data) != want {
			t.Fatalf("snapshot %d: %q, %v; want %q", i, got.Data, err, want)
		}
	}
}
