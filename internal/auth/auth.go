// Package auth holds Shoal's users and their rights: a small subset of Redis ACLs with three
// rights (read, write, admin), passwords compared in constant time, and Redis's exact error
// texts for the front ends to send.
//
// The package is pure: it parses a users file and answers questions; the RESP servers
// (internal/server, internal/controller) keep the per-connection state.
//
// # Users file
//
// One user per line, fields separated by white space, '#' starting a comment line:
//
//	# name      password          rights
//	default     nopass            read
//	app         s3cret            read,write
//	ops         0ps-pass          all
//	internal    long-random-pass  all
//
// rights is a comma-separated list of read, write and admin, or all (all three). The password
// "nopass" means the user accepts any password, as Redis's nopass flag does; a default user
// with nopass lets clients in without AUTH. Passwords cannot contain white space.
//
// Without a users file and without a password for the default user, there is no access
// control: the default user is nopass with every right, as in a Redis without a config.
// When a users file is given and defines no "default" line (and no --requirepass is set), the
// default user does not exist, so every client must AUTH as a named user.
package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Right is a set of permissions. Commands need a set; a user may run a command when its
// rights include every right the command needs.
type Right uint8

// The rights. None is what connection commands need (PING, AUTH, CLUSTER SLOTS, ...).
const (
	// Read allows commands that read keys (GET, MGET, EXISTS, SCAN, DBSIZE, CTL QUERY).
	Read Right = 1 << iota
	// Write allows commands that change keys (SET, DEL, INCR, MSET, APPEND, SHOAL.CAS).
	Write
	// Admin allows operations on the cluster itself: controller changes (CTL JOIN, ...),
	// shard hand-offs between servers (SHOAL.PULL, SHOAL.DROP), CONFIG, CLIENT LIST.
	Admin
	// None is the empty set.
	None Right = 0
	// All is every right.
	All = Read | Write | Admin
)

