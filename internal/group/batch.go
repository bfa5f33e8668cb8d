package group

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
)

// opBatch marks a log entry holding several commands: opBatch, then (len uvarint, command)*.
// A batch of one command is proposed as the bare command, the format older binaries read.
const opBatch op = 0xB0

// Limits of one batch entry: raft sends an entry whole in one message (MaxSizePerMsg is 1 MiB),
// and a huge entry would hold up the writes queued behind it.
const (
	maxBatchBytes = 256 << 10
	maxBatchCmds  = 1024
)

// earlyBatch is the fewest writes a batch must hold to be proposed before its window is over
// (see drain): smaller entries are where the window's savings lie.
const earlyBatch = 8

// How long one proposal attempt may wait for raft to take it: raft does not accept proposals at
// all while no leader is known, and the attempt then ends with an ambiguous context error.
const proposeTimeout = 2 * time.Second

// proposals queues started commands and proposes them as batch entries, in the order they
// were started, from one goroutine at a time.
//
// Proposing each write as its own entry cost a channel round trip into raft per write, and raft
// answers every proposal with its own append message to every follower, each stepped, fsynced
// and acknowledged there: under load a 3-replica group exchanged about four raft messages per
// write. Writes that arrive while a proposal is under way now join the next entry, so the
// per-entry costs are shared by however many writes queued meanwhile.
type proposals struct {
	mu      sync.Mutex
	next    uint64   // the last request id handed out
	queue   []*batch // FIFO; the last one takes new commands until full
	running bool     // a drain goroutine is proposing the queue
	// proposed is the highest request id raft has taken (or that was given up), in start order;
	// attempt is the range of ids inside a Propose call right now (zero when none): together
	// they tell a write whose caller stopped waiting whether raft can have taken it.
	proposed uint64
	attempt  [2]uint64
	// withdrawn holds the writes whose callers gave up before raft could take them (see
	// withdraw); they are cut out of their batch before it is proposed.
	withdrawn map[uint64]struct{}
	// lastStart and lastCount describe the previous batch proposed (see drain).
	lastStart time.Time
	lastCount int
	// peak is the most writes waiting at once since the previous batch was proposed, and
	// lastPeak the same for the cycle before it: the load the window scales with (see
	// scaledWindow).
	peak, lastPeak int
	// waiting is set while drain waits out the window; enqueue then sends on full once the
	// waiting batch has enough writes, ending the wait early (see drain).
	waiting bool
	full    chan struct{}
}

// batch is one log entry being filled: data holds opBatch then length-prefixed commands.
type batch struct {
	data []byte
	ids  []uint64
	// one is where the only command starts, for proposing it bare.
	one int
}

// enqueue assigns c its request id, registers ch as its waiter and queues it for proposing.
// The id is taken under the queue's lock, so ids increase in queue order.
func (g *Group) enqueue(c *command, ch chan result) uint64 {
	q := &g.props
	q.mu.Lock()
	q.next++
	c.reqID = q.next
	g.waitMu.Lock()
	g.waiters[c.reqID] = ch
	waiting := len(g.waiters)
	g.waitMu.Unlock()
	q.peak = max(q.peak, waiting)
	if c.needsTime() {
		// Stamped under the queue's lock: a proposer's stamps follow its log order.
		c.at = max(c.at, g.nowMillis())
		c.flags |= cmdAt
	}
	n := c.encodedLen()
	var b *batch
	if k := len(q.queue); k > 0 {
		b = q.queue[k-1]
		if len(b.ids) >= maxBatchCmds || (len(b.ids) > 0 && len(b.data)+binary.MaxVarintLen64+n > maxBatchBytes) {
			b = nil
		}
	}
	if b == nil {
		b = &batch{data: make([]byte, 1, 1+binary.MaxVarintLen64+n)}
		b.data[0] = byte(opBatch)
		q.queue = append(q.queue, b)
	}
	b.data = binary.AppendUvarint(b.data, uint64(n))
	if len(b.ids) == 0 {
		b.one = len(b.data)
	}
	b.data = c.encode(b.data)
	b.ids = append(b.ids, c.reqID)
	if q.waiting && (len(q.queue) > 1 || q.enough(b, waiting)) {
		q.waiting = false
		q.full <- struct{}{} // cannot block: drain emptied it before waiting
	}
	if !q.running {
		q.running = true
		go g.drain()
	}
	q.mu.Unlock()
	return c.reqID
}

