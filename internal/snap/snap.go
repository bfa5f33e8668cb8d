// Package snap stores raft snapshots as files, one per snapshot, named
// "%016x-%016x.snap" (term, index).
//
// # File format
//
// Little-endian:
//
//	[8 bytes magic "SHOALSN2"][4 bytes metadata length]
//	[metadata: raftpb.SnapshotMetadata, protobuf][data]
//	[8 bytes data length][4 bytes CRC32-C of all preceding bytes]
//
// Metadata and data are stored separately, rather than as one marshalled
// raftpb.Snapshot, so that a snapshot of hundreds of megabytes is streamed to
// the file as the state machine produces it (SaveStream) instead of being
// built in memory first, and loading returns a Data slice that aliases the
// single read buffer. The data length and checksum come last because they are
// known only once the data has been written: the file is written front to
// back in one pass, with no seeking back to patch a header.
//
// Files written before streaming ("SHOALSN1": both lengths in the header, the
// checksum last) are still read.
//
// # Durability
//
// Save and SaveStream write a temporary file, fsync it, rename it into place
// and fsync the directory, so a crash leaves either no file or a complete one
// (a partial temporary file is never loaded, and New removes it). The raft
// node must save the snapshot file before writing the WAL's snapshot marker,
// and release WAL segments only after both are durable.
package snap

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/fsio"
)

const (
	magic       = "SHOALSN2"
	headerSize  = 8 + 4       // magic, metadata length
	trailerSize = 8 + crcSize // data length, checksum
	crcSize     = 4
	suffix      = ".snap"
	tmpSuffix   = ".snap.tmp"

	// magicV1 files hold both lengths in the header: [magic][4 meta len][8 data len][meta][data][crc].
	magicV1      = "SHOALSN1"
	headerSizeV1 = 8 + 4 + 8

	// writeBuffer batches the writes of a streamed snapshot into large sequential writes.
	writeBuffer = 1 << 20
)

// DefaultRetain is how many snapshot files are kept when Options.Retain is
// zero: more than one, so that a snapshot damaged on disk can be skipped in
// favour of an older one.
const DefaultRetain = 3

// castagnoli is CRC32-C, which has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrNoSnapshot is returned by Load and LoadIndex when no valid snapshot
	// exists.
	ErrNoSnapshot = errors.New("snap: no available snapshot")
	// ErrCorrupt wraps the reason a snapshot file failed validation.
	ErrCorrupt = errors.New("snap: corrupt snapshot file")
	// ErrEmptySnapshot is returned when saving a snapshot with index 0, which
	// raft uses to mean "no snapshot".
	ErrEmptySnapshot = errors.New("snap: empty snapshot")
)

// Options tunes a Snapshotter. The zero value is valid.
type Options struct {
	// Retain is the number of newest snapshot files kept after Save;
	// 0 means DefaultRetain.
	Retain int
	// Logger receives notices about skipped corrupt files and cleanup; nil
	// discards them.
	Logger *slog.Logger
}

// Snapshotter saves and loads snapshot files in one directory. It is safe for
// concurrent use: saves are serialised with each other, and renaming, retention
// and loading with each other (so retention never deletes a file Load is
// reading), but a load does not wait for a save that is still writing its
// temporary file, which can take seconds for a large snapshot.
type Snapshotter struct {
	dir    string
	log    *slog.Logger
	retain int
	saveMu sync.Mutex // one save at a time: the temporary file is named after the snapshot
	mu     sync.Mutex // guards the set of final files: rename, purge, load
}

// New returns a Snapshotter for dir, creating the directory if needed and
// removing temporary files left by a crash during Save.
func New(dir string, logger *slog.Logger) (*Snapshotter, error) {
	return NewWithOptions(dir, Options{Logger: logger})
}

// NewWithOptions is New with tuning options.
func NewWithOptions(dir string, opts Options) (*Snapshotter, error) {
	s := &Snapshotter{dir: dir, log: opts.Logger, retain: opts.Retain}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.retain <= 0 {
		s.retain = DefaultRetain
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("snap: create dir: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snap: read dir: %w", err)
	}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), tmpSuffix) {
			p := filepath.Join(dir, de.Name())
			s.log.Info("snap: removing incomplete snapshot left by a crash", "file", p)
			if err := os.Remove(p); err != nil {
				return nil, fmt.Errorf("snap: remove temporary file: %w", err)
			}
		}
	}
	return s, nil
}

