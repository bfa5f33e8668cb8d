package group

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

// maxPending bounds the unacknowledged results kept per client and slot; a client with more
// writes in flight than this loses the oldest records (documented limit of the session protocol).
const maxPending = 64

func (s *slotSessions) find(id uint64) *clientRecord {
	for i := range s.clients {
		if s.clients[i].id == id {
			return &s.clients[i]
		}
	}
	return nil
}

// lookup reports whether (id, seq) was executed before, and its result.
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

// record stores the result of (id, seq) and forgets results the client acknowledged.
func (s *slotSessions) record(id, seq, acked uint64, res result) {
	c := s.find(id)
	if c == nil {
		s.clients = append(s.clients, clientRecord{id: id})
		c = &s.clients[len(s.clients)-1]
	}
	if acked > c.acked {
		c.acked = acked
	}
	kept := c.results[:0]
	for _, r := range c.results {
		if r.seq > c.acked {
			kept = append(kept, r)
		}
	}
	if len(kept) >= maxPending {
		kept = append(kept[:0], kept[1:]...)
	}
	c.results = append(kept, seqResult{seq: seq, res: res})
}
