package secretfile_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/adapters/secretfile"
)

// logBuffer is a log the tests read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

func newWatcher(tb testing.TB) (*secretfile.Watcher, *logBuffer) {
	tb.Helper()
	var lb logBuffer
	return secretfile.NewWatcher(slog.New(slog.NewTextHandler(&lb, nil))), &lb
}

func write(tb testing.TB, path, data string) {
	tb.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// metrics gathers w's metrics as "name{labels}" -> value.
func metrics(tb testing.TB, w *secretfile.Watcher) map[string]float64 {
	tb.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(w)
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			default:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestText rotates a secret in a file: a Check loads the new contents,
// keeps the previous value at hand and tells subscribers; a file that
// cannot be loaded leaves the value as it was, logged once and counted.
func TestText(t *testing.T) {
	w, log := newWatcher(t)
	path := filepath.Join(t.TempDir(), "password")
	write(t, path, "first\n")
	v, err := w.Text("redis.password", path)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Get(); got != "first" {
		t.Fatalf("got %q, want %q (trailing line break trimmed)", got, "first")
	}
	if _, ok := v.Previous(); ok {
		t.Error("Previous before any change: got a value, want none")
	}
	var seen []string
	v.OnChange(func(s string) { seen = append(seen, s) })

	w.Check()
	if got := v.Get(); got != "first" || len(seen) != 0 {
		t.Fatalf("unchanged file: got %q and %d notifications, want %q and none", got, len(seen), "first")
	}
	write(t, path, "second")
	w.Check()
	prev, _ := v.Previous()
	if got := v.Get(); got != "second" || prev != "first" {
		t.Fatalf("changed file: got %q (previous %q), want %q (previous %q)", got, prev, "second", "first")
	}
	if len(seen) != 1 || seen[0] != "second" {
		t.Errorf("notifications: got %q, want [second]", seen)
	}
	for _, bad := range []struct {
		name string
		do   func()
	}{
		{"emptied", func() { write(t, path, "\n") }},
		{"removed", func() { os.Remove(path) }},
	} {
		bad.do()
		w.Check()
		w.Check()
		if got := v.Get(); got != "second" {
			t.Errorf("%s: got %q, want the last good value %q", bad.name, got, "second")
		}
	}
	if n := log.count("secret not reloaded"); n != 2 {
		t.Errorf("got %d warnings for two failures checked twice each, want 2 (each logged once)", n)
	}
	m := metrics(t, w)
	if got, want := m[`fraise_secret_reloads_total{result=loaded,secret=redis.password}`], 1.0; got != want {
		t.Errorf("loaded: got %v, want %v", got, want)
	}
	if got, want := m[`fraise_secret_reloads_total{result=failed,secret=redis.password}`], 4.0; got != want {
		t.Errorf("failed: got %v, want %v", got, want)
	}
	write(t, path, "third")
	w.Check()
	if got := v.Get(); got != "third" {
		t.Errorf("after recovery: got %q, want %q", got, "third")
	}
	if _, err := w.Text("missing", path+".missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing file at start: got %v, want an error naming the value", err)
	}
}

// pki is a CA with a server and a client certificate.
type pki struct {
	dir                   string
	ca                    *devcerts.CA
	serverCert, serverKey string
	clientCert, clientKey string
}

func newPKI(tb testing.TB, dir string) *pki {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	ca, err := devcerts.NewCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"), "test CA", 0)
	if err != nil {
		tb.Fatal(err)
	}
	p := &pki{dir: dir, ca: ca,
		serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server-key.pem"),
		clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem")}
	p.issueServer(tb)
	p.issueClient(tb, devcerts.GatewayName)
	return p
}

func (p *pki) issueServer(tb testing.TB) *x509.Certificate {
	tb.Helper()
	c, err := p.ca.Issue(p.serverCert, p.serverKey, devcerts.Leaf{Name: "localhost", Hosts: []string{"localhost", "127.0.0.1"}, Server: true})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func (p *pki) issueClient(tb testing.TB, name string) *x509.Certificate {
	tb.Helper()
	c, err := p.ca.Issue(p.clientCert, p.clientKey, devcerts.Leaf{Name: name, Client: true})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestKeyPair replaces a certificate's key, then the certificate: the pair
// in use stays until the two match again.
func TestKeyPair(t *testing.T) {
	w, _ := newWatcher(t)
	p := newPKI(t, t.TempDir())
	v, err := w.KeyPair("tls.server_cert", p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	first := v.Get().Leaf.SerialNumber
	before := metrics(t, w)[`fraise_tls_certificate_expiry_timestamp_seconds{certificate=tls.server_cert}`]
	if want := float64(v.Get().Leaf.NotAfter.Unix()); before != want {
		t.Errorf("expiry: got %v, want %v", before, want)
	}

	other := newPKI(t, filepath.Join(t.TempDir(), "other"))
	b, err := os.ReadFile(other.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p.serverKey, string(b)) // a key of another certificate
	w.Check()
	if got := v.Get().Leaf.SerialNumber; got.Cmp(first) != 0 {
		t.Fatalf("a key that does not match: got serial %v, want the pair in use (%v)", got, first)
	}
	renewed := p.issueServer(t)
	w.Check()
	if got := v.Get().Leaf.SerialNumber; got.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("a matching pair: got serial %v, want the renewed %v", got, renewed.SerialNumber)
	}
}

// serve accepts TLS connections with cfg and, for each, writes the client
// certificate's common name ("-" for none) and closes.
func serve(tb testing.TB, cfg *tls.Config) string {
	tb.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				name := "-"
				if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
					name = pc[0].Subject.CommonName
				}
				_, _ = io.WriteString(tc, name)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects with cfg and returns the server's certificate and what
// the server wrote.
func dial(addr string, cfg *tls.Config) (*x509.Certificate, string, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		return nil, "", err
	}
	if len(b) == 0 {
		return nil, "", errors.New("closed without an answer")
	}
	return c.ConnectionState().PeerCertificates[0], string(b), nil
}

// TestTLSRotation runs a listener and a client on watched files and
// renews the server's certificate, the client's, and the CA: each new
// connection presents and verifies what the files hold at that moment.
func TestTLSRotation(t *testing.T) {
	w, _ := newWatcher(t)
	dir := t.TempDir()
	p := newPKI(t, dir)
	serverCert, err := w.KeyPair("tls.server_cert", p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := w.KeyPair("tls.gateway_cert", p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle.pem")
	caPEM, _ := os.ReadFile(p.ca.CertFile)
	write(t, bundle, string(caPEM))
	cas, err := w.CertPool("tls.ca", bundle)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, secretfile.ServerTLS{Cert: serverCert, ClientCAs: cas, ClientSANs: []string{devcerts.GatewayName}}.Config())
	client := secretfile.ClientTLS{RootCAs: cas, Cert: clientCert, ServerName: "localhost"}

	check := func(step, wantServerSerial, wantClient string) {
		t.Helper()
		got, name, err := dial(addr, client.Config())
		if err != nil {
			t.Fatalf("%s: got %v, want served", step, err)
		}
		if got.SerialNumber.String() != wantServerSerial || name != wantClient {
			t.Fatalf("%s: got server serial %s and client %q, want %s and %q", step, got.SerialNumber, name, wantServerSerial, wantClient)
		}
	}
	check("start", serverCert.Get().Leaf.SerialNumber.String(), devcerts.GatewayName)

	renewed := p.issueServer(t)
	w.Check()
	check("server certificate renewed", renewed.SerialNumber.String(), devcerts.GatewayName)

	// A client certificate naming someone the server does not accept.
	p.issueClient(t, "someone.else")
	w.Check()
	if _, _, err := dial(addr, client.Config()); err == nil {
		t.Fatal("a client certificate with another SAN: got served, want refused")
	}
	p.issueClient(t, devcerts.GatewayName)
	w.Check()
	check("client certificate renewed", renewed.SerialNumber.String(), devcerts.GatewayName)

	// A new CA: first both in the bundle, then certificates of the new
	// one, then the old CA removed.
	next := newPKI(t, filepath.Join(dir, "next"))
	nextPEM, _ := os.ReadFile(next.ca.CertFile)
	write(t, bundle, string(caPEM)+string(nextPEM))
	w.Check()
	nextServer, err := next.ca.Issue(p.serverCert, p.serverKey, devcerts.Leaf{Name: "localhost", Hosts: []string{"localhost"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := next.ca.Issue(p.clientCert, p.clientKey, devcerts.Leaf{Name: devcerts.GatewayName, Client: true}); err != nil {
		t.Fatal(err)
	}
	w.Check()
	check("certificates of the new CA", nextServer.SerialNumber.String(), devcerts.GatewayName)
	write(t, bundle, string(nextPEM))
	w.Check()
	check("the old CA removed", nextServer.SerialNumber.String(), devcerts.GatewayName)

	// A client still trusting only the old CA is refused now.
	oldPool := x509.NewCertPool()
	oldPool.AppendCertsFromPEM(caPEM)
	old := client.Config()
	old.RootCAs = oldPool
	if _, _, err := dial(addr, old); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("a client trusting the removed CA: got %v, want unknown authority", err)
	}
}

// TestServerWithoutClientCAs is a listener that asks for no client
// certificate (the assertion JWKS port): any client that trusts its CA is
// served.
func TestServerWithoutClientCAs(t *testing.T) {
	w, _ := newWatcher(t)
	p := newPKI(t, t.TempDir())
	cert, err := w.KeyPair("tls.server_cert", p.serverCert, p.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := w.CertPool("tls.ca", p.ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, secretfile.ServerTLS{Cert: cert}.Config())
	if _, name, err := dial(addr, secretfile.ClientTLS{RootCAs: cas, ServerName: "localhost"}.Config()); err != nil || name != "-" {
		t.Fatalf("got %q, %v; want served without a client certificate", name, err)
	}
}
