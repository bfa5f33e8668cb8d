// Package tlsconf builds the TLS configurations of a Shoal process from its --tls-cert,
// --tls-key and --tls-ca files, and generates a throwaway CA and node certificate for the demo.
//
// One certificate serves a process in every role: it is presented on the client port, on the
// raft peer port, and when the process dials other nodes (forwarding, shard hand-off, the
// controller). The CA file verifies everyone else. So a node certificate needs both the
// serverAuth and clientAuth extended key usages, and an IP or DNS SAN for each address other
// nodes dial it at.
//
// The peer port uses mutual TLS: a node accepts a raft connection only from a peer presenting
// a certificate signed by the CA, and verifies the peer it dials. The client port verifies a
// client certificate when one is offered but does not require one (redis-cli --tls --cacert
// connects without one); clients are authenticated by AUTH.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Files names a process's PEM files.
type Files struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is set.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// Set holds the configurations derived from one Files.
type Set struct {
	// Server is for the client (RESP) port: the node certificate; client certificates are
	// verified against the CA when offered.
	Server *tls.Config
	// Peer is for the raft peer port, used both to accept (requiring and verifying a client
	// certificate) and to dial (verifying the server and presenting the node certificate).
	Peer *tls.Config
	// Client is for dialing other processes' client ports (forwarding, hand-offs, the
	// controller): the CA as roots, the node certificate offered. Use ForAddr per address.
	Client *tls.Config
}

// Load reads f and returns the configurations, or nil when no file is set. The certificate,
// key and CA must be given together.
func Load(f Files) (*Set, error) {
	if !f.Enabled() {
		return nil, nil
	}
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("tls: --tls-cert, --tls-key and --tls-ca must be given together")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: load key pair: %w", err)
	}
	pool, err := LoadCA(f.CA)
	if err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	srv := base.Clone()
	srv.ClientCAs = pool
	srv.ClientAuth = tls.VerifyClientCertIfGiven
	peer := base.Clone()
	peer.MinVersion = tls.VersionTLS13 // only Shoal speaks to this port
	peer.ClientCAs, peer.RootCAs = pool, pool
	peer.ClientAuth = tls.RequireAndVerifyClientCert
	cli := base.Clone()
	cli.RootCAs = pool
	return &Set{Server: srv, Peer: peer, Client: cli}, nil
}

// LoadCA reads a PEM bundle of CA certificates.
func LoadCA(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: %s holds no PEM certificate", path)
	}
	return pool, nil
}

// ClientOnly returns a configuration trusting the CA in caFile, for tools (shoal ctl) that
// only verify the server.
func ClientOnly(caFile string) (*tls.Config, error) {
	pool, err := LoadCA(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// ForAddr returns cfg for dialing addr: a clone with ServerName set to addr's host when cfg
// has none, so the certificate is checked against the address actually dialled. It returns
// nil for a nil cfg.
func ForAddr(cfg *tls.Config, addr string) *tls.Config {
	if cfg == nil {
		return nil
	}
	c := cfg.Clone()
	if c.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		c.ServerName = host
	}
	return c
}
