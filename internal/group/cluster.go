package group

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/table"
)

// slotState is what this group does with one slot in its current configuration. It is part of
// the replicated state: every replica moves slots through the same states at the same log index.
type slotState uint8

const (
	// slotNotOwned: another group serves the slot.
	slotNotOwned slotState = iota
	// slotServing: this group owns the slot and has its data.
	slotServing
	// slotPulling: this group owns the slot in the current configuration but its data has not
	// arrived from the previous owner yet; requests wait.
	slotPulling
	// slotGiving: the previous configuration gave the slot to another group; the data stays
	// (frozen, refused to clients) until the new owner confirms it installed it.
	slotGiving
	// slotCleaning: this group serves the slot and must still tell the previous owner that it
	// may delete its copy.
	slotCleaning
)

func (s slotState) serves() bool { return s == slotServing || s == slotCleaning }

// ErrMoving is returned for a slot whose data is still on its way to this group.
var ErrMoving = errors.New("slot is being moved to this group")

// ErrConfigNotReached is returned by Export and DropGiven when this group has not yet reached
// the configuration the caller asks about.
var ErrConfigNotReached = errors.New("configuration not reached yet")

// clusterState is the group's replicated view of the cluster.
type clusterState struct {
	cfg   *controller.Config // nil in standalone mode: the group serves every slot
	prev  *controller.Config
	slots [keyspace.NumSlots]slotState
}

// done reports whether every hand-off of the current configuration has finished, so the group
// may move on to the next one.
func (cs *clusterState) done() bool {
	for _, s := range cs.slots {
		if s != slotServing && s != slotNotOwned {
			return false
		}
	}
	return true
}

// checkKeys verifies that this group serves the slots of every key now. Caller holds g.own.
func (g *Group) checkKeys(keys [][]byte) error {
	for _, k := range keys {
		if err := g.checkSlot(keyspace.Slot(k)); err != nil {
			return err
		}
	}
	return nil
}

// checkSlot is checkKeys for one key's slot.
func (g *Group) checkSlot(slot uint16) error {
	switch g.cs.slots[slot] {
	case slotServing, slotCleaning:
		return nil
	case slotPulling:
		return ErrMoving
	default:
		return ErrWrongGroup
	}
}

// applyConfig moves to the next configuration if the current one is done.
func (g *Group) applyConfig(data []byte) result {
	var next controller.Config
	if err := json.Unmarshal(data, &next); err != nil {
		return result{err: fmt.Errorf("%w: config: %w", errCorrupt, err)}
	}
	g.own.Lock()
	defer g.own.Unlock()
	cs := &g.cs
	curNum := uint64(0)
	if cs.cfg != nil {
		curNum = cs.cfg.Num
	}
	if next.Num != curNum+1 || !cs.done() {
		return result{ok: false} // stale or early: the proposer retries later
	}
	for s := range keyspace.NumSlots {
		slot := uint16(s)
		was := cs.cfg != nil && cs.cfg.Owner(slot) == g.cfg.GroupID
		now := next.Owner(slot) == g.cfg.GroupID
		switch {
		case was && now:
			cs.slots[s] = slotServing
		case !was && now:
			// A slot nobody served before starts empty; otherwise its data must come from its
			// previous owner.
			if cs.cfg == nil || cs.cfg.Owner(slot) == 0 {
				cs.slots[s] = slotServing
			} else {
				cs.slots[s] = slotPulling
			}
		case was && !now:
			cs.slots[s] = slotGiving
		default:
			cs.slots[s] = slotNotOwned
		}
	}
	cs.prev, cs.cfg = cs.cfg, &next
	g.log.Info("configuration applied", "num", next.Num)
	return result{ok: true}
}

