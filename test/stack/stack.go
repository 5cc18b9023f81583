// Package stack runs the whole Fraise stack for black-box tests: `fraise
// dev` started through the same Run the binary runs, on free loopback
// ports, against the harness's throwaway PostgreSQL and Redis, with real
// Envoy as the ingress, spoken to over mTLS as a client would. test/e2e and
// test/security share it, so that both attack and exercise the stack one
// way.
//
// A test binary that uses it calls harness.Main from its TestMain, which
// stops the shared database server when the tests end.
package stack

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/test/harness"
)

// PerTenantLimit is a stack's per-tenant budget per minute unless
// Options.PerTenant says otherwise.
const PerTenantLimit = 30

// Addrs are the addresses a running stack listens on, as `fraise dev`
// reports them in its ready file.
type Addrs struct {
	// Gateway is Envoy's ingress listener: the stack's one public port.
	Gateway string `json:"gateway"`
	// EnvoyAdmin is Envoy's admin interface (loopback, never routed).
	EnvoyAdmin string `json:"envoy_admin"`
	// EnvoyPid is the Envoy process `fraise dev` supervises.
	EnvoyPid   int    `json:"envoy_pid"`
	CoreHTTP   string `json:"core_http"`
	CoreAdmin  string `json:"core_admin"`
	CoreFlight string `json:"core_flight"`
	// Authz is extauthz's gRPC port, AuthzAdmin its admin port.
	Authz      string `json:"authz"`
	AuthzAdmin string `json:"authz_admin"`
	// RateLimit is the rate limiter's gRPC port, RateLimitAdmin its admin
	// port (health and metrics).
	RateLimit      string `json:"ratelimit"`
	RateLimitAdmin string `json:"ratelimit_admin"`
	// XDS is the xDS server Envoy follows, "" on the static bootstrap.
	XDS string `json:"xds,omitempty"`
	// DemoReceiver is the demo's webhook receiver, "" without Options.Demo.
	DemoReceiver string `json:"demo_receiver,omitempty"`
	// XDSAdmin is the xDS server's admin port (health and metrics), ""
	// on the static bootstrap.
	XDSAdmin string `json:"xds_admin,omitempty"`
}

// Options vary the stack a test starts. The zero value is the default
// stack; new options are added as fields, so callers that name theirs keep
// compiling.
type Options struct {
	// TOML is appended to the generated fraise.toml: new sections only
	// (or more [[authz.issuers]]; the development issuer is bound to every
	// tenant, so more issuers may be added with their own bindings).
	TOML string
	// Env holds FRAISE_* overrides, the stack's whole environment.
	Env map[string]string
	// SetupSQL runs as the database owner after the migrations.
	SetupSQL string
	// PerTenant is the per-tenant budget per minute; 0 is PerTenantLimit.
	PerTenant int
	// XDS has Envoy follow an in-process `fraise xds` (`fraise dev
	// --xds`, polling fraise.toml every 100 ms) instead of running the
	// static bootstrap.
	XDS bool
	// Demo runs `fraise dev --demo` (the demo's Flight datasets, observers,
	// its rule and webhook receiver on a free port) and has it print its
	// banner to Stdout.
	Demo bool
	// Stdout receives what `fraise dev` prints (with Demo: the banner and
	// the receiver's deliveries); nil discards it.
	Stdout io.Writer
	// Log also receives the stack's log (Envoy's lines, its access log
	// among them, prefixed "envoy: "), as it is written.
	Log io.Writer
	// DataTLS runs the stack on a PostgreSQL and a Redis of its own, each
	// TLS-only with a CA of its own, wanting a client certificate and a
	// password: [database.tls] and [redis.tls] name the files, and
	// database.url and redis.password are file:// references
	// (Stack.Data names them all).
	DataTLS bool
	// AssertionKeys are more public keys the core trusts besides the
	// development key (server.assertion_keys), as references: a rotation
	// adds the next key there before extauthz signs with it.
	AssertionKeys []string
	// Postgres and Database, when Postgres is set, are the server and
	// database the stack runs on instead of a new database of its own: a
	// restore drill's archiving primary, then the server restored from its
	// archive. The stack migrates it as on a fresh one.
	Postgres *harness.Postgres
	Database string
	// Redis, when set, is the stack's Redis instead of a new server: the
	// stack started on a restored database takes over the queue its
	// predecessor left.
	Redis *harness.Redis
}

