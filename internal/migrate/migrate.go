// Package migrate drives a group through the controller's configurations: it follows them in
// order (N+1 only once N's hand-offs are done), pulls the slots the group gains from their
// previous owners in bounded chunks and installs them through the group's raft log, and tells
// previous owners to delete what they gave away once it is installed. It runs on every replica
// and acts only on the leader; its progress is observable and its transfer rate can be capped.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-kv/shoal/internal/controller"
	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// Group is the local replica group.
type Group interface {
	Migration() group.MigrationState
	ProposeConfig(ctx context.Context, cfg *controller.Config) (bool, error)
	Install(ctx context.Context, num uint64, data []byte) (int64, error)
	MarkCleaned(ctx context.Context, num uint64, r keyspace.Range) error
	RangeLoad(r keyspace.Range) (ops uint64, keys, bytes int64)
}

// Reporter receives load reports (the controller, when it supports them).
type Reporter interface {
	Report(ctx context.Context, r controller.Report) error
}

// Controller answers configuration queries (num -1 = latest).
type Controller interface {
	Query(ctx context.Context, num int64) (*controller.Config, error)
}

// Peers sends a command to another node.
type Peers interface {
	Do(ctx context.Context, addr string, args ...[]byte) (resp.Value, error)
}

// Config configures a Driver.
type Config struct {
	GroupID    uint64
	Group      Group
	IsLeader   func() bool
	Controller Controller
	Peers      Peers
	// Learn is told every configuration the driver sees (the node's delegation map).
	Learn func(*controller.Config)
	// LearnLeaders is told, every few seconds, the raft leader (node id) of each other group, so
	// that requests and CLUSTER SLOTS go straight to leaders instead of through a follower.
	LearnLeaders func(map[uint64]uint64)
	// ChunkBytes bounds one pulled chunk (and so one raft entry); default 1 MiB.
	ChunkBytes int
	// RateLimit caps pulled bytes per second; 0 means unlimited.
	RateLimit int64
	// Interval is how often the driver looks for work; default 100 ms.
	Interval time.Duration
	// Kick, when it receives, makes the driver refresh the delegation map at once (a request
	// was refused as if the map were stale).
	Kick   <-chan struct{}
	Logger *slog.Logger
}

// Progress describes hand-offs into this group.
type Progress struct {
	Config        uint64  // configuration the group is in
	Done          bool    // no hand-off of that configuration is pending
	SlotsPulling  int     // slots still to receive
	SlotsCleaning int     // slots received whose previous owner has not deleted its copy yet
	SlotsGiving   int     // slots given away whose new owner has not taken them yet
	PairsMoved    int64   // pairs received since the process started
	BytesMoved    int64   // bytes received since the process started
	BytesPerSec   float64 // receive rate over the current hand-off
}

// Driver runs the loop. Create with New, run with Run.
type Driver struct {
	cfg        Config
	log        *slog.Logger
	pairs      atomic.Int64
	bytes      atomic.Int64
	phaseStart atomic.Int64 // unix nanos when the current hand-off started moving data
	phaseBytes atomic.Int64
	lastMove   atomic.Int64 // unix nanos of the last chunk installed
}

// New creates a driver.
func New(cfg Config) *Driver {
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = 1 << 20
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Learn == nil {
		cfg.Learn = func(*controller.Config) {}
	}
	return &Driver{cfg: cfg, log: cfg.Logger.With("component", "migrate")}
}

// Progress reports the hand-off state.
func (d *Driver) Progress() Progress {
	ms := d.cfg.Group.Migration()
	p := Progress{Done: ms.Done, PairsMoved: d.pairs.Load(), BytesMoved: d.bytes.Load(),
		SlotsPulling: slots(ms.Pulling), SlotsCleaning: slots(ms.Cleaning), SlotsGiving: slots(ms.Giving)}
	if ms.Config != nil {
		p.Config = ms.Config.Num
	}
	if start := d.phaseStart.Load(); start != 0 {
		end := time.Now()
		if p.Done || p.SlotsPulling == 0 {
			end = time.Unix(0, d.lastMove.Load()) // the rate of the finished transfer, not diluted by idle time
		}
		if el := end.Sub(time.Unix(0, start)).Seconds(); el > 0 {
			p.BytesPerSec = float64(d.phaseBytes.Load()) / el
		}
	}
	return p
}

func slots(rs []keyspace.Range) int {
	n := 0
	for _, r := range rs {
		n += r.Len()
	}
	return n
}

