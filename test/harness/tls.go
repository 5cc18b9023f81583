package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/fraise-dev/fraise/adapters/devcerts"
)

// ServerTLS is a throwaway server's TLS: a CA of its own, which signed the
// server's certificate (for 127.0.0.1 and localhost) and signs client
// certificates on demand. No other server trusts this CA, so a client that
// trusts another server's CA refuses this one.
type ServerTLS struct {
	// CA is the CA's certificate file: the root a client verifies the
	// server with.
	CA string
	// Cert and Key are the server's certificate and key files.
	Cert, Key string

	dir string
	ca  *devcerts.CA

	mu      sync.Mutex
	clients map[string][2]string
}

// newServerTLS creates a CA and a server certificate under dir, both
// owned by uid and gid when they are not -1 (PostgreSQL reads its key as
// its own user, and refuses a key others may read).
func newServerTLS(dir, name string, uid, gid int) (*ServerTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	t := &ServerTLS{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "server.pem"),
		Key: filepath.Join(dir, "server-key.pem"), dir: dir, clients: map[string][2]string{}}
	ca, err := devcerts.NewCA(t.CA, filepath.Join(dir, "ca-key.pem"), name+" test CA", 0)
	if err != nil {
		return nil, err
	}
	t.ca = ca
	if _, err := ca.Issue(t.Cert, t.Key, devcerts.Leaf{Name: name, Hosts: []string{"127.0.0.1", "localhost", "::1"}, Server: true}); err != nil {
		return nil, err
	}
	if uid >= 0 {
		for _, p := range []string{dir, t.CA, t.Cert, t.Key} {
			if err := os.Chown(p, uid, gid); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// ClientCert returns the files of a client certificate for name signed by
// the server's CA, issued at the first call: PostgreSQL's cert
// authentication takes its common name as the user.
func (t *ServerTLS) ClientCert(tb testing.TB, name string) (cert, key string) {
	tb.Helper()
	cert, key, err := t.clientCert(name)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

func (t *ServerTLS) clientCert(name string) (cert, key string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if f, ok := t.clients[name]; ok {
		return f[0], f[1], nil
	}
	cert, key = filepath.Join(t.dir, "client-"+name+".pem"), filepath.Join(t.dir, "client-"+name+"-key.pem")
	if _, err := t.ca.Issue(cert, key, devcerts.Leaf{Name: name, Client: true}); err != nil {
		return "", "", fmt.Errorf("harness: %w", err)
	}
	t.clients[name] = [2]string{cert, key}
	return cert, key, nil
}

// ClientConfig is the TLS configuration of a client of the server: it
// trusts the server's CA alone, verifies the server as 127.0.0.1 and
// presents a client certificate for name.
func (t *ServerTLS) ClientConfig(tb testing.TB, name string) *tls.Config {
	tb.Helper()
	cert, key := t.ClientCert(tb, name)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{RootCAs: t.Pool(tb), Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// Pool is the pool of the server's CA.
func (t *ServerTLS) Pool(tb testing.TB) *x509.CertPool {
	tb.Helper()
	b, err := os.ReadFile(t.CA)
	if err != nil {
		tb.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		tb.Fatalf("%s: no certificate", t.CA)
	}
	return p
}

// IssueClient writes a new client certificate for name to cert and key,
// replacing whatever is there (atomically, the key first): a rotation
// test renews a client's certificate in place with it.
func (t *ServerTLS) IssueClient(tb testing.TB, name, cert, key string) *x509.Certificate {
	tb.Helper()
	c, err := t.ca.Issue(cert, key, devcerts.Leaf{Name: name, Client: true})
	if err != nil {
		tb.Fatal(fmt.Errorf("harness: %w", err))
	}
	return c
}
