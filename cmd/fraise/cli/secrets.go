package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/internal/lifecycle"
)

// secrets are one component's secrets and TLS files, read through one
// watcher: the core, extauthz, the rate limiter and the xDS server each
// hold theirs (`fraise dev` runs four), re-read every
// secrets.reload_interval, so that what each presents, verifies and
// authenticates with on a new connection is what the files hold then.
// Each component exports its watcher's metrics (reloads, certificates'
// expiry) where it has a /metrics.
type secrets struct {
	w      *secretfile.Watcher
	getenv func(string) string

	pairs map[string]*secretfile.Value[*tls.Certificate]
	pools map[string]*secretfile.Value[*x509.CertPool]
	texts map[string]*secretfile.Value[string]
}

func newSecrets(getenv func(string) string, log *slog.Logger) *secrets {
	return &secrets{
		w: secretfile.NewWatcher(log), getenv: getenv,
		pairs: map[string]*secretfile.Value[*tls.Certificate]{},
		pools: map[string]*secretfile.Value[*x509.CertPool]{},
		texts: map[string]*secretfile.Value[string]{},
	}
}

// reloader is the component that re-reads the files every cfg's
// secrets.reload_interval while it runs.
func (s *secrets) reloader(cfg config.Config) lifecycle.Component {
	return runner(func(ctx context.Context) { s.w.Run(ctx, cfg.Secrets.ReloadInterval.Duration) })
}

