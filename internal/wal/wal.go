// Package wal is Shoal's write-ahead log for one raft group: the durable home
// of raft entries, the HardState and snapshot markers.
//
// # Files
//
// A WAL is a directory of segment files named "%016x-%016x.wal" (sequence
// number, first raft index). Sequence numbers are contiguous; the segment with
// the highest sequence is the only one ever written. A segment is cut (a new
// one started) when the next Save would push the current one past
// Options.SegmentSize, so a single Save batch never spans two segments. The
// first index in the name is a lower bound used by ReleaseTo: every live entry
// stored in an earlier segment has a smaller index.
//
// # Records
//
// A segment is a sequence of records, little-endian:
//
//	[4 bytes payload length][1 byte type][4 bytes CRC32-C of type+payload][payload]
//
// Types: 1 = raftpb.Entry, 2 = raftpb.HardState (both protobuf encoded),
// 3 = snapshot marker (16 bytes: index, term), 4 = batch (8 bytes: the length of
// the records that follow it, written by the same Save). Records are not padded
// or chained, so each one can be validated on its own and the exact byte offset
// of a bad one can be reported; the batch record only bounds one Save's bytes,
// which is what tells a torn last write from damage to synced data (Recovery).
//
// # Recovery
//
// Open replays every segment. A damaged record at the end of the last segment
// is a torn tail, left by a crash in the middle of the last write: a short
// header, a record running past end of file, a bad record followed only by
// zero bytes (a filesystem that extended the file before writing its data, or
// a record torn within its sectors), or, inside the newest batch with only
// zeros after that batch, a zero header or a bad record with a whole
// page-aligned page of zeros in it (the pages of one write reach the disk in
// any order until fdatasync returns, and the segment's space past the log is
// zeros). A torn tail is logged and truncated away, together with the rest of
// its Save, and writing resumes there. Such records were never acknowledged as
// durable, because Save only returns after the data is written and, when
// asked, fdatasync'ed. Any other damage (a bad checksum without a zero page, a
// record length that contradicts its batch, damage in an earlier batch, or
// anything wrong in an earlier segment, which was fsynced before the next
// segment was created) is a *CorruptError: losing acknowledged data silently
// would break raft's safety.
//
// # Replay semantics
//
// ReadAll returns the last HardState, the latest snapshot marker and the
// entries after it. An entry with index i discards previously read entries
// with index >= i, exactly as raft requires of stable storage. A snapshot
// marker at (index, term) discards entries up to index; if the log held a
// different term at index (a snapshot received from the leader that replaced a
// divergent log) or did not reach index, all earlier entries are discarded,
// mirroring what raft itself does when it restores such a snapshot.
//
// # Concurrency
//
// A WAL is not safe for concurrent use: it is meant to be owned by the single
// goroutine that handles raft's Ready (the lead writer), which also removes
// the need for locks on the hot path.
package wal

import (
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

	"go.etcd.io/raft/v3/raftpb"

	"github.com/shoal-kv/shoal/internal/fsio"
)

// Record types. Zero is deliberately invalid so that a zero-filled header
// never parses as a record.
const (
	recEntry byte = 1
	recState byte = 2
	recSnap  byte = 3
	recBatch byte = 4
)

const (
	// headerSize is the size of a record header: length, type, checksum.
	headerSize = 9
	// snapMarkSize is the payload size of a snapshot marker record.
	snapMarkSize = 16
	// batchSize is the size of a batch record, header included.
	batchSize = headerSize + 8
	// maxKeptBuf bounds the encode buffer kept between Saves so that one
	// huge batch does not pin its memory forever.
	maxKeptBuf = 4 << 20
)

// DefaultSegmentSize is the size at which a segment is cut when
// Options.SegmentSize is zero. Large enough that cuts (which cost an extra
// fsync of the file and of the directory) are rare.
const DefaultSegmentSize = 64 << 20

// castagnoli is CRC32-C, which has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("wal: closed")

