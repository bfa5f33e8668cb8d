package group

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/raftnode"
)

// Snapshot format (SHOALSM4), written by snapJob.Stream:
//
//	"SHOALSM4"
//	current and previous configuration  (uvarint length + JSON each; length 0 for none)
//	16384 slot state bytes
//	crc u32                          CRC32-C of the preceding bytes, magic included
//	chunks, in any order, covering slots [0,16384) exactly once together, each:
//	    lo u16 | hi u16                  the chunk's slots [lo,hi)
//	    uvarint n, then n times:         at-most-once records of the chunk's slots that have any
//	        slot u16 | uvarint length | encodeSessions
//	    { uvarint(klen+1) key uvarint(vlen) val }  the pairs of [lo,hi)
//	    uvarint(0)                       end of the pairs
//	    crc u32                          CRC32-C of the chunk's preceding bytes
//
// Chunks exist so the state can be written slot range by slot range while writes go on (see
// snapJob); a slot the apply path copied before changing it is a chunk of its own, written as
// soon as possible, hence out of order. Each carries its own checksum because a snapshot sent by
// the leader reaches Restore without the file's.
//
// The values are stored values, headers included (see wrapValue). SHOALSM3, laid out alike, held
// values without headers, from before keys could expire; Restore still reads it.
const snapshotMagic = "SHOALSM4"

// snapshotMagicV3 is the format of snapshotMagic before values had headers.
const snapshotMagicV3 = "SHOALSM3"

// snapshotMagicV2 is the format written before snapshots were streamed (configurations, slot
// states, every slot's records, then one export of all pairs). Restore still reads it so that a
// replica restarts from a snapshot an older version wrote.
const snapshotMagicV2 = "SHOALSM2"

// error codes of results kept in at-most-once records, so they survive snapshots and hand-offs.
// New errors go at the end: the codes are stored.
var resultErrors = []error{nil, ErrNotInteger, ErrOverflow, ErrWrongGroup, ErrStale, ErrTooLarge}

func errCode(err error) byte {
	for i, e := range resultErrors {
		if e == err {
			return byte(i)
		}
	}
	return 0
}

