package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
)

var (
	errChecksum   = errors.New("checksum mismatch")
	errTruncated  = errors.New("truncated record header")
	errZeroHeader = errors.New("zero record header before data")
)

// marshaler is the part of the gogoproto generated API used to encode straight
// into the batch buffer, avoiding a temporary slice per entry.
type marshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// checksum is CRC32-C over the type byte followed by the payload: covering the
// type means a flipped type cannot make a payload decode as the wrong record.
func checksum(typ byte, p []byte) uint32 {
	c := crc32.Update(0, castagnoli, []byte{typ})
	return crc32.Update(c, castagnoli, p)
}

// appendRecord appends one record holding m to buf.
func appendRecord(buf []byte, typ byte, m marshaler) ([]byte, error) {
	n := m.Size()
	if uint64(n) > 1<<32-1 {
		return buf, fmt.Errorf("wal: record of %d bytes too large", n)
	}
	start := len(buf)
	buf = slices.Grow(buf, headerSize+n)[:start+headerSize+n]
	p := buf[start+headerSize:]
	if _, err := m.MarshalToSizedBuffer(p); err != nil {
		return buf[:start], fmt.Errorf("wal: encode record: %w", err)
	}
	putHeader(buf[start:], typ, p)
	return buf, nil
}

// appendRaw appends one record with payload p to buf.
func appendRaw(buf []byte, typ byte, p []byte) []byte {
	start := len(buf)
	buf = slices.Grow(buf, headerSize+len(p))[:start+headerSize]
	buf = append(buf, p...)
	putHeader(buf[start:], typ, p)
	return buf
}

func putHeader(h []byte, typ byte, p []byte) {
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(p)))
	h[4] = typ
	binary.LittleEndian.PutUint32(h[5:9], checksum(typ, p))
}

// replay reads every segment into a State and returns it with the end offset
// of the last good record in the last segment. With repair, a torn tail is
// truncated away on disk (Open); without, it is only skipped (a re-read by
// ReadAll while this process owns the tail).
func (w *WAL) replay(repair bool) (State, int64, error) {
	var r replayer
	var end int64
	for i, s := range w.segs {
		path := w.segPath(s)
		last := i == len(w.segs)-1
		res, err := scanSegment(path, last, -1, r.apply)
		if err != nil {
			return State{}, 0, err
		}
		if res.redo {
			// The torn batch had records already replayed: replay again, stopping before it.
			r = replayer{}
			for _, s := range w.segs[:i] {
				if _, err := scanSegment(w.segPath(s), false, -1, r.apply); err != nil {
					return State{}, 0, err
				}
			}
			if _, err := scanSegment(path, last, res.end, r.apply); err != nil {
				return State{}, 0, err
			}
		}
		if res.torn && repair {
			w.log.Warn("wal: truncating torn tail left by a crash",
				"file", path, "offset", res.end, "dropped_bytes", res.size-res.end)
			if err := truncateSync(path, res.end); err != nil {
				return State{}, 0, err
			}
		}
		end = res.end
	}
	st := r.st
	if len(st.Entries) > 0 && st.Entries[0].Index != st.Snapshot.Index+1 {
		return State{}, 0, fmt.Errorf("wal: entries in %s start at index %d but the snapshot marker is at %d: log has a gap",
			w.dir, st.Entries[0].Index, st.Snapshot.Index)
	}
	return st, end, nil
}

// truncateSync cuts a file to size durably, so the torn bytes cannot
// reappear after another crash and be followed by new records.
func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: repair torn tail: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("wal: repair torn tail of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: repair torn tail of %s: %w", path, err)
	}
	return nil
}

// scanResult describes a scanned segment.
type scanResult struct {
	end  int64 // offset just past the last good record
	size int64 // file size
	torn bool  // bytes after end are a torn tail
	// redo is set when the torn tail starts before records already handed to fn (a batch is
	// cut whole): the segment must be scanned again up to end.
	redo bool
}

// maxBatchBytes bounds a batch record's length; anything larger is damage.
const maxBatchBytes = 1 << 40