// Info renders Progress as INFO lines.
func (p Progress) Info() string {
	return fmt.Sprintf("migration_config:%d\r\nmigration_done:%d\r\nmigration_slots_pulling:%d\r\nmigration_slots_cleaning:%d\r\nmigration_slots_giving:%d\r\nmigration_pairs_moved:%d\r\nmigration_bytes_moved:%d\r\nmigration_bytes_per_sec:%.0f\r\n",
		p.Config, b2i(p.Done), p.SlotsPulling, p.SlotsCleaning, p.SlotsGiving, p.PairsMoved, p.BytesMoved, p.BytesPerSec)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Run loops until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	var lastLearn, lastReport, lastLeaders time.Time
	lastOps := map[keyspace.Range]uint64{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.cfg.Kick:
			lastLearn = time.Time{}
		}
		// Every replica keeps its delegation map fresh; only the leader moves data.
		if time.Since(lastLearn) > 5*d.cfg.Interval {
			if c, err := d.query(ctx, -1); err == nil {
				d.cfg.Learn(c)
				lastLearn = time.Now()
			}
		}
		if d.cfg.LearnLeaders != nil && time.Since(lastLeaders) > 20*d.cfg.Interval {
			lastLeaders = time.Now()
			d.learnLeaders(ctx)
		}
		if !d.cfg.IsLeader() {
			continue
		}
		if rep, ok := d.cfg.Controller.(Reporter); ok && time.Since(lastReport) >= 2*time.Second {
			if !lastReport.IsZero() {
				d.report(ctx, rep, time.Since(lastReport), lastOps)
			}
			lastReport = time.Now()
		}
		if err := d.step(ctx); err != nil && ctx.Err() == nil {
			d.log.Debug("migration step", "err", err)
		}
	}
}

func (d *Driver) query(ctx context.Context, num int64) (*controller.Config, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return d.cfg.Controller.Query(qctx, num)
}

