package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"

	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// ScanOptions configure [Client.Scan].
type ScanOptions struct {
	// Match is a Redis glob pattern (*, ?, [...], \x) keys must match; empty matches every key.
	Match string
	// PageSize is the SCAN COUNT hint: about how many keys each page fetches from a node
	// (default 100). Values are then read for the page's keys in one pipelined batch.
	PageSize int
}

// Scan walks every key of the cluster (matching opts.Match) and yields each with its value, in
// no particular order. The walk visits every shard with SCAN cursors and reads the values of
// each page in a pipelined batch. Call the returned function after the loop for the walk's
// error (nil when it completed or the loop stopped early):
//
//	seq, errf := c.Scan(ctx, client.ScanOptions{Match: "user:*"})
//	for key, val := range seq {
//		...
//	}
//	if err := errf(); err != nil {
//		...
//	}
//
// Guarantees: every key that exists for the whole walk is yielded exactly once. A key created
// or deleted during the walk may or may not be yielded; a key deleted between its page and the
// read of its value is skipped. Shards that move during the walk are followed: each page is
// bracketed by the node's own view of the slot map, a slot counts as visited only if the node
// served it before and after the page, and the remaining slots are walked at their new owner,
// with keys already yielded from partly visited slots remembered so they are not yielded twice.
// A node failure mid-walk resumes at the start of the current slot on another node of the
// shard. The sequence is single-use.
func (c *Client) Scan(ctx context.Context, opts ScanOptions) (iter.Seq2[string, []byte], func() error) {
	var err error
	seq := func(yield func(string, []byte) bool) {
		err = c.scan(ctx, opts, yield)
	}
	return seq, func() error { return err }
}

// scanPage is one SCAN page with the answering node's slot map before and after it.
type scanPage struct {
	before, after *slotMap
	next          uint64
	keys          []string
}

var errNoProgress = errors.New("shoal: scan made no progress")

func (c *Client) scan(ctx context.Context, opts ScanOptions, yield func(string, []byte) bool) error {
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	var covered [keyspace.NumSlots]bool
	ncovered, lo := 0, 0
	seen := map[uint16]map[string]struct{}{} // yielded keys of slots not yet covered
	saved := map[string]uint64{}             // per node: the cursor to continue from
	failures := 0
	var last error
	for ncovered < keyspace.NumSlots {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("shoal: scan: %w", err)
		}
		if failures > 0 {
			if c.opts.MaxRetries >= 0 && failures > c.opts.MaxRetries {
				return fmt.Errorf("shoal: scan: gave up after %d attempts: %w", failures, last)
			}
			_ = sleep(ctx, c.backoff(failures))
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("shoal: scan: %w (last error: %v)", err, last)
			}
		}
		for covered[lo] {
			lo++
		}
		gen := c.gen.Load()
		sh := c.slots.Load().lookup(uint16(lo))
		if sh == nil {
			last = fmt.Errorf("shoal: scan: slot %d not served", lo)
			failures++
			_ = c.refresh(ctx, gen, false)
			continue
		}
		addr := sh.pick()
		cursor := uint64(lo) << 32
		if sc, ok := saved[addr]; ok && int(sc>>32) == lo {
			cursor = sc
		}
		pg, err := c.scanPage(ctx, addr, cursor, opts)
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) && se.Code != "TRYAGAIN" && se.Code != "CLUSTERDOWN" && se.Code != "LOADING" && se.Code != "MOVED" {
				return fmt.Errorf("shoal: scan: %w", err)
			}
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return fmt.Errorf("shoal: scan: %w", err)
			}
			last = err
			failures++
			sh.avoid(addr)
			delete(saved, addr)
			_ = c.refresh(ctx, gen, false)
			continue
		}
		start := int(cursor >> 32)
		end := keyspace.NumSlots
		if pg.next != 0 {
			end = int(pg.next >> 32)
		}
		// Keys to yield: from slots not yet covered that the node serves, not yielded before.
		keys := pg.keys[:0]
		for _, k := range pg.keys {
			t := keyspace.SlotString(k)
			if covered[t] || !owns(pg.after, t, addr) {
				continue
			}
			ks := seen[t]
			if ks == nil {
				ks = map[string]struct{}{}
				seen[t] = ks
			}
			if _, dup := ks[k]; dup {
				continue
			}
			ks[k] = struct{}{}
			keys = append(keys, k)
		}
		progress := false
		for t := start; t < end; t++ {
			if !covered[t] && owns(pg.before, uint16(t), addr) && owns(pg.after, uint16(t), addr) {
				covered[t] = true
				ncovered++
				delete(seen, uint16(t))
				progress = true
			}
		}
		if pg.next != 0 {
			// A page within a slot (same slot, further position) is progress only if the node
			// serves that slot; otherwise its keys were skipped above and the page must not
			// count, or the walk would spin on a slot it never covers.
			servesCursor := owns(pg.before, uint16(start), addr) && owns(pg.after, uint16(start), addr)
			progress = progress || (pg.next != cursor && servesCursor)
			saved[addr] = pg.next
		} else {
			delete(saved, addr)
		}
		if !progress {
			// The node does not serve the slot our map gives it: reload the map.
			last = fmt.Errorf("shoal: scan: %s does not serve slot %d", addr, lo)
			failures++
			_ = c.refresh(ctx, gen, true)
			continue
		}
		failures = 0
		if len(keys) > 0 {
			items, err := c.GetMany(ctx, keys)
			if err != nil {
				return fmt.Errorf("shoal: scan: reading values: %w", err)
			}
			for _, it := range items {
				if it.Found && !yield(it.Key, it.Value) {
					return nil
				}
			}
		}
	}
	return nil
}

