package group

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/raftnode"
)

// A snapshot is captured at an applied index and written out by a background goroutine (the
// exporter) while the apply path goes on, a run of slots at a time. Slot states and
// configurations are copied whole at capture (16 KiB plus two small configurations); slot data is
// kept as of the capture by copy-on-write: before the apply path changes a slot the exporter has
// not reached yet, it saves what it is about to change in the slot's undo record:
//
//   - a key's value at capture (or its absence), the first time a data command changes the key:
//     a write costs a copy of the value it replaces, not of its slot (about 30 KB, 600 pairs, at
//     10M pairs, which made every write slower than the writes arrived while most slots were
//     still ahead of the exporter);
//   - the slot's at-most-once records, encoded, the first time a write records a result there;
//   - the whole slot, as a finished chunk queued for the exporter, before a hand-off drops or
//     installs the slot (rare, and the slot changes wholesale).
//
// The exporter writes a slot as its live pairs overlaid with the slot's undo record.
//
// Every slot goes pending -> busy -> done or pending -> captured, never back:
//
//   - pending: not exported; its data at capture is the table and records overlaid with its undo.
//   - busy: the exporter claimed it and is copying it; the apply path waits before changing it.
//   - captured: the apply path copied the whole slot (the copy is queued, or written).
//   - done: the exporter copied it; the apply path may change it freely.
const (
	slotPending uint32 = iota
	slotBusy
	slotCaptured
	slotDone
)

// chunkBytes bounds the pair bytes the exporter copies in one claim. A write to a claimed slot
// waits for the whole claim to be copied, so this bounds that wait (a few tens of microseconds)
// while keeping the per-chunk framing (about 10 bytes) negligible.
const chunkBytes = 64 << 10

// errJobClosed is returned by Stream when the job was closed under it.
var errJobClosed = errors.New("group snapshot: job closed")

// snapJob is one snapshot being written out. Stream runs on its own goroutine; preserve*, Close
// and StartSnapshot belong to the apply path.
type snapJob struct {
	g      *Group
	header []byte // magic, configurations and slot states at the capture index
	budget int64  // chunkBytes; tests lower it to get many chunks out of a small table

	// mu guards undo, queue, closed and the copy counters, and every change of state; the
	// apply path's fast path reads state without it (a slot past busy never goes back). cond,
	// on mu, wakes the apply path waiting for a busy slot.
	mu     sync.Mutex
	cond   sync.Cond
	state  [keyspace.NumSlots]atomic.Uint32
	undo   [keyspace.NumSlots]*slotUndo // of pending slots the apply path changed
	queue  [][]byte                     // chunks of whole slots the apply path copied, not written yet
	closed bool
	// copied is the size of the undo records and queued copies not written yet; peakCopied its
	// highest value, the memory the copy-on-write cost this snapshot (reported by the benchmark).
	copied, peakCopied int64
}

// slotUndo is what the apply path changed in a pending slot since the capture: the data as it was
// at capture, for the exporter to write instead of the live data.
type slotUndo struct {
	keys     map[string]undoValue // the value at capture of every key changed since
	sessions []byte               // encodeSessions of the records at capture, once changed
	saved    bool                 // sessions is set
}

type undoValue struct {
	val []byte
	had bool // the key existed at capture
}

// StartSnapshot implements raftnode.SnapshotStreamer: it captures the state as of the last
// applied entry (configurations and slot states now, slot data by copy-on-write later) and
// returns the job that writes it out. It runs on the apply path and costs a copy of the slot
// states, whatever the table's size.
func (g *Group) StartSnapshot() (raftnode.SnapshotJob, error) {
	if g.snap != nil {
		return nil, errors.New("group snapshot: another snapshot is still being written")
	}
	hdr := []byte(snapshotMagic)
	g.own.RLock()
	for _, c := range []*controller.Config{g.cs.cfg, g.cs.prev} {
		var b []byte
		if c != nil {
			var err error
			if b, err = json.Marshal(c); err != nil {
				g.own.RUnlock()
				return nil, fmt.Errorf("group snapshot: %w", err)
			}
		}
		hdr = binary.AppendUvarint(hdr, uint64(len(b)))
		hdr = append(hdr, b...)
	}
	for _, s := range g.cs.slots {
		hdr = append(hdr, byte(s))
	}
	g.own.RUnlock()
	hdr = binary.LittleEndian.AppendUint32(hdr, crc32.Checksum(hdr, castagnoli))
	j := &snapJob{g: g, header: hdr, budget: chunkBytes}
	j.cond.L = &j.mu
	g.snap = j
	return j, nil
}

// preserveCommand lets the running snapshot, if any, save what a data command is about to change
// (its keys' values, and the at-most-once records of its first key's slot) before Apply changes
// them.
func (g *Group) preserveCommand(c *command) {
	j := g.snap
	if j == nil || len(c.args) == 0 {
		return
	}
	if c.clientID != 0 {
		j.preserveSessions(keyspace.Slot(c.args[0]))
	}
	switch c.op {
	case opSet, opAppend, opIncrBy, opCAS:
		j.preserveKey(c.args[0])
	case opMSet:
		for i := 0; i < len(c.args); i += 2 {
			j.preserveKey(c.args[i])
		}
	default:
		// DEL, and any op added later: every argument may be a key. Saving a key that then does
		// not change costs a copy, never correctness.
		for _, a := range c.args {
			j.preserveKey(a)
		}
	}
}

