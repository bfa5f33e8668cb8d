package server

import (
	"context"
	"errors"
	"strconv"

	"github.com/shoal-kv/shoal/internal/group"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/router"
)

// Shoal's own commands. They are not Redis commands, so they are named SHOAL.* (the module
// naming convention Redis uses) and never collide with a Redis client's expectations:
//
//	SHOAL.AT clientid seq acked <command...>   run a write with an at-most-once session
//	SHOAL.FWD hops <command...>                a request forwarded by another node
//	SHOAL.CAS key VALUE old new | ABSENT new   compare-and-swap; replies 1 if swapped, else 0
//	SHOAL.PULL num lo hi maxbytes              hand-off data of slots [lo,hi) given away in num
//	SHOAL.DROP num lo hi                       delete slots [lo,hi) given away in num
//	CLIENT CAPA redirect                       this connection wants MOVED instead of forwarding

// Migrator is what a backend offers for slot hand-offs between groups.
type Migrator interface {
	Export(ctx context.Context, num uint64, r keyspace.Range, maxBytes int) (data []byte, next uint16, pairs int, err error)
	DropGiven(ctx context.Context, num uint64, r keyspace.Range) error
}

// CASBackend is what a backend offers for compare-and-swap.
type CASBackend interface {
	CompareAndSwap(ctx context.Context, key, old []byte, oldPresent bool, val []byte) (bool, error)
}

// Locator tells the server which slots this node's group serves, so connections that asked
// for redirects get MOVED instead of having their request forwarded.
type Locator interface {
	Locate(slot uint16) (local bool, addr string)
}

const errStaleSeq = "STALE sequence number already acknowledged"

// maxWrapDepth bounds nested SHOAL.FWD / SHOAL.AT wrappers in one request.
const maxWrapDepth = 2

func cmdShoalAt(c *conn, args [][]byte) {
	s, ok := parseSession(args)
	if !ok {
		c.w.Error("ERR invalid session: SHOAL.AT clientid(>0) seq acked command...")
		return
	}
	if c.wrapDepth >= maxWrapDepth {
		c.w.Error("ERR nested SHOAL.* wrappers")
		return
	}
	prev := c.session
	c.session = &s
	c.wrapDepth++
	c.exec(args[4:])
	c.wrapDepth--
	c.session = prev
}

// parseSession parses SHOAL.AT's client id, sequence number and acknowledged horizon.
func parseSession(args [][]byte) (group.Session, bool) {
	var s group.Session
	var err1, err2, err3 error
	s.ClientID, err1 = strconv.ParseUint(string(args[1]), 10, 64)
	s.Seq, err2 = strconv.ParseUint(string(args[2]), 10, 64)
	s.Acked, err3 = strconv.ParseUint(string(args[3]), 10, 64)
	return s, err1 == nil && err2 == nil && err3 == nil && s.ClientID != 0
}

func cmdShoalFwd(c *conn, args [][]byte) {
	hops, err := strconv.Atoi(string(args[1]))
	if err != nil || hops < 1 {
		c.w.Error("ERR invalid hop count")
		return
	}
	if c.wrapDepth >= maxWrapDepth {
		c.w.Error("ERR nested SHOAL.* wrappers")
		return
	}
	prev := c.hops
	c.hops = hops
	c.wrapDepth++
	c.exec(args[2:])
	c.wrapDepth--
	c.hops = prev
}

func cmdShoalCAS(c *conn, args [][]byte) {
	cas, ok := c.s.backend.(CASBackend)
	if !ok {
		c.w.Error("ERR compare-and-swap not supported")
		return
	}
	var old, val []byte
	present := false
	switch {
	case len(args) == 5 && equalFold(args[2], "value"):
		old, val, present = args[3], args[4], true
	case len(args) == 4 && equalFold(args[2], "absent"):
		val = args[3]
	default:
		c.w.Error(errSyntax)
		return
	}
	swapped, err := cas.CompareAndSwap(c.reqCtx(), args[1], old, present, val)
	if err != nil {
		c.backendError(err)
		return
	}
	if swapped {
		c.w.Int(1)
	} else {
		c.w.Int(0)
	}
}

func parseSlotRange(lo, hi []byte) (keyspace.Range, bool) {
	l, err1 := strconv.ParseUint(string(lo), 10, 16)
	h, err2 := strconv.ParseUint(string(hi), 10, 16)
	r := keyspace.Range{Lo: uint16(l), Hi: uint16(h)}
	return r, err1 == nil && err2 == nil && r.Valid() && !r.Empty()
}

func cmdShoalPull(c *conn, args [][]byte) {
	m, ok := c.s.backend.(Migrator)
	if !ok {
		c.w.Error("ERR slot hand-off not supported")
		return
	}
	num, err := strconv.ParseUint(string(args[1]), 10, 64)
	r, okr := parseSlotRange(args[2], args[3])
	maxBytes, err2 := strconv.Atoi(string(args[4]))
	if err != nil || !okr || err2 != nil || maxBytes < 1 {
		c.w.Error(errSyntax)
		return
	}
	data, next, pairs, err := m.Export(c.reqCtx(), num, r, maxBytes)
	if err != nil {
		c.migrationError(err)
		return
	}
	c.w.ArrayHeader(3)
	c.w.Bulk(data)
	c.w.Int(int64(next))
	c.w.Int(int64(pairs))
}

func cmdShoalDrop(c *conn, args [][]byte) {
	m, ok := c.s.backend.(Migrator)
	if !ok {
		c.w.Error("ERR slot hand-off not supported")
		return
	}
	num, err := strconv.ParseUint(string(args[1]), 10, 64)
	r, okr := parseSlotRange(args[2], args[3])
	if err != nil || !okr {
		c.w.Error(errSyntax)
		return
	}
	if err := m.DropGiven(c.reqCtx(), num, r); err != nil {
		c.migrationError(err)
		return
	}
	c.w.SimpleString("OK")
}

func (c *conn) migrationError(err error) {
	if errors.Is(err, group.ErrConfigNotReached) {
		c.w.Error("TRYAGAIN " + sanitize(err.Error()))
		return
	}
	c.w.Error("ERR " + sanitize(err.Error()))
}

func cmdClientCapa(c *conn, args [][]byte) {
	for _, a := range args[2:] {
		if equalFold(a, "redirect") {
			c.redirect = true
		}
	}
	c.w.SimpleString("OK")
}

// redirectFor returns the MOVED reply for a keyed command on a connection that asked for
// redirects, when the first key's slot is served by another group.
func (c *conn) redirectFor(cmd *command, args [][]byte) (string, bool) {
	// Checked before hashing the key: most connections never ask for redirects.
	if cmd.firstKey >= len(args) || !c.redirect || c.s.cfg.Router == nil {
		return "", false
	}
	return c.redirectForSlot(keyspace.Slot(args[cmd.firstKey]))
}

// redirectForSlot returns the MOVED reply for slot on a connection that asked for redirects,
// when another group serves it.
func (c *conn) redirectForSlot(slot uint16) (string, bool) {
	loc := c.s.cfg.Router
	if loc == nil || !c.redirect {
		return "", false
	}
	local, addr := loc.Locate(slot)
	if local || addr == "" {
		return "", false
	}
	return "MOVED " + strconv.Itoa(int(slot)) + " " + addr, true
}

// requestContext decorates the request context with forwarding hops and the session.
func (c *conn) requestContext(ctx context.Context) context.Context {
	if c.hops > 0 {
		ctx = router.WithHops(ctx, c.hops)
	}
	if c.session != nil {
		ctx = group.WithSession(ctx, *c.session)
	}
	return ctx
}