// DataFiles name the files of the data hops' credentials of a stack
// started with Options.DataTLS, which a test rotates.
type DataFiles struct {
	// DatabaseURL holds the app role's URL and password
	// (database.url = "file://...").
	DatabaseURL string
	// DatabaseCert and DatabaseKey are the app role's client certificate.
	DatabaseCert, DatabaseKey string
	// RedisPassword holds Redis's password (redis.password).
	RedisPassword string
	// RedisCert and RedisKey are the client certificate towards Redis.
	RedisCert, RedisKey string
}

// DatabasePassword and RedisPassword are a DataTLS stack's passwords at
// start.
const (
	DatabasePassword = "app-password-1"
	RedisPassword    = "redis-password-1"
)

// Stack is a running `fraise dev`. It stops when the test that started it
// ends.
type Stack struct {
	// Dir holds the stack's certificates (certs/), keys (keys/), Envoy's
	// bootstrap and fraise.toml.
	Dir string
	// ConfigPath is the stack's fraise.toml.
	ConfigPath string
	// Addrs are the addresses it listens on.
	Addrs Addrs
	// Certs are the development CA's files in Dir.
	Certs devcerts.Files
	// Stop tells fraise dev to stop, as SIGTERM does; the test's cleanup
	// waits for it to exit.
	Stop context.CancelFunc
	// Client presents the development client certificate: an end user.
	Client *http.Client
	// NoCert presents no certificate.
	NoCert *http.Client
	// AsGateway presents the gateway's certificate, as Envoy does to the
	// core: the only one the core's ports accept.
	AsGateway *http.Client
	// Getenv is the stack's environment (Options.Env).
	Getenv func(string) string
	// Redis is the stack's Redis server.
	Redis *harness.Redis
	// Postgres is the stack's PostgreSQL server and Database its database.
	Postgres *harness.Postgres
	Database string
	// AdminURL is the stack's database as its owner.
	AdminURL string
	// Data names the data hops' credential files (Options.DataTLS).
	Data DataFiles

	logs *Output
}