// preserve lets the running snapshot, if any, copy a whole slot before the apply path changes it
// wholesale (hand-offs). Every apply-path change of slot data must call it, preserveCommand or
// the job's preserveKey/preserveSessions first.
func (g *Group) preserve(slot uint16) {
	if j := g.snap; j != nil {
		j.preserveSlot(slot)
	}
}

// pendingLocked returns with mu held once slot is not busy, and reports whether it is pending
// (the snapshot still needs its data as of the capture). Without the lock when it returns false
// early: most slots, once the exporter passed them, cost one atomic load.
func (j *snapJob) pendingLocked(slot uint16) bool {
	if j.state[slot].Load() >= slotCaptured {
		return false
	}
	j.mu.Lock()
	for j.state[slot].Load() == slotBusy {
		j.cond.Wait()
	}
	if j.state[slot].Load() != slotPending || j.closed {
		j.mu.Unlock()
		return false
	}
	return true
}

func (j *snapJob) undoOf(slot uint16) *slotUndo {
	u := j.undo[slot]
	if u == nil {
		u = &slotUndo{}
		j.undo[slot] = u
	}
	return u
}

// preserveKey saves key's value at capture before its first change.
func (j *snapJob) preserveKey(key []byte) {
	slot := keyspace.Slot(key)
	if !j.pendingLocked(slot) {
		return
	}
	defer j.mu.Unlock()
	u := j.undoOf(slot)
	if _, ok := u.keys[string(key)]; ok {
		return // changed before: the saved value is the one at capture
	}
	if u.keys == nil {
		u.keys = make(map[string]undoValue)
	}
	val, had := j.g.tab.Get(key, nil)
	u.keys[string(key)] = undoValue{val: val, had: had}
	j.grew(int64(len(key) + len(val)))
}

// preserveSessions saves slot's at-most-once records at capture before their first change.
func (j *snapJob) preserveSessions(slot uint16) {
	if !j.pendingLocked(slot) {
		return
	}
	defer j.mu.Unlock()
	u := j.undoOf(slot)
	if u.saved {
		return
	}
	u.sessions, u.saved = encodeSessions(nil, j.g.sessions[slot]), true
	j.grew(int64(len(u.sessions)))
}

// preserveSlot copies the whole slot as of the capture, as a chunk queued for the exporter.
func (j *snapJob) preserveSlot(slot uint16) {
	if !j.pendingLocked(slot) {
		return
	}
	defer j.mu.Unlock()
	// Sized up front so the copy is one allocation of about the slot's size.
	r := keyspace.SlotRange(slot)
	size := j.g.tab.RangeBytes(r) + 4*int64(j.g.tab.RangeLen(r)) + 64
	c := j.g.appendChunk(make([]byte, 0, size), int(slot), int(slot)+1, j.undo[slot:slot+1])
	j.dropUndo(int(slot), int(slot)+1)
	j.queue = append(j.queue, c)
	j.grew(int64(len(c)))
	j.state[slot].Store(slotCaptured)
}

// grew accounts n more bytes of copies; mu held.
func (j *snapJob) grew(n int64) {
	j.copied += n
	j.peakCopied = max(j.peakCopied, j.copied)
}

// dropUndo forgets the undo records of [lo,hi), written out; mu held.
func (j *snapJob) dropUndo(lo, hi int) {
	for s := lo; s < hi; s++ {
		if u := j.undo[s]; u != nil {
			n := len(u.sessions)
			for k, v := range u.keys {
				n += len(k) + len(v.val)
			}
			j.copied -= int64(n)
			j.undo[s] = nil
		}
	}
}

// Stream implements raftnode.SnapshotJob: it writes the captured state to w, chunk by chunk,
// checking ctx between chunks. It must run at most once.
func (j *snapJob) Stream(ctx context.Context, w io.Writer) error {
	if _, err := w.Write(j.header); err != nil {
		return fmt.Errorf("group snapshot: write: %w", err)
	}
	var buf []byte
	pos := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("group snapshot: %w", err)
		}
		chunk, copied, err := j.next(&pos, buf[:0])
		if err != nil || chunk == nil {
			return err
		}
		if !copied {
			buf = chunk // the exporter's buffer, perhaps grown: reused for the next chunk
		}
		// Written with no lock held: a slow disk holds up only this goroutine.
		if _, err := w.Write(chunk); err != nil {
			return fmt.Errorf("group snapshot: write: %w", err)
		}
		// A background job: let the goroutines serving requests that wait for this P run now,
		// rather than at the next preemption (10 ms away on a busy machine).
		runtime.Gosched()
	}
}

