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
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Files{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Fraise development CA", Organization: []string{"Fraise dev"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return Files{}, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return Files{}, err
	}

	leaf := func(cn string, usage x509.ExtKeyUsage, hosts []string) ([]byte, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		t := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"Fraise dev"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(opts.Validity),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else {
				t.DNSNames = append(t.DNSNames, h)
			}
		}
		if usage == x509.ExtKeyUsageClientAuth {
			// Envoy reports a client certificate's first SAN as the peer
			// principal, so the client's name is also its DNS SAN.
			t.DNSNames = append(t.DNSNames, cn)
		}
		der, err := x509.CreateCertificate(rand.Reader, t, ca, &key.PublicKey, caKey)
		return der, key, err
	}
	hosts := append([]string{"localhost", "127.0.0.1", "::1"}, opts.Hosts...)
	srvDER, srvKey, err := leaf("localhost", x509.ExtKeyUsageServerAuth, hosts)
	if err != nil {
		return Files{}, err
	}
	cliDER, cliKey, err := leaf(opts.ClientName, x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return Files{}, err
	}
	gwDER, gwKey, err := leaf(GatewayName, x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return Files{}, err
	}
	coreDER, coreKey, err := leaf(CoreClientName, x509.ExtKeyUsageClientAuth, nil)
	if err != nil {
		return Files{}, err
	}
	err = errors.Join(
		writeCert(f.CACert, caDER), writeKey(f.CAKey, caKey),
		writeCert(f.ServerCert, srvDER), writeKey(f.ServerKey, srvKey),
		writeCert(f.ClientCert, cliDER), writeKey(f.ClientKey, cliKey),
		writeCert(f.GatewayCert, gwDER), writeKey(f.GatewayKey, gwKey),
		writeCert(f.CoreClientCert, coreDER), writeKey(f.CoreClientKey, coreKey),
	)
	if err != nil {
		return Files{}, fmt.Errorf("devcerts: %w", err)
	}
	return f, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func writeCert(path string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}