// owns reports whether m lists addr among the nodes serving slot.
func owns(m *slotMap, slot uint16, addr string) bool {
	sh := m.lookup(slot)
	return sh != nil && sh.has(addr)
}

var (
	cmdCluster = []byte("CLUSTER")
	argSlots   = []byte("SLOTS")
	cmdScan    = []byte("SCAN")
	argMatch   = []byte("MATCH")
	argCount   = []byte("COUNT")
)

// scanPage sends CLUSTER SLOTS, SCAN, CLUSTER SLOTS pipelined on one connection of addr, so the
// two maps bracket the page as that node saw it.
func (c *Client) scanPage(ctx context.Context, addr string, cursor uint64, opts ScanOptions) (scanPage, error) {
	if err := c.enter(); err != nil {
		return scanPage{}, err
	}
	defer c.exit()
	slots := resp.AppendCommand(nil, cmdCluster, argSlots)
	buf := append([]byte(nil), slots...)
	args := [][]byte{cmdScan, strconv.AppendUint(nil, cursor, 10)}
	if opts.Match != "" {
		args = append(args, argMatch, []byte(opts.Match))
	}
	args = append(args, argCount, strconv.AppendInt(nil, int64(opts.PageSize), 10))
	buf = resp.AppendCommand(buf, args...)
	buf = append(buf, slots...)
	vs, err := c.roundTrip(ctx, addr, buf, 3)
	if err != nil {
		return scanPage{}, err
	}
	for i := range vs {
		if vs[i].Type == '-' {
			return scanPage{}, newServerError(vs[i].Str)
		}
	}
	var pg scanPage
	if pg.before, err = parseSlots(vs[0], addr); err != nil {
		return pg, err
	}
	if pg.after, err = parseSlots(vs[2], addr); err != nil {
		return pg, err
	}
	sv := vs[1]
	if sv.Type != '*' || len(sv.Array) != 2 || sv.Array[1].Type != '*' {
		return pg, fmt.Errorf("shoal: SCAN: malformed reply")
	}
	if pg.next, err = strconv.ParseUint(string(sv.Array[0].Str), 10, 64); err != nil {
		return pg, fmt.Errorf("shoal: SCAN: bad cursor: %w", err)
	}
	pg.keys = make([]string, len(sv.Array[1].Array))
	for i, k := range sv.Array[1].Array {
		pg.keys[i] = string(k.Str)
	}
	return pg, nil
}