// CorruptError reports a damaged record that cannot be a torn tail, so that an
// operator can find it (and decide to restore the replica from a peer)
// instead of data disappearing silently.
type CorruptError struct {
	File   string // path of the segment file
	Offset int64  // byte offset of the start of the bad record
	Err    error  // what is wrong with it
}

// Error implements error.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("wal: corrupt record in %s at offset %d: %v", e.File, e.Offset, e.Err)
}

// Unwrap returns the underlying reason.
func (e *CorruptError) Unwrap() error { return e.Err }

// SnapMark identifies a snapshot recorded in the WAL. The snapshot itself
// lives in a snap file; the marker tells replay which entries it covers.
type SnapMark struct {
	Index uint64
	Term  uint64
}

// State is what ReadAll recovers: enough to restore raft's MemoryStorage
// (ApplySnapshot from the snap file matching Snapshot, SetHardState, Append).
type State struct {
	// HardState is the last one saved; zero if none was.
	HardState raftpb.HardState
	// Entries are the live entries after Snapshot.Index, contiguous and
	// starting at Snapshot.Index+1.
	Entries []raftpb.Entry
	// Snapshot is the latest snapshot marker; zero if none was saved.
	Snapshot SnapMark
}

// Options tunes a WAL. The zero value is valid.
type Options struct {
	// SegmentSize is the size at which segments are cut; 0 means
	// DefaultSegmentSize.
	SegmentSize int64
	// Logger receives warnings about repaired torn tails and failures; nil
	// discards them.
	Logger *slog.Logger
	// Preallocate is how many bytes of zeros are written ahead of the end of
	// the log in the open segment, so that a Save's fdatasync flushes only the
	// record's data: appending to the end of a file changes its size and block
	// map too, which costs a journal commit per fdatasync (about 40% more time
	// and CPU per Save on ext4). 0 disables it.
	Preallocate int64
	// BeforeSync, if set, runs before every fdatasync: a hook for fault injection in tests (a
	// slow or stalling disk).
	BeforeSync func()
}

// segment describes one segment file.
type segment struct {
	seq   uint64
	first uint64
}

// WAL is an open write-ahead log. See the package documentation for the
// format and recovery rules. Not safe for concurrent use.
type WAL struct {
	dir        string
	log        *slog.Logger
	segSize    int64
	prealloc   int64
	beforeSync func() // Options.BeforeSync

	segs     []segment // ascending seq; the last one is open for writing
	f        *os.File  // the last segment
	off      int64     // end of the last complete record in f
	zeroEnd  int64     // f holds zeros from off up to here (see Options.Preallocate)
	zeros    []byte    // a buffer of zeros for zeroFill, kept across fills
	unsynced bool      // bytes written to f since the last fdatasync

	lastIndex uint64 // index of the last entry written (or the snapshot index)
	buf       []byte // reused encode buffer

	replayed *State // state read by Open, handed to the first ReadAll
	err      error  // sticky: set when the on-disk state is uncertain
	closed   bool
}

// Open opens the WAL in dir, creating the directory and a first segment if
// needed, and replays it (repairing a torn tail). Call ReadAll next to get the
// recovered state; Save may be called right away.
func Open(dir string, logger *slog.Logger) (*WAL, error) {
	return OpenWithOptions(dir, Options{Logger: logger})
}

