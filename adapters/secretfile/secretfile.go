// Package secretfile provides secrets and TLS material read from files and
// read again when the files change: passwords, keys, certificates and CA
// bundles that an operator (or cert-manager, a Vault agent, a mounted
// Kubernetes Secret) rotates by replacing the file, picked up without a
// restart.
//
// A Watcher re-reads the files of every value it holds at each Check (Run
// checks every interval). A value whose files changed is parsed again and
// replaces the current one for whoever asks next: the TLS configurations
// of this package ask at every handshake, so new connections present and
// verify the new certificates while connections already open keep theirs
// until they close. What fails to load (a file half-written, a key read
// before its certificate was replaced) is logged once and counted, and the
// last good value stays.
package secretfile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names a Watcher exports (it is a prometheus.Collector).
const (
	// MetricReloads counts the checks that found a value's files changed,
	// by value (label secret) and result (loaded or failed).
	MetricReloads = "fraise_secret_reloads_total"
	// MetricCertificateExpiry is the Unix time at which a certificate
	// (label certificate: the value's name) stops being valid: a key
	// pair's leaf, or the first to expire of a CA bundle's certificates.
	MetricCertificateExpiry = "fraise_tls_certificate_expiry_timestamp_seconds"
)

// Watcher holds values read from files and reads the files again at each
// Check. It is safe for concurrent use.
type Watcher struct {
	log *slog.Logger

	mu    sync.Mutex
	items []item

	reloadsDesc, expiryDesc *prometheus.Desc
}

// item is a watched value, whatever its type.
type item interface {
	name() string
	// check reads the files again and loads them when they changed; it
	// reports whether they had changed and, if so, whether they loaded.
	check(log *slog.Logger) (changed bool, err error)
	// counts returns the value's loaded and failed reload counts.
	counts() (loaded, failed int64)
	// expiry is when the current value stops being valid (zero when it
	// does not expire).
	expiry() time.Time
}

// NewWatcher returns a Watcher that logs to log (nothing when nil).
func NewWatcher(log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watcher{
		log: log,
		reloadsDesc: prometheus.NewDesc(MetricReloads,
			"Times a secret's files were found changed and read again, by secret (its configuration key) and result: loaded (in use from the next connection) or failed (the previous value stays).",
			[]string{"secret", "result"}, nil),
		expiryDesc: prometheus.NewDesc(MetricCertificateExpiry,
			"Unix time at which a certificate in use stops being valid, by certificate (its configuration key); for a CA bundle, the first of its certificates to expire.",
			[]string{"certificate"}, nil),
	}
}

// Run checks the files every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.Check()
	}
}

// Check reads every value's files now and loads those that changed.
func (w *Watcher) Check() {
	w.mu.Lock()
	items := append([]item(nil), w.items...)
	w.mu.Unlock()
	for _, it := range items {
		it.check(w.log)
	}
}

func (w *Watcher) add(it item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.items = append(w.items, it)
}

// Describe implements prometheus.Collector.
func (w *Watcher) Describe(ch chan<- *prometheus.Desc) {
	ch <- w.reloadsDesc
	ch <- w.expiryDesc
}

// Collect implements prometheus.Collector.
func (w *Watcher) Collect(ch chan<- prometheus.Metric) {
	w.mu.Lock()
	items := append([]item(nil), w.items...)
	w.mu.Unlock()
	for _, it := range items {
		loaded, failed := it.counts()
		ch <- prometheus.MustNewConstMetric(w.reloadsDesc, prometheus.CounterValue, float64(loaded), it.name(), "loaded")
		ch <- prometheus.MustNewConstMetric(w.reloadsDesc, prometheus.CounterValue, float64(failed), it.name(), "failed")
		if exp := it.expiry(); !exp.IsZero() {
			ch <- prometheus.MustNewConstMetric(w.expiryDesc, prometheus.GaugeValue, float64(exp.Unix()), it.name())
		}
	}
}

// Value is a value read from files (or fixed), T being what they parse
// to. Get is safe for concurrent use and cheap: one atomic load.
type Value[T any] struct {
	label string
	paths []string
	parse func([][]byte) (T, time.Time, error)

	cur, prev atomic.Pointer[loaded[T]]

	mu     sync.Mutex // orders checks and guards last, warned and subs
	last   [][]byte
	warned string
	subs   []func(T)

	loadedN, failedN atomic.Int64
}

