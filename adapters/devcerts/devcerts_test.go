package devcerts_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fraise-dev/fraise/adapters/devcerts"
)

func mustPool(tb testing.TB, caFile string) *x509.CertPool {
	tb.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		tb.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		tb.Fatalf("%s: no certificate", caFile)
	}
	return p
}

// TestIssue checks that a CA, new or loaded again from its files, issues
// certificates that verify against it for their usage and names, and that
// a reissue replaces the files whole.
func TestIssue(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcerts.NewCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), "test CA", 0)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := devcerts.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := mustPool(t, ca.CertFile)
	for _, tc := range []struct {
		name  string
		ca    *devcerts.CA
		leaf  devcerts.Leaf
		usage x509.ExtKeyUsage
		dns   string // a name Verify must accept ("" for a client)
	}{
		{"server", ca, devcerts.Leaf{Name: "pg", Hosts: []string{"localhost", "127.0.0.1"}, Server: true}, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"client", ca, devcerts.Leaf{Name: "fraise_app", Client: true}, x509.ExtKeyUsageClientAuth, ""},
		{"from a loaded CA", loaded, devcerts.Leaf{Name: "gateway.fraise.internal", Client: true}, x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			certFile, keyFile := filepath.Join(dir, tc.name+".pem"), filepath.Join(dir, tc.name+"-key.pem")
			cert, err := tc.ca.Issue(certFile, keyFile, tc.leaf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.dns, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatalf("verify: got %v, want a certificate of the CA", err)
			}
			if cert.Subject.CommonName != tc.leaf.Name {
				t.Errorf("common name: got %q, want %q", cert.Subject.CommonName, tc.leaf.Name)
			}
			if tc.leaf.Client && !slices.Contains(cert.DNSNames, tc.leaf.Name) {
				t.Errorf("DNS SANs: got %q, want the client's name %q among them", cert.DNSNames, tc.leaf.Name)
			}
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatalf("the files: got %v, want a matching pair", err)
			}
			again, err := tc.ca.Issue(certFile, keyFile, tc.leaf)
			if err != nil {
				t.Fatal(err)
			}
			if again.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				t.Error("a reissue has the same serial, want a new one")
			}
			pair2, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				t.Fatalf("the reissued files: got %v, want a matching pair", err)
			}
			if string(pair2.Certificate[0]) == string(pair.Certificate[0]) {
				t.Error("the certificate file was not replaced")
			}
			if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode: got %v (%v), want 0600", fi.Mode().Perm(), err)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name()[0] == '.' {
			t.Errorf("left behind %s, want no temporary file", e.Name())
		}
	}
}

// TestGenerate checks the development set: every certificate verifies
// against the CA for its usage.
func TestGenerate(t *testing.T) {
	f, err := devcerts.Generate(t.TempDir(), devcerts.Options{Hosts: []string{"server.fraise.internal"}})
	if err != nil {
		t.Fatal(err)
	}
	if !devcerts.Exists(filepath.Dir(f.CACert)) {
		t.Fatal("Exists: got false after Generate, want true")
	}
	pool := mustPool(t, f.CACert)
	for _, tc := range []struct {
		name, cert, key string
		usage           x509.ExtKeyUsage
		dns             string
	}{
		{"server", f.ServerCert, f.ServerKey, x509.ExtKeyUsageServerAuth, "server.fraise.internal"},
		{"client", f.ClientCert, f.ClientKey, x509.ExtKeyUsageClientAuth, ""},
		{"gateway", f.GatewayCert, f.GatewayKey, x509.ExtKeyUsageClientAuth, devcerts.GatewayName},
		{"core client", f.CoreClientCert, f.CoreClientKey, x509.ExtKeyUsageClientAuth, devcerts.CoreClientName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tc.cert, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: tc.dns, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatalf("got %v, want a certificate of the CA", err)
			}
		})
	}
}