// OpenWithOptions is Open with tuning options.
func OpenWithOptions(dir string, opts Options) (*WAL, error) {
	w := &WAL{dir: dir, log: opts.Logger, segSize: opts.SegmentSize, prealloc: opts.Preallocate, beforeSync: opts.BeforeSync}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.segSize <= 0 {
		w.segSize = DefaultSegmentSize
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create dir: %w", err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		if err := w.createSegment(segment{seq: 0, first: 1}); err != nil {
			return nil, err
		}
		w.segs = []segment{{seq: 0, first: 1}}
		w.replayed = &State{}
		return w, nil
	}
	w.segs = segs
	st, end, err := w.replay(true)
	if err != nil {
		return nil, err
	}
	w.replayed = &st
	w.lastIndex = st.Snapshot.Index
	if n := len(st.Entries); n > 0 {
		w.lastIndex = st.Entries[n-1].Index
	}
	if s := segs[len(segs)-1]; end == 0 && len(segs) > 1 && s.first != w.lastIndex+1 {
		// The newest segment holds nothing (a torn Save cut away, or a crash right after the cut
		// that created it), yet its name promises that earlier segments hold no live entry at or
		// above its first index, which the entries they do hold may break (the cut came from a
		// Save overwriting the log): ReleaseTo would delete live entries. Name it for the log
		// as it is.
		ns := segment{seq: s.seq, first: w.lastIndex + 1}
		if err := os.Rename(w.segPath(s), w.segPath(ns)); err != nil {
			return nil, ioError("rename empty segment", err)
		}
		if err := syncDir(dir); err != nil {
			return nil, fmt.Errorf("wal: rename empty segment: %w", err)
		}
		segs[len(segs)-1] = ns
	}
	last := w.segPath(segs[len(segs)-1])
	f, err := os.OpenFile(last, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open segment: %w", err)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: seek %s: %w", last, err)
	}
	w.f, w.off = f, end
	if fi, err := f.Stat(); err == nil && fi.Size() > end {
		w.zeroEnd = fi.Size() // replay checked that everything after end is zeros
	}
	return w, nil
}

// ReadAll returns the state recovered from the log. The first call returns
// what Open replayed, without reading the disk again; later calls re-read the
// segments. The returned slices belong to the caller.
func (w *WAL) ReadAll() (State, error) {
	if w.closed {
		return State{}, ErrClosed
	}
	if st := w.replayed; st != nil {
		w.replayed = nil
		return *st, nil
	}
	st, _, err := w.replay(false)
	return st, err
}

// Save appends ents and then hs (skipped when empty), in one write, and
// fdatasyncs when sync is true. Entries go before the HardState so that a
// crash can never leave a commit index pointing past the durable log. ents
// must be contiguous and must not leave a gap after the last saved index; an
// entry at index i supersedes saved entries at i and later.
//
// On a write error (for example a full disk) the segment is truncated back
// to its last complete record, so a later successful Save never follows half
// a record, and the WAL stays usable. An fsync error is sticky: after it the
// durable state is unknown and every later call fails.
func (w *WAL) Save(hs raftpb.HardState, ents []raftpb.Entry, sync bool) error {
	if err := w.usable(); err != nil {
		return err
	}
	emptyHS := hs == raftpb.HardState{}
	if len(ents) == 0 && emptyHS {
		if sync && w.unsynced {
			return w.sync()
		}
		return nil
	}
	if len(ents) > 0 {
		if ents[0].Index == 0 || ents[0].Index > w.lastIndex+1 {
			return fmt.Errorf("wal: entry index %d does not follow last index %d", ents[0].Index, w.lastIndex)
		}
		for i := 1; i < len(ents); i++ {
			if ents[i].Index != ents[i-1].Index+1 {
				return fmt.Errorf("wal: entries not contiguous: %d after %d", ents[i].Index, ents[i-1].Index)
			}
		}
	}
	buf := w.buf[:0]
	buf = append(buf, make([]byte, batchSize)...) // the batch record, filled in below
	var err error
	for i := range ents {
		if buf, err = appendRecord(buf, recEntry, &ents[i]); err != nil {
			return err
		}
	}
	if !emptyHS {
		if buf, err = appendRecord(buf, recState, &hs); err != nil {
			return err
		}
	}
	binary.LittleEndian.PutUint64(buf[headerSize:batchSize], uint64(len(buf)-batchSize))
	putHeader(buf, recBatch, buf[headerSize:batchSize])
	if cap(buf) <= maxKeptBuf {
		w.buf = buf
	} else {
		w.buf = nil
	}
	if w.off > 0 && w.off+int64(len(buf)) > w.segSize {
		first := w.lastIndex + 1
		if len(ents) > 0 {
			first = ents[0].Index
		}
		if err := w.cut(first); err != nil {
			return err
		}
	}
	if err := w.write(buf); err != nil {
		return err
	}
	if len(ents) > 0 {
		w.lastIndex = ents[len(ents)-1].Index
	}
	if sync {
		return w.sync()
	}
	return nil
}