// applyInstall installs slots pulled from their previous owner: args[0] holds, per slot, the
// slot number, its at-most-once records and its pairs.
func (g *Group) applyInstall(num uint64, data []byte) result {
	g.own.Lock()
	defer g.own.Unlock()
	if g.cs.cfg == nil || g.cs.cfg.Num != num {
		return result{ok: false}
	}
	var installed int64
	plain := !bytes.HasPrefix(data, handoffMarker)
	data = bytes.TrimPrefix(data, handoffMarker)
	err := readSlotChunks(data, func(slot uint16, sessions []byte, pairs []byte) error {
		if g.cs.slots[slot] != slotPulling {
			return nil // installed already (a retried install): keep the first copy
		}
		g.preserve(slot)
		s, err := decodeSessions(sessions)
		if err != nil {
			return err
		}
		g.sessions[slot] = s
		before := g.countExpiring(slot) // none, unless the slot held stale pairs
		n, err := g.importPairs(pairs, plain)
		if err != nil {
			return err
		}
		installed += int64(n)
		g.noteExpiring(slot) // the pairs may carry expiries
		g.expires.Add(g.countExpiring(slot) - before)
		g.cs.slots[slot] = slotCleaning
		return nil
	})
	if err != nil {
		// Every replica sees the same bytes and fails the same way; the slot stays Pulling and
		// is fetched again.
		g.log.Error("install failed", "config", num, "err", err)
		return result{err: err}
	}
	return result{ok: true, n: installed}
}

// applyDrop deletes slots this group gave away once their new owner has them.
func (g *Group) applyDrop(num uint64, r keyspace.Range) result {
	g.own.Lock()
	defer g.own.Unlock()
	if g.cs.cfg == nil || g.cs.cfg.Num < num {
		return result{err: ErrConfigNotReached}
	}
	if g.cs.cfg.Num > num {
		return result{ok: true} // long done
	}
	var dropped int64
	for s := int(r.Lo); s < int(r.Hi); s++ {
		if g.cs.slots[s] != slotGiving {
			continue
		}
		g.preserve(uint16(s))
		g.expires.Add(-g.countExpiring(uint16(s)))
		dropped += int64(g.tab.DropRange(keyspace.SlotRange(uint16(s))))
		g.sessions[s] = nil
		g.cs.slots[s] = slotNotOwned
	}
	return result{ok: true, n: dropped}
}

// applyCleaned records that the previous owner deleted its copy of slots this group pulled.
func (g *Group) applyCleaned(num uint64, r keyspace.Range) result {
	g.own.Lock()
	defer g.own.Unlock()
	if g.cs.cfg == nil || g.cs.cfg.Num != num {
		return result{ok: false}
	}
	for s := int(r.Lo); s < int(r.Hi); s++ {
		if g.cs.slots[s] == slotCleaning {
			g.cs.slots[s] = slotServing
		}
	}
	return result{ok: true}
}

// handoffMarker opens hand-off data (Export) whose values carry headers (see wrapValue).
// Hand-off data without it, from a version before expiry (pulled from a group not upgraded yet,
// or an install entry such a version logged, replayed from the WAL), holds bare values, which get
// headers as they are installed. 0xFFFF cannot open a slot chunk, so a version before expiry
// refuses data with the marker instead of misreading it.
var handoffMarker = []byte{0xFF, 0xFF, 1}

// importPairs imports a table export into the table; plain says its values lack headers, which
// are then added (for data written before expiry existed).
func (g *Group) importPairs(pairs []byte, plain bool) (int, error) {
	if !plain {
		return g.tab.Import(bytes.NewReader(pairs))
	}
	bare := table.New()
	n, err := bare.Import(bytes.NewReader(pairs))
	if err != nil {
		return 0, err
	}
	var buf []byte
	bare.Range(keyspace.All(), func(k, v []byte) bool {
		buf = wrapValue(buf[:0], v, 0)
		g.tab.Set(k, buf)
		return true
	})
	return n, nil
}

