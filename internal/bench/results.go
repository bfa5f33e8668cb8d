package bench

import (
	"slices"
	"time"
)

// Generators, as named in the report.
const (
	ToolGo = "go"              // the package's own generator
	ToolRB = "redis-benchmark" // redis-benchmark, parsed from --csv
)

// Sample is one measurement of one row.
type Sample struct {
	OpsPerSec float64 `json:"ops_per_sec"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	Failed    int64   `json:"failed,omitempty"`
	Err       string  `json:"error,omitempty"`
}

// Row is one benchmark configuration on one target, with every repetition.
type Row struct {
	Tool     string   `json:"tool"`
	Target   string   `json:"target"`
	Op       string   `json:"op"` // "GET", "SET" or "90/10" (90% GET, 10% SET)
	Dist     Dist     `json:"dist"`
	Pipeline int      `json:"pipeline"`
	Clients  int      `json:"clients"`
	Samples  []Sample `json:"samples"`
	// Peer is the target whose matching row this one is compared with; empty for peers.
	Peer string `json:"peer,omitempty"`
}

// Stat summarises repetitions: median and spread.
type Stat struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the median, min and max of xs (zero Stat when empty).
func Summarize(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

func (r *Row) stat(f func(Sample) float64) Stat {
	var xs []float64
	for _, s := range r.Samples {
		if s.Err == "" {
			xs = append(xs, f(s))
		}
	}
	return Summarize(xs)
}

// Throughput summarises operations per second over the successful repetitions.
func (r *Row) Throughput() Stat { return r.stat(func(s Sample) float64 { return s.OpsPerSec }) }

// P50 summarises the median latency in milliseconds.
func (r *Row) P50() Stat { return r.stat(func(s Sample) float64 { return s.P50Ms }) }

// P99 summarises the 99th percentile latency in milliseconds.
func (r *Row) P99() Stat { return r.stat(func(s Sample) float64 { return s.P99Ms }) }

// Errors returns the distinct errors of failed repetitions.
func (r *Row) Errors() []string {
	var out []string
	for _, s := range r.Samples {
		if s.Err != "" && !slices.Contains(out, s.Err) {
			out = append(out, s.Err)
		}
	}
	return out
}

// sameConfig reports whether o measures the same thing as r on another target.
func (r *Row) sameConfig(o *Row) bool {
	return r.Tool == o.Tool && r.Op == o.Op && r.Dist == o.Dist && r.Pipeline == o.Pipeline && r.Clients == o.Clients
}

// MemRow is the memory-per-pair measurement of one target.
type MemRow struct {
	Target    string `json:"target"`
	Pairs     uint64 `json:"pairs"`
	Copies    int    `json:"copies"`
	RSSBefore int64  `json:"rss_before"` // summed over the target's data processes
	RSSAfter  int64  `json:"rss_after"`
	// Engine is the store's own accounting: Redis's used_memory, Shoal's table index+slab
	// bytes; EngineName is empty when the target has none.
	EngineName   string  `json:"engine_name,omitempty"`
	EngineBefore int64   `json:"engine_before,omitempty"`
	EngineAfter  int64   `json:"engine_after,omitempty"`
	LoadSeconds  float64 `json:"load_seconds"`
	Peer         string  `json:"peer,omitempty"`
	Err          string  `json:"error,omitempty"`
}

// RSSPerPair is the resident memory growth per stored pair and per copy.
func (m MemRow) RSSPerPair() float64 {
	if m.Pairs == 0 || m.Copies == 0 {
		return 0
	}
	return float64(m.RSSAfter-m.RSSBefore) / float64(m.Pairs) / float64(m.Copies)
}

// EnginePerPair is the engine's own memory growth per pair and per copy (0 when unknown).
func (m MemRow) EnginePerPair() float64 {
	if m.Pairs == 0 || m.Copies == 0 || m.EngineName == "" {
		return 0
	}
	return float64(m.EngineAfter-m.EngineBefore) / float64(m.Pairs) / float64(m.Copies)
}

// TargetInfo describes a target in the report.
type TargetInfo struct {
	Name string `json:"name"`
	Desc string `json:"desc"`
}

// Results is everything one run measured, rendered by WriteReport and saved as JSON.
type Results struct {
	Date      time.Time     `json:"date"`
	Elapsed   time.Duration `json:"elapsed"`
	Command   string        `json:"command"`
	Quick     bool          `json:"quick"`
	Runs      int           `json:"runs"`
	Duration  time.Duration `json:"duration"`
	Keyspace  uint64        `json:"keyspace"`
	Clients   []int         `json:"clients"`
	Fixed     int           `json:"fixed_clients"`
	RBClients int           `json:"rb_clients"`
	ValueSize int           `json:"value_size"`
	Machine   Machine       `json:"machine"`
	Targets   []TargetInfo  `json:"targets"`
	Rows      []*Row        `json:"rows"`
	Mem       []MemRow      `json:"memory"`
	Notes     []string      `json:"notes,omitempty"`
	// Scaling is the throughput curve as groups are added; nil when the phase did not run
	// (and in results.json files written before it existed).
	Scaling *Scaling `json:"scaling,omitempty"`
}

// Find returns the row of target that matches like's configuration, or nil.
func (res *Results) Find(target string, like *Row) *Row {
	for _, r := range res.Rows {
		if r.Target == target && r.sameConfig(like) {
			return r
		}
	}
	return nil
}

// Ratio returns r's median throughput divided by its peer's (0 when either is missing).
func (res *Results) Ratio(r *Row) float64 {
	if r.Peer == "" {
		return 0
	}
	p := res.Find(r.Peer, r)
	if p == nil {
		return 0
	}
	a, b := r.Throughput(), p.Throughput()
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return 0
	}
	return a.Median / b.Median
}

// MemRatio returns m's RSS per pair divided by its peer's (0 when missing).
func (res *Results) MemRatio(m MemRow) float64 {
	for _, p := range res.Mem {
		if p.Target == m.Peer && p.Err == "" && m.Err == "" && p.RSSPerPair() > 0 {
			return m.RSSPerPair() / p.RSSPerPair()
		}
	}
	return 0
}