// SaveSnapshot records that a snapshot at (index, term) is durable and syncs.
// The snapshot file must already be durable (snap.Snapshotter.Save) so that a
// marker never points at a missing snapshot.
func (w *WAL) SaveSnapshot(index, term uint64) error {
	if err := w.usable(); err != nil {
		return err
	}
	if index == 0 {
		return errors.New("wal: snapshot marker at index 0")
	}
	var p [snapMarkSize]byte
	binary.LittleEndian.PutUint64(p[0:8], index)
	binary.LittleEndian.PutUint64(p[8:16], term)
	rec := appendRaw(w.buf[:0], recSnap, p[:])
	if err := w.write(rec); err != nil {
		return err
	}
	// A snapshot from the leader can move the log end forward; entries after
	// it must be accepted by Save without a gap error.
	w.lastIndex = max(w.lastIndex, index)
	return w.sync()
}

// ReleaseTo removes segment files that hold only entries below index: it
// keeps the newest segment whose first index is <= index and everything after
// it. Call it only once a snapshot at >= index is durable (snap file and
// SaveSnapshot), or a crash could leave entries that nothing else covers.
func (w *WAL) ReleaseTo(index uint64) error {
	if err := w.usable(); err != nil {
		return err
	}
	k := -1
	for i := len(w.segs) - 1; i >= 0; i-- {
		if w.segs[i].first <= index {
			k = i
			break
		}
	}
	if k <= 0 {
		return nil
	}
	// Remove oldest first so that a failure part-way leaves a contiguous run.
	for i := 0; i < k; i++ {
		if err := os.Remove(w.segPath(w.segs[i])); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.segs = slices.Clone(w.segs[i:])
			return fmt.Errorf("wal: release segment: %w", err)
		}
	}
	w.segs = slices.Clone(w.segs[k:])
	if err := syncDir(w.dir); err != nil {
		return fmt.Errorf("wal: release: %w", err)
	}
	return nil
}

// Close syncs outstanding writes and closes the current segment. Later calls
// return nil.
func (w *WAL) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.replayed = nil
	if w.f == nil {
		return nil
	}
	var err error
	if w.unsynced && w.err == nil {
		err = w.syncErr()
	}
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("wal: close: %w", cerr)
	}
	w.f = nil
	return err
}

// usable reports why the WAL cannot be written, if it cannot.
func (w *WAL) usable() error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return fmt.Errorf("wal: unusable after earlier failure: %w", w.err)
	}
	return nil
}

// write appends b to the current segment in one syscall, undoing a partial
// write on failure.
func (w *WAL) write(b []byte) error {
	if end := w.off + int64(len(b)); w.prealloc > 0 && end > w.zeroEnd {
		// Not past the segment's size (where it will be cut) unless this record is. Best
		// effort: the zeros only make fdatasync cheaper, and the record may still fit.
		if err := w.zeroFill(max(end, min(end+w.prealloc, w.segSize))); err != nil {
			w.log.Warn("wal: preallocate", "err", err)
		}
	}
	if _, err := w.f.Write(b); err != nil {
		werr := ioError("write "+w.f.Name(), err)
		w.zeroEnd = 0
		if terr := w.f.Truncate(w.off); terr != nil {
			w.err = fmt.Errorf("truncate after failed write: %w", terr)
			w.log.Error("wal: cannot undo failed write", "file", w.f.Name(), "err", terr)
		} else if _, serr := w.f.Seek(w.off, io.SeekStart); serr != nil {
			w.err = fmt.Errorf("seek after failed write: %w", serr)
		}
		return werr
	}
	w.off += int64(len(b))
	w.unsynced = true
	return nil
}