type loaded[T any] struct {
	v      T
	expiry time.Time
}

// Watch reads the files at paths now, parses their contents with parse
// (which also returns when the value stops being valid, zero for never),
// and registers the value with w, which reads them again at each Check.
// An error to read or parse them now is returned, naming name.
func Watch[T any](w *Watcher, name string, paths []string, parse func([][]byte) (T, time.Time, error)) (*Value[T], error) {
	v := &Value[T]{label: name, paths: paths, parse: parse}
	cur, err := v.read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	x, exp, err := parse(cur)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	v.cur.Store(&loaded[T]{x, exp})
	v.last = cur
	w.add(v)
	return v, nil
}

// Fixed returns a value that never changes: a secret given in the
// environment, for instance, which a process can read only at its start.
func Fixed[T any](name string, x T) *Value[T] {
	v := &Value[T]{label: name}
	v.cur.Store(&loaded[T]{v: x})
	return v
}

// Get returns the current value.
func (v *Value[T]) Get() T { return v.cur.Load().v }

// Previous returns the value the current one replaced, if it did.
func (v *Value[T]) Previous() (T, bool) {
	if p := v.prev.Load(); p != nil {
		return p.v, true
	}
	var zero T
	return zero, false
}

// OnChange calls f with each new value, once it is current, from the
// goroutine that checked the files.
func (v *Value[T]) OnChange(f func(T)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.subs = append(v.subs, f)
}

// Name is the value's name: its configuration key, as logs and metrics
// name it.
func (v *Value[T]) Name() string { return v.label }

func (v *Value[T]) name() string { return v.label }

func (v *Value[T]) counts() (int64, int64) { return v.loadedN.Load(), v.failedN.Load() }

func (v *Value[T]) expiry() time.Time { return v.cur.Load().expiry }

func (v *Value[T]) read() ([][]byte, error) {
	cur := make([][]byte, len(v.paths))
	for i, p := range v.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		cur[i] = b
	}
	return cur, nil
}

func (v *Value[T]) check(log *slog.Logger) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	cur, err := v.read()
	if err == nil && v.same(cur) {
		return false, nil
	}
	var x T
	var exp time.Time
	if err == nil {
		x, exp, err = v.parse(cur)
	}
	if err != nil {
		v.failedN.Add(1)
		if err.Error() != v.warned {
			v.warned = err.Error()
			log.Warn("secret not reloaded; the previous value stays", "secret", v.label, "err", err)
		}
		return true, err
	}
	v.warned = ""
	v.last = cur
	v.prev.Store(v.cur.Load())
	v.cur.Store(&loaded[T]{x, exp})
	v.loadedN.Add(1)
	log.Info("secret reloaded", "secret", v.label)
	for _, f := range v.subs {
		f(x)
	}
	return true, nil
}

func (v *Value[T]) same(cur [][]byte) bool {
	for i := range cur {
		if !bytes.Equal(cur[i], v.last[i]) {
			return false
		}
	}
	return true
}

// Text watches a secret held in the file at path: its contents without
// trailing line breaks (as an editor or `echo` leaves them). An empty file
// does not load.
func (w *Watcher) Text(name, path string) (*Value[string], error) {
	return Watch(w, name, []string{path}, func(b [][]byte) (string, time.Time, error) {
		s := strings.TrimRight(string(b[0]), "\r\n")
		if s == "" {
			return "", time.Time{}, fmt.Errorf("%s is empty", path)
		}
		return s, time.Time{}, nil
	})
}

// KeyPair watches a certificate and its private key (PEM files, the chain
// in the certificate's). A key that does not match its certificate does
// not load: replacing the two files is never atomic, and the pair in use
// stays until a matching pair is read.
func (w *Watcher) KeyPair(name, certPath, keyPath string) (*Value[*tls.Certificate], error) {
	return Watch(w, name, []string{certPath, keyPath}, func(b [][]byte) (*tls.Certificate, time.Time, error) {
		pair, err := tls.X509KeyPair(b[0], b[1])
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%s, %s: %w", certPath, keyPath, err)
		}
		return &pair, pair.Leaf.NotAfter, nil
	})
}

