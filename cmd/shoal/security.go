package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-kv/shoal/internal/auth"
	"github.com/shoal-kv/shoal/internal/tlsconf"
)

// securityFlags are the access-control and TLS flags shared by server and controller.
type securityFlags struct {
	users, requirePass, internalUser *string
	cert, key, ca                    *string
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	return &securityFlags{
		users:        fs.String("users", "", "users file: lines 'name password rights' (rights: read, write, admin, all; password 'nopass' for none); clients must AUTH unless the default user is nopass"),
		requirePass:  fs.String("requirepass", "", "password of the default user (rights all), as Redis's requirepass"),
		internalUser: fs.String("internal-user", "", "user (from --users, rights all) this process authenticates as to other nodes and the controller; default: the default user with --requirepass"),
		cert:         fs.String("tls-cert", "", "PEM certificate of this process, for the client port, the peer port (mutual TLS) and dialing other nodes; needs --tls-key and --tls-ca"),
		key:          fs.String("tls-key", "", "PEM private key of --tls-cert"),
		ca:           fs.String("tls-ca", "", "PEM CA bundle verifying other nodes (and client certificates when offered)"),
	}
}

// security is what the flags load to.
type security struct {
	auth auth.Config
	tls  *tlsconf.Set // nil without TLS
}

// load reads the files the flags name; needInternal demands credentials for this process's
// own connections to other nodes (servers forward to each other; a controller dials no one).
func (f *securityFlags) load(needInternal bool) (security, error) {
	a, err := auth.Load(auth.Options{UsersFile: *f.users, RequirePass: *f.requirePass,
		InternalUser: *f.internalUser, NeedInternal: needInternal})
	if err != nil {
		return security{}, err
	}
	t, err := tlsconf.Load(tlsconf.Files{Cert: *f.cert, Key: *f.key, CA: *f.ca})
	if err != nil {
		return security{}, err
	}
	return security{auth: a, tls: t}, nil
}

// serverTLS, peerTLS and dialTLS return the configurations for each role, nil without TLS.
func (s security) serverTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Server
}

func (s security) peerTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Peer
}

func (s security) dialTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Client
}

// byteSize is a flag taking a byte count the way Redis's config does: a plain number, or one
// with a unit k, kb, m, mb, g, gb (k = 1000, kb = 1024, ...).
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseBytes(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}, {"b", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative byte count such as 1073741824, 512mb or 2gb")
	}
	if n > (1<<63-1)/mult {
		return 0, errors.New("byte count overflows")
	}
	return n * mult, nil
}

// seconds is a flag taking a duration as Redis's timeout does (whole seconds), or as a Go
// duration ("1m30s").
type seconds time.Duration

func (d *seconds) String() string { return time.Duration(*d).String() }

func (d *seconds) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		*d = seconds(time.Duration(n) * time.Second)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want seconds (300) or a duration (5m): %q", s)
	}
	*d = seconds(v)
	return nil
}
