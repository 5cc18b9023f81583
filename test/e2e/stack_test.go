// Package e2e holds black-box tests of the whole stack: `fraise dev` started
// through the same Run the binary runs, on free loopback ports, against the
// harness's throwaway PostgreSQL and Redis, spoken to over mTLS HTTP as a
// client would.
package e2e_test

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
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// perTenantLimit is the stack's per-tenant budget per minute in these tests.
const perTenantLimit = 30

// stack is a running `fraise dev`.
type stack struct {
	dir     string
	cfgPath string
	addrs   struct {
		Gateway    string `json:"gateway"`
		CoreHTTP   string `json:"core_http"`
		CoreAdmin  string `json:"core_admin"`
		CoreFlight string `json:"core_flight"`
		AuthzAdmin string `json:"authz_admin"`
		EnvoyAdmin string `json:"envoy_admin"`
		EnvoyPid   int    `json:"envoy_pid"`
		XDS        string `json:"xds"`
	}
	stop     context.CancelFunc // tells fraise dev to stop, as SIGTERM does
	client   *http.Client       // presents the development client certificate
	noCert   *http.Client       // presents none
	asGW     *http.Client       // presents the gateway's certificate, as Envoy does to the core
	getenv   func(string) string
	redisHdl *harness.Redis
	adminURL string      // the test database as its owner
	logs     *syncWriter // fraise dev's log (Envoy's lines prefixed "envoy: ")
}

// stackOptions varies the stack a test starts: configuration appended to
// fraise.toml (new sections only), FRAISE_* overrides, SQL run as the
// database owner after the migrations, the per-tenant budget, whether
// Envoy follows an in-process `fraise xds` (`fraise dev --xds`, polling
// fraise.toml every 100ms) instead of running the static bootstrap, and a
// writer that also receives the stack's log (Envoy's lines, its access log
// among them, prefixed "envoy: ").
type stackOptions struct {
	toml      string
	env       map[string]string
	setupSQL  string
	perTenant int
	xds       bool
	log       io.Writer
}