// writeSlotChunk appends one slot's hand-off record: slot u16, sessions (len-prefixed),
// pairs (len-prefixed table export).
func (g *Group) writeSlotChunk(dst *bytes.Buffer, slot uint16) (pairs int, err error) {
	var hdr [2]byte
	binary.LittleEndian.PutUint16(hdr[:], slot)
	dst.Write(hdr[:])
	sess := encodeSessions(nil, g.sessions[slot])
	writeLenPrefixed(dst, sess)
	var pb bytes.Buffer
	n, err := g.tab.Export(&pb, keyspace.SlotRange(slot))
	if err != nil {
		return 0, err
	}
	writeLenPrefixed(dst, pb.Bytes())
	return n, nil
}

func writeLenPrefixed(dst *bytes.Buffer, b []byte) {
	var l [binary.MaxVarintLen64]byte
	dst.Write(l[:binary.PutUvarint(l[:], uint64(len(b)))])
	dst.Write(b)
}

func readSlotChunks(data []byte, fn func(slot uint16, sessions, pairs []byte) error) error {
	r := bytes.NewReader(data)
	readLP := func() ([]byte, error) {
		l, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if l > uint64(r.Len()) {
			return nil, io.ErrUnexpectedEOF
		}
		b := make([]byte, l)
		_, err = io.ReadFull(r, b)
		return b, err
	}
	for r.Len() > 0 {
		var hdr [2]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return fmt.Errorf("%w: slot chunk: %w", errCorrupt, err)
		}
		slot := binary.LittleEndian.Uint16(hdr[:])
		if int(slot) >= keyspace.NumSlots {
			return fmt.Errorf("%w: slot %d", errCorrupt, slot)
		}
		sess, err := readLP()
		if err != nil {
			return fmt.Errorf("%w: slot chunk: %w", errCorrupt, err)
		}
		pairs, err := readLP()
		if err != nil {
			return fmt.Errorf("%w: slot chunk: %w", errCorrupt, err)
		}
		if err := fn(slot, sess, pairs); err != nil {
			return err
		}
	}
	return nil
}

// Export returns the hand-off data of the slots in r that this group gave away in configuration
// num, starting at r.Lo and stopping after maxBytes (at least one slot); next is the first slot
// not included (r.Hi when complete). The slots are frozen (refused to clients) since the group
// applied num, so the data cannot change under the caller.
func (g *Group) Export(ctx context.Context, num uint64, r keyspace.Range, maxBytes int) (data []byte, next uint16, pairs int, err error) {
	if err := g.barrier(ctx); err != nil {
		return nil, 0, 0, err
	}
	g.own.RLock()
	defer g.own.RUnlock()
	if g.cs.cfg == nil || g.cs.cfg.Num < num {
		return nil, 0, 0, ErrConfigNotReached
	}
	if g.cs.cfg.Num > num {
		return nil, 0, 0, fmt.Errorf("configuration %d is over: this group is at %d", num, g.cs.cfg.Num)
	}
	var buf bytes.Buffer
	buf.Write(handoffMarker)
	s := int(r.Lo)
	for ; s < int(r.Hi); s++ {
		if g.cs.slots[s] != slotGiving {
			return nil, 0, 0, fmt.Errorf("slot %d is not being handed off by this group in configuration %d", s, num)
		}
		n, err := g.writeSlotChunk(&buf, uint16(s))
		if err != nil {
			return nil, 0, 0, err
		}
		pairs += n
		if buf.Len() >= maxBytes {
			s++
			break
		}
	}
	return buf.Bytes(), uint16(s), pairs, nil
}

// Install replicates pulled slot data into this group (configuration num).
func (g *Group) Install(ctx context.Context, num uint64, data []byte) (pairs int64, err error) {
	res, err := g.propose(ctx, &command{op: opInstall, delta: int64(num), args: [][]byte{data}})
	if err != nil {
		return 0, err
	}
	if !res.ok {
		return 0, fmt.Errorf("install for configuration %d refused: group moved on", num)
	}
	return res.n, nil
}

// DropGiven replicates the deletion of slots in r this group gave away in configuration num.
func (g *Group) DropGiven(ctx context.Context, num uint64, r keyspace.Range) error {
	_, err := g.propose(ctx, &command{op: opDrop, delta: int64(num), args: [][]byte{encodeRange(r)}})
	return err
}