// Snapshot implements raftnode.StateMachine: the whole state in one buffer. The raft node
// streams snapshots to their file instead (StartSnapshot); this is for callers that want the
// bytes in memory.
func (g *Group) Snapshot() ([]byte, error) {
	j, err := g.StartSnapshot()
	if err != nil {
		return nil, err
	}
	defer j.Close()
	var buf bytes.Buffer
	if err := j.Stream(context.Background(), &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// SnapshotSize implements raftnode.Sizer: about the bytes a snapshot would hold. The raft loop
// asks on every Ready once enough entries piled up, so it must be cheap: the table's memory
// counter is one atomic load (summing per-slot byte counts took 16384 lock round trips and
// slowed every read index round).
func (g *Group) SnapshotSize() int64 {
	return g.tab.Bytes()
}

// Restore implements raftnode.StateMachine: it replaces the whole state with a snapshot's, in
// this version's format or the previous one's. A snapshot in this version's format that is
// damaged (fails a checksum or does not parse) is refused before the state is touched; on other
// errors the table may hold part of the snapshot, and the caller must not go on applying entries
// (the raft node stops).
//
// It reads data in place through RestoreFrom, the one implementation of the current format.
func (g *Group) Restore(data []byte) error {
	if bytes.HasPrefix(data, []byte(snapshotMagicV2)) {
		if g.snap != nil {
			return errSnapshotOpen
		}
		return g.restoreV2(data[len(snapshotMagicV2):])
	}
	return g.RestoreFrom(bytes.NewReader(data), int64(len(data)))
}

// Group implements raftnode.StreamRestorer, so that a restarting replica restores from the
// snapshot file in place: checked here, since the raft node falls back to reading the file into
// memory when the method is missing.
var _ raftnode.StreamRestorer = (*Group)(nil)

// errSnapshotOpen refuses a restore while a snapshot job runs: the job reads the table and records
// without locks, trusting the apply path.
var errSnapshotOpen = errors.New("group restore: a snapshot is still being written")

// RestoreFrom implements raftnode.StreamRestorer: Restore reading the snapshot's size bytes
// through r instead of from memory, in two sequential passes through a fixed buffer (see
// restore), so that restoring a table of many gigabytes needs memory for the table, not for its
// snapshot too. A snapshot in the previous format (SHOALSM2, written by older versions only) is
// read into memory whole.
func (g *Group) RestoreFrom(r io.ReaderAt, size int64) error {
	if g.snap != nil {
		return errSnapshotOpen
	}
	if size < 0 {
		return fmt.Errorf("group restore: negative size %d", size)
	}
	var magic [len(snapshotMagic)]byte
	if size >= int64(len(magic)) {
		if err := readAt(r, magic[:], 0); err != nil {
			return fmt.Errorf("group restore: read: %w", err)
		}
	}
	switch string(magic[:]) {
	case snapshotMagic:
		return g.restore(r, size, false)
	case snapshotMagicV3:
		return g.restore(r, size, true)
	case snapshotMagicV2:
		b := make([]byte, size)
		if err := readAt(r, b, 0); err != nil {
			return fmt.Errorf("group restore: read: %w", err)
		}
		return g.restoreV2(b[len(snapshotMagicV2):])
	}
	return errors.New("group restore: not a shoal state machine snapshot")
}

// readHead decodes the configurations and slot states that open a snapshot in the previous format
// (restoreV2) and returns the bytes after them. (The current format's head, laid out alike, is
// read from a reader and checked by restoreScan.head.)
func readHead(b []byte) (cfgs [2]*controller.Config, slots [keyspace.NumSlots]slotState, rest []byte, err error) {
	d := decoder{b: b}
	for i := range cfgs {
		cb := d.bytes(int(d.uvarint()))
		if d.err == nil && len(cb) > 0 {
			cfgs[i] = &controller.Config{}
			if err := json.Unmarshal(cb, cfgs[i]); err != nil {
				return cfgs, slots, nil, fmt.Errorf("configuration: %w", err)
			}
		}
	}
	for i, s := range d.bytes(keyspace.NumSlots) {
		if slotState(s) > slotCleaning {
			return cfgs, slots, nil, fmt.Errorf("%w: slot %d in state %d", errCorrupt, i, s)
		}
		slots[i] = slotState(s)
	}
	if d.err != nil {
		return cfgs, slots, nil, d.err
	}
	return cfgs, slots, d.b, nil
}

// restoreBuffer is the buffer restore reads a snapshot through: large sequential reads, and the
// most restore holds of the snapshot at a time (but for a single key or value larger than it).
const restoreBuffer = 256 << 10

// restore reads the chunked format (see snapshotMagic) from the size bytes of r, magic included
// (SHOALSM3's when plain: values without headers), in two passes. The first checks every checksum and decodes every configuration and
// at-most-once record, without touching the state, so a damaged snapshot leaves the state as it
// was; it notes where each chunk's pairs are. The second replaces the table's pairs with those.
//
// Memory stays bounded whatever the snapshot's size: both passes read through one restoreBuffer,
// checksumming pairs as they go by rather than holding a chunk (a chunk is about chunkBytes, but
// one slot is never split, so a chunk holds a whole slot however large it grew). What is kept is
// what the state keeps anyway (configurations, records) plus 16 bytes per chunk, of which there
// are at most keyspace.NumSlots since chunks cover disjoint slot ranges.
func (g *Group) restore(r io.ReaderAt, size int64, plain bool) error {
	sr := &snapReader{buf: make([]byte, restoreBuffer)}
	sr.reset(r, 0, size)
	sc := restoreScan{ra: r}
	if err := sc.head(sr); err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	for left := keyspace.NumSlots; left > 0; {
		at := sr.offset()
		n, err := sc.chunk(sr)
		if err != nil {
			return fmt.Errorf("group restore: chunk at byte %d: %w", at, err)
		}
		left -= n
	}
	if n := sr.remaining(); n != 0 {
		return fmt.Errorf("group restore: %w: %d bytes after the last chunk", errCorrupt, n)
	}
	g.own.Lock()
	defer g.own.Unlock()
	g.tab.Reset()
	var key []byte
	var expiring int64
	for _, p := range sc.pairs {
		sr.reset(r, p[0], p[1]-p[0])
		for {
			kl := sr.uvarint()
			if kl == 0 || sr.err != nil {
				break
			}
			// Copied: reading the value may refill the buffer the key is in.
			key = append(key[:0], sr.bytes(kl-1)...)
			v := sr.bytes(sr.length())
			if sr.err != nil {
				break
			}
			if plain {
				g.wbuf = wrapValue(g.wbuf[:0], v, 0)
				v = g.wbuf
			} else if len(v) > 0 && v[0] == valExpiring {
				expiring++
			}
			g.tab.Set(key, v) // copies both; v is in the reader's buffer
		}
		if sr.err != nil {
			// The first pass read these bytes without fault: the source failed or changed since.
			return fmt.Errorf("group restore: pairs at byte %d: %w", p[0], sr.fail("pairs"))
		}
	}
	g.wbuf = nil
	g.expires.Store(expiring)
	for s := range g.expiring {
		// The pairs may carry expiries. Added, not stored: a sweep that began a walk of the
		// slot before must not find its generation unchanged and clear it.
		g.noteExpiring(uint16(s))
	}
	g.cs.cfg, g.cs.prev, g.cs.slots = sc.cfgs[0], sc.cfgs[1], sc.slots
	g.sessions = sc.sessions
	return nil
}

// restoreScan is restore's first pass: what it decoded, and where the pairs are.
type restoreScan struct {
	ra       io.ReaderAt // the snapshot, to read back checked records
	cfgs     [2]*controller.Config
	slots    [keyspace.NumSlots]slotState
	sessions [keyspace.NumSlots]*slotSessions
	covered  [keyspace.NumSlots]bool
	pairs    [][2]int64 // per chunk, the offsets of its pairs, end marker included
	scratch  []byte     // encoded configurations and records, read back once checked
}

// readBack reads n bytes at off into the scratch buffer. Encoded configurations and records are
// decoded only once their checksum held, and read back then rather than kept from the first
// reading, so that a damaged length cannot make restore allocate, or keep, more than real data.
func (sc *restoreScan) readBack(off, n int64) ([]byte, error) {
	if int64(cap(sc.scratch)) < n {
		sc.scratch = make([]byte, n)
	}
	b := sc.scratch[:n]
	if err := readAt(sc.ra, b, off); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return b, nil
}

// readAt fills b from r at off. An io.ReaderAt may return io.EOF along with a full read, and must
// return an error with a short one.
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF // the source is shorter than its stated size
	}
	return err
}

