// Package devcerts creates a development certificate authority with a server
// certificate, a client certificate for end users (curl, Flight clients)
// and the gateway's client certificate (Envoy's towards the core and the
// sidecars), for `fraise certs`, `make run` and tests. These
// certificates are for loopback development only: production certificates
// come from the operator's own PKI.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files names the PEM files Generate writes.
type Files struct {
	CACert, CAKey         string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	// GatewayCert is the certificate Envoy presents to every upstream: the
	// core and the sidecars accept no other (its SAN is GatewayName).
	GatewayCert, GatewayKey string
	// CoreClientCert is the core's client certificate towards the rate
	// limiter, which its observers ask for per-action limits (its SAN is
	// CoreClientName).
	CoreClientCert, CoreClientKey string
}

// GatewayName is the DNS SAN of the gateway's development certificate, which
// the core, extauthz, the rate limiter and the xDS server pin
// (tls.gateway_san).
const GatewayName = "gateway.fraise.internal"

// CoreClientName is the DNS SAN of the core's development client
// certificate (tls.core_client_san).
const CoreClientName = "core.fraise.internal"

// FilesIn returns the file names Generate uses in dir.
func FilesIn(dir string) Files {
	j := func(n string) string { return filepath.Join(dir, n) }
	return Files{
		CACert: j("ca.pem"), CAKey: j("ca-key.pem"),
		ServerCert: j("server.pem"), ServerKey: j("server-key.pem"),
		ClientCert: j("client.pem"), ClientKey: j("client-key.pem"),
		GatewayCert: j("gateway.pem"), GatewayKey: j("gateway-key.pem"),
		CoreClientCert: j("core-client.pem"), CoreClientKey: j("core-client-key.pem"),
	}
}

// Options tunes Generate.
type Options struct {
	// Hosts are the server certificate's DNS names and IP addresses, in
	// addition to localhost, 127.0.0.1 and ::1.
	Hosts []string
	// ClientName is the client certificate's common name, which the gateway
	// passes to extauthz as the peer principal.
	ClientName string
	// Validity defaults to 30 days.
	Validity time.Duration
}

// Exists reports whether every file of a previous Generate in dir is there.
func Exists(dir string) bool {
	f := FilesIn(dir)
	for _, p := range []string{f.CACert, f.CAKey, f.ServerCert, f.ServerKey, f.ClientCert, f.ClientKey, f.GatewayCert, f.GatewayKey, f.CoreClientCert, f.CoreClientKey} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// Generate writes a new CA, a server certificate, a client certificate, the
// gateway's and the core's client certificates, all signed by the CA, into dir (created 0700); private keys are 0600.
func Generate(dir string, opts Options) (Files, error) {
	if opts.ClientName == "" {
		opts.ClientName = "fraise-dev-client"
	}
	if opts.Validity == 0 {
		opts.Validity = 30 * 24 * time.Hour
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("devcerts: %w", err)
	}
	f := FilesIn(dir)
	ca, err := NewCA(f.CACert, f.CAKey, "Fraise development CA", opts.Validity)
	if err != nil {
		return Files{}, err
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, opts.Hosts...)
	for _, l := range []struct {
		cert, key string
		leaf      Leaf
	}{
		{f.ServerCert, f.ServerKey, Leaf{Name: "localhost", Hosts: hosts, Server: true, Validity: opts.Validity}},
		{f.ClientCert, f.ClientKey, Leaf{Name: opts.ClientName, Client: true, Validity: opts.Validity}},
		{f.GatewayCert, f.GatewayKey, Leaf{Name: GatewayName, Client: true, Validity: opts.Validity}},
		{f.CoreClientCert, f.CoreClientKey, Leaf{Name: CoreClientName, Client: true, Validity: opts.Validity}},
	} {
		if _, err := ca.Issue(l.cert, l.key, l.leaf); err != nil {
			return Files{}, err
		}
	}
	return f, nil
}

// CA is a certificate authority whose key is at hand: it issues the
// certificates of a development stack, of the tests' throwaway servers,
// and the renewed certificates of rotation tests.
type CA struct {
	// CertFile is the CA's certificate (PEM): what the other side trusts.
	CertFile string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// Leaf describes a certificate a CA issues.
type Leaf struct {
	// Name is the subject's common name. PostgreSQL's cert authentication
	// takes it as the user name; a client certificate also carries it as a
	// DNS SAN, which Envoy reports as the peer principal and which the
	// internal servers pin (tls.gateway_san, tls.core_client_san).
	Name string
	// Hosts are a server certificate's DNS names and IP addresses.
	Hosts []string
	// Server and Client are the extended key usages.
	Server, Client bool
	// Validity defaults to 30 days; NotBefore is an hour ago.
	Validity time.Duration
}

// NewCA creates a CA named name, valid for validity (30 days when zero),
// and writes its certificate to certFile and its key to keyFile (0600).
func NewCA(certFile, keyFile, name string, validity time.Duration) (*CA, error) {
	if validity == 0 {
		validity = 30 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Fraise dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := errors.Join(writeKey(keyFile, key), writeCert(certFile, der)); err != nil {
		return nil, fmt.Errorf("devcerts: %w", err)
	}
	return &CA{CertFile: certFile, cert: cert, key: key}, nil
}

// LoadCA reads a CA that NewCA (or Generate) wrote.
func LoadCA(certFile, keyFile string) (*CA, error) {
	readPEM := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("devcerts: %w", err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("devcerts: %s: no PEM block", path)
		}
		return blk.Bytes, nil
	}
	cb, err := readPEM(certFile)
	if err != nil {
		return nil, err
	}
	kb, err := readPEM(keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(cb)
	if err != nil {
		return nil, fmt.Errorf("devcerts: %s: %w", certFile, err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb)
	if err != nil {
		return nil, fmt.Errorf("devcerts: %s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("devcerts: %s: want an ECDSA key, got %T", keyFile, k)
	}
	return &CA{CertFile: certFile, cert: cert, key: key}, nil
}

// Issue writes a new key to keyFile (0600) and a certificate for it
// signed by the CA to certFile, and returns the certificate. Each file is
// replaced atomically (written aside, then renamed), the key first: a
// process re-reading them sees the old pair, then for a moment a key that
// does not match its certificate (which it must refuse, keeping the old
// pair), then the new pair, and never half a file.
func (ca *CA) Issue(certFile, keyFile string, l Leaf) (*x509.Certificate, error) {
	if l.Validity == 0 {
		l.Validity = 30 * 24 * time.Hour
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	t := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.Name, Organization: []string{"Fraise dev"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(l.Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if l.Server {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if l.Client {
		t.ExtKeyUsage = append(t.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range l.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			t.IPAddresses = append(t.IPAddresses, ip)
		} else {
			t.DNSNames = append(t.DNSNames, h)
		}
	}
	if l.Client && l.Name != "" && !slices.Contains(t.DNSNames, l.Name) {
		// Envoy reports a client certificate's first SAN as the peer
		// principal, so the client's name is also its DNS SAN.
		t.DNSNames = append(t.DNSNames, l.Name)
	}
	der, err := x509.CreateCertificate(rand.Reader, t, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if err := writeKey(keyFile, key); err != nil {
		return nil, fmt.Errorf("devcerts: %w", err)
	}
	if err := writeCert(certFile, der); err != nil {
		return nil, fmt.Errorf("devcerts: %w", err)
	}
	return cert, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func writeCert(path string, der []byte) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile replaces path with data atomically: written to a file beside
// it, then renamed over it.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
