package controller

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// OpKind names a replicated controller operation.
type OpKind string

// The operations a controller replicates.
const (
	OpJoin      OpKind = "join"
	OpLeave     OpKind = "leave"
	OpMove      OpKind = "move"
	OpSplit     OpKind = "split"
	OpMerge     OpKind = "merge"
	OpReport    OpKind = "report"
	OpRebalance OpKind = "rebalance"
	OpAuto      OpKind = "auto"
)

// Op is one state-changing request. Which fields matter depends on Kind: Join uses Group and
// Nodes; Leave uses Group; Move uses Range and Group; Split uses Range and At; Merge uses Range
// and Range2; Report uses Report; Auto uses Auto; Rebalance uses nothing.
type Op struct {
	Kind   OpKind         `json:"kind"`
	Group  uint64         `json:"gid,omitempty"`
	Nodes  []Node         `json:"nodes,omitempty"`
	Range  keyspace.Range `json:"range,omitzero"`
	Range2 keyspace.Range `json:"range2,omitzero"`
	At     uint16         `json:"at,omitempty"`
	Report *Report        `json:"report,omitempty"`
	Auto   bool           `json:"auto,omitempty"`
}

// Session makes a request execute at most once: Client is unique per client (0 = no session) and
// Seq grows by one with every request the client issues, retries of a request reusing its Seq.
// A client has at most one request in flight, so the controller keeps only each client's last
// Seq and result.
type Session struct {
	Client uint64 `json:"client,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
}

// OpError is an operation the controller refused (a bad range, an unknown group, ...): retrying
// it cannot succeed. Errors of other types mean the outcome is unknown and a retry (with the same
// Session) is safe.
type OpError struct{ Msg string }

// Error returns the controller's reason for refusing the operation.
func (e *OpError) Error() string { return e.Msg }

// result is the outcome of an applied operation.
type result struct {
	Num uint64 `json:"num"` // the latest configuration number after the operation
	Err string `json:"err,omitempty"`
}

// entry is an operation as it travels through the raft log. JSON keeps it readable in a WAL dump;
// controller traffic is far too small for the encoding cost to matter.
type entry struct {
	ReqID   uint64  `json:"req,omitempty"` // the proposer's waiter, unique per process run
	Session Session `json:"session,omitzero"`
	Op      Op      `json:"op"`
}

// clientRecord is the last request a client had executed, and when (log index), for eviction.
type clientRecord struct {
	Seq    uint64 `json:"seq"`
	Result result `json:"result"`
	Index  uint64 `json:"index"`
}

// MaxClients bounds the client records kept for de-duplication; beyond it the record least
// recently used (by log index, so every replica evicts the same one) is dropped. A client
// silent for that many other clients' requests is long gone.
const MaxClients = 10000

// StateMachine is the controller's raftnode.StateMachine: State plus at-most-once client records.
// Apply, Snapshot and Restore run on raftnode's single apply goroutine; readers use View.
type StateMachine struct {
	log *slog.Logger

	mu      sync.RWMutex // guards st and clients against concurrent readers
	st      *State
	clients map[uint64]clientRecord

	waitMu  sync.Mutex
	waiters map[uint64]chan result
}

// NewStateMachine returns a state machine holding configuration 0.
func NewStateMachine(logger *slog.Logger) *StateMachine {
	if logger == nil {
		logger = slog.Default()
	}
	return &StateMachine{log: logger, st: NewState(), clients: map[uint64]clientRecord{}, waiters: map[uint64]chan result{}}
}

// View calls fn with the state under a read lock; fn must not keep references into it.
func (m *StateMachine) View(fn func(*State)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.st)
}

// Apply implements raftnode.StateMachine.
func (m *StateMachine) Apply(index uint64, data []byte) {
	var e entry
	if err := json.Unmarshal(data, &e); err != nil {
		// Every replica sees the same bytes and skips the same entry.
		m.log.Error("controller: skipping undecodable entry", "index", index, "err", err)
		return
	}
	m.mu.Lock()
	res := m.applyLocked(index, &e)
	m.mu.Unlock()
	if e.ReqID == 0 {
		return
	}
	m.waitMu.Lock()
	ch := m.waiters[e.ReqID]
	m.waitMu.Unlock()
	if ch != nil {
		select {
		case ch <- res:
		default: // buffered by one; a second delivery (re-proposed entry) is not needed
		}
	}
}

func (m *StateMachine) applyLocked(index uint64, e *entry) result {
	if c := e.Session.Client; c != 0 {
		if rec, ok := m.clients[c]; ok && e.Session.Seq <= rec.Seq {
			if e.Session.Seq == rec.Seq {
				rec.Index = index
				m.clients[c] = rec
				return rec.Result
			}
			return result{Num: m.st.configs[len(m.st.configs)-1].Num,
				Err: fmt.Sprintf("stale request: client %d already issued seq %d after %d", c, rec.Seq, e.Session.Seq)}
		}
	}
	res := m.execute(&e.Op)
	if c := e.Session.Client; c != 0 {
		m.clients[c] = clientRecord{Seq: e.Session.Seq, Result: res, Index: index}
		if len(m.clients) > MaxClients {
			m.evictOldest()
		}
	}
	return res
}

func (m *StateMachine) evictOldest() {
	var victim uint64
	var oldest uint64
	first := true
	for id, rec := range m.clients {
		if first || rec.Index < oldest || (rec.Index == oldest && id < victim) {
			victim, oldest, first = id, rec.Index, false
		}
	}
	delete(m.clients, victim)
}

// execute applies one operation to the state. It must be deterministic.
func (m *StateMachine) execute(op *Op) result {
	st := m.st
	var err error
	switch op.Kind {
	case OpJoin:
		_, err = st.Join(op.Group, op.Nodes)
	case OpLeave:
		_, err = st.Leave(op.Group)
	case OpMove:
		_, err = st.Move(op.Range, op.Group)
	case OpSplit:
		_, err = st.Split(op.Range, op.At)
	case OpMerge:
		_, err = st.Merge(op.Range, op.Range2)
	case OpReport:
		if op.Report == nil {
			err = fmt.Errorf("%w: missing", ErrBadReport)
		} else {
			err = st.Report(*op.Report)
		}
	case OpRebalance:
		_, err = st.Rebalance()
	case OpAuto:
		st.SetAuto(op.Auto)
	default:
		err = fmt.Errorf("unknown operation %q", op.Kind)
	}
	res := result{Num: st.configs[len(st.configs)-1].Num}
	if err != nil {
		res.Err = err.Error()
	}
	return res
}

// snapshotJSON is the state machine's snapshot: the whole State and the client records.
type snapshotJSON struct {
	State   *State                  `json:"state"`
	Clients map[uint64]clientRecord `json:"clients"`
}

// Snapshot implements raftnode.StateMachine.
func (m *StateMachine) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := json.Marshal(snapshotJSON{State: m.st, Clients: m.clients})
	if err != nil {
		return nil, fmt.Errorf("controller snapshot: %w", err)
	}
	return b, nil
}

// Restore implements raftnode.StateMachine.
func (m *StateMachine) Restore(data []byte) error {
	snap := snapshotJSON{State: &State{}}
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("controller restore: %w", err)
	}
	if snap.Clients == nil {
		snap.Clients = map[uint64]clientRecord{}
	}
	m.mu.Lock()
	m.st, m.clients = snap.State, snap.Clients
	m.mu.Unlock()
	return nil
}

// register creates the waiter for a request id.
func (m *StateMachine) register(id uint64) chan result {
	ch := make(chan result, 1)
	m.waitMu.Lock()
	m.waiters[id] = ch
	m.waitMu.Unlock()
	return ch
}

func (m *StateMachine) unregister(id uint64) {
	m.waitMu.Lock()
	delete(m.waiters, id)
	m.waitMu.Unlock()
}

// ShardStatus is one shard of the latest configuration with its estimated load.
type ShardStatus struct {
	Shard
	Load
}

// Status is the controller's state as CTL STATUS reports it.
type Status struct {
	Config  Config        `json:"config"`
	Shards  []ShardStatus `json:"shards"`
	Reports []Report      `json:"reports"`
	Auto    bool          `json:"auto"`
	// Node is the answering controller node's raft view (leader, term, indexes).
	Node NodeStatus `json:"node"`
}

// NodeStatus is the raft state of the controller node that answered.
type NodeStatus struct {
	ID      uint64   `json:"id"`
	Leader  uint64   `json:"leader"`
	Term    uint64   `json:"term"`
	Commit  uint64   `json:"commit"`
	Applied uint64   `json:"applied"`
	State   string   `json:"state"`
	Voters  []uint64 `json:"voters"`
}

// status builds a Status from the state.
func statusOf(st *State) Status {
	c := st.Latest()
	loads := st.Loads()
	out := Status{Config: c, Reports: st.Reports(), Auto: st.Auto()}
	for i, s := range c.Shards {
		out.Shards = append(out.Shards, ShardStatus{Shard: s, Load: loads[i]})
	}
	if out.Reports == nil {
		out.Reports = []Report{}
	}
	return out
}
