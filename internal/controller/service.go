package controller

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/shoal-kv/shoal/internal/raftnode"
)

// ErrUnavailable wraps failures that leave an operation's outcome unknown (no leader, timeout,
// node stopping); retrying with the same Session is safe.
var ErrUnavailable = errors.New("controller unavailable")

// DefaultAutoInterval is how often the leader rebalances load when automatic mode is on.
const DefaultAutoInterval = 10 * time.Second

// ServiceConfig configures a controller replica.
type ServiceConfig struct {
	// ID is this replica's raft id (positive, never reused).
	ID uint64
	// Peers maps every controller replica's raft id (this one included) to its raft peer address.
	Peers map[uint64]string
	// ListenAddr overrides where this replica accepts raft peer connections (default Peers[ID]).
	ListenAddr string
	// Dir holds the WAL and snapshots.
	Dir string
	// TickInterval is one raft tick (default 100 ms); SnapshotEntries how many applied entries
	// trigger a snapshot (raftnode's default when zero).
	TickInterval    time.Duration
	SnapshotEntries uint64
	// AutoInterval is the period of automatic rebalancing (DefaultAutoInterval when zero).
	AutoInterval time.Duration
	Logger       *slog.Logger
	// PeerTLS, when set, secures raft links between replicas with mutual TLS.
	PeerTLS *tls.Config
}

// Service is one running controller replica: the state machine, its raft node, and the leader's
// automatic rebalancing loop. Its methods are safe for concurrent use.
type Service struct {
	cfg   ServiceConfig
	log   *slog.Logger
	sm    *StateMachine
	node  *raftnode.Node
	reqID atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// StartService opens the replica's data, recovers its state and starts raft and the automatic
// rebalancing loop. They run until Close (or until ctx is cancelled).
func StartService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AutoInterval <= 0 {
		cfg.AutoInterval = DefaultAutoInterval
	}
	s := &Service{cfg: cfg, log: cfg.Logger, sm: NewStateMachine(cfg.Logger)}
	// Request ids start at a random point so that an entry proposed before a restart can never be
	// mistaken for a waiter registered after it.
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("controller: random request ids: %w", err)
	}
	s.reqID.Store(binary.LittleEndian.Uint64(b[:]) >> 1)
	var err error
	s.node, err = raftnode.New(raftnode.Config{
		ID: cfg.ID, Peers: cfg.Peers, ListenAddr: cfg.ListenAddr, Dir: cfg.Dir,
		TickInterval: cfg.TickInterval, SnapshotEntries: cfg.SnapshotEntries, Logger: cfg.Logger,
		PeerTLS: cfg.PeerTLS,
	}, s.sm)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	if err := s.node.Start(ctx); err != nil {
		s.cancel()
		return nil, fmt.Errorf("controller: %w", err)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.autoLoop(ctx) }()
	return s, nil
}

// Close stops the replica and waits for its goroutines. It is safe to call more than once.
func (s *Service) Close() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.node.Stop()
	})
}

// Node returns the replica's raft node (for status and tests).
func (s *Service) Node() *raftnode.Node { return s.node }

// Do replicates op and returns the latest configuration number once it is applied. A refused
// operation returns an *OpError; an unknown outcome wraps ErrUnavailable. With a Session, a
// retry of the same request returns the first execution's result without executing again.
func (s *Service) Do(ctx context.Context, sess Session, op Op) (uint64, error) {
	e := entry{ReqID: s.reqID.Add(1), Session: sess, Op: op}
	data, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("controller: encode: %w", err)
	}
	ch := s.sm.register(e.ReqID)
	defer s.sm.unregister(e.ReqID)
	backoff := 10 * time.Millisecond
	for {
		err := s.node.Propose(ctx, data)
		if err == nil {
			break
		}
		// A dropped proposal was never appended, so proposing it again cannot apply it twice.
		if !errors.Is(err, raft.ErrProposalDropped) {
			return 0, fmt.Errorf("%w: propose: %w", ErrUnavailable, err)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: no leader: %w", ErrUnavailable, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
	select {
	case res := <-ch:
		if res.Err != "" {
			return res.Num, &OpError{Msg: res.Err}
		}
		return res.Num, nil
	case <-ctx.Done():
		// The entry may still commit later; a retry with the same session is deduplicated.
		return 0, fmt.Errorf("%w: waiting for commit: %w", ErrUnavailable, ctx.Err())
	}
}

// barrier waits until this replica has applied everything committed when it was called.
func (s *Service) barrier(ctx context.Context) error {
	if err := s.node.ReadBarrier(ctx); err != nil {
		return fmt.Errorf("%w: read index: %w", ErrUnavailable, err)
	}
	return nil
}

// Query returns configuration num (negative or past the end: the latest), linearizably.
func (s *Service) Query(ctx context.Context, num int64) (Config, error) {
	if err := s.barrier(ctx); err != nil {
		return Config{}, err
	}
	var c Config
	s.sm.View(func(st *State) { c = st.Query(num) })
	return c, nil
}

// Status returns the latest configuration with shard loads, reports and the auto flag,
// linearizably, plus this replica's raft view.
func (s *Service) Status(ctx context.Context) (Status, error) {
	if err := s.barrier(ctx); err != nil {
		return Status{}, err
	}
	var out Status
	s.sm.View(func(st *State) { out = statusOf(st) })
	rs := s.node.Status()
	out.Node = NodeStatus{ID: rs.ID, Leader: rs.Leader, Term: rs.Term, Commit: rs.Commit, Applied: rs.Applied,
		State: rs.State, Voters: rs.Voters}
	return out, nil
}

// autoLoop proposes a Rebalance every AutoInterval while this replica leads and automatic mode is
// on. Only the leader proposes, so the group rebalances once per period rather than once per
// replica; a stale leader's extra proposal is harmless because Rebalance is a no-op on balanced
// load.
func (s *Service) autoLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.AutoInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.node.IsLeader() {
			continue
		}
		var auto bool
		s.sm.View(func(st *State) { auto = st.Auto() })
		if !auto {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.AutoInterval)
		num, err := s.Do(rctx, Session{}, Op{Kind: OpRebalance})
		cancel()
		if err != nil {
			s.log.Warn("automatic rebalance failed", "err", err)
			continue
		}
		s.log.Debug("automatic rebalance", "config", num)
	}
}