// zeroFill writes zeros from the end of the zeroed region (or of the log) up to end, so that
// the records written there later overwrite allocated blocks instead of growing the file.
func (w *WAL) zeroFill(end int64) error {
	from := max(w.zeroEnd, w.off)
	if len(w.zeros) == 0 {
		w.zeros = make([]byte, 256<<10)
	}
	zeros := w.zeros
	for from < end {
		n := min(int64(len(zeros)), end-from)
		if _, err := w.f.WriteAt(zeros[:n], from); err != nil {
			// Zeros past the log are harmless to replay; the log itself is untouched.
			return ioError("preallocate "+w.f.Name(), err)
		}
		from += n
		w.zeroEnd = from
	}
	return nil
}

// sync makes the current segment durable. Failure is sticky: Linux may drop
// the dirty pages and report the error only once, so retrying could claim
// durability for lost data.
func (w *WAL) sync() error {
	if err := w.syncErr(); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *WAL) syncErr() error {
	if w.beforeSync != nil {
		w.beforeSync()
	}
	if err := fdatasync(w.f); err != nil {
		return ioError("fdatasync "+w.f.Name(), err)
	}
	w.unsynced = false
	return nil
}

// cut starts a new segment whose entries start at first. The old segment is
// synced first: replay tolerates torn records only in the last segment.
func (w *WAL) cut(first uint64) error {
	if err := w.sync(); err != nil {
		return err
	}
	if w.zeroEnd > w.off {
		// Drop the zeros written ahead. Not synced: if a crash undoes it, replay skips a zero
		// tail in any segment.
		if err := w.f.Truncate(w.off); err != nil {
			w.log.Warn("wal: trim preallocated tail", "file", w.f.Name(), "err", err)
		}
	}
	s := segment{seq: w.segs[len(w.segs)-1].seq + 1, first: first}
	old := w.f
	if err := w.createSegment(s); err != nil {
		return err
	}
	w.segs = append(w.segs, s)
	if err := old.Close(); err != nil {
		w.log.Warn("wal: close old segment", "file", old.Name(), "err", err)
	}
	return nil
}

// createSegment creates s, fsyncs the directory so that the file survives a
// crash, and makes it the current segment.
func (w *WAL) createSegment(s segment) error {
	path := w.segPath(s)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return ioError("create segment", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		// The file may or may not survive a crash; a later segment must not
		// depend on it, so stop.
		w.err = err
		return fmt.Errorf("wal: create segment: %w", err)
	}
	w.f, w.off, w.zeroEnd, w.unsynced = f, 0, 0, false
	return nil
}

func (w *WAL) segPath(s segment) string {
	return filepath.Join(w.dir, segName(s))
}

func segName(s segment) string {
	return fmt.Sprintf("%016x-%016x.wal", s.seq, s.first)
}

// parseSegName parses "%016x-%016x.wal".
func parseSegName(name string) (segment, bool) {
	base, ok := strings.CutSuffix(name, ".wal")
	if !ok || len(base) != 33 || base[16] != '-' {
		return segment{}, false
	}
	seq, err1 := strconv.ParseUint(base[:16], 16, 64)
	first, err2 := strconv.ParseUint(base[17:], 16, 64)
	if err1 != nil || err2 != nil {
		return segment{}, false
	}
	return segment{seq: seq, first: first}, true
}

// listSegments returns the segments in dir, ordered by sequence, and fails if
// one is missing in the middle: replaying around a hole would lose entries.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: read dir: %w", err)
	}
	var segs []segment
	for _, de := range des {
		if s, ok := parseSegName(de.Name()); ok && de.Type().IsRegular() {
			segs = append(segs, s)
		}
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.seq, b.seq) })
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, fmt.Errorf("wal: segment sequence %d missing in %s", segs[i-1].seq+1, dir)
		}
	}
	return segs, nil
}

// syncDir fsyncs a directory so that entries created, renamed or removed in it are durable.
func syncDir(dir string) error {
	if err := fsio.SyncDir(dir); err != nil {
		return ioError("sync dir", err)
	}
	return nil
}

// ioError wraps err, calling out a full disk.
func ioError(op string, err error) error { return fsio.Error("wal", op, err) }