// scanSegment calls fn for each valid record of the segment at path, stopping at limit (-1:
// none) as if the segment ended there. In the last segment (last), damage that can only be a
// torn tail stops the scan with torn set; every other problem is a *CorruptError.
func scanSegment(path string, last bool, limit int64, fn func(typ byte, p []byte) error) (scanResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return scanResult{}, fmt.Errorf("wal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return scanResult{}, fmt.Errorf("wal: stat segment: %w", err)
	}
	size := fi.Size()
	if limit >= 0 && limit < size {
		size = limit
	}
	br := bufio.NewReaderSize(io.LimitReader(f, size), 1<<20)
	corrupt := func(off int64, err error) (scanResult, error) {
		return scanResult{}, &CorruptError{File: path, Offset: off, Err: err}
	}
	// [batchStart, batchEnd) holds the newest batch read: one Save's records. A Save is cut
	// whole or not at all, so that no batch record on disk ever claims bytes it does not hold
	// (later writes would be judged against it), and a hole is a torn write only inside the
	// newest batch (see lastWriteHole).
	var batchStart, batchEnd int64 = -1, -1
	inBatch := func(off int64) bool { return batchStart >= 0 && off > batchStart && off < batchEnd }
	var off int64
	torn := func(at int64) (scanResult, error) {
		if inBatch(at) {
			return scanResult{end: batchStart, size: size, torn: true, redo: at > batchStart+batchSize}, nil
		}
		return scanResult{end: at, size: size, torn: true}, nil
	}
	readErr := func(err error) (scanResult, error) {
		return scanResult{}, fmt.Errorf("wal: read %s: %w", path, err)
	}
	// cleanEnd is where the log ends because only zeros follow: inside a batch, that batch lost
	// its tail (a torn write, in the last segment; damage elsewhere).
	cleanEnd := func(at int64) (scanResult, error) {
		if !inBatch(at) {
			return scanResult{end: at, size: size}, nil
		}
		if last {
			return torn(at)
		}
		return corrupt(at, errTruncated)
	}
	// lastWriteHole reports whether damage at off, claiming to end at recEnd, lies inside the
	// newest batch and nothing but zeros follows that batch: then it is in bytes of the last
	// Save, which a crash can tear, rather than in synced data later Saves were written after.
	lastWriteHole := func(off, recEnd int64) (bool, error) {
		if !last || !inBatch(off) || recEnd > batchEnd {
			return false, nil
		}
		return zerosFrom(f, batchEnd, size)
	}
	var (
		hdr     [headerSize]byte
		payload []byte
	)
	for off < size {
		rem := size - off
		if rem < headerSize {
			// Zeros too short for a header: written ahead of the log like a longer zero tail.
			zero, err := restIsZero(br)
			if err != nil {
				return readErr(err)
			}
			if zero {
				return cleanEnd(off)
			}
			if last && (batchStart < 0 || off >= batchEnd || batchEnd > size) {
				return torn(off)
			}
			return corrupt(off, errTruncated)
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return readErr(err)
		}
		if hdr == [headerSize]byte{} {
			// Zeros where a header belongs, and nothing but zeros after them, are space written
			// ahead of the log (Options.Preallocate), or left by a crash before any record
			// reached it: the log ends here, cleanly.
			zero, err := restIsZero(br)
			if err != nil {
				return readErr(err)
			}
			if zero {
				return cleanEnd(off)
			}
			// Data after a header that never reached the disk: a crash during the last write
			// persisted a later page of it but not this one (see tornWrite).
			if hole, err := lastWriteHole(off, off+headerSize); err != nil {
				return readErr(err)
			} else if hole {
				return torn(off)
			}
			return corrupt(off, errZeroHeader)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		typ := hdr[4]
		if n > rem-headerSize {
			// A file that ends inside a record: the end of a write that never landed, unless
			// the record's length contradicts the batch it is in (a damaged length field).
			if last && (!inBatch(off) || off+headerSize+n <= batchEnd) {
				return torn(off)
			}
			return corrupt(off, fmt.Errorf("record length %d runs past end of file", n))
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return readErr(err)
		}
		var bad error
		switch {
		case typ < recEntry || typ > recBatch:
			bad = fmt.Errorf("unknown record type %d", typ)
		case typ == recBatch && n != batchSize-headerSize:
			bad = fmt.Errorf("batch record of %d bytes", n)
		case checksum(typ, payload) != binary.LittleEndian.Uint32(hdr[5:9]):
			bad = errChecksum
		case typ == recBatch && binary.LittleEndian.Uint64(payload) > maxBatchBytes:
			bad = fmt.Errorf("batch of %d bytes", binary.LittleEndian.Uint64(payload))
		}
		if bad != nil {
			if last {
				recEnd := off + headerSize + n
				hole, err := lastWriteHole(off, recEnd)
				if err == nil && hole {
					hole, err = tornWrite(f, off, min(recEnd, batchEnd, size))
				}
				if err != nil {
					return readErr(err)
				}
				if hole {
					return torn(off)
				}
				// A bad record followed only by zeros is the end of the last write, torn within
				// its sectors, unless its length contradicts the batch it is in.
				if !inBatch(off) || recEnd <= batchEnd {
					zero, err := restIsZero(br)
					if err != nil {
						return readErr(err)
					}
					if zero {
						return torn(off)
					}
				}
			}
			return corrupt(off, bad)
		}
		if typ == recBatch {
			batchStart = off
			batchEnd = off + batchSize + int64(binary.LittleEndian.Uint64(payload))
		} else if err := fn(typ, payload); err != nil {
			return corrupt(off, err)
		}
		off += headerSize + n
	}
	if limit >= 0 && off == limit {
		return scanResult{end: off, size: fi.Size(), torn: true}, nil
	}
	return cleanEnd(off)
}

// pageSize is the unit in which the page cache writes a file back: a crash loses whole pages.
const pageSize = 4096

// tornWrite reports whether the damaged record starting at off, whose bytes (as far as its
// batch and the file go) end at end, has a whole page-aligned page of zeros starting inside it.
// Inside the last Save's batch that is the mark of a write cut short by a crash: the segment's
// space past the log is zeros (written ahead, or a file extended before its data landed), and
// the pages of one write reach the disk in any order until fdatasync returns, so a crash can
// keep a later page of the last write and lose an earlier one; nothing from that write had
// been acknowledged. A bad checksum without such a page, or anywhere but in the last batch, is
// damage to synced data and stays an error. (etcd's WAL takes a zeroed sector as a torn write;
// the batch bound and whole pages keep a value that happens to hold zeros, in synced data,
// from passing for one as far as the format can tell.)
func tornWrite(f *os.File, off, end int64) (bool, error) {
	buf := make([]byte, pageSize)
	for p := (off + pageSize - 1) / pageSize * pageSize; p < end; p += pageSize {
		n, err := f.ReadAt(buf, p)
		if err != nil && err != io.EOF {
			return false, err
		}
		if n == pageSize && allZero(buf) {
			return true, nil
		}
	}
	return false, nil
}

// zerosFrom reports whether the segment holds only zeros from off to its end (size).
func zerosFrom(f *os.File, off, size int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for ; off < size; off += int64(len(buf)) {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return false, err
		}
		if !allZero(buf[:n]) {
			return false, nil
		}
		if n == 0 {
			break
		}
	}
	return true, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// restIsZero reports whether everything left in r is zero bytes: then a bad
// record before it is the torn end of the last write rather than damage in
// the middle of acknowledged data.
func restIsZero(r io.Reader) (bool, error) {
	var chunk [32 << 10]byte
	for {
		n, err := r.Read(chunk[:])
		if !allZero(chunk[:n]) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// replayer folds records into a State with raft's overwrite semantics.
type replayer struct {
	st State
}

func (r *replayer) apply(typ byte, p []byte) error {
	switch typ {
	case recEntry:
		var e raftpb.Entry // fresh each time: Unmarshal reuses e.Data's array
		if err := e.Unmarshal(p); err != nil {
			return fmt.Errorf("decode entry: %w", err)
		}
		return r.entry(e)
	case recState:
		var hs raftpb.HardState
		if err := hs.Unmarshal(p); err != nil {
			return fmt.Errorf("decode hard state: %w", err)
		}
		r.st.HardState = hs
	case recSnap:
		if len(p) != snapMarkSize {
			return fmt.Errorf("snapshot marker of %d bytes", len(p))
		}
		r.mark(SnapMark{
			Index: binary.LittleEndian.Uint64(p[0:8]),
			Term:  binary.LittleEndian.Uint64(p[8:16]),
		})
	}
	return nil
}

// entry adds e, discarding entries at e.Index and later.
func (r *replayer) entry(e raftpb.Entry) error {
	if e.Index <= r.st.Snapshot.Index {
		return nil // covered by the snapshot
	}
	ents := r.st.Entries
	if len(ents) == 0 || e.Index < ents[0].Index {
		// Either the first entry seen, or an overwrite reaching below the
		// first entry kept (possible in the oldest segment left by ReleaseTo).
		r.st.Entries = append(ents[:0], e)
		return nil
	}
	first, last := ents[0].Index, ents[len(ents)-1].Index
	if e.Index > last+1 {
		return fmt.Errorf("entry index %d leaves a gap after %d", e.Index, last)
	}
	r.st.Entries = append(ents[:e.Index-first], e)
	return nil
}

// mark applies a snapshot marker: entries it covers go, and if the log does
// not agree with the snapshot at its index, raft replaced the whole log with
// the snapshot, so everything goes.
func (r *replayer) mark(m SnapMark) {
	if m.Index < r.st.Snapshot.Index {
		return
	}
	ents := r.st.Entries
	if n := len(ents); n > 0 {
		first, last := ents[0].Index, ents[n-1].Index
		switch {
		case m.Index > last:
			ents = nil
		case m.Index >= first:
			if ents[m.Index-first].Term == m.Term {
				ents = ents[m.Index-first+1:]
			} else {
				ents = nil
			}
		}
	}
	r.st.Entries = ents
	r.st.Snapshot = m
}
