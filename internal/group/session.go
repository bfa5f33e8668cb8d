package group

import "encoding/binary"

// slotSessions holds the at-most-once records of the clients that wrote to one slot. Per client it
// keeps the results of writes the client has not acknowledged yet, so that a retry of any of them
// (even out of order) gets the original answer without executing twice.
type slotSessions struct {
	clients []clientRecord
}

type clientRecord struct {
	id      uint64
	acked   uint64 // every seq <= acked was answered and may not be executed again
	results []seqResult
}

type seqResult struct {
	seq uint64
	res result
}

// maxPending bounds the unacknowledged results kept whole per client and slot. A client with
// more writes in flight to one slot than this (a pipelined bulk write to keys sharing a hash
// tag, or many goroutines sharing a client, say) has its lowest results reduced to the fact that
// they ran: a retry of one is refused as stale (it ran; its answer is gone) instead of executing
// a second time, while a lower seq that has not run yet still runs. Past maxRecords records in
// all, the lowest is forgotten and the client's horizon raised to it: from then on a lower seq
// is refused even if it never ran (at most once holds; its caller learns only that the write's
// outcome is unknown).
const maxPending = 64

// maxRecords bounds all records (whole or reduced) per client and slot: see maxPending.
const maxRecords = 4 * maxPending

// maxClients bounds the clients whose records one slot keeps. Without it every client that ever
// wrote to a slot would stay in its records for good: short-lived clients (each Go client has its
// own session id) would grow memory, snapshots and the scan in find without end. The records are
// kept roughly least recently used first (see record), and the least recent is forgotten when a
// new client comes: a client forgotten while a write of its is in flight could have that write
// executed twice by a retry, which takes more than maxClients other clients writing to the slot
// between the write and its retry.
const maxClients = 1024

func (s *slotSessions) find(id uint64) *clientRecord {
	if i := s.index(id); i >= 0 {
		return &s.clients[i]
	}
	return nil
}

// index returns the position of id's record, or -1. s may be nil.
func (s *slotSessions) index(id uint64) int {
	if s == nil {
		return -1
	}
	for i := range s.clients {
		if s.clients[i].id == id {
			return i
		}
	}
	return -1
}

// lookup reports whether (id, seq) was executed before, and its result. s may be nil.
func (s *slotSessions) lookup(id, seq, acked uint64) (result, bool) {
	c := s.find(id)
	if c == nil {
		return result{}, false
	}
	if seq <= c.acked {
		return result{err: ErrStale}, true
	}
	for _, r := range c.results {
		if r.seq == seq {
			return r.res, true
		}
	}
	return result{}, false
}

// record stores the result of (id, seq) and forgets results the client acknowledged. The order of
// s.clients is how recently each client wrote, oldest first, roughly: a new client goes last,
// evicting the first when the slot holds maxClients, and a client found in the older half moves
// last (only there, so that a client writing often is moved once in a while, not at every write).
// The order is the slice's, which snapshots and hand-offs carry, so every replica evicts alike.
func (s *slotSessions) record(id, seq, acked uint64, res result) {
	i := s.index(id)
	switch {
	case i < 0:
		if n := len(s.clients) - maxClients + 1; n > 0 {
			m := len(s.clients)
			copy(s.clients, s.clients[n:])
			clear(s.clients[m-n:]) // drop the evicted records' results
			s.clients = s.clients[:m-n]
		}
		s.clients = append(s.clients, clientRecord{id: id})
		i = len(s.clients) - 1
	case i < len(s.clients)/2:
		moved := s.clients[i]
		copy(s.clients[i:], s.clients[i+1:])
		i = len(s.clients) - 1
		s.clients[i] = moved
	}
	c := &s.clients[i]
	if acked > c.acked {
		c.acked = acked
	}
	kept := c.results[:0]
	whole := 0
	for _, r := range c.results {
		if r.seq > c.acked {
			kept = append(kept, r)
			if r.res.err != ErrStale {
				whole++
			}
		}
	}
	kept = append(kept, seqResult{seq: seq, res: res})
	if whole++; whole > maxPending {
		// The lowest whole result keeps only that it ran. (ErrStale marks such a record: a
		// write refused as stale is answered from lookup and never recorded.)
		kept[lowest(kept, true)].res = result{err: ErrStale}
	}
	if len(kept) > maxRecords {
		low := lowest(kept, false)
		c.acked = kept[low].seq
		kept = append(kept[:low], kept[low+1:]...)
	}
	c.results = kept
}

// lowest returns the position of the lowest seq in rs, among whole results only if wholeOnly,
// or -1 when there is none.
func lowest(rs []seqResult, wholeOnly bool) int {
	low := -1
	for i, r := range rs {
		if (!wholeOnly || r.res.err != ErrStale) && (low < 0 || r.seq < rs[low].seq) {
			low = i
		}
	}
	return low
}

// encodeSessions appends one slot's records: nclients, then per client id, acked, nresults and
// the results.
func encodeSessions(dst []byte, s *slotSessions) []byte {
	if s == nil {
		return binary.AppendUvarint(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.clients)))
	for _, c := range s.clients {
		dst = binary.AppendUvarint(dst, c.id)
		dst = binary.AppendUvarint(dst, c.acked)
		dst = binary.AppendUvarint(dst, uint64(len(c.results)))
		for _, r := range c.results {
			dst = binary.AppendUvarint(dst, r.seq)
			dst = binary.AppendVarint(dst, r.res.n)
			ok := byte(0)
			if r.res.ok {
				ok = 1
			}
			dst = append(dst, ok, errCode(r.res.err))
			dst = binary.AppendUvarint(dst, uint64(len(r.res.val)))
			dst = append(dst, r.res.val...)
		}
	}
	return dst
}

// decodeSessions parses what encodeSessions wrote; nil when there are no clients.
func decodeSessions(b []byte) (*slotSessions, error) {
	d := decoder{b: b}
	nc := d.uvarint()
	if nc == 0 || d.err != nil {
		return nil, d.err
	}
	s := &slotSessions{}
	for range nc {
		c := clientRecord{id: d.uvarint(), acked: d.uvarint()}
		nr := d.uvarint()
		for range nr {
			sr := seqResult{seq: d.uvarint()}
			n := d.varint()
			flags := d.bytes(2)
			val := d.bytes(int(d.uvarint()))
			if d.err != nil {
				return nil, d.err
			}
			if int(flags[1]) >= len(resultErrors) {
				return nil, errCorrupt
			}
			if len(val) > 0 {
				val = append([]byte(nil), val...)
			} else {
				val = nil
			}
			sr.res = result{n: n, ok: flags[0] == 1, err: resultErrors[flags[1]], val: val}
			c.results = append(c.results, sr)
		}
		if d.err != nil {
			return nil, d.err
		}
		s.clients = append(s.clients, c)
	}
	return s, d.err
}

// decoder reads varints and byte runs, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = errCorrupt
		return nil
	}
	out := d.b[:n]
	d.b = d.b[n:]
	return out
}
