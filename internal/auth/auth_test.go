package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const usersFile = `
# comment
default   nopass   read
app       s3cret   read,write
ops       0ps      admin
internal  long-pw  all
`

func mustStore(t *testing.T, text string) *Store {
	t.Helper()
	specs, err := ParseUsers(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(specs)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseAndAuthenticate(t *testing.T) {
	s := mustStore(t, usersFile)
	if s.Required() {
		t.Fatal("default user is nopass: AUTH must not be required")
	}
	if u := s.Initial(); u == nil || u.Name() != "default" || u.Rights() != Read {
		t.Fatalf("Initial = %+v", u)
	}
	for _, c := range []struct {
		user, pass string
		ok         bool
		rights     Right
	}{
		{"app", "s3cret", true, Read | Write},
		{"app", "s3cre", false, 0},
		{"app", "s3cret!", false, 0},
		{"app", "", false, 0},
		{"ops", "0ps", true, Admin},
		{"internal", "long-pw", true, All},
		{"default", "anything", true, Read}, // nopass accepts any password
		{"nobody", "s3cret", false, 0},
	} {
		u, ok := s.Authenticate([]byte(c.user), []byte(c.pass))
		if ok != c.ok || (ok && (u.Name() != c.user || u.Rights() != c.rights)) {
			t.Errorf("Authenticate(%q, %q) = %+v, %v", c.user, c.pass, u, ok)
		}
	}
}

func TestRequired(t *testing.T) {
	if (*Store)(nil).Required() {
		t.Fatal("nil store requires auth")
	}
	if u := (*Store)(nil).Initial(); u == nil || !u.Can(All) {
		t.Fatal("nil store: initial user must have every right")
	}
	if u, ok := (*Store)(nil).Authenticate([]byte("default"), []byte("x")); !ok || !u.Can(All) {
		t.Fatal("nil store: default user must accept any password")
	}
	s := mustStore(t, "app pw read\n")
	if !s.Required() || s.Initial() != nil {
		t.Fatal("no default user: AUTH must be required")
	}
	s = mustStore(t, "default pw all\n")
	if !s.Required() || s.Initial() != nil {
		t.Fatal("default user with a password: AUTH must be required")
	}
}

func TestCan(t *testing.T) {
	u := &User{rights: Read | Write}
	for _, c := range []struct {
		need Right
		ok   bool
	}{{None, true}, {Read, true}, {Write, true}, {Read | Write, true}, {Admin, false}, {Write | Admin, false}} {
		if u.Can(c.need) != c.ok {
			t.Errorf("Can(%v) = %v", c.need, !c.ok)
		}
	}
}

func TestForFlags(t *testing.T) {
	for _, c := range []struct {
		flags []string
		want  Right
	}{
		{[]string{"readonly", "fast"}, Read},
		{[]string{"write", "denyoom"}, Write},
		{[]string{"admin", "write"}, Write | Admin},
		{[]string{"admin", "noscript"}, Admin},
		{[]string{"fast"}, None},
		{nil, None},
	} {
		if got := ForFlags(c.flags); got != c.want {
			t.Errorf("ForFlags(%v) = %v, want %v", c.flags, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{
		"app pw\n",
		"app pw read extra\n",
		"app pw fly\n",
	} {
		if _, err := ParseUsers(strings.NewReader(text)); err == nil {
			t.Errorf("ParseUsers(%q): no error", text)
		}
	}
	if _, err := NewStore([]Spec{{Name: "a", Password: "x"}, {Name: "a", Password: "y"}}); err == nil {
		t.Error("duplicate user accepted")
	}
	if _, err := NewStore([]Spec{{Name: "a"}}); err == nil {
		t.Error("empty password accepted")
	}
}

func TestRightsString(t *testing.T) {
	for _, s := range []string{"read", "read,write", "admin", "all", "none", "write,admin"} {
		r, err := ParseRights(s)
		if err != nil {
			t.Fatal(err)
		}
		if r.String() != s {
			t.Errorf("%q -> %v -> %q", s, r, r.String())
		}
	}
}

func TestNoPerm(t *testing.T) {
	want := "NOPERM User app has no permissions to run the 'config|get' command"
	if got := NoPerm("app", "config|get"); got != want {
		t.Fatalf("got %q", got)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	if err := os.WriteFile(path, []byte(usersFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Options{UsersFile: path, InternalUser: "internal"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Username != "internal" || cfg.Password != "long-pw" || cfg.Store == nil {
		t.Fatalf("Load = %+v", cfg)
	}
	if _, err := Load(Options{UsersFile: path, InternalUser: "app"}); err == nil {
		t.Fatal("internal user without all rights accepted")
	}
	if _, err := Load(Options{UsersFile: path, NeedInternal: true}); err == nil {
		t.Fatal("users file whose default user lacks rights accepted as internal user")
	}
	if cfg, err := Load(Options{UsersFile: path}); err != nil || cfg.Password != "" {
		t.Fatalf("internal user not needed: %+v, %v", cfg, err)
	}
	if _, err := Load(Options{UsersFile: path, RequirePass: "x"}); err == nil {
		t.Fatal("--requirepass and a default line both accepted")
	}
	cfg, err = Load(Options{RequirePass: "pw", NeedInternal: true})
	if err != nil || cfg.Username != "default" || cfg.Password != "pw" || !cfg.Store.Required() {
		t.Fatalf("requirepass: %+v, %v", cfg, err)
	}
	cfg, err = Load(Options{})
	if err != nil || cfg.Store != nil || cfg.Password != "" {
		t.Fatalf("no auth: %+v, %v", cfg, err)
	}
	if _, err := Load(Options{UsersFile: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("missing users file accepted")
	}
}
