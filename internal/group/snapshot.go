package group

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

// Snapshot format (SHOALSM3), written by snapJob.Stream:
//
//	"SHOALSM3"
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
const snapshotMagic = "SHOALSM3"

// snapshotMagicV2 is the format written before snapshots were streamed (configurations, slot
// states, every slot's records, then one export of all pairs). Restore still reads it so that a
// replica restarts from a snapshot an older version wrote.
const snapshotMagicV2 = "SHOALSM2"

// error codes of results kept in at-most-once records, so they survive snapshots and hand-offs.
var resultErrors = []error{nil, ErrNotInteger, ErrOverflow, ErrWrongGroup, ErrStale}

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
// this version's format or the previous one's. On error the table may hold part of the snapshot;
// the caller must not go on applying entries (the raft node stops).
func (g *Group) Restore(data []byte) error {
	if g.snap != nil {
		// The job reads the table and records without locks, trusting the apply path.
		return errors.New("group restore: a snapshot is still being written")
	}
	switch {
	case bytes.HasPrefix(data, []byte(snapshotMagic)):
		return g.restore(data[len(snapshotMagic):])
	case bytes.HasPrefix(data, []byte(snapshotMagicV2)):
		return g.restoreV2(data[len(snapshotMagicV2):])
	}
	return errors.New("group restore: not a shoal state machine snapshot")
}

// readHead decodes the configurations and slot states that open a snapshot (both formats) and
// returns the bytes after them.
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

// restore reads the chunked format (see snapshotMagic). It checks every chunk and decodes every
// at-most-once record before it touches the state, so a damaged snapshot leaves the state as it
// was; only then does it replace the table's pairs.
func (g *Group) restore(b []byte) error {
	cfgs, slots, rest, err := readHead(b)
	if err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	// b follows the magic, which the head's checksum covers too.
	sum := crc32.Update(crc32.Checksum([]byte(snapshotMagic), castagnoli), castagnoli, b[:len(b)-len(rest)])
	if len(rest) < 4 || sum != binary.LittleEndian.Uint32(rest) {
		return fmt.Errorf("group restore: %w: checksum of configurations and slot states", errCorrupt)
	}
	rest = rest[4:]
	var sessions [keyspace.NumSlots]*slotSessions
	var covered [keyspace.NumSlots]bool
	var pairs [][2]int // per chunk, where its pairs are in rest
	off := 0
	for left := keyspace.NumSlots; left > 0; {
		c, err := parseChunk(rest[off:], &covered, &sessions)
		if err != nil {
			return fmt.Errorf("group restore: chunk at byte %d: %w", off, err)
		}
		pairs = append(pairs, [2]int{off + c.pairs[0], off + c.pairs[1]})
		off += c.size
		left -= c.slots
	}
	if off != len(rest) {
		return fmt.Errorf("group restore: %w: %d bytes after the last chunk", errCorrupt, len(rest)-off)
	}
	g.own.Lock()
	defer g.own.Unlock()
	g.tab.Reset()
	for _, p := range pairs {
		if _, err := eachPair(rest[p[0]:p[1]], func(k, v []byte) { g.tab.Set(k, v) }); err != nil {
			return fmt.Errorf("group restore: %w", err) // cannot happen: parseChunk checked them
		}
	}
	g.cs.cfg, g.cs.prev, g.cs.slots = cfgs[0], cfgs[1], slots
	g.sessions = sessions
	return nil
}

// chunkInfo is where the parts of one chunk are.
type chunkInfo struct {
	size  int    // bytes, checksum included
	slots int    // how many slots it covers
	pairs [2]int // the pairs' encoding, end marker included
}

// parseChunk checks the chunk at the start of b, whose slots must not be covered yet, marks them
// covered and decodes their at-most-once records into sessions.
func parseChunk(b []byte, covered *[keyspace.NumSlots]bool, sessions *[keyspace.NumSlots]*slotSessions) (chunkInfo, error) {
	d := decoder{b: b}
	pos := func() int { return len(b) - len(d.b) }
	var c chunkInfo
	hdr := d.bytes(4)
	if d.err != nil {
		return c, fmt.Errorf("%w: chunk header", errCorrupt)
	}
	lo, hi := int(binary.LittleEndian.Uint16(hdr)), int(binary.LittleEndian.Uint16(hdr[2:]))
	if hi <= lo || hi > keyspace.NumSlots {
		return c, fmt.Errorf("%w: chunk [%d,%d)", errCorrupt, lo, hi)
	}
	type rec struct {
		slot int
		enc  []byte
	}
	var recs []rec
	n := d.uvarint()
	if n > uint64(hi-lo) {
		return c, fmt.Errorf("%w: %d record sets in [%d,%d)", errCorrupt, n, lo, hi)
	}
	prev := lo - 1
	for range n {
		sb := d.bytes(2)
		enc := d.bytes(int(d.uvarint()))
		if d.err != nil {
			return c, fmt.Errorf("%w: records", errCorrupt)
		}
		slot := int(binary.LittleEndian.Uint16(sb))
		if slot <= prev || slot >= hi {
			return c, fmt.Errorf("%w: records of slot %d in [%d,%d)", errCorrupt, slot, lo, hi)
		}
		recs = append(recs, rec{slot, enc})
		prev = slot
	}
	c.pairs[0] = pos()
	pl, err := eachPair(d.b, nil)
	if err != nil {
		return c, err
	}
	d.b = d.b[pl:]
	c.pairs[1] = pos()
	sum := d.bytes(4)
	if d.err != nil {
		return c, fmt.Errorf("%w: truncated chunk", errCorrupt)
	}
	c.size = pos()
	if crc32.Checksum(b[:c.size-4], castagnoli) != binary.LittleEndian.Uint32(sum) {
		return c, fmt.Errorf("%w: checksum of chunk [%d,%d)", errCorrupt, lo, hi)
	}
	for s := lo; s < hi; s++ {
		if covered[s] {
			return c, fmt.Errorf("%w: slot %d in two chunks", errCorrupt, s)
		}
		covered[s] = true
	}
	c.slots = hi - lo
	for _, r := range recs {
		s, err := decodeSessions(r.enc)
		if err != nil {
			return c, fmt.Errorf("slot %d records: %w", r.slot, err)
		}
		sessions[r.slot] = s
	}
	return c, nil
}

// eachPair calls fn (when not nil) for every pair encoded at the start of b, up to its end
// marker ({ uvarint(klen+1) key uvarint(vlen) val } uvarint(0)), and returns the bytes read.
func eachPair(b []byte, fn func(k, v []byte)) (int, error) {
	d := decoder{b: b}
	for {
		kl := d.uvarint()
		if d.err != nil {
			return 0, fmt.Errorf("%w: pairs", errCorrupt)
		}
		if kl == 0 {
			return len(b) - len(d.b), nil
		}
		k := d.bytes(int(kl - 1))
		v := d.bytes(int(d.uvarint()))
		if d.err != nil {
			return 0, fmt.Errorf("%w: pairs", errCorrupt)
		}
		if fn != nil {
			fn(k, v)
		}
	}
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
	if _, err := g.tab.Import(bytes.NewReader(d.b)); err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	g.cs.cfg, g.cs.prev, g.cs.slots = cfgs[0], cfgs[1], slots
	g.sessions = sessions
	return nil
}
