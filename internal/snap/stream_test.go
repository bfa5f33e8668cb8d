package snap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
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
	want := writeVersion1(t, dir)
	got, err := mustNew(t, dir, Options{}).LoadIndex(5)
	if err != nil {
		t.Fatal(err)
	}
	checkSnap(t, got, want)
	path := filepath.Join(dir, fileName(2, 5))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-6] ^= 1
	os.WriteFile(path, b, 0o644)
	if _, err := mustNew(t, dir, Options{}).LoadIndex(5); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("damaged v1 file: %v", err)
	}
}

// readOpened reads all of an opened snapshot's data.
func readOpened(t *testing.T, o *Opened) []byte {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(o.Data, 0, o.Data.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpenIndex: OpenIndex gives back what Save and SaveStream wrote, for data spanning many
// checksum buffers as well as empty data, and ErrNoSnapshot for an index without a file.
func TestOpenIndex(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	small := mkSnap(1, 10, "saved whole")
	if err := s.Save(small); err != nil {
		t.Fatal(err)
	}
	big := mkSnap(2, 20, "")
	for i := range 3*checkBuffer + 7 {
		big.Data = append(big.Data, byte(i*7+i/251))
	}
	if _, err := s.SaveStream(big.Metadata, func(w io.Writer) error {
		for b := big.Data; len(b) > 0; {
			n := min(len(b), 1000)
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(mkSnap(2, 30, "")); err != nil {
		t.Fatal(err)
	}
	s = mustNew(t, dir, Options{}) // a restart
	for _, want := range []raftpb.Snapshot{small, big, mkSnap(2, 30, "")} {
		o, err := s.OpenIndex(want.Metadata.Index)
		if err != nil {
			t.Fatal(err)
		}
		if o.Data.Size() != int64(len(want.Data)) {
			t.Fatalf("index %d: data size %d, want %d", want.Metadata.Index, o.Data.Size(), len(want.Data))
		}
		checkSnap(t, raftpb.Snapshot{Metadata: o.Metadata, Data: readOpened(t, o)}, want)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if err := o.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	if _, err := s.OpenIndex(25); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("missing index: %v", err)
	}
	if len(s.open) != 0 {
		t.Fatalf("files still counted open after Close: %v", s.open)
	}
}

// TestOpenIndexRejectsDamage: a flipped byte anywhere (header, metadata, data, trailer) and every
// proper prefix are reported as corrupt, as readFile reports them, and nothing stays open.
func TestOpenIndexRejectsDamage(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{})
	if err := s.Save(mkSnap(1, 20, "the snapshot's data")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fileName(1, 20))
	full, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, b []byte) {
		t.Helper()
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		o, err := s.OpenIndex(20)
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, ErrNoSnapshot) {
			t.Fatalf("%s: OpenIndex = %v, want corrupt", what, err)
		}
		if o != nil || len(s.open) != 0 {
			t.Fatalf("%s: a damaged file was left open", what)
		}
		if _, err := readFile(p, fileInfo{term: 1, index: 20}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: readFile = %v, but OpenIndex rejected it", what, err)
		}
	}
	for at := range full {
		b := slices.Clone(full)
		b[at] ^= 0x40
		check(fmt.Sprintf("byte %d flipped", at), b)
	}
	for cut := range len(full) {
		check(fmt.Sprintf("cut at %d", cut), full[:cut])
	}
	check("byte appended", append(slices.Clone(full), 0))
	// A valid file whose name does not match its metadata.
	os.WriteFile(p, full, 0o644)
	os.Rename(p, filepath.Join(dir, fileName(1, 21)))
	if _, err := s.OpenIndex(21); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("renamed file: %v", err)
	}
}

// TestOpenIndexVersion1 opens a file in the format written before streaming saves.
func TestOpenIndexVersion1(t *testing.T) {
	dir := t.TempDir()
	want := writeVersion1(t, dir)
	o, err := mustNew(t, dir, Options{}).OpenIndex(5)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	checkSnap(t, raftpb.Snapshot{Metadata: o.Metadata, Data: readOpened(t, o)}, want)
}

// TestOpenIndexSparedByRetention: a file held open is not removed by the saves that would retire
// it, and stays readable, until it is closed; the next save then removes it.
func TestOpenIndexSparedByRetention(t *testing.T) {
	dir := t.TempDir()
	s := mustNew(t, dir, Options{Retain: 1})
	if err := s.Save(mkSnap(1, 10, "opened")); err != nil {
		t.Fatal(err)
	}
	o, err := s.OpenIndex(10)
	if err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{20, 30} {
		if err := s.Save(mkSnap(1, idx, "newer")); err != nil {
			t.Fatal(err)
		}
	}
	if got := names(t, dir); !slices.Equal(got, []string{fileName(1, 10), fileName(1, 30)}) {
		t.Fatalf("files while one is open: %v", got)
	}
	if got := readOpened(t, o); string(got) != "opened" {
		t.Fatalf("open file reads %q", got)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(mkSnap(1, 40, "newest")); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{fileName(1, 40)}) {
		t.Fatalf("files after Close and a save: %v", got)
	}
}

// writeVersion1 writes snapshot (term 2, index 5) into dir in the format written before
// streaming saves (both lengths in the header, the checksum last) and returns it.
func writeVersion1(t *testing.T, dir string) raftpb.Snapshot {
	t.Helper()
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
	return want
}
