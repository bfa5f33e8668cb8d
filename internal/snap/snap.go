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
// OpenIndex validates a file in one sequential pass and hands back a reader over
// its data in place, so that a restarting replica restores a large state
// without holding the snapshot's data in memory alongside it.
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
	"bytes"
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
	"sync/atomic"

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
	// checkBuffer is what OpenIndex reads a file through to checksum it: large
	// sequential reads, in a bounded buffer whatever the file's size.
	checkBuffer = 256 << 10
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
// concurrent use: saves write temporary files of their own concurrently, and
// renaming, retention and loading are serialised with each other (so retention
// never deletes a file Load is reading); neither a load nor another save waits
// for a save that is still writing its temporary file, which can take seconds
// for a large snapshot (or as long as the network takes to deliver one). Retention also
// spares files held open by OpenIndex until they are closed.
type Snapshotter struct {
	dir    string
	log    *slog.Logger
	retain int
	// tmpSeq numbers temporary files, so that saves run concurrently: a raft node
	// receiving a snapshot from its leader writes it as the network delivers it,
	// and must neither wait for its own snapshot job's save nor hold one up.
	tmpSeq atomic.Uint64
	mu     sync.Mutex // guards the set of final files: rename, purge, load; and open
	// open counts, per file name, the Opened values not closed yet; purge
	// leaves those files for a later Save to remove.
	open map[string]int
	// keep holds the indexes of the last two calls to Keep, whose files purge never
	// removes (0: none). It has its own lock rather than mu so that Keep, called
	// from a raft node's loop, never waits for a purge or a rename.
	keepMu sync.Mutex
	keep   [2]uint64
}

// New returns a Snapshotter for dir, creating the directory if needed and
// removing temporary files left by a crash during Save.
func New(dir string, logger *slog.Logger) (*Snapshotter, error) {
	return NewWithOptions(dir, Options{Logger: logger})
}

// NewWithOptions is New with tuning options.
func NewWithOptions(dir string, opts Options) (*Snapshotter, error) {
	s := &Snapshotter{dir: dir, log: opts.Logger, retain: opts.Retain, open: make(map[string]int)}
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
	name := fileName(md.Term, md.Index)
	final := filepath.Join(s.dir, name)
	tmp := filepath.Join(s.dir, fmt.Sprintf("%016x-%016x.%d%s", md.Term, md.Index, s.tmpSeq.Add(1), tmpSuffix))
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

// Opened is a validated snapshot file held open so that its data can be read
// in place: a restarting replica restores a table of many gigabytes from it
// without first reading the whole file into memory, which would double the
// memory restart needs. Retention does not remove the file until Close.
type Opened struct {
	// Metadata is the snapshot's metadata.
	Metadata raftpb.SnapshotMetadata
	// Data reads the snapshot's data from the file; Data.Size() is its length.
	// Its ReadAt may be called concurrently. It is valid until Close.
	Data *io.SectionReader

	s    *Snapshotter
	f    *os.File
	name string
}

// OpenIndex opens the valid snapshot at exactly index, as LoadIndex, but
// without reading its data into memory. It applies LoadIndex's validation
// (magic, lengths, checksum, metadata matching the file name), checksumming
// the file in one sequential pass through a bounded buffer. A corrupt file is
// logged and skipped in favour of another file at index, if any; when none is
// valid, the error wraps ErrNoSnapshot, and ErrCorrupt too if a file was
// damaged. The caller must Close the result.
//
// The data is read from the file again after validation: the file is never
// rewritten once in place, so the checksum still holds, barring damage on the
// disk meanwhile, which a reader should check for with checksums of its own
// (the state machine's snapshot format has them).
func (s *Snapshotter) OpenIndex(index uint64) (*Opened, error) {
	// The candidates are counted in s.open under the lock, so that retention leaves them alone,
	// and checksummed after it: a leader opening a snapshot of many gigabytes to send must not
	// hold up its own snapshot job's rename (or a snapshot arriving from a leader) meanwhile.
	s.mu.Lock()
	files, err := s.list()
	var cands []fileInfo
	for _, fi := range files {
		if fi.index == index {
			cands = append(cands, fi)
			s.open[fi.name]++
		}
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	chosen := -1
	defer func() { // release every candidate but the one returned
		for i, fi := range cands {
			if i != chosen {
				s.release(fi.name)
			}
		}
	}()
	var damaged error
	for i, fi := range cands {
		o, err := s.openFile(fi)
		if errors.Is(err, ErrCorrupt) {
			s.log.Warn("snap: skipping corrupt snapshot", "file", fi.name, "err", err)
			damaged = err
			continue
		}
		if err != nil {
			return nil, err
		}
		chosen = i
		return o, nil
	}
	if damaged != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoSnapshot, damaged)
	}
	return nil, ErrNoSnapshot
}

