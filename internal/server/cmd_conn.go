package server

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/auth"
)

// redisVersion is the Redis version whose behaviour Shoal reproduces; tools read it from
// HELLO and INFO to decide which commands and reply formats to expect.
const redisVersion = "7.2.0"

// cmdPing answers PING [message].
func cmdPing(c *conn, args [][]byte) {
	switch len(args) {
	case 1:
		c.w.SimpleString("PONG")
	case 2:
		c.w.Bulk(args[1])
	default:
		c.arityError("ping")
	}
}

// cmdEcho answers ECHO message.
func cmdEcho(c *conn, args [][]byte) { c.w.Bulk(args[1]) }

// cmdHello answers HELLO [protover [AUTH user pass] [SETNAME name]]. Only RESP2 is spoken, so
// HELLO 3 gets NOPROTO, on which go-redis and other clients fall back to RESP2; HELLO or
// HELLO 2 gets the server description as a flat RESP2 array.
func cmdHello(c *conn, args [][]byte) {
	if len(args) >= 2 {
		ver, ok := parseInt(args[1])
		if !ok {
			c.w.Error(errProtoNotInt)
			return
		}
		if ver != 2 {
			c.w.Error(errNoProto)
			return
		}
	}
	var user, pass, name []byte
	setName := false
	for j := 2; j < len(args); j++ {
		more := len(args) - 1 - j
		switch {
		case equalFold(args[j], "auth") && more >= 2:
			user, pass = args[j+1], args[j+2]
			j += 2
		case equalFold(args[j], "setname") && more >= 1:
			name, setName = args[j+1], true
			j++
		default:
			c.w.Error("ERR Syntax error in HELLO option '" + string(args[j]) + "'")
			return
		}
	}
	if user != nil && !c.login(user, pass) {
		c.w.Error(errWrongPass)
		return
	}
	if user == nil && !c.authenticated() {
		c.w.Error(auth.ErrHelloNoAuth)
		return
	}
	if setName {
		if !validClientAttr(name) {
			c.w.Error(errClientName)
			return
		}
		c.mu.Lock()
		c.name = string(name)
		c.mu.Unlock()
	}
	w := c.w
	w.ArrayHeader(14)
	w.BulkString("server")
	w.BulkString("redis")
	w.BulkString("version")
	w.BulkString(redisVersion)
	w.BulkString("proto")
	w.Int(2)
	w.BulkString("id")
	w.Int(c.id)
	w.BulkString("mode")
	w.BulkString("cluster")
	w.BulkString("role")
	w.BulkString("master")
	w.BulkString("modules")
	w.ArrayHeader(0)
}

// cmdAuth answers AUTH [user] password (see cmdAuthACL in access.go).
func cmdAuth(c *conn, args [][]byte) { cmdAuthACL(c, args) }

// cmdSelect answers SELECT db: cluster mode has only database 0.
func cmdSelect(c *conn, args [][]byte) {
	id, ok := parseInt(args[1])
	if !ok {
		c.w.Error(errNotInteger)
		return
	}
	if id < math.MinInt32 || id > math.MaxInt32 {
		c.w.Error(errIntRange)
		return
	}
	if id != 0 {
		c.w.Error(errSelectCluster)
		return
	}
	c.w.SimpleString("OK")
}

// cmdQuit answers QUIT and closes the connection once the reply is written.
func cmdQuit(c *conn, args [][]byte) {
	c.w.SimpleString("OK")
	c.quit = true
}

// cmdReadOnly answers READONLY: the client accepts reads from replicas.
func cmdReadOnly(c *conn, args [][]byte) {
	c.readOnly = true
	c.w.SimpleString("OK")
}

// cmdReadWrite answers READWRITE, undoing READONLY.
func cmdReadWrite(c *conn, args [][]byte) {
	c.readOnly = false
	c.w.SimpleString("OK")
}

// cmdAsking answers ASKING: the next command may address a slot being imported.
func cmdAsking(c *conn, args [][]byte) {
	c.asking = true
	c.w.SimpleString("OK")
}