// String lists the rights as the users file spells them ("read,write").
func (r Right) String() string {
	if r == All {
		return "all"
	}
	var parts []string
	for _, x := range []struct {
		r    Right
		name string
	}{{Read, "read"}, {Write, "write"}, {Admin, "admin"}} {
		if r&x.r != 0 {
			parts = append(parts, x.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// ParseRights parses "read,write", "admin", "all" or "none".
func ParseRights(s string) (Right, error) {
	var r Right
	for part := range strings.SplitSeq(s, ",") {
		switch strings.ToLower(strings.TrimSpace(part)) {
		case "read":
			r |= Read
		case "write":
			r |= Write
		case "admin":
			r |= Admin
		case "all":
			r |= All
		case "none":
		default:
			return 0, fmt.Errorf("unknown right %q (want read, write, admin, all or none)", part)
		}
	}
	return r, nil
}

// ForFlags returns the rights a server command needs, derived from its Redis COMMAND flags:
// "readonly" needs Read, "write" needs Write, "admin" needs Admin; a command without these
// (PING, AUTH, CLUSTER SLOTS, COMMAND, ...) needs nothing beyond being authenticated.
func ForFlags(flags []string) Right {
	var r Right
	for _, f := range flags {
		switch f {
		case "readonly":
			r |= Read
		case "write":
			r |= Write
		case "admin":
			r |= Admin
		}
	}
	return r
}

// NoPassword is the password field value that makes a user accept any password.
const NoPassword = "nopass"

// DefaultUser is the name of the user a connection starts as, and the user AUTH <password>
// authenticates.
const DefaultUser = "default"

// Spec is one user as configured, with its password in clear (the binary needs it to
// authenticate its own connections to other nodes). NoPass users have an empty Password.
type Spec struct {
	Name     string
	Password string
	NoPass   bool
	Rights   Right
}

// User is an authenticated identity. Users are immutable; connections share them.
type User struct {
	name   string
	hash   [sha256.Size]byte
	nopass bool
	rights Right
}

// Name returns the user's name, as NOPERM errors and CLIENT LIST show it.
func (u *User) Name() string { return u.name }

// Rights returns the user's rights.
func (u *User) Rights() Right { return u.rights }

// Can reports whether the user holds every right in need.
func (u *User) Can(need Right) bool { return u.rights&need == need }

// Store is an immutable set of users. A nil *Store means "no access control": every
// connection is the default user with every right. Its methods are safe for concurrent use.
type Store struct {
	users map[string]*User
	// dummy is compared against when the user does not exist, so that the time AUTH takes
	// does not tell whether a user name exists.
	dummy [sha256.Size]byte
}

// NewStore builds a Store from specs. It returns nil (no access control) when specs is empty.
func NewStore(specs []Spec) (*Store, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	s := &Store{users: make(map[string]*User, len(specs)), dummy: sha256.Sum256([]byte("\x00shoal-no-such-user"))}
	for _, sp := range specs {
		if sp.Name == "" || strings.ContainsAny(sp.Name, " \t\r\n") {
			return nil, fmt.Errorf("auth: invalid user name %q", sp.Name)
		}
		if _, dup := s.users[sp.Name]; dup {
			return nil, fmt.Errorf("auth: user %q defined twice", sp.Name)
		}
		if !sp.NoPass && sp.Password == "" {
			return nil, fmt.Errorf("auth: user %q has an empty password (use %q for none)", sp.Name, NoPassword)
		}
		s.users[sp.Name] = &User{name: sp.Name, hash: sha256.Sum256([]byte(sp.Password)), nopass: sp.NoPass, rights: sp.Rights}
	}
	return s, nil
}

// Required reports whether connections must authenticate before running commands: true
// unless the default user exists with nopass. A nil Store never requires it. When it is
// false, AUTH <password> (the one-argument form) is a configuration mistake that Redis
// answers with ErrAuthNoPassword.
func (s *Store) Required() bool {
	if s == nil {
		return false
	}
	u := s.users[DefaultUser]
	return u == nil || !u.nopass
}

// Initial returns the user a new connection starts as: the default user when it needs no
// password (or when s is nil, a default user with every right), otherwise nil.
func (s *Store) Initial() *User {
	if s == nil {
		return openDefault
	}
	if u := s.users[DefaultUser]; u != nil && u.nopass {
		return u
	}
	return nil
}

// openDefault is the default user of a server without access control. It is never modified.
var openDefault = &User{name: DefaultUser, nopass: true, rights: All}

// Authenticate returns the user named name if pass is its password (or it is nopass). The
// comparison takes the same time whether or not the user exists and whatever the password's
// length: both sides are hashed and the hashes compared with subtle.ConstantTimeCompare.
func (s *Store) Authenticate(name, pass []byte) (*User, bool) {
	if s == nil {
		// Without access control only the default user exists, and it accepts any password.
		if string(name) == DefaultUser {
			return openDefault, true
		}
		return nil, false
	}
	h := sha256.Sum256(pass)
	u := s.users[string(name)]
	want := &s.dummy
	if u != nil {
		want = &u.hash
	}
	ok := subtle.ConstantTimeCompare(h[:], want[:]) == 1
	if u == nil {
		return nil, false
	}
	if u.nopass || ok {
		return u, true
	}
	return nil, false
}

// Exact Redis 7 error texts (without the leading '-').
const (
	// ErrNoAuth answers a command other than AUTH, HELLO or QUIT before authentication.
	ErrNoAuth = "NOAUTH Authentication required."
	// ErrWrongPass answers AUTH or HELLO ... AUTH with bad credentials.
	ErrWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	// ErrAuthNoPassword answers AUTH <password> when the default user has no password.
	ErrAuthNoPassword = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	// ErrHelloNoAuth answers HELLO without AUTH from a connection that is not authenticated.
	ErrHelloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	// ErrOOM answers a command that would add data while memory is over the limit.
	ErrOOM = "OOM command not allowed when used memory > 'maxmemory'."
)

// NoPerm returns Redis 7's error for a user lacking the rights to run cmd (its full name in
// lowercase, "get" or "config|get").
func NoPerm(user, cmd string) string {
	return "NOPERM User " + user + " has no permissions to run the '" + cmd + "' command"
}

// ParseUsers reads a users file (see the package documentation).
func ParseUsers(r io.Reader) ([]Spec, error) {
	var out []Spec
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want 'name password rights', got %d fields", line, len(f))
		}
		rights, err := ParseRights(f[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		sp := Spec{Name: f[0], Password: f[1], Rights: rights}
		if f[1] == NoPassword {
			sp.Password, sp.NoPass = "", true
		}
		out = append(out, sp)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	return out, nil
}

// Options are the access-control settings of a process, as its flags give them.
type Options struct {
	// UsersFile is a users file path ("" for none).
	UsersFile string
	// RequirePass sets the default user's password (all rights), as Redis's requirepass.
	RequirePass string
	// InternalUser names the user this process authenticates as when it talks to other nodes
	// and to the controller; "" means the default user with RequirePass.
	InternalUser string
	// NeedInternal makes Load fail when access control is on and no internal credentials can
	// be found. Servers need them (they forward to each other); a controller does not.
	NeedInternal bool
}

// Config is the result of loading Options: the Store servers check against, and the
// credentials the process itself uses for cluster-internal connections.
type Config struct {
	Store *Store
	// Username and Password authenticate internal connections; empty Password means none.
	Username, Password string
}

// Load reads the users file (if any), applies RequirePass and picks the internal credentials.
// With access control on, the internal user must hold every right: servers forward any
// command to each other and hand shards over (admin), and report load to the controller.
func Load(o Options) (Config, error) {
	var specs []Spec
	if o.UsersFile != "" {
		f, err := os.Open(o.UsersFile)
		if err != nil {
			return Config{}, fmt.Errorf("users file: %w", err)
		}
		specs, err = ParseUsers(f)
		f.Close()
		if err != nil {
			return Config{}, fmt.Errorf("users file %s: %w", o.UsersFile, err)
		}
	}
	if o.RequirePass != "" {
		for _, sp := range specs {
			if sp.Name == DefaultUser {
				return Config{}, errors.New("--requirepass and a 'default' line in the users file both set the default user")
			}
		}
		specs = append(specs, Spec{Name: DefaultUser, Password: o.RequirePass, Rights: All})
	}
	st, err := NewStore(specs)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{Store: st}
	if st == nil {
		if o.InternalUser != "" {
			return Config{}, errors.New("--internal-user needs --users")
		}
		return cfg, nil
	}
	if !o.NeedInternal && o.InternalUser == "" {
		return cfg, nil
	}
	name := o.InternalUser
	if name == "" {
		name = DefaultUser
	}
	for _, sp := range specs {
		if sp.Name != name {
			continue
		}
		if sp.Rights != All {
			return Config{}, fmt.Errorf("internal user %q must have rights 'all' (it has %s)", name, sp.Rights)
		}
		cfg.Username, cfg.Password = sp.Name, sp.Password
		if sp.NoPass {
			cfg.Password = "nopass" // any password is accepted; send one so AUTH selects the user
		}
		return cfg, nil
	}
	return Config{}, fmt.Errorf("internal user %q is not defined (set --internal-user to a user of the users file with rights 'all', or --requirepass)", name)
}
