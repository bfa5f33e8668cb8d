package server

import (
	"slices"
	"sync/atomic"

	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/keyspace"
	"github.com/shoal-kv/shoal/internal/resp"
)

// aclState is a connection's identity. The user is written only by the connection's own
// goroutine (AUTH, HELLO) but read by CLIENT LIST from others, hence the atomic.
type aclState struct {
	user atomic.Pointer[auth.User] // nil: not authenticated yet
}

// userName returns the connection's user for CLIENT LIST ("default" before AUTH, as Redis).
func (c *conn) userName() string {
	if u := c.acl.user.Load(); u != nil {
		return u.Name()
	}
	return auth.DefaultUser
}

// initACL gives a new connection its starting identity: the default user when it needs no
// password. Otherwise the connection is unauthenticated, and its reader accepts only small
// requests until AUTH succeeds, as Redis limits unauthenticated clients, so that an
// anonymous peer cannot make the server buffer a 512 MiB argument.
func (c *conn) initACL() {
	if u := c.s.cfg.Auth.Initial(); u != nil {
		c.acl.user.Store(u)
		return
	}
	c.r.SetLimits(unauthLimits(c.s.limits))
}

// unauthLimits are the read limits of a connection before AUTH: Redis allows unauthenticated
// clients multibulks of at most 10 arguments and bulks of at most 16 KiB.
func unauthLimits(l resp.Limits) resp.Limits {
	l.MaxArray = min(l.MaxArray, 10)
	l.MaxBulk = min(l.MaxBulk, 16<<10)
	l.MaxInline = min(l.MaxInline, 16<<10)
	l.MaxBuffered = min(l.MaxBuffered, 64<<10)
	return l
}

// setUser records a successful authentication, lifting the unauthenticated read limits.
func (c *conn) setUser(u *auth.User) {
	if c.acl.user.Swap(u) == nil {
		c.r.SetLimits(c.s.limits)
	}
}

// permit decides whether the connection may run cmd now, in Redis's order: authentication
// (NOAUTH), then the user's rights (NOPERM), then the memory limit (OOM) for commands that
// may add data. It writes the refusal and returns false, or returns true without writing.
// Commands marked no_auth (AUTH, HELLO, QUIT) run before authentication.
func (c *conn) permit(cmd *command, args [][]byte) bool {
	if msg := c.refusal(cmd, args); msg != "" {
		c.w.Error(msg)
		return false
	}
	return true
}

// refusal returns the error permit would reply for cmd, or "" when it may run. It writes
// nothing, so a pipelined write can be checked before it is started out of line.
func (c *conn) refusal(cmd *command, args [][]byte) string {
	s := c.s
	if s.cfg.Auth != nil {
		u := c.acl.user.Load()
		if u == nil {
			if !cmd.noAuth {
				return auth.ErrNoAuth
			}
		} else if !u.Can(cmd.rights) {
			return auth.NoPerm(u.Name(), cmd.fullName)
		}
	}
	if s.cfg.MaxMemory > 0 && s.cfg.UsedMemory != nil && s.cfg.UsedMemory() >= s.cfg.MaxMemory &&
		slices.Contains(cmd.flags, "denyoom") && c.addsLocally(cmd, args) {
		return auth.ErrOOM
	}
	return ""
}

// addsLocally reports whether a data-adding command would store some of its keys in this
// node's group. Only those are refused for memory: a key another group serves is forwarded,
// and its owner applies its own limit.
func (c *conn) addsLocally(cmd *command, args [][]byte) bool {
	loc := c.s.cfg.Router
	if loc == nil || cmd.firstKey == 0 {
		return true
	}
	keys := keyRefs{args: args, cmd: cmd}
	for i := range keys.Len() {
		if local, _ := loc.Locate(keyspace.Slot(keys.At(i))); local {
			return true
		}
	}
	return false
}

// setAccess derives what running cmd requires from its COMMAND flags.
func (cmd *command) setAccess() {
	cmd.rights = auth.ForFlags(cmd.flags)
	cmd.noAuth = slices.Contains(cmd.flags, "no_auth")
}

// cmdAuthACL answers AUTH [user] password with Redis 7's replies.
func cmdAuthACL(c *conn, args [][]byte) {
	st := c.s.cfg.Auth
	var user, pass []byte
	switch len(args) {
	case 2:
		if !st.Required() {
			c.w.Error(auth.ErrAuthNoPassword)
			return
		}
		user, pass = []byte(auth.DefaultUser), args[1]
	case 3:
		user, pass = args[1], args[2]
	default:
		c.w.Error(errSyntax)
		return
	}
	if !c.login(user, pass) {
		c.w.Error(auth.ErrWrongPass)
		return
	}
	c.w.SimpleString("OK")
}

// login authenticates the connection as user, reporting success. A failure leaves the
// connection's identity unchanged, as in Redis.
func (c *conn) login(user, pass []byte) bool {
	u, ok := c.s.cfg.Auth.Authenticate(user, pass)
	if !ok {
		c.s.log.Debug("authentication failed", "id", c.id, "remote", c.addr, "user", string(user))
		return false
	}
	c.setUser(u)
	return true
}

// authenticated reports whether the connection may run commands (for HELLO without AUTH).
func (c *conn) authenticated() bool { return c.s.cfg.Auth == nil || c.acl.user.Load() != nil }
