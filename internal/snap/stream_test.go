package snap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// TestSaveStream streams data in many pieces and reads back exactly those bytes.
func TestSaveStream(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	want := mkSnap(3, 77, "")
	var all []byte
	n, err := s.SaveStream(want.Metadata, func(w io.Writer) error {
		for i := range 1000 {
			piece := bytes.Repeat([]byte{byte(i)}, i%300)
			all = append(all, piece...)
			if _, err := w.Write(piece); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(all)) {
		t.Fatalf("SaveStream reported %d bytes, wrote %d", n, len(all))
	}
	want.Data = all
	got, err := mustNew(t, dir, Options{}).LoadIndex(77)
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)
	if _, err := s.SaveStream(raftpb.SnapshotMetadata{}, func(io.Writer) error { return nil }); !errors.Is(err, ErrEmptySnapshot) {
		t.Fatalf("index 0: %v", err)
	}
}

// TestSaveStreamFailureLeavesNothing: a producer that fails part-way (after writing more than the
// write buffer, so bytes reached the disk) leaves neither a snapshot nor a temporary file, and an
// older snapshot stays the newest.
func TestSaveStreamFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	if err := s.Save(mkSnap(1, 10, "older")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("state machine failed")
	_, err := s.SaveStream(mkSnap(1, 20, "").Metadata, func(w io.Writer) error {
		if _, err := w.Write(make([]byte, 3*writeBuffer)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("SaveStream = %v, want the producer's error", err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{fileName(1, 10)}) {
		t.Fatalf("files after failed save: %v", got)
	}
	if _, err := s.LoadIndex(20); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("LoadIndex of failed save: %v", err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, mkSnap(1, 10, "older"))
}

// TestPartialStreamIgnored simulates a crash in the middle of a streamed save: the temporary file
// holds a prefix of the snapshot. It is never loaded, and New removes it; a complete file whose
// data was cut short (a lying disk) fails validation instead of restoring a prefix.
func TestPartialStreamIgnored(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	if err := s.Save(mkSnap(1, 10, "complete")); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(mkSnap(1, 20, "the newer snapshot")); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(filepath.Join(dir, fileName(1, 20)))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, fileName(1, 20)))
	tmp := filepath.Join(dir, fileName(1, 20)+".tmp")
	for cut := 0; cut < len(full); cut++ {
		if err := os.WriteFile(tmp, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		checkSnap(t, got, mkSnap(1, 10, "complete"))
		if _, err := s.LoadIndex(20); !errors.Is(err, ErrNoSnapshot) {
			t.Fatalf("cut at %d: temp file loaded: %v", cut, err)
		}
	}
	s = mustNew(t, dir, Options{})
	if got := names(t, dir); !slices.Equal(got, []string{fileName(1, 10)}) {
		t.Fatalf("files after restart: %v", got)
	}
	// Every proper prefix of a complete file, renamed into place, is rejected as corrupt.
	final := filepath.Join(dir, fileName(1, 20))
	for cut := 0; cut < len(full); cut++ {
		if err := os.WriteFile(final, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readFile(final, fileInfo{term: 1, index: 20}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d bytes: %v", cut, err)
		}
	}
}

// TestLoadVersion1 reads a file in the format written before streaming saves.
func TestLoadVersion1(t *testing.T) {
	dir := t.TempDir()
	want := mkSnap(2, 5, "written by an older shoal")
	meta, err := want.Metadata.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b := []byte(magicV1)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(meta)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(want.Data)))
	b = append(append(b, meta...), want.Data...)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if err := os.WriteFile(filepath.Join(dir, fileName(2, 5)), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := mustNew(t, dir, Options{}).LoadIndex(5)
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)
	b[len(b)-6] ^= 1
	os.WriteFile(filepath.Join(dir, fileName(2, 5)), b, 0o644)
	if _, err := mustNew(t, dir, Options{}).LoadIndex(5); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("damaged v1 file: %v", err)
	}
}
