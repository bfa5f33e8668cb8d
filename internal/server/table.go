package server

import (
	"slices"
	"strconv"
	"strings"

	"github.com/shoal-kv/shoal/internal/auth"
)

// handler executes one command whose name and arity have been validated and whose keys have
// passed route. It writes exactly one reply to c.
type handler func(c *conn, args [][]byte)

// command describes one Redis command or subcommand: how to validate and run it, and what
// COMMAND reports about it (clients such as go-redis route by that description). Commands
// are built once in init and never modified, so connections share them without locking.
type command struct {
	name     string // lowercase name as matched: "get", or "slots" for CLUSTER SLOTS
	fullName string // "get" or "cluster|slots": Redis uses this in arity errors and COMMAND
	// arity follows Redis: N > 0 means exactly N arguments including the name, -N at least N.
	arity int
	flags []string // COMMAND flags ("write", "readonly", "fast", ...)
	// firstKey, lastKey, step give key positions as Redis reports them; lastKey -1 means the
	// last argument. firstKey 0 means the command takes no keys.
	firstKey, lastKey, step int
	acl                     []string  // ACL categories ("@read", "@string", ...)
	tips                    []string  // command tips, e.g. "request_policy:multi_shard"
	keySpecs                []keySpec // Redis 7 key specifications
	subs                    map[string]*command
	subList                 []*command // subs in name order, for COMMAND replies
	run                     handler
	// rights is what a user needs to run the command, and noAuth marks commands allowed
	// before AUTH; both derive from flags (see setAccess in access.go).
	rights auth.Right
	noAuth bool
	// pipelined marks the commands a connection may start without waiting (tryStart).
	pipelined bool
}

// keySpec is a Redis 7 key specification of the simple "index + range" kind, the only kind
// Shoal's commands need.
type keySpec struct {
	notes   string   // optional human note, as Redis gives for SET
	flags   []string // e.g. "RO", "access" (Redis prints the four access types upper case)
	index   int      // begin_search index
	lastKey int      // find_keys range lastkey, relative to index (-1: to the end)
	keyStep int
}

// arityOK reports whether n arguments (including the command name) satisfy the arity.
func (cmd *command) arityOK(n int) bool {
	if cmd.arity >= 0 {
		return n == cmd.arity
	}
	return n >= -cmd.arity
}

// commands maps lowercase command names to their descriptions. It is filled by init and
// read-only afterwards. Looking it up with m[string(b)] does not allocate.
var commands map[string]*command

// commandList holds the top-level commands in name order so that COMMAND replies are stable.
var commandList []*command

// Common flag and category lists, shared by the table entries below.
var (
	roFast     = []string{"readonly", "fast"}
	wDenyFast  = []string{"write", "denyoom", "fast"}
	wDeny      = []string{"write", "denyoom"}
	wFast      = []string{"write", "fast"}
	connFast   = []string{"loading", "stale", "fast"}
	aclReadStr = []string{"@read", "@string", "@fast"}
	aclWStrF   = []string{"@write", "@string", "@fast"}
	aclWStrS   = []string{"@write", "@string", "@slow"}
	aclKeyR    = []string{"@keyspace", "@read", "@fast"}
	aclKeyW    = []string{"@keyspace", "@write", "@fast"}
	aclConnF   = []string{"@fast", "@connection"}
	aclConnS   = []string{"@slow", "@connection"}
	aclSlow    = []string{"@slow"}
	aclAdmin   = []string{"@admin", "@slow", "@dangerous"}
	noStrings  = []string{}
	nondetOut  = []string{"nondeterministic_output"}
	nondetOrd  = []string{"nondeterministic_output_order"}
)