// MarkCleaned replicates that the previous owner of slots in r deleted its copy.
func (g *Group) MarkCleaned(ctx context.Context, num uint64, r keyspace.Range) error {
	_, err := g.propose(ctx, &command{op: opCleaned, delta: int64(num), args: [][]byte{encodeRange(r)}})
	return err
}

// ProposeConfig replicates the move to configuration cfg (which must be the next one); ok is
// false when the group is not ready for it (previous hand-offs unfinished, or already applied).
func (g *Group) ProposeConfig(ctx context.Context, cfg *controller.Config) (ok bool, err error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return false, err
	}
	res, err := g.propose(ctx, &command{op: opConfig, args: [][]byte{b}})
	return res.ok, err
}

func encodeRange(r keyspace.Range) []byte {
	return binary.LittleEndian.AppendUint16(binary.LittleEndian.AppendUint16(nil, r.Lo), r.Hi)
}

func decodeRange(b []byte) (keyspace.Range, error) {
	if len(b) != 4 {
		return keyspace.Range{}, errCorrupt
	}
	r := keyspace.Range{Lo: binary.LittleEndian.Uint16(b), Hi: binary.LittleEndian.Uint16(b[2:])}
	if !r.Valid() {
		return keyspace.Range{}, errCorrupt
	}
	return r, nil
}

// MigrationState is what the migration driver needs to know: the current configuration, the
// slots to pull (with the configuration that says who had them), and the slots whose previous
// owner must still be told to delete them.
type MigrationState struct {
	Config   *controller.Config
	Prev     *controller.Config
	Done     bool
	Pulling  []keyspace.Range
	Cleaning []keyspace.Range
	Giving   []keyspace.Range
}

// Migration returns the group's current hand-off state (local, possibly behind the leader).
func (g *Group) Migration() MigrationState {
	g.own.RLock()
	defer g.own.RUnlock()
	ms := MigrationState{Config: g.cs.cfg, Prev: g.cs.prev, Done: g.cs.done()}
	ms.Pulling = collectRanges(&g.cs.slots, slotPulling)
	ms.Cleaning = collectRanges(&g.cs.slots, slotCleaning)
	ms.Giving = collectRanges(&g.cs.slots, slotGiving)
	return ms
}

func collectRanges(slots *[keyspace.NumSlots]slotState, want slotState) []keyspace.Range {
	var out []keyspace.Range
	for s := 0; s < keyspace.NumSlots; s++ {
		if slots[s] != want {
			continue
		}
		lo := s
		for s < keyspace.NumSlots && slots[s] == want {
			s++
		}
		out = append(out, keyspace.Range{Lo: uint16(lo), Hi: uint16(s)})
	}
	return out
}

// ConfigNum returns the number of the configuration the group has applied (0 before the first).
func (g *Group) ConfigNum() uint64 {
	g.own.RLock()
	defer g.own.RUnlock()
	if g.cs.cfg == nil {
		return 0
	}
	return g.cs.cfg.Num
}

// Serves reports whether the group serves slot now.
func (g *Group) Serves(slot uint16) bool {
	g.own.RLock()
	defer g.own.RUnlock()
	return g.cs.slots[slot].serves()
}

// countReads adds the keys of a served read to the per-slot load counters.
func (g *Group) countReads(keys [][]byte) {
	for _, k := range keys {
		g.ops[keyspace.Slot(k)].Add(1)
	}
}

// RangeOps returns the requests counted so far on the slots of r.
func (g *Group) RangeOps(r keyspace.Range) uint64 {
	var n uint64
	for s := int(r.Lo); s < int(r.Hi); s++ {
		n += g.ops[s].Load()
	}
	return n
}

// RangeLoad returns the requests counted so far, and the pairs and bytes stored, for the slots
// of r.
func (g *Group) RangeLoad(r keyspace.Range) (ops uint64, keys, bytes int64) {
	return g.RangeOps(r), int64(g.tab.RangeLen(r)), g.tab.RangeBytes(r)
}