// step does one round of work: propose the next configuration, or advance the hand-offs of the
// current one.
func (d *Driver) step(ctx context.Context) error {
	ms := d.cfg.Group.Migration()
	if ms.Done {
		cur := uint64(0)
		if ms.Config != nil {
			cur = ms.Config.Num
		}
		next, err := d.query(ctx, int64(cur+1))
		if err != nil {
			return err
		}
		if next.Num != cur+1 {
			return nil // no newer configuration
		}
		d.cfg.Learn(next)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := d.cfg.Group.ProposeConfig(pctx, next); err != nil {
			return fmt.Errorf("propose configuration %d: %w", next.Num, err)
		}
		d.phaseStart.Store(time.Now().UnixNano())
		d.phaseBytes.Store(0)
		return nil
	}
	var errs []error
	for _, r := range ms.Pulling {
		for _, src := range byOwner(ms.Prev, r) {
			if err := d.pull(ctx, ms.Config.Num, ms.Prev, src); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, r := range ms.Cleaning {
		for _, src := range byOwner(ms.Prev, r) {
			if err := d.clean(ctx, ms.Config.Num, ms.Prev, src); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// source is a run of slots that one group owned in the previous configuration.
type source struct {
	gid uint64
	r   keyspace.Range
}

func byOwner(prev *controller.Config, r keyspace.Range) []source {
	var out []source
	for s := int(r.Lo); s < int(r.Hi); {
		gid := prev.Owner(uint16(s))
		e := s + 1
		for e < int(r.Hi) && prev.Owner(uint16(e)) == gid {
			e++
		}
		out = append(out, source{gid: gid, r: keyspace.Range{Lo: uint16(s), Hi: uint16(e)}})
		s = e
	}
	return out
}

// call tries the nodes of group gid in turn until one answers without an error reply.
func (d *Driver) call(ctx context.Context, prev *controller.Config, gid uint64, args ...[]byte) (resp.Value, error) {
	g, ok := prev.Groups[gid]
	if !ok || len(g.Nodes) == 0 {
		return resp.Value{}, fmt.Errorf("group %d has no nodes in configuration %d", gid, prev.Num)
	}
	var last error
	for _, n := range g.Nodes {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := d.cfg.Peers.Do(cctx, n.Addr, args...)
		cancel()
		if err == nil && v.Type != '-' {
			return v, nil
		}
		if err == nil {
			err = errors.New(string(v.Str))
			if strings.HasPrefix(string(v.Str), "TRYAGAIN") {
				return v, err // the group is not there yet: ask again next round
			}
		}
		last = fmt.Errorf("%s: %w", n.Addr, err)
	}
	return resp.Value{}, last
}

func itoa(n uint64) []byte { return strconv.AppendUint(nil, n, 10) }

// pull moves one source range in chunks, installing each as it arrives so that its slots are
// served at once.
func (d *Driver) pull(ctx context.Context, num uint64, prev *controller.Config, src source) error {
	lo := src.r.Lo
	for lo < src.r.Hi {
		v, err := d.call(ctx, prev, src.gid, []byte("SHOAL.PULL"), itoa(num), itoa(uint64(lo)), itoa(uint64(src.r.Hi)), itoa(uint64(d.cfg.ChunkBytes)))
		if err != nil {
			return fmt.Errorf("pull [%d,%d) from group %d: %w", lo, src.r.Hi, src.gid, err)
		}
		if len(v.Array) != 3 || v.Array[1].Int <= int64(lo) {
			return fmt.Errorf("pull from group %d: malformed reply", src.gid)
		}
		data := v.Array[0].Str
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := d.cfg.Group.Install(ictx, num, data)
		cancel()
		if err != nil {
			return fmt.Errorf("install [%d,%d): %w", lo, v.Array[1].Int, err)
		}
		d.pairs.Add(n)
		d.bytes.Add(int64(len(data)))
		d.phaseBytes.Add(int64(len(data)))
		d.lastMove.Store(time.Now().UnixNano())
		lo = uint16(v.Array[1].Int)
		if err := d.throttle(ctx, len(data)); err != nil {
			return err
		}
	}
	return nil
}

// throttle sleeps long enough that pulling n bytes keeps within RateLimit.
func (d *Driver) throttle(ctx context.Context, n int) error {
	if d.cfg.RateLimit <= 0 {
		return nil
	}
	wait := time.Duration(float64(n) / float64(d.cfg.RateLimit) * float64(time.Second))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
		return nil
	}
}

// clean asks the previous owner to delete slots this group installed, then records that.
func (d *Driver) clean(ctx context.Context, num uint64, prev *controller.Config, src source) error {
	if _, err := d.call(ctx, prev, src.gid, []byte("SHOAL.DROP"), itoa(num), itoa(uint64(src.r.Lo)), itoa(uint64(src.r.Hi))); err != nil {
		return fmt.Errorf("drop [%d,%d) at group %d: %w", src.r.Lo, src.r.Hi, src.gid, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.cfg.Group.MarkCleaned(cctx, num, src.r)
}

// report sends the controller each owned shard's request rate since the last report and its
// pair count, for load-based rebalancing.
func (d *Driver) report(ctx context.Context, rep Reporter, elapsed time.Duration, lastOps map[keyspace.Range]uint64) {
	ms := d.cfg.Group.Migration()
	if ms.Config == nil {
		return
	}
	r := controller.Report{Group: d.cfg.GroupID}
	seen := map[keyspace.Range]bool{}
	for _, sh := range ms.Config.Shards {
		if sh.Group != d.cfg.GroupID {
			continue
		}
		ops, keys, bytes := d.cfg.Group.RangeLoad(sh.Range)
		prev, known := lastOps[sh.Range]
		lastOps[sh.Range] = ops
		seen[sh.Range] = true
		if !known || ops < prev {
			continue // first sight of this shard: no rate yet
		}
		r.Shards = append(r.Shards, controller.ShardLoad{Range: sh.Range, OpsPerSec: float64(ops-prev) / elapsed.Seconds(), Keys: keys, Bytes: bytes})
	}
	for k := range lastOps {
		if !seen[k] {
			delete(lastOps, k)
		}
	}
	if len(r.Shards) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rep.Report(rctx, r); err != nil {
		d.log.Debug("load report", "err", err)
	}
}

// learnLeaders asks one node of every other group of the newest configuration for its raft
// leader.
func (d *Driver) learnLeaders(ctx context.Context) {
	cfg, err := d.query(ctx, -1)
	if err != nil {
		return
	}
	leaders := make(map[uint64]uint64, len(cfg.Groups))
	for gid, g := range cfg.Groups {
		if gid == d.cfg.GroupID {
			continue
		}
		for _, n := range g.Nodes {
			cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			v, err := d.cfg.Peers.Do(cctx, n.Addr, []byte("INFO"), []byte("raft"))
			cancel()
			if err != nil || v.Type == '-' {
				continue
			}
			if id := infoUint(string(v.Str), "raft_leader"); id != 0 {
				leaders[gid] = id
				break
			}
		}
	}
	d.cfg.LearnLeaders(leaders)
}

func infoUint(info, field string) uint64 {
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":"); ok && k == field {
			n, _ := strconv.ParseUint(v, 10, 64)
			return n
		}
	}
	return 0
}