func mustRun(tb testing.TB, getenv func(string) string, args ...string) string {
	tb.Helper()
	var out, errb bytes.Buffer
	if err := cli.Run(context.Background(), args, getenv, &out, &errb); err != nil {
		tb.Fatalf("fraise %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func mustStack(tb testing.TB) *stack {
	tb.Helper()
	return mustStackWith(tb, stackOptions{})
}

func mustStackWith(tb testing.TB, o stackOptions) *stack {
	tb.Helper()
	pg, db := harness.NewDatabase(tb)
	rd := harness.StartRedis(tb)
	dir := tb.TempDir()
	getenv := func(k string) string { return o.env[k] }
	if o.perTenant == 0 {
		o.perTenant = perTenantLimit
	}
	mustRun(tb, getenv, "certs", "--dir", dir)

	certs := devcerts.FilesIn(filepath.Join(dir, "certs"))
	keys := filepath.Join(dir, "keys")
	cfg := fmt.Sprintf(`
[log]
level = "warn"
[tls]
ca = %q
server_cert = %q
server_key = %q
client_cert = %q
client_key = %q
gateway_cert = %q
gateway_key = %q
core_client_cert = %q
core_client_key = %q
[database]
url = %q
admin_url = %q
[redis]
addr = %q
[core]
http_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
flight_addr = "127.0.0.1:0"
assertion_keys = [%q]
[authz]
grpc_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
assertion_key = %q
[[authz.issuers]]
issuer = %q
audiences = [%q]
jwks_file = %q
algorithms = ["ES256"]
[ratelimit]
grpc_addr = "127.0.0.1:0"
http_addr = "127.0.0.1:0"
debug_addr = "127.0.0.1:0"
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
`, certs.CACert, certs.ServerCert, certs.ServerKey, certs.ClientCert, certs.ClientKey,
		certs.GatewayCert, certs.GatewayKey, certs.CoreClientCert, certs.CoreClientKey,
		pg.URL("fraise_app", db), pg.AdminURL(db), rd.Addr,
		"file://"+filepath.Join(keys, "assertion.pub"), "file://"+filepath.Join(keys, "assertion.key"),
		config.DevIssuer, config.DevAudience, filepath.Join(keys, "dev-issuer.jwks"), o.perTenant) + o.toml
	if o.xds {
		cfg += "\n[xds]\ngrpc_addr = \"127.0.0.1:0\"\npoll_interval = \"100ms\"\n"
	}
	cfgPath := filepath.Join(dir, "fraise.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	mustRun(tb, getenv, "migrate", "--demo", "--config", cfgPath)
	if o.setupSQL != "" {
		mustExec(tb, pg.AdminURL(db), o.setupSQL)
	}

	ready := filepath.Join(dir, "ready.json")
	args := []string{"dev", "--config", cfgPath, "--ready-file", ready, "--dir", dir, "--quiet"}
	if o.xds {
		args = append(args, "--xds")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncWriter{w: new(bytes.Buffer)}
	var stderr io.Writer = logs
	if o.log != nil {
		stderr = io.MultiWriter(logs, o.log)
	}
	go func() {
		done <- cli.Run(ctx, args, getenv, io.Discard, stderr)
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
	s := &stack{dir: dir, cfgPath: cfgPath, getenv: getenv, redisHdl: rd, adminURL: pg.AdminURL(db), stop: cancel, logs: logs}
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			if err := json.Unmarshal(b, &s.addrs); err != nil {
				tb.Fatal(err)
			}
			break
		}
		select {
		case err := <-done:
			tb.Fatalf("fraise dev exited before ready: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("fraise dev not ready after 60s\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	caPEM, err := os.ReadFile(certs.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		tb.Fatal(err)
	}
	mk := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12},
			ForceAttemptHTTP2: true,
		}}
	}
	gw, err := tls.LoadX509KeyPair(certs.GatewayCert, certs.GatewayKey)
	if err != nil {
		tb.Fatal(err)
	}
	s.client = mk([]tls.Certificate{cert})
	s.noCert = mk(nil)
	s.asGW = mk([]tls.Certificate{gw})
	return s
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func (s *stack) token(tb testing.TB, tenant, subject, roles string) string {
	tb.Helper()
	return strings.TrimSpace(mustRun(tb, s.getenv, "token", "--dir", s.dir, "--tenant", tenant, "--subject", subject, "--roles", roles))
}

// tokenWithScopes is token with scopes, comma-separated ("" for none).
func (s *stack) tokenWithScopes(tb testing.TB, tenant, subject, roles, scopes string) string {
	tb.Helper()
	return strings.TrimSpace(mustRun(tb, s.getenv, "token", "--dir", s.dir, "--tenant", tenant, "--subject", subject, "--roles", roles, "--scopes", scopes))
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

// post sends a GraphQL query to base (the gateway or the core) and returns
// the status, headers and decoded body.
func post(tb testing.TB, c *http.Client, base, query string, headers map[string]string) (int, http.Header, gqlResponse) {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, err := http.NewRequest(http.MethodPost, "https://"+base+"/graphql", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", base, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var g gqlResponse
	if err := json.Unmarshal(raw, &g); err != nil {
		tb.Fatalf("status %d: body is not GraphQL-shaped JSON: %q", resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, g
}

func userNames(tb testing.TB, g gqlResponse) []string {
	tb.Helper()
	var d struct {
		Users []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"users"`
	}
	if err := json.Unmarshal(g.Data, &d); err != nil {
		tb.Fatalf("data %s: %v", g.Data, err)
	}
	var names []string
	for _, u := range d.Users {
		if u.ID == "" {
			tb.Errorf("user %q has no id", u.Name)
		}
		names = append(names, u.Name)
	}
	slices.Sort(names)
	return names
}

func TestWalkingSkeleton(t *testing.T) {
	s := mustStack(t)
	const q = "{ users { id name } }"
	acme := s.token(t, demo.TenantAcme, "alice", "viewer")
	globex := s.token(t, demo.TenantGlobex, "carol", "viewer")

	t.Run("TLS without a client certificate is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+s.addrs.Gateway+"/graphql", strings.NewReader(`{"query":"{ users { id } }"}`))
		req.Header.Set("Authorization", "Bearer "+acme)
		resp, err := s.noCert.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want the TLS handshake refused", resp.StatusCode)
		}
	})

	t.Run("no token gives 401 with a GraphQL-shaped body", func(t *testing.T) {
		status, hdr, g := post(t, s.client, s.addrs.Gateway, q, nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("got status %d, want 401", status)
		}
		if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
			t.Fatalf("got errors %+v, want extensions.code UNAUTHENTICATED", g.Errors)
		}
		if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("got WWW-Authenticate %q, want Bearer", hdr.Get("WWW-Authenticate"))
		}
	})

	t.Run("a bad token gives 401", func(t *testing.T) {
		status, _, g := post(t, s.client, s.addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + acme[:len(acme)-4] + "AAAA"})
		if status != http.StatusUnauthorized || len(g.Errors) == 0 {
			t.Fatalf("got status %d errors %+v, want 401 with errors", status, g.Errors)
		}
	})

	t.Run("tenant A sees exactly its users", func(t *testing.T) {
		status, _, g := post(t, s.client, s.addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + acme})
		if status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("got status %d errors %+v, want 200", status, g.Errors)
		}
		if got, want := userNames(t, g), []string{"Alice", "Bob"}; !slices.Equal(got, want) {
			t.Fatalf("got users %v, want %v", got, want)
		}
	})

	t.Run("tenant B sees exactly its users", func(t *testing.T) {
		_, _, g := post(t, s.client, s.addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + globex})
		if got, want := userNames(t, g), []string{"Carol", "Dave"}; !slices.Equal(got, want) {
			t.Fatalf("got users %v, want %v", got, want)
		}
	})

	t.Run("forged identity headers change nothing", func(t *testing.T) {
		_, _, g := post(t, s.client, s.addrs.Gateway, q, map[string]string{
			"Authorization":      "Bearer " + acme,
			"x-fraise-tenant":    demo.TenantGlobex,
			"x-fraise-subject":   "carol",
			"x-fraise-roles":     "admin",
			"x-fraise-assertion": "forged",
		})
		if got, want := userNames(t, g), []string{"Alice", "Bob"}; !slices.Equal(got, want) {
			t.Fatalf("got users %v, want %v (the forged tenant must be ignored)", got, want)
		}
	})

	t.Run("the core refuses an end user's certificate", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+s.addrs.CoreHTTP+"/graphql", strings.NewReader(`{"query":"{ users { id } }"}`))
		resp, err := s.client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want the TLS handshake refused: only the gateway's certificate opens the core", resp.StatusCode)
		}
	})

	t.Run("the core refuses requests without a valid assertion", func(t *testing.T) {
		for _, hdrs := range []map[string]string{
			nil,
			{"x-fraise-tenant": demo.TenantAcme, "x-fraise-subject": "alice"},
			{"x-fraise-assertion": "eyJhbGciOiJFZERTQSJ9.e30.AAAA"},
			{"Authorization": "Bearer " + acme},
		} {
			status, _, g := post(t, s.asGW, s.addrs.CoreHTTP, q, hdrs)
			if status != http.StatusUnauthorized || len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
				t.Fatalf("headers %v: got status %d errors %+v, want 401 UNAUTHENTICATED", hdrs, status, g.Errors)
			}
			if len(g.Data) > 0 && string(g.Data) != "null" {
				t.Fatalf("headers %v: got data %s, want none", hdrs, g.Data)
			}
		}
	})

	t.Run("the per-tenant limit answers 429 while another tenant is served", func(t *testing.T) {
		var limited bool
		for i := 0; i < 2*perTenantLimit+2 && !limited; i++ {
			status, hdr, g := post(t, s.client, s.addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + acme})
			switch status {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				limited = true
				ra, err := strconv.Atoi(hdr.Get("Retry-After"))
				if err != nil || ra < 0 || ra > 60 {
					t.Errorf("got Retry-After %q, want seconds until the minute resets", hdr.Get("Retry-After"))
				}
				if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "RATE_LIMITED" {
					t.Errorf("got errors %+v, want extensions.code RATE_LIMITED", g.Errors)
				}
			default:
				t.Fatalf("request %d: got status %d, want 200 or 429", i, status)
			}
		}
		if !limited {
			t.Fatalf("no 429 after %d requests with a limit of %d a minute", 2*perTenantLimit+2, perTenantLimit)
		}
		status, _, g := post(t, s.client, s.addrs.Gateway, q, map[string]string{"Authorization": "Bearer " + globex})
		if status != http.StatusOK {
			t.Fatalf("tenant B: got status %d, want 200 while tenant A is limited", status)
		}
		if got, want := userNames(t, g), []string{"Carol", "Dave"}; !slices.Equal(got, want) {
			t.Fatalf("tenant B: got users %v, want %v", got, want)
		}
	})

	t.Run("extauthz's metrics count the gateway's checks", func(t *testing.T) {
		if s.addrs.AuthzAdmin == "" {
			t.Fatal("fraise dev did not report extauthz's admin address")
		}
		resp, err := http.Get("http://" + s.addrs.AuthzAdmin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The subtests above sent tokens that were accepted for reads and
		// requests refused for want of one: both were counted.
		allowed := metricValue(string(b), `fraise_authz_checks_total{kind="jwt",op="read",result="allow",status="200"}`)
		refused := metricValue(string(b), `fraise_authz_checks_total{kind="none",op="",result="deny",status="401"}`)
		if allowed < 3 || refused < 2 {
			t.Fatalf("got %v allowed reads and %v refusals without a credential, want at least 3 and 2:\n%s", allowed, refused, b)
		}
	})
}

// metricValue returns the value of the series named exactly (with its
// labels) in a Prometheus text exposition, 0 when absent.
func metricValue(exposition, series string) float64 {
	for _, l := range strings.Split(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