// head checks and decodes the magic, configurations and slot states.
func (sc *restoreScan) head(sr *snapReader) error {
	sr.resetSum()
	sr.skip(uint64(len(snapshotMagic))) // RestoreFrom checked it; the checksum covers it
	var cfgs [2][2]int64                // offset and length of each configuration's JSON
	for i := range cfgs {
		n := sr.length()
		cfgs[i] = [2]int64{sr.offset(), int64(n)}
		sr.skip(n)
	}
	var states [keyspace.NumSlots]byte
	sr.read(states[:])
	sum := sr.sum()
	got := sr.u32()
	if sr.err != nil {
		return sr.fail("configurations and slot states")
	}
	if sum != got {
		return fmt.Errorf("%w: checksum of configurations and slot states", errCorrupt)
	}
	for i, c := range cfgs {
		if c[1] == 0 {
			continue
		}
		b, err := sc.readBack(c[0], c[1])
		if err != nil {
			return err
		}
		sc.cfgs[i] = &controller.Config{}
		if err := json.Unmarshal(b, sc.cfgs[i]); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
	}
	for i, s := range states {
		if slotState(s) > slotCleaning {
			return fmt.Errorf("%w: slot %d in state %d", errCorrupt, i, s)
		}
		sc.slots[i] = slotState(s)
	}
	return nil
}

// chunk checks the chunk at the reader's position, whose slots must not be covered yet, marks
// them covered, decodes their at-most-once records and notes where its pairs are. It returns how
// many slots the chunk covers.
func (sc *restoreScan) chunk(sr *snapReader) (int, error) {
	sr.resetSum()
	lo, hi := int(sr.u16()), int(sr.u16())
	if sr.err != nil {
		return 0, sr.fail("chunk header")
	}
	if hi <= lo || hi > keyspace.NumSlots {
		return 0, fmt.Errorf("%w: chunk [%d,%d)", errCorrupt, lo, hi)
	}
	n := sr.uvarint()
	if sr.err != nil {
		return 0, sr.fail("records")
	}
	if n > uint64(hi-lo) {
		return 0, fmt.Errorf("%w: %d record sets in [%d,%d)", errCorrupt, n, lo, hi)
	}
	type rec struct {
		slot   int
		off, n int64
	}
	recs := make([]rec, 0, n)
	prev := lo - 1
	for range n {
		slot := int(sr.u16())
		l := sr.length()
		recs = append(recs, rec{slot, sr.offset(), int64(l)})
		sr.skip(l)
		if sr.err != nil {
			return 0, sr.fail("records")
		}
		if slot <= prev || slot >= hi {
			return 0, fmt.Errorf("%w: records of slot %d in [%d,%d)", errCorrupt, slot, lo, hi)
		}
		prev = slot
	}
	// The pairs are checksummed as they go by, never held: a chunk may be a slot of any size.
	start := sr.offset()
	for {
		kl := sr.uvarint()
		if kl == 0 || sr.err != nil {
			break
		}
		sr.skip(kl - 1)
		sr.skip(sr.length())
	}
	if sr.err != nil {
		return 0, sr.fail("pairs")
	}
	end := sr.offset()
	sum := sr.sum()
	got := sr.u32()
	if sr.err != nil {
		return 0, sr.fail("truncated chunk")
	}
	if sum != got {
		return 0, fmt.Errorf("%w: checksum of chunk [%d,%d)", errCorrupt, lo, hi)
	}
	for s := lo; s < hi; s++ {
		if sc.covered[s] {
			return 0, fmt.Errorf("%w: slot %d in two chunks", errCorrupt, s)
		}
		sc.covered[s] = true
	}
	for _, r := range recs {
		b, err := sc.readBack(r.off, r.n)
		if err != nil {
			return 0, err
		}
		s, err := decodeSessions(b)
		if err != nil {
			return 0, fmt.Errorf("slot %d records: %w", r.slot, err)
		}
		sc.sessions[r.slot] = s
	}
	sc.pairs = append(sc.pairs, [2]int64{start, end})
	return hi - lo, nil
}