func init() {
	one := func(flags ...string) []keySpec { return []keySpec{{flags: flags, index: 1, lastKey: 0, keyStep: 1}} }
	all := func(step int, flags ...string) []keySpec {
		return []keySpec{{flags: flags, index: 1, lastKey: -1, keyStep: step}}
	}
	top := []*command{
		{name: "get", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1, acl: aclReadStr,
			keySpecs: one("RO", "access"), run: cmdGet},
		{name: "set", arity: -3, flags: wDeny, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrS,
			keySpecs: []keySpec{{notes: "RW and ACCESS due to the optional `GET` argument",
				flags: []string{"RW", "access", "update", "variable_flags"}, index: 1, lastKey: 0, keyStep: 1}},
			run: cmdSet},
		{name: "del", arity: -2, flags: []string{"write"}, firstKey: 1, lastKey: -1, step: 1,
			acl:      []string{"@keyspace", "@write", "@slow"},
			tips:     []string{"request_policy:multi_shard", "response_policy:agg_sum"},
			keySpecs: all(1, "RM", "delete"), run: cmdDel},
		{name: "exists", arity: -2, flags: roFast, firstKey: 1, lastKey: -1, step: 1,
			acl:      []string{"@keyspace", "@read", "@fast"},
			tips:     []string{"request_policy:multi_shard", "response_policy:agg_sum"},
			keySpecs: all(1, "RO"), run: cmdExists},
		{name: "append", arity: 3, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("RW", "insert"), run: cmdAppend},
		{name: "unlink", arity: -2, flags: []string{"write", "fast"}, firstKey: 1, lastKey: -1, step: 1,
			acl:      []string{"@keyspace", "@write", "@fast"},
			tips:     []string{"request_policy:multi_shard", "response_policy:agg_sum"},
			keySpecs: all(1, "RM", "delete"), run: cmdDel},
		{name: "setnx", arity: 3, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("OW", "insert"), run: cmdSetNX},
		{name: "getset", arity: 3, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("RW", "access", "update"), run: cmdGetSet},
		{name: "getex", arity: -2, flags: []string{"write", "fast"}, firstKey: 1, lastKey: 1, step: 1,
			acl: aclWStrF, keySpecs: []keySpec{{notes: "RW and UPDATE because it changes the TTL",
				flags: []string{"RW", "access", "update"}, index: 1, keyStep: 1}}, run: cmdGetEx},
		{name: "getdel", arity: 2, flags: []string{"write", "fast"}, firstKey: 1, lastKey: 1, step: 1,
			acl: aclWStrF, keySpecs: one("RW", "access", "delete"), run: cmdGetDel},
		{name: "getrange", arity: 4, flags: []string{"readonly"}, firstKey: 1, lastKey: 1, step: 1,
			acl: []string{"@read", "@string", "@slow"}, keySpecs: one("RO", "access"), run: cmdGetRange},
		{name: "strlen", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1, acl: aclReadStr,
			keySpecs: one("RO"), run: cmdStrLen},
		{name: "type", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1,
			acl: []string{"@keyspace", "@read", "@fast"}, keySpecs: one("RO"), run: cmdType},
		{name: "ttl", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyR, tips: nondetOut, keySpecs: one("RO", "access"), run: cmdTTL},
		{name: "pttl", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyR, tips: nondetOut, keySpecs: one("RO", "access"), run: cmdPTTL},
		{name: "expiretime", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyR, keySpecs: one("RO", "access"), run: cmdExpireTime},
		{name: "pexpiretime", arity: 2, flags: roFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyR, keySpecs: one("RO", "access"), run: cmdPExpireTime},
		{name: "expire", arity: -3, flags: wFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyW, keySpecs: one("RW", "update"), run: cmdExpire},
		{name: "pexpire", arity: -3, flags: wFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyW, keySpecs: one("RW", "update"), run: cmdPExpire},
		{name: "expireat", arity: -3, flags: wFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyW, keySpecs: one("RW", "update"), run: cmdExpireAt},
		{name: "pexpireat", arity: -3, flags: wFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyW, keySpecs: one("RW", "update"), run: cmdPExpireAt},
		{name: "persist", arity: 2, flags: wFast, firstKey: 1, lastKey: 1, step: 1,
			acl: aclKeyW, keySpecs: one("RW", "update"), run: cmdPersist},
		{name: "setex", arity: 4, flags: wDeny, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrS,
			keySpecs: one("OW", "update"), run: cmdSetEx},
		{name: "psetex", arity: 4, flags: wDeny, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrS,
			keySpecs: one("OW", "update"), run: cmdPSetEx},
		{name: "incr", arity: 2, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("RW", "access", "update"), run: cmdIncr},
		{name: "decr", arity: 2, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("RW", "access", "update"), run: cmdDecr},
		{name: "incrby", arity: 3, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("RW", "access", "update"), run: cmdIncrBy},
		{name: "decrby", arity: 3, flags: wDenyFast, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrF,
			keySpecs: one("RW", "access", "update"), run: cmdDecrBy},
		{name: "mget", arity: -2, flags: roFast, firstKey: 1, lastKey: -1, step: 1, acl: aclReadStr,
			tips:     []string{"request_policy:multi_shard"},
			keySpecs: all(1, "RO", "access"), run: cmdMGet},
		{name: "mset", arity: -3, flags: wDeny, firstKey: 1, lastKey: -1, step: 2, acl: aclWStrS,
			tips:     []string{"request_policy:multi_shard", "response_policy:all_succeeded"},
			keySpecs: all(2, "OW", "update"), run: cmdMSet},
		{name: "dbsize", arity: 1, flags: roFast, acl: []string{"@keyspace", "@read", "@fast"},
			tips: []string{"request_policy:all_shards", "response_policy:agg_sum"}, run: cmdDBSize},
		{name: "scan", arity: -2, flags: []string{"readonly"}, acl: []string{"@keyspace", "@read", "@slow"},
			tips: []string{"nondeterministic_output", "request_policy:special"}, run: cmdScan},
		{name: "ping", arity: -1, flags: []string{"fast"}, acl: aclConnF,
			tips: []string{"request_policy:all_shards", "response_policy:all_succeeded"}, run: cmdPing},
		{name: "echo", arity: 2, flags: connFast, acl: aclConnF, run: cmdEcho},
		{name: "info", arity: -1, flags: []string{"loading", "stale"}, acl: []string{"@slow", "@dangerous"},
			tips: []string{"nondeterministic_output", "request_policy:all_shards", "response_policy:special"},
			run:  cmdInfo},
		{name: "hello", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"},
			acl: aclConnF, run: cmdHello},
		{name: "auth", arity: -2, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"},
			acl: aclConnF, run: cmdAuth},
		{name: "select", arity: 2, flags: connFast, acl: aclConnF, run: cmdSelect},
		{name: "quit", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"},
			acl: aclConnF, run: cmdQuit},
		{name: "readonly", arity: 1, flags: connFast, acl: aclConnF, run: cmdReadOnly},
		{name: "readwrite", arity: 1, flags: connFast, acl: aclConnF, run: cmdReadWrite},
		{name: "asking", arity: 1, flags: []string{"fast"}, acl: aclConnF, run: cmdAsking},
		{name: "command", arity: -1, flags: []string{"loading", "stale"}, acl: aclConnS,
			tips: nondetOrd, run: cmdCommand, subs: subTable("command", []*command{
				{name: "count", arity: 2, flags: []string{"loading", "stale"}, acl: aclConnS, run: cmdCommandCount},
				{name: "info", arity: -2, flags: []string{"loading", "stale"}, acl: aclConnS, tips: nondetOrd, run: cmdCommandInfo},
				{name: "docs", arity: -2, flags: []string{"loading", "stale"}, acl: aclConnS, tips: nondetOrd, run: cmdCommandDocs},
				{name: "list", arity: -2, flags: []string{"loading", "stale"}, acl: aclConnS, tips: nondetOrd, run: cmdCommandList},
			})},
		{name: "cluster", arity: -2, acl: aclSlow, subs: subTable("cluster", []*command{
			{name: "slots", arity: 2, flags: []string{"loading", "stale"}, acl: aclSlow, tips: nondetOut, run: cmdClusterSlots},
			{name: "shards", arity: 2, flags: []string{"loading", "stale"}, acl: aclSlow, tips: nondetOut, run: cmdClusterShards},
			{name: "nodes", arity: 2, flags: []string{"loading", "stale"}, acl: aclSlow, tips: nondetOut, run: cmdClusterNodes},
			{name: "info", arity: 2, flags: []string{"loading", "stale"}, acl: aclSlow, tips: nondetOut, run: cmdClusterInfo},
			{name: "keyslot", arity: 3, flags: []string{"stale"}, acl: aclSlow, run: cmdClusterKeySlot},
			{name: "myid", arity: 2, flags: []string{"loading", "stale"}, acl: aclSlow, run: cmdClusterMyID},
		})},
		{name: "client", arity: -2, acl: aclSlow, subs: subTable("client", []*command{
			{name: "setname", arity: 3, flags: []string{"noscript", "loading", "stale"}, acl: aclConnS, run: cmdClientSetName},
			{name: "getname", arity: 2, flags: []string{"noscript", "loading", "stale"}, acl: aclConnS, run: cmdClientGetName},
			{name: "setinfo", arity: 4, flags: []string{"noscript", "loading", "stale"}, acl: aclConnS, run: cmdClientSetInfo},
			{name: "capa", arity: -3, flags: []string{"noscript", "loading", "stale"}, acl: aclConnS, run: cmdClientCapa},
			{name: "id", arity: 2, flags: []string{"noscript", "loading", "stale"}, acl: aclConnS, run: cmdClientID},
			{name: "info", arity: 2, flags: []string{"noscript", "loading", "stale"}, acl: aclConnS, tips: nondetOut, run: cmdClientInfo},
			{name: "list", arity: -2, flags: []string{"admin", "noscript", "loading", "stale"},
				acl: []string{"@admin", "@slow", "@dangerous", "@connection"}, tips: nondetOut, run: cmdClientList},
		})},
		{name: "shoal.at", arity: -5, flags: []string{"write"}, acl: aclSlow, run: cmdShoalAt},
		{name: "shoal.fwd", arity: -3, acl: aclSlow, run: cmdShoalFwd},
		{name: "shoal.cas", arity: -4, flags: wDeny, firstKey: 1, lastKey: 1, step: 1, acl: aclWStrS,
			keySpecs: one("RW", "access", "update"), run: cmdShoalCAS},
		{name: "shoal.pull", arity: 5, flags: []string{"admin"}, acl: aclAdmin, run: cmdShoalPull},
		{name: "shoal.drop", arity: 4, flags: []string{"admin", "write"}, acl: aclAdmin, run: cmdShoalDrop},
		{name: "config", arity: -2, acl: aclSlow, subs: subTable("config", []*command{
			{name: "get", arity: -3, flags: []string{"admin", "noscript", "loading", "stale"}, acl: aclAdmin, run: cmdConfigGet},
		})},
	}
	commands = make(map[string]*command, len(top))
	for _, cmd := range top {
		cmd.fullName = cmd.name
		cmd.subList = cmd.subcommands()
		cmd.setAccess()
		cmd.pipelined = slices.Contains(pipelinedCommands, cmd.name)
		commands[cmd.name] = cmd
		commandList = append(commandList, cmd)
	}
	slices.SortFunc(commandList, func(a, b *command) int { return strings.Compare(a.name, b.name) })
}