// Save durably writes snap as "%016x-%016x.snap" (term, index) and then
// deletes all but the newest Retain snapshot files. snap.Data is written as
// is, without copying.
func (s *Snapshotter) Save(snap raftpb.Snapshot) error {
	_, err := s.SaveStream(snap.Metadata, func(w io.Writer) error {
		_, err := w.Write(snap.Data)
		return err
	})
	return err
}

// SaveStream durably writes a snapshot with metadata md whose data write
// produces, streaming it to the file (through a buffer, never holding the
// whole data in memory), and then deletes all but the newest Retain snapshot
// files. It returns the data's length. w is valid only during the call to
// write. If write (or any step) fails, the temporary file is removed and no
// snapshot file appears, so a WAL marker can never name a partial snapshot.
func (s *Snapshotter) SaveStream(md raftpb.SnapshotMetadata, write func(w io.Writer) error) (int64, error) {
	if md.Index == 0 {
		return 0, ErrEmptySnapshot
	}
	meta, err := md.Marshal()
	if err != nil {
		return 0, fmt.Errorf("snap: encode metadata: %w", err)
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()

	name := fileName(md.Term, md.Index)
	final := filepath.Join(s.dir, name)
	tmp := final + ".tmp"
	n, err := writeFile(tmp, meta, write)
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return 0, fmt.Errorf("snap: rename: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return 0, err
	}
	s.purge()
	return n, nil
}

// crcWriter checksums and counts what goes through it.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	return n, err
}

// writeFile writes and fsyncs one snapshot file, returning the data's length.
func writeFile(path string, meta []byte, write func(io.Writer) error) (n int64, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, ioError("create "+path, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = ioError("close "+path, cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, writeBuffer)
	cw := &crcWriter{w: bw}
	hdr := make([]byte, headerSize, headerSize+len(meta))
	copy(hdr, magic)
	binary.LittleEndian.PutUint32(hdr[8:12], uint32(len(meta)))
	hdr = append(hdr, meta...)
	if _, err := cw.Write(hdr); err != nil {
		return 0, ioError("write "+path, err)
	}
	if err := write(cw); err != nil {
		// bufio's errors are sticky, so a failed file write surfaces here or at Flush.
		return 0, ioError("write data to "+path, err)
	}
	n = cw.n - int64(len(hdr))
	var trailer [trailerSize]byte
	binary.LittleEndian.PutUint64(trailer[:8], uint64(n))
	if _, err := cw.Write(trailer[:8]); err != nil {
		return 0, ioError("write "+path, err)
	}
	binary.LittleEndian.PutUint32(trailer[8:], cw.crc)
	if _, err := bw.Write(trailer[8:]); err != nil {
		return 0, ioError("write "+path, err)
	}
	if err := bw.Flush(); err != nil {
		return 0, ioError("write "+path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, ioError("fsync "+path, err)
	}
	return n, nil
}

// Load returns the newest snapshot that passes validation. Corrupt files are
// logged and skipped, so that one damaged file does not stop the node when an
// older snapshot (and the WAL after it) can still recover it. Returns
// ErrNoSnapshot when there is none.
func (s *Snapshotter) Load() (raftpb.Snapshot, error) {
	return s.load(func(fileInfo) bool { return true })
}

// LoadIndex returns the valid snapshot at exactly index, for loading the one
// a WAL snapshot marker names. Returns ErrNoSnapshot when there is none.
func (s *Snapshotter) LoadIndex(index uint64) (raftpb.Snapshot, error) {
	return s.load(func(fi fileInfo) bool { return fi.index == index })
}

func (s *Snapshotter) load(want func(fileInfo) bool) (raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	files, err := s.list()
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	for _, fi := range files {
		if !want(fi) {
			continue
		}
		snap, err := readFile(filepath.Join(s.dir, fi.name), fi)
		if errors.Is(err, ErrCorrupt) {
			s.log.Warn("snap: skipping corrupt snapshot", "file", fi.name, "err", err)
			continue
		}
		if err != nil {
			return raftpb.Snapshot{}, err
		}
		return snap, nil
	}
	return raftpb.Snapshot{}, ErrNoSnapshot
}

// readFile reads and validates one snapshot file; validation failures wrap
// ErrCorrupt.
func readFile(path string, fi fileInfo) (raftpb.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return raftpb.Snapshot{}, fmt.Errorf("snap: read: %w", err)
	}
	bad := func(format string, args ...any) (raftpb.Snapshot, error) {
		return raftpb.Snapshot{}, fmt.Errorf("%w %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
	}
	if len(b) < 8 {
		return bad("bad header")
	}
	var metaStart, dataStart, dataEnd uint64
	switch string(b[:8]) {
	case magic:
		if len(b) < headerSize+trailerSize {
			return bad("bad header")
		}
		metaLen := uint64(binary.LittleEndian.Uint32(b[8:12]))
		dataLen := binary.LittleEndian.Uint64(b[len(b)-trailerSize:])
		if dataLen > uint64(len(b)) || headerSize+metaLen+dataLen+trailerSize != uint64(len(b)) {
			return bad("length fields do not match file size %d", len(b))
		}
		metaStart, dataStart = headerSize, headerSize+metaLen
		dataEnd = dataStart + dataLen
	case magicV1:
		if len(b) < headerSizeV1+crcSize {
			return bad("bad header")
		}
		metaLen := uint64(binary.LittleEndian.Uint32(b[8:12]))
		dataLen := binary.LittleEndian.Uint64(b[12:20])
		if dataLen > uint64(len(b)) || headerSizeV1+metaLen+dataLen+crcSize != uint64(len(b)) {
			return bad("length fields do not match file size %d", len(b))
		}
		metaStart, dataStart = headerSizeV1, headerSizeV1+metaLen
		dataEnd = dataStart + dataLen
	default:
		return bad("bad header")
	}
	body := b[:len(b)-crcSize]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-crcSize:]) {
		return bad("checksum mismatch")
	}
	var snap raftpb.Snapshot
	if err := snap.Metadata.Unmarshal(b[metaStart:dataStart]); err != nil {
		return bad("decode metadata: %v", err)
	}
	if snap.Metadata.Index != fi.index || snap.Metadata.Term != fi.term {
		return bad("metadata (term %d, index %d) does not match file name", snap.Metadata.Term, snap.Metadata.Index)
	}
	// Cap the slice so that a caller appending to Data cannot scribble over
	// the trailer sharing its array.
	snap.Data = b[dataStart:dataEnd:dataEnd]
	return snap, nil
}

