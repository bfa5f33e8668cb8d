package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names GenerateDemo writes in its directory.
const (
	CAFile   = "ca.pem"
	CertFile = "node.pem"
	KeyFile  = "node-key.pem"
)

// GenerateDemo makes dir hold a throwaway CA certificate and one node certificate and key
// signed by it (ECDSA P-256, valid for 127.0.0.1, ::1 and localhost, for both server and
// client authentication), and returns their paths. Files already present are kept, so a demo
// restarted on the same directory keeps trusting its nodes. The CA's private key is never
// written: nothing can be signed by it once this returns.
func GenerateDemo(dir string) (Files, error) {
	f := Files{CA: filepath.Join(dir, CAFile), Cert: filepath.Join(dir, CertFile), Key: filepath.Join(dir, KeyFile)}
	present := 0
	for _, p := range []string{f.CA, f.Cert, f.Key} {
		if _, err := os.Stat(p); err == nil {
			present++
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Files{}, fmt.Errorf("tls: %w", err)
		}
	}
	if present == 3 {
		return f, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("tls: %w", err)
	}
	caPEM, certPEM, keyPEM, err := Generate([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, []string{"localhost"}, 365*24*time.Hour)
	if err != nil {
		return Files{}, err
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CA, caPEM, 0o644}, {f.Cert, certPEM, 0o644}, {f.Key, keyPEM, 0o600}} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return Files{}, fmt.Errorf("tls: %w", err)
		}
	}
	return f, nil
}

// Generate returns PEM encodings of a new CA certificate, and of a certificate and PKCS#8 key
// signed by it for the given IP and DNS names, usable for server and client authentication.
func Generate(ips []net.IP, dns []string, valid time.Duration) (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: generate CA key: %w", err)
	}
	now := time.Now().Add(-time.Hour) // tolerate clock skew between processes
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "shoal demo CA", Organization: []string{"shoal"}},
		NotBefore:             now,
		NotAfter:              now.Add(valid),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: parse CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: generate node key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "shoal node", Organization: []string{"shoal"}},
		NotBefore:    now,
		NotAfter:     now.Add(valid),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: create node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("tls: encode node key: %w", err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return caPEM, certPEM, keyPEM, nil
}

// serial returns a random 128-bit certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("tlsconf: crypto/rand: %v", err)) // never fails on supported platforms
	}
	return n
}

// DemoSet generates (or reuses) the throwaway CA and node certificate in dir, as GenerateDemo,
// and loads them: what the demo and tests use to run a TLS cluster on 127.0.0.1.
func DemoSet(dir string) (*Set, error) {
	f, err := GenerateDemo(dir)
	if err != nil {
		return nil, err
	}
	return Load(f)
}
