package controller

import (
	"encoding/json"
	"fmt"
	"maps"

	"github.com/shoal-kv/shoal/internal/keyspace"
)

// State is the controller's deterministic state: the history of configurations, the latest load
// report of each group, and whether automatic rebalancing is on. Every method that changes the
// configuration appends configuration Num+1 and keeps all earlier ones; an operation that would
// change nothing appends nothing and returns the latest configuration.
//
// State is not safe for concurrent use; the StateMachine serialises access to it.
type State struct {
	configs   []Config
	reports   map[uint64]storedReport
	reportSeq uint64
	auto      bool
}

// NewState returns a State holding only configuration 0.
func NewState() *State {
	return &State{configs: []Config{InitialConfig()}, reports: map[uint64]storedReport{}}
}

// Latest returns a copy of the newest configuration.
func (s *State) Latest() Config { return s.configs[len(s.configs)-1].Clone() }

// Query returns a copy of configuration num. As in the classic shard controller, a negative num,
// or one past the newest configuration, returns the newest: a group polling for the next
// configuration compares the returned Num with the one it asked for.
func (s *State) Query(num int64) Config {
	if num < 0 || num >= int64(len(s.configs)) {
		return s.Latest()
	}
	return s.configs[num].Clone()
}

// Auto reports whether automatic load rebalancing is on.
func (s *State) Auto() bool { return s.auto }

// SetAuto turns automatic load rebalancing on or off.
func (s *State) SetAuto(on bool) { s.auto = on }

// Join adds group gid with its nodes (or replaces the nodes of a group already joined) and
// balances slots.
func (s *State) Join(gid uint64, nodes []Node) (Config, error) {
	return s.commit(applyJoin(s.configs[len(s.configs)-1], gid, nodes))
}

// Leave removes group gid and gives its shards to the remaining groups. Its load report is
// dropped with it.
func (s *State) Leave(gid uint64) (Config, error) {
	c, err := s.commit(applyLeave(s.configs[len(s.configs)-1], gid))
	if err == nil {
		delete(s.reports, gid)
	}
	return c, err
}

// Move assigns exactly the slots of r to group gid.
func (s *State) Move(r keyspace.Range, gid uint64) (Config, error) {
	return s.commit(applyMove(s.configs[len(s.configs)-1], r, gid))
}

// Split cuts the shard whose range is exactly r at slot at.
func (s *State) Split(r keyspace.Range, at uint16) (Config, error) {
	return s.commit(applySplit(s.configs[len(s.configs)-1], r, at))
}

// Merge joins two adjacent shards of the same group, named by their exact ranges.
func (s *State) Merge(a, b keyspace.Range) (Config, error) {
	return s.commit(applyMerge(s.configs[len(s.configs)-1], a, b))
}

// Report records a group's latest load report, replacing its previous one.
func (s *State) Report(r Report) error {
	if err := validateReport(r); err != nil {
		return err
	}
	if _, ok := s.configs[len(s.configs)-1].Groups[r.Group]; !ok {
		return fmt.Errorf("%w %d", ErrUnknownGroup, r.Group)
	}
	s.reportSeq++
	s.reports[r.Group] = storedReport{Report: cloneReport(r), Seq: s.reportSeq}
	return nil
}

// Reports returns the latest report of every group, in group order.
func (s *State) Reports() []Report {
	var out []Report
	for _, r := range sortedReports(s.reports) {
		out = append(out, cloneReport(r.Report))
	}
	return out
}

// Loads returns the estimated load of each shard of the latest configuration (parallel to its
// Shards), from the reports.
func (s *State) Loads() []Load {
	c := &s.configs[len(s.configs)-1]
	return shardLoads(c, loadMap(sortedReports(s.reports)))
}

// Rebalance spreads load (see rebalanceLoad): it may split hot shards and move shards from busy
// groups to idle ones.
func (s *State) Rebalance() (Config, error) {
	cur := s.configs[len(s.configs)-1]
	return s.commit(rebalanceLoad(cur, sortedReports(s.reports)), nil)
}

// commit appends c as the next configuration unless it equals the latest, and returns the
// configuration now latest.
func (s *State) commit(c Config, err error) (Config, error) {
	if err != nil {
		return Config{}, err
	}
	last := &s.configs[len(s.configs)-1]
	if sameLayout(&c, last) {
		return last.Clone(), nil
	}
	c.Num = last.Num + 1
	if err := c.Validate(); err != nil {
		// A bug in the balancing code, never a user error: refuse rather than publish it.
		return Config{}, fmt.Errorf("internal error, configuration not applied: %w", err)
	}
	s.configs = append(s.configs, c)
	return c.Clone(), nil
}

func cloneReport(r Report) Report {
	r.Shards = append([]ShardLoad(nil), r.Shards...)
	return r
}

// stateJSON is State's snapshot encoding.
type stateJSON struct {
	Configs   []Config                `json:"configs"`
	Reports   map[uint64]storedReport `json:"reports"`
	ReportSeq uint64                  `json:"report_seq"`
	Auto      bool                    `json:"auto"`
}

// MarshalJSON encodes the whole state (for snapshots).
func (s *State) MarshalJSON() ([]byte, error) {
	return json.Marshal(stateJSON{Configs: s.configs, Reports: s.reports, ReportSeq: s.reportSeq, Auto: s.auto})
}

// UnmarshalJSON replaces the state with a decoded snapshot, checking every configuration.
func (s *State) UnmarshalJSON(b []byte) error {
	var j stateJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if len(j.Configs) == 0 {
		return fmt.Errorf("%w: snapshot holds no configuration", ErrInvalidConfig)
	}
	for i := range j.Configs {
		if j.Configs[i].Groups == nil {
			j.Configs[i].Groups = map[uint64]Group{}
		}
		if j.Configs[i].Num != uint64(i) {
			return fmt.Errorf("%w: snapshot configuration %d numbered %d", ErrInvalidConfig, i, j.Configs[i].Num)
		}
		if err := j.Configs[i].Validate(); err != nil {
			return fmt.Errorf("snapshot configuration %d: %w", i, err)
		}
	}
	if j.Reports == nil {
		j.Reports = map[uint64]storedReport{}
	}
	*s = State{configs: j.Configs, reports: maps.Clone(j.Reports), reportSeq: j.ReportSeq, auto: j.Auto}
	return nil
}
