package group

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

const snapshotMagic = "SHOALSM1"

// error codes of results kept in at-most-once records, so they survive snapshots.
var resultErrors = []error{nil, ErrNotInteger, ErrOverflow, ErrWrongGroup, ErrStale}

func errCode(err error) byte {
	for i, e := range resultErrors {
		if e == err {
			return byte(i)
		}
	}
	return 0
}

// Snapshot implements raftnode.StateMachine: the at-most-once records, then the table's pairs.
func (g *Group) Snapshot() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(snapshotMagic)
	var scratch []byte
	var slots uint64
	for _, s := range g.sessions {
		if s != nil && len(s.clients) > 0 {
			slots++
		}
	}
	scratch = binary.AppendUvarint(scratch[:0], slots)
	for slot, s := range g.sessions {
		if s == nil || len(s.clients) == 0 {
			continue
		}
		scratch = binary.LittleEndian.AppendUint16(scratch, uint16(slot))
		scratch = binary.AppendUvarint(scratch, uint64(len(s.clients)))
		for _, c := range s.clients {
			scratch = binary.AppendUvarint(scratch, c.id)
			scratch = binary.AppendUvarint(scratch, c.acked)
			scratch = binary.AppendUvarint(scratch, uint64(len(c.results)))
			for _, r := range c.results {
				scratch = binary.AppendUvarint(scratch, r.seq)
				scratch = binary.AppendVarint(scratch, r.res.n)
				ok := byte(0)
				if r.res.ok {
					ok = 1
				}
				scratch = append(scratch, ok, errCode(r.res.err))
				scratch = binary.AppendUvarint(scratch, uint64(len(r.res.val)))
				scratch = append(scratch, r.res.val...)
			}
		}
		buf.Write(scratch)
		scratch = scratch[:0]
	}
	buf.Write(scratch)
	if _, err := g.tab.Export(&buf, keyspace.All()); err != nil {
		return nil, fmt.Errorf("group snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// Restore implements raftnode.StateMachine.
func (g *Group) Restore(data []byte) error {
	r := bufio.NewReader(bytes.NewReader(data))
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != snapshotMagic {
		return errors.New("group restore: not a shoal state machine snapshot")
	}
	var sessions [keyspace.NumSlots]*slotSessions
	slots, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	rd := func() uint64 {
		if err != nil {
			return 0
		}
		var v uint64
		v, err = binary.ReadUvarint(r)
		return v
	}
	for range slots {
		var sb [2]byte
		if _, err = io.ReadFull(r, sb[:]); err != nil {
			break
		}
		slot := binary.LittleEndian.Uint16(sb[:])
		if int(slot) >= keyspace.NumSlots {
			return fmt.Errorf("group restore: bad slot %d", slot)
		}
		s := &slotSessions{}
		nc := rd()
		for range nc {
			c := clientRecord{id: rd(), acked: rd()}
			nr := rd()
			for range nr {
				sr := seqResult{seq: rd()}
				var n int64
				if err == nil {
					n, err = binary.ReadVarint(r)
				}
				var flags [2]byte
				if err == nil {
					_, err = io.ReadFull(r, flags[:])
				}
				vl := rd()
				if err != nil {
					return fmt.Errorf("group restore: %w", err)
				}
				if vl > uint64(len(data)) || int(flags[1]) >= len(resultErrors) {
					return errors.New("group restore: corrupt session record")
				}
				var val []byte
				if vl > 0 {
					val = make([]byte, vl)
					if _, err = io.ReadFull(r, val); err != nil {
						return fmt.Errorf("group restore: %w", err)
					}
				}
				sr.res = result{n: n, ok: flags[0] == 1, err: resultErrors[flags[1]], val: val}
				c.results = append(c.results, sr)
			}
			s.clients = append(s.clients, c)
		}
		sessions[slot] = s
	}
	if err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	g.tab.Reset()
	if _, err := g.tab.Import(r); err != nil {
		return fmt.Errorf("group restore: %w", err)
	}
	g.sessions = sessions
	return nil
}
