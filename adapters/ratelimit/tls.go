package ratelimit

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"google.golang.org/grpc/credentials"
)

// ErrTLS marks the errors of the TLS settings: a file missing, unreadable,
// without a certificate, or a key that does not match its certificate.
var ErrTLS = errors.New("ratelimit TLS")

// ServerTLS names the PEM files of the gRPC port's mutual TLS, the only
// way to reach it.
type ServerTLS struct {
	// CA verifies client certificates: it alone, never the system's roots.
	CA string
	// Cert and Key are the service's certificate and key.
	Cert, Key string
	// ClientSANs are the names (DNS or URI SANs) a client certificate must
	// carry one of: the gateway's and the core's. Any other certificate of
	// the same CA, an end user's, is refused.
	ClientSANs []string
}

// ClientTLS names the PEM files with which a client (ActionLimiter)
// reaches the service.
type ClientTLS struct {
	// CA verifies the service's certificate: it alone, never the system's
	// roots.
	CA string
	// Cert and Key are the client's certificate, one the service accepts
	// (its SAN among the service's ServerTLS.ClientSANs).
	Cert, Key string
	// ServerName is the name expected on the service's certificate; empty
	// uses the host of the address dialled.
	ServerName string
}

// pemFile is a file as it was last read.
type pemFile struct {
	path string
	last []byte
}

func (f *pemFile) read() ([]byte, error) { return os.ReadFile(f.path) }

// serverCreds is the gRPC port's TLS configuration, rebuilt from its files
// when one of them changes: each handshake reads them (a few hundred bytes
// each, against the milliseconds of the handshake's own signatures; gRPC
// connections are long-lived), so a renewed certificate is served from the
// next connection on, and a broken renewal keeps the last good one.
type serverCreds struct {
	files [3]pemFile // certificate, key, CA
	sans  map[string]bool
	log   *slog.Logger

	mu     sync.Mutex
	cfg    *tls.Config
	warned string // the last reload error logged: each is logged once
}

func newServerCreds(t ServerTLS, log *slog.Logger) (*serverCreds, error) {
	var errs []error
	if t.CA == "" {
		errs = append(errs, errors.New("a CA file is required"))
	}
	if t.Cert == "" || t.Key == "" {
		errs = append(errs, errors.New("a certificate and key file are required"))
	}
	sans := map[string]bool{}
	for _, s := range t.ClientSANs {
		if s != "" {
			sans[s] = true
		}
	}
	if len(sans) == 0 {
		errs = append(errs, errors.New("at least one client SAN is required: the gateway's"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	c := &serverCreds{files: [3]pemFile{{path: t.Cert}, {path: t.Key}, {path: t.CA}}, sans: sans, log: log}
	cur, err := c.readAll()
	if err != nil {
		return nil, err
	}
	if err := c.load(cur); err != nil {
		return nil, err
	}
	return c, nil
}

// config returns the listener's TLS configuration: every handshake gets
// the configuration of the current files.
func (c *serverCreds) config() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: c.forClient,
	}
}

func (c *serverCreds) readAll() ([3][]byte, error) {
	var cur [3][]byte
	for i := range c.files {
		b, err := c.files[i].read()
		if err != nil {
			return cur, fmt.Errorf("%w: %w", ErrTLS, err)
		}
		cur[i] = b
	}
	return cur, nil
}

func (c *serverCreds) forClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, err := c.readAll()
	if err == nil && c.same(cur) {
		return c.cfg, nil
	}
	if err == nil {
		err = c.load(cur)
	}
	if err != nil && err.Error() != c.warned {
		c.warned = err.Error()
		c.log.Warn("rate limiter TLS files not reloaded; the previous certificate stays", "err", err)
	}
	return c.cfg, nil
}

func (c *serverCreds) same(cur [3][]byte) bool {
	for i := range cur {
		if !bytes.Equal(cur[i], c.files[i].last) {
			return false
		}
	}
	return true
}

// load builds the configuration from the files' contents cur.
func (c *serverCreds) load(cur [3][]byte) error {
	cert, err := tls.X509KeyPair(cur[0], cur[1])
	if err != nil {
		return fmt.Errorf("%w: %s, %s: %w", ErrTLS, c.files[0].path, c.files[1].path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cur[2]) {
		return fmt.Errorf("%w: no certificate in CA file %s", ErrTLS, c.files[2].path)
	}
	c.cfg = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// The listener is TLS itself (grpc.Server serves it as a plain
		// connection), so it negotiates HTTP/2 here: gRPC clients require
		// it.
		NextProtos: []string{"h2"},
		// Every connection is verified in full against the current CA and
		// names: a session resumed from a ticket would skip a CA change.
		SessionTicketsDisabled: true,
		VerifyConnection:       c.verify,
	}
	for i := range c.files {
		c.files[i].last = cur[i]
	}
	return nil
}

// verify accepts a verified client certificate only when it names one of
// the allowed SANs.
func (c *serverCreds) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("ratelimit: no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	for _, n := range leaf.DNSNames {
		if c.sans[n] {
			return nil
		}
	}
	for _, u := range leaf.URIs {
		if c.sans[u.String()] {
			return nil
		}
	}
	return fmt.Errorf("ratelimit: client certificate %q names none of the accepted clients", leaf.Subject.CommonName)
}

// keyPair is a client certificate re-read from its files when they change,
// for the same reason and at the same moments as serverCreds.
type keyPair struct {
	cert, key pemFile
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	warned  string // as serverCreds.warned
}

func (k *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	err := k.reload()
	if err != nil && k.current == nil {
		return nil, err
	}
	return k.current, nil
}

// reload loads the files when they changed; when they cannot be loaded
// the previous certificate, if any, stays (and the error is logged once).
func (k *keyPair) reload() error {
	err := k.load()
	if err != nil && k.current != nil && err.Error() != k.warned {
		k.warned = err.Error()
		k.log.Warn("rate limiter client certificate not reloaded; the previous one stays", "err", err)
	}
	return err
}

func (k *keyPair) load() error {
	c, err := k.cert.read()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	kb, err := k.key.read()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	if k.current != nil && bytes.Equal(c, k.cert.last) && bytes.Equal(kb, k.key.last) {
		return nil
	}
	pair, err := tls.X509KeyPair(c, kb)
	if err != nil {
		return fmt.Errorf("%w: %s, %s: %w", ErrTLS, k.cert.path, k.key.path, err)
	}
	k.current, k.cert.last, k.key.last = &pair, c, kb
	return nil
}

// clientCredentials returns the gRPC transport credentials of t: the CA is
// read once, the certificate again whenever its files change.
func clientCredentials(t ClientTLS, log *slog.Logger) (credentials.TransportCredentials, error) {
	var errs []error
	if t.CA == "" {
		errs = append(errs, errors.New("a CA file is required"))
	}
	if t.Cert == "" || t.Key == "" {
		errs = append(errs, errors.New("a client certificate and key file are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTLS, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: no certificate in CA file %s", ErrTLS, t.CA)
	}
	kp := &keyPair{cert: pemFile{path: t.Cert}, key: pemFile{path: t.Key}, log: log}
	if err := kp.reload(); err != nil {
		return nil, err
	}
	return credentials.NewTLS(&tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              pool,
		ServerName:           t.ServerName,
		GetClientCertificate: kp.get,
	}), nil
}
