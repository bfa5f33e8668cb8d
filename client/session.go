package client

import (
	"strconv"
	"sync"
)

// session numbers this client's writes for the server's at-most-once records:
// SHOAL.AT <id> <seq> <acked> <command...>. seq grows by one per write and is reused by every
// retry of that write; acked is the highest seq such that every seq up to it is finished (answered
// or given up), so the server may drop their records.
type session struct {
	id      uint64
	idStr   []byte
	mu      sync.Mutex
	next    uint64
	acked   uint64
	settled map[uint64]struct{} // finished seqs above acked
}

func newSession(id uint64) *session {
	return &session{id: id, idStr: strconv.AppendUint(nil, id, 10), settled: map[uint64]struct{}{}}
}

// begin allocates the next sequence number.
func (s *session) begin() uint64 {
	s.mu.Lock()
	s.next++
	n := s.next
	s.mu.Unlock()
	return n
}

// ackedNow returns the current acknowledgement horizon.
func (s *session) ackedNow() uint64 {
	s.mu.Lock()
	a := s.acked
	s.mu.Unlock()
	return a
}

// finish records that seq will never be sent again.
func (s *session) finish(seq uint64) {
	s.mu.Lock()
	if seq == s.acked+1 {
		s.acked++
		for {
			if _, ok := s.settled[s.acked+1]; !ok {
				break
			}
			delete(s.settled, s.acked+1)
			s.acked++
		}
	} else if seq > s.acked {
		s.settled[seq] = struct{}{}
	}
	s.mu.Unlock()
}