// snapReader reads a span of a snapshot sequentially through a fixed buffer, keeping its offset
// and the CRC32-C of the bytes consumed since resetSum. Checksums are computed over the buffer in
// large runs, when it is refilled or the sum is asked for, rather than byte by byte.
//
// Its first error sticks: later reads return zeros and do nothing, so a parser checks err once
// after a run of reads. Reading past the span's end, a malformed varint and a length running past
// the end are errCorrupt; a failure of the source is returned as is.
type snapReader struct {
	src     io.ReaderAt
	next    int64 // offset in src of the next byte to buffer
	end     int64 // offset in src where the span ends
	buf     []byte
	r, w    int   // buf[r:w] is buffered, not consumed yet
	summed  int   // buf[summed:r] is consumed, not summed yet
	base    int64 // offset in src of buf[0]
	crc     uint32
	err     error
	scratch []byte // holds a key or value larger than buf
}

// reset starts reading the n bytes of src at off, keeping the buffer.
func (sr *snapReader) reset(src io.ReaderAt, off, n int64) {
	*sr = snapReader{src: src, next: off, end: off + n, base: off, buf: sr.buf, scratch: sr.scratch}
}

// offset is the offset in src of the next byte to consume.
func (sr *snapReader) offset() int64 { return sr.base + int64(sr.r) }

// remaining is how many bytes of the span are left to consume.
func (sr *snapReader) remaining() int64 { return int64(sr.w-sr.r) + sr.end - sr.next }

// fill makes buf[r:w] hold at least n bytes (n <= len(buf)), moving the unconsumed bytes to the
// front and reading more after them.
func (sr *snapReader) fill(n int) bool {
	if sr.err != nil {
		return false
	}
	if sr.w-sr.r >= n {
		return true
	}
	if int64(n) > sr.remaining() {
		sr.err = errCorrupt // the span ends first
		return false
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, sr.buf[sr.summed:sr.r])
	sr.base += int64(sr.r)
	sr.w = copy(sr.buf, sr.buf[sr.r:sr.w])
	sr.r, sr.summed = 0, 0
	for sr.w < n {
		m := int(min(int64(len(sr.buf)-sr.w), sr.end-sr.next))
		got, err := sr.src.ReadAt(sr.buf[sr.w:sr.w+m], sr.next)
		sr.w += got
		sr.next += int64(got)
		if got < m {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF // the source is shorter than its stated size
			}
			sr.err = fmt.Errorf("read: %w", err)
			return false
		}
	}
	return true
}

// sum returns the checksum of the bytes consumed since resetSum.
func (sr *snapReader) sum() uint32 {
	sr.crc = crc32.Update(sr.crc, castagnoli, sr.buf[sr.summed:sr.r])
	sr.summed = sr.r
	return sr.crc
}

// resetSum starts a new checksum at the next byte.
func (sr *snapReader) resetSum() { sr.crc, sr.summed = 0, sr.r }

// ReadByte implements io.ByteReader, for binary.ReadUvarint.
func (sr *snapReader) ReadByte() (byte, error) {
	if !sr.fill(1) {
		return 0, sr.err
	}
	sr.r++
	return sr.buf[sr.r-1], nil
}