// next returns the next chunk to write, or nil once every slot is written. Whole slots the apply
// path copied come first (copied true), so each copy lives only until the exporter gets to it;
// otherwise next claims the run of pending slots from *pos and appends it to buf.
func (j *snapJob) next(pos *int, buf []byte) (chunk []byte, copied bool, err error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil, false, errJobClosed
	}
	if n := len(j.queue); n > 0 {
		b := j.queue[n-1]
		j.queue[n-1] = nil // its memory goes as soon as it is written
		j.queue = j.queue[:n-1]
		j.copied -= int64(len(b))
		j.mu.Unlock()
		return b, true, nil
	}
	s := *pos
	for s < keyspace.NumSlots && j.state[s].Load() != slotPending {
		s++ // copied whole by the apply path, and written already: the queue is empty
	}
	if s == keyspace.NumSlots {
		// No slot is pending, so the apply path cannot queue another copy.
		j.mu.Unlock()
		return nil, false, nil
	}
	hi := s
	var size int64
	for hi < keyspace.NumSlots && j.state[hi].Load() == slotPending {
		sz := j.g.tab.RangeBytes(keyspace.SlotRange(uint16(hi)))
		if hi > s && size+sz > j.budget {
			break
		}
		size += sz
		j.state[hi].Store(slotBusy)
		hi++
	}
	j.mu.Unlock()
	// The claimed slots and their undo records cannot change: the apply path waits until they
	// are done.
	buf = j.g.appendChunk(buf, s, hi, j.undo[s:hi])
	j.mu.Lock()
	j.dropUndo(s, hi)
	for i := s; i < hi; i++ {
		j.state[i].Store(slotDone)
	}
	j.cond.Broadcast()
	j.mu.Unlock()
	*pos = hi
	return buf, false, nil
}

// Close implements raftnode.SnapshotJob: the apply path stops saving data for this job. It runs
// on the apply path, after Stream returned or instead of it.
func (j *snapJob) Close() {
	if j.g.snap == j {
		j.g.snap = nil
	}
	j.mu.Lock()
	j.closed = true
	clear(j.queue)
	j.queue = nil
	clear(j.undo[:])
	j.mu.Unlock()
}

// appendChunk appends the snapshot chunk of slots [lo,hi) to buf (see snapshotMagic for the
// layout), as of the capture: the live pairs and records overlaid with undo (undo[i] is slot
// lo+i's, possibly nil). The caller guarantees that the apply path does not change these slots
// or their undo records meanwhile.
//
// Pairs are encoded here through Table.Range rather than by Table.Export, which allocates a 64 KiB
// buffer per call.
func (g *Group) appendChunk(buf []byte, lo, hi int, undo []*slotUndo) []byte {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(lo))
	buf = binary.LittleEndian.AppendUint16(buf, uint16(hi))
	// The records of slot s at capture, encoded, when a write changed them since.
	saved := func(s int) ([]byte, bool) {
		if u := undo[s-lo]; u != nil && u.saved {
			return u.sessions, true
		}
		return nil, false
	}
	n := 0
	for s := lo; s < hi; s++ {
		if enc, ok := saved(s); ok {
			if enc[0] != 0 { // a non-zero client count
				n++
			}
		} else if ss := g.sessions[s]; ss != nil && len(ss.clients) > 0 {
			n++
		}
	}
	buf = binary.AppendUvarint(buf, uint64(n))
	for s := lo; s < hi; s++ {
		enc, ok := saved(s)
		if ok && enc[0] == 0 {
			continue
		}
		if !ok {
			ss := g.sessions[s]
			if ss == nil || len(ss.clients) == 0 {
				continue
			}
			// Encoded in place after a length reserved at its largest, which is then fixed up:
			// no scratch copy.
			buf = binary.LittleEndian.AppendUint16(buf, uint16(s))
			at := len(buf)
			buf = append(buf, make([]byte, binary.MaxVarintLen64)...)
			buf = encodeSessions(buf, ss)
			l := len(buf) - at - binary.MaxVarintLen64
			w := binary.PutUvarint(buf[at:], uint64(l))
			buf = append(buf[:at+w], buf[at+binary.MaxVarintLen64:]...)
			continue
		}
		buf = binary.LittleEndian.AppendUint16(buf, uint16(s))
		buf = binary.AppendUvarint(buf, uint64(len(enc)))
		buf = append(buf, enc...)
	}
	var keys map[string]undoValue
	for s := lo; s < hi; s++ {
		if u := undo[s-lo]; u != nil {
			keys = u.keys
		} else {
			keys = nil
		}
		g.tab.Range(keyspace.SlotRange(uint16(s)), func(k, v []byte) bool {
			if _, changed := keys[string(k)]; !changed {
				buf = appendPair(buf, k, v)
			}
			return true
		})
		for k, v := range keys {
			if v.had {
				buf = appendPair(buf, k, v.val)
			}
		}
	}
	buf = binary.AppendUvarint(buf, 0)
	return binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// castagnoli is CRC32-C, which has hardware support on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendPair appends one pair of a chunk: uvarint(klen+1) key uvarint(vlen) val.
func appendPair[K []byte | string](buf []byte, k K, v []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(k))+1)
	buf = append(buf, k...)
	buf = binary.AppendUvarint(buf, uint64(len(v)))
	return append(buf, v...)
}