// drain proposes queued batches until the queue is empty. It owns proposing while it runs, so
// batches enter raft in queue order; it ends when there is nothing left, so it needs no stopping.
//
// When the previous batch carried more than one write, writes are arriving concurrently: the
// next batch then waits until the window (Window, longer under load: scaledWindow) has passed
// since the previous one started, so that the writes arriving meanwhile share its entry, its
// append message and its fsync on every replica.
// A client writing alone (batches of one) is never delayed, and the wait ends early once the
// batch holds as many writes as the previous one (and at least earlyBatch): with a fixed set of
// clients each writing in turn, they are then all back, so a fixed wait only added latency
// (replicated SETs from 32 clients gained about a fifth when it went; see docs/BENCHMARKS.md).
func (g *Group) drain() {
	q := &g.props
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		window := scaledWindow(g.cfg.Window, max(q.peak, q.lastPeak))
		if wait := window - time.Since(q.lastStart); q.lastCount > 1 && wait > 0 &&
			len(q.queue) == 1 && !q.enough(q.queue[0], g.waiterCount()) {
			select {
			case <-q.full: // a signal the previous wait did not take
			default:
			}
			q.waiting = true
			q.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-q.full:
				t.Stop()
			}
			q.mu.Lock()
			q.waiting = false
		}
		b := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.lastStart, q.lastCount = time.Now(), len(b.ids)
		q.lastPeak, q.peak = q.peak, 0
		q.mu.Unlock()
		g.proposeBatch(b)
	}
}