func (sr *snapReader) uvarint() uint64 {
	if sr.err != nil {
		return 0
	}
	if sr.w-sr.r >= binary.MaxVarintLen64 {
		// In the buffer, as nearly all are: decoded in place rather than byte by byte.
		v, n := binary.Uvarint(sr.buf[sr.r:sr.w])
		if n <= 0 {
			sr.err = errCorrupt // overflow
			return 0
		}
		sr.r += n
		return v
	}
	v, err := binary.ReadUvarint(sr)
	if err != nil && sr.err == nil {
		sr.err = errCorrupt // overflow
	}
	return v
}

// length reads a uvarint that counts the bytes following it, which must be there.
func (sr *snapReader) length() uint64 {
	n := sr.uvarint()
	if sr.err == nil && n > uint64(sr.remaining()) {
		sr.err = errCorrupt
		return 0
	}
	return n
}

func (sr *snapReader) u16() uint16 {
	if !sr.fill(2) {
		return 0
	}
	sr.r += 2
	return binary.LittleEndian.Uint16(sr.buf[sr.r-2:])
}

func (sr *snapReader) u32() uint32 {
	if !sr.fill(4) {
		return 0
	}
	sr.r += 4
	return binary.LittleEndian.Uint32(sr.buf[sr.r-4:])
}

// skip consumes n bytes, checksumming them, without keeping them.
func (sr *snapReader) skip(n uint64) {
	if sr.err == nil && n > uint64(sr.remaining()) {
		sr.err = errCorrupt
	}
	for n > 0 && sr.fill(1) {
		m := int(min(n, uint64(sr.w-sr.r)))
		sr.r += m
		n -= uint64(m)
	}
}

// read consumes len(dst) bytes into dst.
func (sr *snapReader) read(dst []byte) {
	if sr.err == nil && int64(len(dst)) > sr.remaining() {
		sr.err = errCorrupt
	}
	for len(dst) > 0 && sr.fill(1) {
		m := copy(dst, sr.buf[sr.r:sr.w])
		sr.r += m
		dst = dst[m:]
	}
}

// bytes consumes n bytes and returns them, valid until the next read: in place in the buffer when
// they fit, else in a scratch buffer as large as the largest such run (a key or value of more than
// restoreBuffer, which the table holds anyway).
func (sr *snapReader) bytes(n uint64) []byte {
	if sr.err == nil && n > uint64(sr.remaining()) {
		sr.err = errCorrupt
	}
	if sr.err != nil {
		return nil
	}
	if n <= uint64(len(sr.buf)) {
		if !sr.fill(int(n)) {
			return nil
		}
		sr.r += int(n)
		return sr.buf[sr.r-int(n) : sr.r]
	}
	if uint64(cap(sr.scratch)) < n {
		sr.scratch = make([]byte, n)
	}
	b := sr.scratch[:n]
	sr.read(b)
	return b
}

// fail describes the reader's error while reading what: a damaged or cut snapshot, or the
// source's own failure.
func (sr *snapReader) fail(what string) error {
	if errors.Is(sr.err, errCorrupt) {
		return fmt.Errorf("%w: %s", errCorrupt, what)
	}
	return fmt.Errorf("%s: %w", what, sr.err)
}

// restoreV2 reads the format written before snapshots were streamed (see snapshotMagicV2).
func (g *Group) restoreV2(b []byte) error {
	cfgs, slots, rest, err := readHead(b)
	if err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	d := decoder{b: rest}
	var sessions [keyspace.NumSlots]*slotSessions
	n := d.uvarint()
	for range n {
		sb := d.bytes(2)
		enc := d.bytes(int(d.uvarint()))
		if d.err != nil {
			break
		}
		slot := binary.LittleEndian.Uint16(sb)
		if int(slot) >= keyspace.NumSlots {
			return fmt.Errorf("group restore: bad slot %d", slot)
		}
		s, err := decodeSessions(enc)
		if err != nil {
			return fmt.Errorf("group restore: slot %d sessions: %w", slot, err)
		}
		sessions[slot] = s
	}
	if d.err != nil {
		return fmt.Errorf("group restore: %w", d.err)
	}
	g.own.Lock()
	defer g.own.Unlock()
	g.tab.Reset()
	g.expires.Store(0)
	if _, err := g.importPairs(d.b, true); err != nil { // values without headers
		return fmt.Errorf("group restore: %w", err)
	}
	g.cs.cfg, g.cs.prev, g.cs.slots = cfgs[0], cfgs[1], slots
	g.sessions = sessions
	return nil
}