// keyPair watches the certificate certFile and its key keyFile, named key
// (their configuration key) in errors, logs and metrics. One component
// watches each pair once, however many listeners use it.
func (s *secrets) keyPair(key, certFile, keyFile string) (*secretfile.Value[*tls.Certificate], error) {
	id := key + "\x00" + certFile + "\x00" + keyFile
	if v, ok := s.pairs[id]; ok {
		return v, nil
	}
	v, err := s.w.KeyPair(key, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s.pairs[id] = v
	return v, nil
}

// pool watches the CA bundle path, named key.
func (s *secrets) pool(key, path string) (*secretfile.Value[*x509.CertPool], error) {
	id := key + "\x00" + path
	if v, ok := s.pools[id]; ok {
		return v, nil
	}
	v, err := s.w.CertPool(key, path)
	if err != nil {
		return nil, err
	}
	s.pools[id] = v
	return v, nil
}

// text returns the secret ref stands for, named key: a file:// reference
// is watched; an env:// one (the environment is read at start only) or a
// literal is fixed.
func (s *secrets) text(key, ref string) (*secretfile.Value[string], error) {
	path, ok := config.FilePath(ref)
	if !ok {
		v, err := config.Resolve(ref, s.getenv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return secretfile.Fixed(key, v), nil
	}
	id := key + "\x00" + path
	if v, ok := s.texts[id]; ok {
		return v, nil
	}
	v, err := s.w.Text(key, path)
	if err != nil {
		return nil, err
	}
	s.texts[id] = v
	return v, nil
}

// serverTLS is a pinned mutual-TLS listener of [tls]: the server
// certificate, client certificates from tls.ca naming one of sans; for an
// HTTP server (http true) the ALPN protocols of HTTP/2 and HTTP/1.1.
func (s *secrets) serverTLS(t config.TLS, http bool, sans ...string) (*tls.Config, error) {
	var named []string
	for _, n := range sans {
		if n != "" {
			named = append(named, n)
		}
	}
	if len(named) == 0 {
		return nil, errors.New("tls.gateway_san: required: the internal servers accept no client certificate without it")
	}
	cert, err := s.keyPair("tls.server_cert", t.ServerCert, t.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("tls.server_cert/server_key: %w (run `fraise certs`)", err)
	}
	cas, err := s.pool("tls.ca", t.CA)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w (run `fraise certs`)", err)
	}
	st := secretfile.ServerTLS{Cert: cert, ClientCAs: cas, ClientSANs: named}
	if http {
		st.NextProtos = []string{"h2", "http/1.1"}
	}
	return st.Config(), nil
}

// plainServerTLS is a listener of [tls] that asks for no client
// certificate (the assertion JWKS port).
func (s *secrets) plainServerTLS(t config.TLS) (*tls.Config, error) {
	cert, err := s.keyPair("tls.server_cert", t.ServerCert, t.ServerKey)
	if err != nil {
		return nil, fmt.Errorf("tls.server_cert/server_key: %w (run `fraise certs`)", err)
	}
	return secretfile.ServerTLS{Cert: cert, NextProtos: []string{"h2", "http/1.1"}}.Config(), nil
}

// rateLimitClientTLS is the core's client side of mutual TLS towards the
// rate limiter: tls.core_client_cert, the limiter verified against tls.ca
// for tls.server_name.
func (s *secrets) rateLimitClientTLS(t config.TLS) (func() *tls.Config, error) {
	cert, err := s.keyPair("tls.core_client_cert", t.CoreClientCert, t.CoreClientKey)
	if err != nil {
		return nil, fmt.Errorf("tls.core_client_cert/core_client_key: %w (run `fraise certs`)", err)
	}
	cas, err := s.pool("tls.ca", t.CA)
	if err != nil {
		return nil, fmt.Errorf("tls.ca: %w (run `fraise certs`)", err)
	}
	return secretfile.ClientTLS{RootCAs: cas, Cert: cert, ServerName: t.ServerName}.Config, nil
}

// dataTLS is the client side of TLS towards a data store ([database.tls]
// or [redis.tls], key naming it); nil when t is off and useTLS not forced
// (rediss:// without [redis.tls] uses the system's roots).
func (s *secrets) dataTLS(key string, t config.DataTLS, useTLS bool) (func() *tls.Config, error) {
	if !t.Enabled() && !useTLS {
		return nil, nil
	}
	c := secretfile.ClientTLS{ServerName: t.ServerName}
	if t.CA != "" {
		cas, err := s.pool(key+".ca", t.CA)
		if err != nil {
			return nil, fmt.Errorf("%s.ca: %w", key, err)
		}
		c.RootCAs = cas
	}
	if t.Cert != "" {
		cert, err := s.keyPair(key+".cert", t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("%s.cert/key: %w", key, err)
		}
		c.Cert = cert
	}
	return c.Config, nil
}

// databaseURL returns the URL ref (a configuration key's value, key)
// stands for now and, for a file:// reference, a source of the password
// of each new connection: the password of the URL the file holds then,
// and of the one it held before (so a rotation can write the file before
// ALTER ROLE runs: see postgres.Options.Password). The rest of the URL is
// read at start only.
func (s *secrets) databaseURL(key, ref string) (string, func() (string, string), error) {
	v, err := s.text(key, ref)
	if err != nil {
		return "", nil, err
	}
	if _, watched := config.FilePath(ref); !watched {
		return v.Get(), nil, nil
	}
	pw := func() (string, string) {
		prev := ""
		if p, ok := v.Previous(); ok {
			prev = urlPassword(p)
		}
		return urlPassword(v.Get()), prev
	}
	return v.Get(), pw, nil
}

// urlPassword is the password of a postgres:// URL, "" when it has none
// or is not one.
func urlPassword(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}

// onChange calls f whenever a watched value whose name starts with one of
// prefixes (e.g. "redis.") changes.
func (s *secrets) onChange(f func(), prefixes ...string) {
	match := func(name string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	for _, v := range s.pairs {
		if match(v.Name()) {
			v.OnChange(func(*tls.Certificate) { f() })
		}
	}
	for _, v := range s.pools {
		if match(v.Name()) {
			v.OnChange(func(*x509.CertPool) { f() })
		}
	}
	for _, v := range s.texts {
		if match(v.Name()) {
			v.OnChange(func(string) { f() })
		}
	}
}

// openDatabase opens a pool of the app role on the URL ref (the value of
// the configuration key key): TLS as [database.tls] says and the password
// of the URL, both re-read through sec, connections closed after
// database.max_conn_lifetime.
func openDatabase(ctx context.Context, cfg config.Config, sec *secrets, key, ref string, o postgres.Options) (*postgres.DB, error) {
	url, pw, err := sec.databaseURL(key, ref)
	if err != nil {
		return nil, err
	}
	tc, err := sec.dataTLS("database.tls", cfg.Database.TLS, false)
	if err != nil {
		return nil, err
	}
	o.TLS, o.Password, o.MaxConnLifetime = tc, pw, cfg.Database.MaxConnLifetime.Duration
	db, err := postgres.Open(ctx, url, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return db, nil
}
