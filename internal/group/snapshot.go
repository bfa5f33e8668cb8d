package group

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/keyspace"
)

const snapshotMagic = "SHOALSM2"

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

// Snapshot implements raftnode.StateMachine. Layout: magic; current and previous configuration
// (length-prefixed JSON, empty for none); one state byte per slot; the per-slot at-most-once
// records; the table's pairs.
func (g *Group) Snapshot() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(snapshotMagic)
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
		writeLenPrefixed(&buf, b)
	}
	for _, s := range g.cs.slots {
		buf.WriteByte(byte(s))
	}
	g.own.RUnlock()
	var n uint64
	for _, s := range g.sessions {
		if s != nil && len(s.clients) > 0 {
			n++
		}
	}
	buf.Write(binary.AppendUvarint(nil, n))
	var scratch []byte
	for slot, s := range g.sessions {
		if s == nil || len(s.clients) == 0 {
			continue
		}
		scratch = binary.LittleEndian.AppendUint16(scratch[:0], uint16(slot))
		buf.Write(scratch)
		writeLenPrefixed(&buf, encodeSessions(scratch[:0], s))
	}
	if _, err := g.tab.Export(&buf, keyspace.All()); err != nil {
		return nil, fmt.Errorf("group snapshot: %w", err)
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

// Restore implements raftnode.StateMachine.
func (g *Group) Restore(data []byte) error {
	if !bytes.HasPrefix(data, []byte(snapshotMagic)) {
		return errors.New("group restore: not a shoal state machine snapshot")
	}
	d := decoder{b: data[len(snapshotMagic):]}
	var cfgs [2]*controller.Config
	for i := range cfgs {
		b := d.bytes(int(d.uvarint()))
		if d.err == nil && len(b) > 0 {
			cfgs[i] = &controller.Config{}
			if err := json.Unmarshal(b, cfgs[i]); err != nil {
				return fmt.Errorf("group restore: configuration: %w", err)
			}
		}
	}
	var slots [keyspace.NumSlots]slotState
	for i, b := range d.bytes(keyspace.NumSlots) {
		slots[i] = slotState(b)
	}
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