// release ends one count of name in s.open (see OpenIndex).
func (s *Snapshotter) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[name]--; s.open[name] <= 0 {
		delete(s.open, name)
	}
}

// openFile opens and validates one snapshot file, checksumming it through a
// bounded buffer; validation failures wrap ErrCorrupt.
func (s *Snapshotter) openFile(fi fileInfo) (o *Opened, err error) {
	path := filepath.Join(s.dir, fi.name)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("snap: open: %w", err)
	}
	defer func() {
		if o == nil {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("snap: stat: %w", err)
	}
	size := st.Size()
	l, err := layoutOf(f, size, path)
	if err != nil {
		return nil, err
	}
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(h, io.NewSectionReader(f, 0, size-crcSize), make([]byte, checkBuffer))
	if err != nil {
		return nil, fmt.Errorf("snap: read %s: %w", path, err)
	}
	if n != size-crcSize {
		return nil, corrupt(path, "shorter than its size %d", size) // cut since Stat
	}
	var sum [crcSize]byte
	if err := readAt(f, sum[:], size-crcSize); err != nil {
		return nil, fmt.Errorf("snap: read %s: %w", path, err)
	}
	if h.Sum32() != binary.LittleEndian.Uint32(sum[:]) {
		return nil, corrupt(path, "checksum mismatch")
	}
	meta := make([]byte, l.dataStart-l.metaStart)
	if err := readAt(f, meta, l.metaStart); err != nil {
		return nil, fmt.Errorf("snap: read %s: %w", path, err)
	}
	md, err := decodeMeta(meta, fi, path)
	if err != nil {
		return nil, err
	}
	return &Opened{
		Metadata: md,
		Data:     io.NewSectionReader(f, l.dataStart, l.dataEnd-l.dataStart),
		s:        s,
		f:        f,
		name:     fi.name,
	}, nil
}

// Close closes the file and lets retention remove it. Calls after the first
// do nothing.
func (o *Opened) Close() error {
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	o.s.release(o.name)
	if err != nil {
		return fmt.Errorf("snap: close %s: %w", o.name, err)
	}
	return nil
}

// readFile reads and validates one snapshot file; validation failures wrap
// ErrCorrupt.
func readFile(path string, fi fileInfo) (raftpb.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return raftpb.Snapshot{}, fmt.Errorf("snap: read: %w", err)
	}
	l, err := layoutOf(bytes.NewReader(b), int64(len(b)), path)
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	if crc32.Checksum(b[:len(b)-crcSize], castagnoli) != binary.LittleEndian.Uint32(b[len(b)-crcSize:]) {
		return raftpb.Snapshot{}, corrupt(path, "checksum mismatch")
	}
	md, err := decodeMeta(b[l.metaStart:l.dataStart], fi, path)
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	// Cap the slice so that a caller appending to Data cannot scribble over
	// the trailer sharing its array.
	return raftpb.Snapshot{Metadata: md, Data: b[l.dataStart:l.dataEnd:l.dataEnd]}, nil
}

// layout is where the parts of a snapshot file are, as byte offsets.
type layout struct {
	metaStart, dataStart, dataEnd int64
}