// subTable finishes the subcommands of a container command: it sets their full names
// ("cluster|slots") and returns them keyed by lowercase name.
func subTable(parent string, subs []*command) map[string]*command {
	m := make(map[string]*command, len(subs))
	for _, s := range subs {
		s.fullName = parent + "|" + s.name
		s.setAccess()
		m[s.name] = s
	}
	return m
}

// lookupCommand finds the top-level command for name, case-insensitively, without allocating.
func (c *conn) lookupCommand(name []byte) *command {
	l := lowerInto(c.nameBuf[:], name)
	if l == nil {
		return nil
	}
	return commands[string(l)]
}

// lookupSub finds a subcommand of a container command, case-insensitively.
func (c *conn) lookupSub(cmd *command, name []byte) *command {
	l := lowerInto(c.nameBuf[:], name)
	if l == nil {
		return nil
	}
	return cmd.subs[string(l)]
}

// lookupFullName resolves "get" or "cluster|slots" (any case), as COMMAND INFO accepts.
func lookupFullName(name string) *command {
	lower := []byte(name)
	lowerInto(lower, lower)
	for i, ch := range lower {
		if ch == '|' {
			parent := commands[string(lower[:i])]
			if parent == nil || parent.subs == nil {
				return nil
			}
			return parent.subs[string(lower[i+1:])]
		}
	}
	return commands[string(lower)]
}