// proposeBatch hands one batch to raft. A dropped proposal (raft had no leader to take it) was
// never appended, so it is proposed again, after a backoff, as long as any of its writers still
// waits; any other failure is ambiguous or final and goes to every writer of the batch. Writes
// withdrawn by their callers are left out of every attempt.
func (g *Group) proposeBatch(b *batch) {
	q := &g.props
	last := b.ids[len(b.ids)-1]
	backoff := 10 * time.Millisecond
	for {
		q.mu.Lock()
		b = q.without(b)
		if len(b.ids) == 0 {
			q.proposed = last
			q.mu.Unlock()
			return
		}
		q.attempt = [2]uint64{b.ids[0], last}
		q.mu.Unlock()
		data := b.data
		if len(b.ids) == 1 {
			data = data[b.one:]
		}
		ctx, cancel := context.WithTimeout(context.Background(), proposeTimeout)
		err := g.r.Propose(ctx, data)
		cancel()
		dropped := errors.Is(err, raft.ErrProposalDropped)
		q.mu.Lock()
		q.attempt = [2]uint64{}
		if !dropped {
			q.proposed = last // taken, or possibly taken: no caller may withdraw it now
		}
		q.mu.Unlock()
		switch {
		case err == nil:
			return
		case !dropped:
			// Also a timeout: raft may have taken the batch as the deadline passed, so its
			// outcome is unknown, and saying "no leader" would invite a retry that applies twice.
			res := result{err: fmt.Errorf("propose: %w", err)}
			for _, id := range b.ids {
				g.deliver(id, res)
			}
			return
		case !g.waiting(b.ids):
			q.mu.Lock()
			q.proposed = last
			q.mu.Unlock()
			return
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// scaledWindow is the window drain waits out when as many as waiters writes were recently
// queued or in flight at once: Window up to windowWriters of them, then in proportion, up to
// twice Window. A busy group so builds bigger entries, and per-entry work (fsyncs, raft
// messages and goroutine wake-ups on every replica) is where its CPU goes: with 32 and 64
// redis-benchmark writers, this cut the CPU per write by a fifth to a third and raised
// throughput by 13-28% (docs/BENCHMARKS.md). Fewer writers keep Window: below windowWriters a
// longer wait delays them more than it saves (the smaller window this once tried nearly halved
// throughput at 4 writers, where entries then split).
func scaledWindow(window time.Duration, waiters int) time.Duration {
	return window * time.Duration(min(max(waiters, windowWriters), 2*windowWriters)) / windowWriters
}

// windowWriters is how many waiting writes make the window exactly Window (see scaledWindow).
const windowWriters = 16

// enough reports whether b, waiting out the window, already holds as many writes as the previous
// batch: under a steady load the writers of the previous entry are then all back, so waiting
// longer delays them without gathering more. Small batches also need every other write answered
// (waiting, the writes with a waiter, are all in b): while one is in flight, its writers return
// soon and should share b, or the load splits into small entries in flight together, each paying
// the per-entry cost. Called with q.mu held (only the last batch in the queue is ever checked).
func (q *proposals) enough(b *batch, waiting int) bool {
	n := len(b.ids)
	return n >= q.lastCount && (n >= earlyBatch || waiting == n)
}

// waiterCount is how many writes have a waiter: queued or in flight.
func (g *Group) waiterCount() int {
	g.waitMu.Lock()
	defer g.waitMu.Unlock()
	return len(g.waiters)
}

// without returns b less its withdrawn writes, which it forgets. Called with q.mu held.
func (q *proposals) without(b *batch) *batch {
	if len(q.withdrawn) == 0 {
		return b // the usual case: no lookups per write
	}
	cut := false
	for _, id := range b.ids {
		if _, ok := q.withdrawn[id]; ok {
			cut = true
			break
		}
	}
	if !cut {
		return b
	}
	nb := &batch{data: []byte{byte(opBatch)}}
	i := 0
	_ = forEachCommand(b.data, func(cmd []byte) { // b.data was built by enqueue: well formed
		id := b.ids[i]
		i++
		if _, ok := q.withdrawn[id]; ok {
			delete(q.withdrawn, id)
			return
		}
		nb.data = binary.AppendUvarint(nb.data, uint64(len(cmd)))
		if len(nb.ids) == 0 {
			nb.one = len(nb.data)
		}
		nb.data = append(nb.data, cmd...)
		nb.ids = append(nb.ids, id)
	})
	return nb
}

// waiting reports whether any of the given writes still has a registered waiter.
func (g *Group) waiting(ids []uint64) bool {
	g.waitMu.Lock()
	defer g.waitMu.Unlock()
	for _, id := range ids {
		if _, ok := g.waiters[id]; ok {
			return true
		}
	}
	return false
}

// withdraw takes back the write with request id if raft certainly has not taken it: it is
// still queued, or its batch was dropped and waits to be proposed again. It then never will be.
// A write inside a Propose call right now, or already taken, cannot be withdrawn.
func (g *Group) withdraw(id uint64) bool {
	q := &g.props
	q.mu.Lock()
	defer q.mu.Unlock()
	if id <= q.proposed || (id >= q.attempt[0] && id <= q.attempt[1]) {
		return false
	}
	if q.withdrawn == nil {
		q.withdrawn = make(map[uint64]struct{})
	}
	q.withdrawn[id] = struct{}{}
	return true
}

// forEachCommand calls fn with every command of a log entry: the commands of a batch in order,
// or the entry itself.
func forEachCommand(data []byte, fn func([]byte)) error {
	if len(data) == 0 || op(data[0]) != opBatch {
		fn(data)
		return nil
	}
	p := data[1:]
	for len(p) > 0 {
		l, rest, ok := uvarint(p)
		if !ok || l > uint64(len(rest)) {
			return fmt.Errorf("%w: batch entry", errCorrupt)
		}
		fn(rest[:l:l])
		p = rest[l:]
	}
	return nil
}