// layoutOf reads the header and trailer of a snapshot file of size bytes
// through r and checks that their length fields agree with the size, in either
// format. It is shared by readFile and OpenIndex so that both validate alike.
// Validation failures wrap ErrCorrupt; read failures do not.
func layoutOf(r io.ReaderAt, size int64, path string) (layout, error) {
	var head [headerSizeV1]byte
	if size < 8 {
		return layout{}, corrupt(path, "bad header")
	}
	if err := readAt(r, head[:min(size, int64(len(head)))], 0); err != nil {
		return layout{}, fmt.Errorf("snap: read %s: %w", path, err)
	}
	// Lengths are compared in uint64, where a huge length field cannot wrap
	// around to match the size.
	var metaStart, metaLen, dataLen, fixed uint64
	switch string(head[:8]) {
	case magic:
		if size < headerSize+trailerSize {
			return layout{}, corrupt(path, "bad header")
		}
		var tail [8]byte
		if err := readAt(r, tail[:], size-trailerSize); err != nil {
			return layout{}, fmt.Errorf("snap: read %s: %w", path, err)
		}
		metaStart, fixed = headerSize, headerSize+trailerSize
		metaLen = uint64(binary.LittleEndian.Uint32(head[8:12]))
		dataLen = binary.LittleEndian.Uint64(tail[:])
	case magicV1:
		if size < headerSizeV1+crcSize {
			return layout{}, corrupt(path, "bad header")
		}
		metaStart, fixed = headerSizeV1, headerSizeV1+crcSize
		metaLen = uint64(binary.LittleEndian.Uint32(head[8:12]))
		dataLen = binary.LittleEndian.Uint64(head[12:20])
	default:
		return layout{}, corrupt(path, "bad header")
	}
	if dataLen > uint64(size) || fixed+metaLen+dataLen != uint64(size) {
		return layout{}, corrupt(path, "length fields do not match file size %d", size)
	}
	dataStart := metaStart + metaLen
	return layout{metaStart: int64(metaStart), dataStart: int64(dataStart), dataEnd: int64(dataStart + dataLen)}, nil
}

// readAt fills b from r at off. An io.ReaderAt may return io.EOF along with a
// full read, and must return an error with a short one: a file cut since it was
// measured.
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// decodeMeta decodes a file's metadata and checks it against the file's name.
func decodeMeta(b []byte, fi fileInfo, path string) (raftpb.SnapshotMetadata, error) {
	var md raftpb.SnapshotMetadata
	if err := md.Unmarshal(b); err != nil {
		return md, corrupt(path, "decode metadata: %v", err)
	}
	if md.Index != fi.index || md.Term != fi.term {
		return md, corrupt(path, "metadata (term %d, index %d) does not match file name", md.Term, md.Index)
	}
	return md, nil
}

// corrupt is a validation failure of the file at path.
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

// Keep makes retention spare the files of the snapshot at index, and those of
// the index named by the previous call, until later calls name others.
// Retention by age alone assumes the newest files are the ones in use, but a
// raft node also saves snapshots received from its leader before raft decides
// whether to install them: a few that raft then ignores as stale would
// otherwise push out the snapshot the node's WAL names, which its restart
// needs. The node calls Keep with a snapshot's index before writing the WAL
// marker that names it: until that marker is durable the WAL still names the
// previous one, which the second place keeps, so a crash at any moment finds
// the snapshot its WAL names.
func (s *Snapshotter) Keep(index uint64) {
	s.keepMu.Lock()
	s.keep[0], s.keep[1] = s.keep[1], index
	s.keepMu.Unlock()
}

// kept reports whether Keep spares the files of index.
func (s *Snapshotter) kept(index uint64) bool {
	s.keepMu.Lock()
	defer s.keepMu.Unlock()
	return index != 0 && (index == s.keep[0] || index == s.keep[1])
}

// purge keeps the newest s.retain snapshot files, and those of the indexes
// Keep names. Failures are only logged:
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
		if s.open[fi.name] > 0 {
			continue // being read (OpenIndex): removed by a Save after it is closed
		}
		if s.kept(fi.index) {
			continue // in use (Keep)
		}
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