// purge keeps the newest s.retain snapshot files. Failures are only logged:
// the new snapshot is already durable, and purging is retried next Save.
func (s *Snapshotter) purge() {
	files, err := s.list()
	if err != nil {
		s.log.Warn("snap: list for retention", "err", err)
		return
	}
	if len(files) <= s.retain {
		return
	}
	for _, fi := range files[s.retain:] {
		if err := os.Remove(filepath.Join(s.dir, fi.name)); err != nil {
			s.log.Warn("snap: remove old snapshot", "file", fi.name, "err", err)
		}
	}
}

// fileInfo is a parsed snapshot file name.
type fileInfo struct {
	name        string
	term, index uint64
}

// list returns the snapshot files, newest (highest index, then term) first.
func (s *Snapshotter) list() ([]fileInfo, error) {
	des, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snap: read dir: %w", err)
	}
	var files []fileInfo
	for _, de := range des {
		if fi, ok := parseName(de.Name()); ok && de.Type().IsRegular() {
			files = append(files, fi)
		}
	}
	slices.SortFunc(files, func(a, b fileInfo) int {
		if c := cmp.Compare(b.index, a.index); c != 0 {
			return c
		}
		return cmp.Compare(b.term, a.term)
	})
	return files, nil
}

func fileName(term, index uint64) string {
	return fmt.Sprintf("%016x-%016x%s", term, index, suffix)
}

// parseName parses "%016x-%016x.snap".
func parseName(name string) (fileInfo, bool) {
	base, ok := strings.CutSuffix(name, suffix)
	if !ok || len(base) != 33 || base[16] != '-' {
		return fileInfo{}, false
	}
	term, err1 := strconv.ParseUint(base[:16], 16, 64)
	index, err2 := strconv.ParseUint(base[17:], 16, 64)
	if err1 != nil || err2 != nil {
		return fileInfo{}, false
	}
	return fileInfo{name: name, term: term, index: index}, true
}

// syncDir fsyncs a directory so that entries created, renamed or removed in it are durable.
func syncDir(dir string) error {
	if err := fsio.SyncDir(dir); err != nil {
		return ioError("sync dir", err)
	}
	return nil
}

// ioError wraps err, calling out a full disk.
func ioError(op string, err error) error { return fsio.Error("snap", op, err) }