// CertPool watches a bundle of CA certificates (PEM). A bundle holding no
// certificate does not load.
func (w *Watcher) CertPool(name, path string) (*Value[*x509.CertPool], error) {
	return Watch(w, name, []string{path}, func(b [][]byte) (*x509.CertPool, time.Time, error) {
		return parsePool(path, b[0])
	})
}

func parsePool(path string, data []byte) (*x509.CertPool, time.Time, error) {
	pool := x509.NewCertPool()
	var first time.Time
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("%s: %w", path, err)
		}
		pool.AddCert(c)
		if first.IsZero() || c.NotAfter.Before(first) {
			first = c.NotAfter
		}
	}
	if first.IsZero() {
		return nil, time.Time{}, fmt.Errorf("no certificate in %s", path)
	}
	return pool, first, nil
}

// ServerTLS is a listener's TLS from watched values.
type ServerTLS struct {
	// Cert is the listener's certificate.
	Cert *Value[*tls.Certificate]
	// ClientCAs, when set, requires a client certificate signed by one of
	// its CAs (and never the system's roots).
	ClientCAs *Value[*x509.CertPool]
	// ClientSANs, when set, accepts a client certificate only when it names
	// one of them as a DNS or URI SAN: the internal servers accept the
	// gateway (and the rate limiter the core too), but no end user's
	// certificate from the same CA.
	ClientSANs []string
	// NextProtos are the ALPN protocols offered: an http.Server's
	// TLSConfig needs "h2" and "http/1.1" here, since the configuration
	// of each handshake is this package's, not the server's clone.
	NextProtos []string
}

// ErrNoClientCertificate is the cause of a handshake refused for want of
// a client certificate that ServerTLS.ClientSANs accepts.
var ErrNoClientCertificate = errors.New("client certificate refused")

// Config returns the listener's TLS configuration: each handshake uses the
// current certificate and CAs. With ClientCAs, session tickets are off, so
// that every connection is verified in full against the current CAs and
// names (a resumed session would skip a CA that was removed).
func (s ServerTLS) Config() *tls.Config {
	want := make(map[string]bool, len(s.ClientSANs))
	for _, n := range s.ClientSANs {
		if n != "" {
			want[n] = true
		}
	}
	type built struct {
		cert *tls.Certificate
		cas  *x509.CertPool
		cfg  *tls.Config
	}
	var cache atomic.Pointer[built]
	verify := func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: none presented", ErrNoClientCertificate)
		}
		leaf := cs.PeerCertificates[0]
		for _, n := range leaf.DNSNames {
			if want[n] {
				return nil
			}
		}
		for _, u := range leaf.URIs {
			if want[u.String()] {
				return nil
			}
		}
		return fmt.Errorf("%w: %q names none of the accepted clients", ErrNoClientCertificate, leaf.Subject.CommonName)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert := s.Cert.Get()
			var cas *x509.CertPool
			if s.ClientCAs != nil {
				cas = s.ClientCAs.Get()
			}
			if b := cache.Load(); b != nil && b.cert == cert && b.cas == cas {
				return b.cfg, nil
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				NextProtos:   s.NextProtos,
			}
			if cas != nil {
				c.ClientAuth = tls.RequireAndVerifyClientCert
				c.ClientCAs = cas
				c.SessionTicketsDisabled = true
			}
			if len(want) > 0 {
				c.VerifyConnection = verify
			}
			cache.Store(&built{cert, cas, c})
			return c, nil
		},
	}
}

// ClientTLS is a client's TLS towards one server from watched values.
type ClientTLS struct {
	// RootCAs verify the server: they alone, never the system's roots;
	// nil uses the system's roots.
	RootCAs *Value[*x509.CertPool]
	// Cert, when set, is the client certificate presented.
	Cert *Value[*tls.Certificate]
	// ServerName is the name the server's certificate must carry; empty
	// leaves it to the dialer (the host dialled).
	ServerName string
}

// Config returns the TLS configuration of one new connection: the current
// CAs verify the server, and the handshake presents the certificate
// current at that moment. Call it for each connection (pgx's
// BeforeConnect, a dialer) so that a renewed CA bundle is used too.
func (c ClientTLS) Config() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.RootCAs != nil {
		cfg.RootCAs = c.RootCAs.Get()
	}
	if c.Cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.Cert.Get(), nil
		}
	}
	return cfg
}