// subcommands returns the subcommands of cmd in name order.
func (cmd *command) subcommands() []*command {
	if len(cmd.subs) == 0 {
		return nil
	}
	out := make([]*command, 0, len(cmd.subs))
	for _, s := range cmd.subs {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return out
}

// writeCommandInfo writes the Redis 7 ten-element COMMAND description of cmd: name, arity,
// flags, first key, last key, step, ACL categories, tips, key specs, subcommands. go-redis
// requires exactly 6, 7 or 10 elements and reads the tips to route multi-key commands.
func writeCommandInfo(c *conn, cmd *command) {
	w := c.w
	w.ArrayHeader(10)
	w.BulkString(cmd.fullName)
	w.Int(int64(cmd.arity))
	writeSimpleStrings(c, cmd.flags)
	w.Int(int64(cmd.firstKey))
	w.Int(int64(cmd.lastKey))
	w.Int(int64(cmd.step))
	writeSimpleStrings(c, cmd.acl)
	writeBulkStrings(c, cmd.tips)
	w.ArrayHeader(len(cmd.keySpecs))
	for _, ks := range cmd.keySpecs {
		// In RESP2 a map is a flat array of alternating keys and values.
		if ks.notes != "" {
			w.ArrayHeader(8)
			w.BulkString("notes")
			w.BulkString(ks.notes)
		} else {
			w.ArrayHeader(6)
		}
		w.BulkString("flags")
		writeSimpleStrings(c, ks.flags)
		w.BulkString("begin_search")
		w.ArrayHeader(4)
		w.BulkString("type")
		w.BulkString("index")
		w.BulkString("spec")
		w.ArrayHeader(2)
		w.BulkString("index")
		w.Int(int64(ks.index))
		w.BulkString("find_keys")
		w.ArrayHeader(4)
		w.BulkString("type")
		w.BulkString("range")
		w.BulkString("spec")
		w.ArrayHeader(6)
		w.BulkString("lastkey")
		w.Int(int64(ks.lastKey))
		w.BulkString("keystep")
		w.Int(int64(ks.keyStep))
		w.BulkString("limit")
		w.Int(0)
	}
	w.ArrayHeader(len(cmd.subList))
	for _, s := range cmd.subList {
		writeCommandInfo(c, s)
	}
}

// writeSimpleStrings writes an array of simple strings, the type Redis uses for flags.
func writeSimpleStrings(c *conn, ss []string) {
	c.w.ArrayHeader(len(ss))
	for _, s := range ss {
		c.w.SimpleString(s)
	}
}

// writeBulkStrings writes an array of bulk strings.
func writeBulkStrings(c *conn, ss []string) {
	c.w.ArrayHeader(len(ss))
	for _, s := range ss {
		c.w.BulkString(s)
	}
}

// cmdCommand answers COMMAND with the description of every command.
func cmdCommand(c *conn, args [][]byte) {
	c.w.ArrayHeader(len(commandList))
	for _, cmd := range commandList {
		writeCommandInfo(c, cmd)
	}
}

// cmdCommandCount answers COMMAND COUNT.
func cmdCommandCount(c *conn, args [][]byte) {
	c.w.Int(int64(len(commandList)))
}

// cmdCommandInfo answers COMMAND INFO [name ...]; without names it describes every command,
// and an unknown name gets a null entry, as in Redis 7.
func cmdCommandInfo(c *conn, args [][]byte) {
	if len(args) == 2 {
		cmdCommand(c, args)
		return
	}
	c.w.ArrayHeader(len(args) - 2)
	for _, name := range args[2:] {
		if cmd := lookupFullName(string(name)); cmd != nil {
			writeCommandInfo(c, cmd)
		} else {
			c.w.Null()
		}
	}
}

// cmdCommandDocs answers COMMAND DOCS with an empty reply: Shoal ships no command docs, and
// redis-cli only uses them for interactive hints.
func cmdCommandDocs(c *conn, args [][]byte) {
	c.w.ArrayHeader(0)
}

// cmdCommandList answers COMMAND LIST (without FILTERBY) with every command and subcommand name.
func cmdCommandList(c *conn, args [][]byte) {
	if len(args) > 2 {
		c.w.Error(errSyntax)
		return
	}
	// Redis lists subcommands too, by full name ("cluster|slots").
	n := len(commandList)
	for _, cmd := range commandList {
		n += len(cmd.subList)
	}
	c.w.ArrayHeader(n)
	for _, cmd := range commandList {
		c.w.BulkString(cmd.fullName)
		for _, sub := range cmd.subList {
			c.w.BulkString(sub.fullName)
		}
	}
}

// appendInt formats n into the connection's scratch buffer, for replies that carry numbers
// as strings (SCAN cursors) without allocating.
func (c *conn) appendInt(n uint64) []byte {
	return strconv.AppendUint(c.numBuf[:0], n, 10)
}