// validClientAttr reports whether a client name or library attribute is acceptable to Redis:
// printable ASCII without spaces, so that CLIENT LIST stays parseable.
func validClientAttr(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

// cmdClientSetName answers CLIENT SETNAME name; an empty name clears it.
func cmdClientSetName(c *conn, args [][]byte) {
	if !validClientAttr(args[2]) {
		c.w.Error(errClientName)
		return
	}
	c.mu.Lock()
	c.name = string(args[2])
	c.mu.Unlock()
	c.w.SimpleString("OK")
}

// cmdClientGetName answers CLIENT GETNAME.
func cmdClientGetName(c *conn, args [][]byte) {
	c.mu.Lock()
	name := c.name
	c.mu.Unlock()
	if name == "" {
		c.w.Null()
		return
	}
	c.w.BulkString(name)
}

// cmdClientSetInfo answers CLIENT SETINFO LIB-NAME|LIB-VER value, which client libraries
// send on every new connection.
func cmdClientSetInfo(c *conn, args [][]byte) {
	attr, val := args[2], args[3]
	var dst *string
	switch {
	case equalFold(attr, "lib-name"):
		dst = &c.libName
	case equalFold(attr, "lib-ver"):
		dst = &c.libVer
	default:
		c.w.Error("ERR Unrecognized option '" + string(attr) + "'")
		return
	}
	if !validClientAttr(val) {
		c.w.Error("ERR " + string(attr) + " cannot contain spaces, newlines or special characters.")
		return
	}
	c.mu.Lock()
	*dst = string(val)
	c.mu.Unlock()
	c.w.SimpleString("OK")
}

// cmdClientID answers CLIENT ID.
func cmdClientID(c *conn, args [][]byte) { c.w.Int(c.id) }

// cmdClientInfo answers CLIENT INFO with this connection's CLIENT LIST line.
func cmdClientInfo(c *conn, args [][]byte) {
	var b strings.Builder
	c.describe(&b, time.Now())
	c.w.BulkString(b.String())
}

// cmdClientList answers CLIENT LIST (without filters) with one line per connection.
func cmdClientList(c *conn, args [][]byte) {
	if len(args) > 2 {
		c.w.Error(errSyntax)
		return
	}
	var b strings.Builder
	now := time.Now()
	for _, o := range c.s.snapshotClients() {
		o.describe(&b, now)
	}
	c.w.BulkString(b.String())
}

// describe appends the connection's CLIENT LIST line, a subset of Redis's fields in Redis's
// order so that tools splitting on spaces and '=' read it.
func (c *conn) describe(b *strings.Builder, now time.Time) {
	c.mu.Lock()
	name, lib, ver := c.name, c.libName, c.libVer
	c.mu.Unlock()
	cmdName := "NULL"
	if cmd := c.lastCmd.Load(); cmd != nil {
		cmdName = cmd.fullName
	}
	idle := now.Sub(time.Unix(0, c.lastActive.Load())) / time.Second
	if idle < 0 {
		idle = 0
	}
	b.WriteString("id=" + strconv.FormatInt(c.id, 10))
	b.WriteString(" addr=" + c.addr)
	b.WriteString(" laddr=" + c.laddr)
	b.WriteString(" name=" + name)
	b.WriteString(" age=" + strconv.FormatInt(int64(now.Sub(c.born)/time.Second), 10))
	b.WriteString(" idle=" + strconv.FormatInt(int64(idle), 10))
	b.WriteString(" flags=N db=0 sub=0 psub=0 ssub=0 multi=-1")
	b.WriteString(" cmd=" + cmdName)
	b.WriteString(" user=" + c.userName() + " redir=-1 resp=2")
	b.WriteString(" lib-name=" + lib)
	b.WriteString(" lib-ver=" + ver)
	b.WriteString("\n")
}

// configParams are the parameters CONFIG GET reports. redis-benchmark asks for "save" and
// "appendonly"; the rest describe Shoal's fixed behaviour to tools that ask.
func (s *Server) configParams() [][2]string {
	port := "0"
	if a := s.Addr(); a != nil {
		if _, p, err := splitHostPort(a.String()); err == nil {
			port = p
		}
	}
	return [][2]string{
		{"appendonly", "no"},
		{"cluster-enabled", "yes"},
		{"databases", "1"},
		{"maxclients", strconv.Itoa(s.maxConns)},
		{"maxmemory", strconv.FormatInt(max(s.cfg.MaxMemory, 0), 10)},
		{"maxmemory-policy", "noeviction"},
		{"port", port},
		{"proto-max-bulk-len", strconv.Itoa(s.limits.MaxBulk)},
		{"save", ""},
		{"timeout", strconv.FormatInt(int64(s.cfg.IdleTimeout/time.Second), 10)},
	}
}

// cmdConfigGet answers CONFIG GET pattern [pattern ...] with name/value pairs of the
// parameters matching any pattern (glob, case-insensitive), each reported once.
func cmdConfigGet(c *conn, args [][]byte) {
	params := c.s.configParams()
	var out [][2]string
	for _, p := range params {
		for _, pat := range args[2:] {
			if globMatch(string(pat), p[0], true) {
				out = append(out, p)
				break
			}
		}
	}
	c.w.ArrayHeader(2 * len(out))
	for _, p := range out {
		c.w.BulkString(p[0])
		c.w.BulkString(p[1])
	}
}