// Run runs the fraise command line args with getenv as its environment
// and returns its standard output, failing tb on an error.
func Run(tb testing.TB, getenv func(string) string, args ...string) string {
	tb.Helper()
	var out, errb bytes.Buffer
	if err := cli.Run(context.Background(), args, getenv, &out, &errb); err != nil {
		tb.Fatalf("fraise %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// Run runs the fraise command line args in s's environment.
func (s *Stack) Run(tb testing.TB, args ...string) string {
	tb.Helper()
	return Run(tb, s.Getenv, args...)
}

// Exec runs sql on the database at url.
func Exec(tb testing.TB, url, sql string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatalf("setup SQL: %v", err)
	}
}

// TLSTOML is the [tls] section of a fraise.toml naming the development
// certificates in certs: every stack and benchmark environment uses it.
func TLSTOML(certs devcerts.Files) string {
	return fmt.Sprintf(`[tls]
ca = %q
server_cert = %q
server_key = %q
client_cert = %q
client_key = %q
gateway_cert = %q
gateway_key = %q
core_client_cert = %q
core_client_key = %q
`, certs.CACert, certs.ServerCert, certs.ServerKey, certs.ClientCert, certs.ClientKey,
		certs.GatewayCert, certs.GatewayKey, certs.CoreClientCert, certs.CoreClientKey)
}

// Start starts the default stack, stopped when tb ends.
func Start(tb testing.TB) *Stack {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith starts the stack o describes, stopped when tb ends, and returns
// once `fraise dev` has written its ready file (every listener bound and
// Envoy ready).
func StartWith(tb testing.TB, o Options) *Stack {
	tb.Helper()
	dir := tb.TempDir()
	var (
		pg        *harness.Postgres
		db        string
		rd        *harness.Redis
		data      DataFiles
		dataTOML  string
		dbURL     string
		redisAddr string
	)
	switch {
	case o.DataTLS:
		pg = harness.StartPostgresWith(tb, harness.PostgresOptions{TLS: true, Password: true})
		db = pg.NewDatabase(tb)
		rd = harness.StartRedisWith(tb, harness.RedisOptions{TLS: true, Password: RedisPassword})
		data, dataTOML = dataFiles(tb, dir, pg, db, rd)
		dbURL, redisAddr = "file://"+data.DatabaseURL, "rediss://"+rd.Addr
	default:
		pg, db, rd = o.Postgres, o.Database, o.Redis
		if pg == nil {
			pg, db = harness.NewDatabase(tb)
		}
		if rd == nil {
			rd = harness.StartRedis(tb)
		}
		dbURL, redisAddr = pg.URL("fraise_app", db), rd.Addr
	}
	getenv := func(k string) string { return o.Env[k] }
	if o.PerTenant == 0 {
		o.PerTenant = PerTenantLimit
	}
	Run(tb, getenv, "certs", "--dir", dir)

	certs := devcerts.FilesIn(filepath.Join(dir, "certs"))
	keys := filepath.Join(dir, "keys")
	cfg := fmt.Sprintf(`
[log]
level = "warn"
%s[database]
url = %q
admin_url = %q
[redis]
addr = %q
%s[server]
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
flight_addr = "127.0.0.1:0"
assertion_keys = [%s]
[authz]
grpc_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
assertion_key = %q
[[authz.issuers]]
issuer = %q
audiences = [%q]
jwks_file = %q
algorithms = ["ES256"]
# The development issuer speaks for every tenant; a test may add issuers
# bound to some (Options.TOML).
tenants = ["*"]
[ratelimit]
grpc_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
[ratelimit.tiers.default]
tenant = { requests = %d, unit = "minute" }
[gateway]
listen_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
# Many stacks share two cores: one Envoy worker thread each.
concurrency = 1
# CI runs every package at once on two cores: a check must not fail
# closed on a deadline only a loaded machine misses.
authz_timeout = "5s"
`, TLSTOML(certs), dbURL, pg.AdminURL(db), redisAddr, dataTOML,
		strings.Join(append([]string{strconv.Quote("file://" + filepath.Join(keys, "assertion.pub"))}, quoted(o.AssertionKeys)...), ", "),
		"file://"+filepath.Join(keys, "assertion.key"),
		config.DevIssuer, config.DevAudience, filepath.Join(keys, "dev-issuer.jwks"), o.PerTenant) + o.TOML
	if o.XDS {
		cfg += "\n[xds]\ngrpc_addr = \"127.0.0.1:0\"\nadmin_addr = \"127.0.0.1:0\"\npoll_interval = \"100ms\"\n"
	}
	cfgPath := filepath.Join(dir, "fraise.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	Run(tb, getenv, "migrate", "--demo", "--config", cfgPath)
	if o.SetupSQL != "" {
		Exec(tb, pg.AdminURL(db), o.SetupSQL)
	}

	ready := filepath.Join(dir, "ready.json")
	args := []string{"dev", "--config", cfgPath, "--ready-file", ready, "--dir", dir}
	if o.Demo {
		args = append(args, "--demo", "--demo-receiver", "127.0.0.1:0")
	} else {
		args = append(args, "--quiet")
	}
	if o.XDS {
		args = append(args, "--xds")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := NewOutput()
	go func() {
		var stderr io.Writer = logs
		if o.Log != nil {
			stderr = io.MultiWriter(logs, o.Log)
		}
		stdout := io.Discard
		if o.Stdout != nil {
			stdout = o.Stdout
		}
		done <- cli.Run(ctx, args, getenv, stdout, stderr)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("fraise dev exited with %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("fraise dev did not stop within 30s of cancellation")
		}
	})
	s := &Stack{Dir: dir, ConfigPath: cfgPath, Certs: certs, Getenv: getenv, Redis: rd, Postgres: pg, Database: db,
		AdminURL: pg.AdminURL(db), Data: data, Stop: cancel, logs: logs}
	// fraise dev runs in this process but announces readiness only in the
	// ready file: it is polled, and an early exit ends the wait.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			if err := json.Unmarshal(b, &s.Addrs); err != nil {
				tb.Fatal(err)
			}
			break
		}
		select {
		case err := <-done:
			done <- err // the cleanup waits for it too: it has stopped
			tb.Fatalf("fraise dev exited before ready: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("fraise dev not ready after 60s\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	mk := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: s.CAPool(tb), Certificates: certs, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		}}
	}
	s.Client = mk([]tls.Certificate{s.loadPair(tb, certs.ClientCert, certs.ClientKey)})
	s.NoCert = mk(nil)
	s.AsGateway = mk([]tls.Certificate{s.loadPair(tb, certs.GatewayCert, certs.GatewayKey)})
	return s
}

func quoted(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// dataFiles writes the credentials of the stack's TLS-only PostgreSQL and
// Redis under dir: the app role's URL with its password, client
// certificates of each server's CA, Redis's password. It returns them and
// the configuration naming them (redis.password, [database.tls],
// [redis.tls]).
func dataFiles(tb testing.TB, dir string, pg *harness.Postgres, db string, rd *harness.Redis) (DataFiles, string) {
	tb.Helper()
	d := filepath.Join(dir, "data")
	if err := os.MkdirAll(d, 0o700); err != nil {
		tb.Fatal(err)
	}
	j := func(n string) string { return filepath.Join(d, n) }
	f := DataFiles{
		DatabaseURL: j("database-url"), DatabaseCert: j("database.pem"), DatabaseKey: j("database-key.pem"),
		RedisPassword: j("redis-password"), RedisCert: j("redis.pem"), RedisKey: j("redis-key.pem"),
	}
	pg.TLS.IssueClient(tb, "fraise_app", f.DatabaseCert, f.DatabaseKey)
	rd.TLS.IssueClient(tb, "fraise", f.RedisCert, f.RedisKey)
	// No sslmode: [database.tls] makes the connection verify-full.
	url := fmt.Sprintf("postgres://fraise_app:%s@%s:%d/%s", DatabasePassword, pg.Host, pg.Port, db)
	for path, content := range map[string]string{f.DatabaseURL: url + "\n", f.RedisPassword: RedisPassword + "\n"} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return f, fmt.Sprintf(`password = %q
[redis.tls]
ca = %q
cert = %q
key = %q
[database.tls]
ca = %q
cert = %q
key = %q
`, "file://"+f.RedisPassword, rd.TLS.CA, f.RedisCert, f.RedisKey, pg.TLS.CA, f.DatabaseCert, f.DatabaseKey)
}

// CAPool returns the pool of the development CA, which signed every
// certificate of the stack.
func (s *Stack) CAPool(tb testing.TB) *x509.CertPool {
	tb.Helper()
	caPEM, err := os.ReadFile(s.Certs.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return pool
}

func (s *Stack) loadPair(tb testing.TB, certFile, keyFile string) tls.Certificate {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

// ClientCertificate is the development client certificate: an end user's.
func (s *Stack) ClientCertificate(tb testing.TB) tls.Certificate {
	tb.Helper()
	return s.loadPair(tb, s.Certs.ClientCert, s.Certs.ClientKey)
}

// GatewayCertificate is the gateway's certificate, which Envoy presents to
// the core, extauthz and the rate limiter.
func (s *Stack) GatewayCertificate(tb testing.TB) tls.Certificate {
	tb.Helper()
	return s.loadPair(tb, s.Certs.GatewayCert, s.Certs.GatewayKey)
}

// TLSConfig returns the client side of mTLS with the development client
// certificate (withCert false: none). Towards the core's own ports it
// presents the gateway's certificate instead, as Envoy does: the core
// accepts no other.
func (s *Stack) TLSConfig(tb testing.TB, withCert bool, addr ...string) *tls.Config {
	tb.Helper()
	c := &tls.Config{RootCAs: s.CAPool(tb), MinVersion: tls.VersionTLS12, ServerName: "localhost"}
	if withCert {
		if len(addr) > 0 && (addr[0] == s.Addrs.CoreFlight || addr[0] == s.Addrs.CoreHTTP) {
			c.Certificates = []tls.Certificate{s.GatewayCertificate(tb)}
		} else {
			c.Certificates = []tls.Certificate{s.ClientCertificate(tb)}
		}
	}
	return c
}

// Token mints a development JWT (the development issuer's) for subject of
// tenant with roles, comma-separated.
func (s *Stack) Token(tb testing.TB, tenant, subject, roles string) string {
	tb.Helper()
	return strings.TrimSpace(s.Run(tb, "token", "--dir", s.Dir, "--tenant", tenant, "--subject", subject, "--roles", roles))
}

// TokenWithScopes is Token with scopes, comma-separated ("" for none).
func (s *Stack) TokenWithScopes(tb testing.TB, tenant, subject, roles, scopes string) string {
	tb.Helper()
	return strings.TrimSpace(s.Run(tb, "token", "--dir", s.Dir, "--tenant", tenant, "--subject", subject, "--roles", roles, "--scopes", scopes))
}

// Logs returns what the stack has logged so far: warnings and errors, and
// Envoy's lines prefixed "envoy: ".
func (s *Stack) Logs() string { return s.logs.String() }

// WaitLog waits until the stack's log contains substr, for at most d, and
// reports whether it did.
func (s *Stack) WaitLog(substr string, d time.Duration) bool { return s.logs.Wait(substr, d) }

// Output collects what a process writes (the stack's log, what `fraise
// dev` prints) and wakes those waiting for a line of it.
type Output struct {
	mu      sync.Mutex
	w       bytes.Buffer
	changed chan struct{} // closed and replaced at each write
}

// NewOutput returns an empty Output.
func NewOutput() *Output { return &Output{changed: make(chan struct{})} }

// Write implements io.Writer.
func (l *Output) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.changed)
	l.changed = make(chan struct{})
	return l.w.Write(p)
}

// String returns everything written so far.
func (l *Output) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// Wait reports whether substr is written within d.
func (l *Output) Wait(substr string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		l.mu.Lock()
		found, changed := strings.Contains(l.w.String(), substr), l.changed
		l.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}
