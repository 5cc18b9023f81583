package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestServeAuthzWiring runs `fraise authz` as configured in fraise.toml,
// with API keys and the audit table on a real PostgreSQL, and checks what
// the configuration promises: an API key is accepted over gRPC, the admin
// port serves the assertion JWKS that verifies the assertion, and on
// shutdown the decision reaches the audit table.
func TestServeAuthzWiring(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	postgrestest.Migrate(t, pg, "postgres")
	keyFile := mustAssertionKeyFile(t)
	is := tokentest.NewIssuer(t, "https://idp.test/", "fraise", time.Now())

	const tenant = "11111111-1111-4111-8111-111111111111"
	k, raw, err := apikey.Generate(apikey.NewKey{Tenant: tenant, CreatedBy: "test", Roles: []string{"viewer"}}, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := postgres.Open(ctx, pg.AdminURL("postgres"), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := postgres.NewAPIKeys(admin).Create(ctx, k); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	cfg.TLS = testTLS(t)
	cfg.Authz.AssertionKey = "file://" + keyFile
	// The issuer is one realm bound to its tenant (security #13, defect 3).
	cfg.Authz.Issuers = []config.Issuer{{Issuer: is.Issuer, Audiences: []string{is.Audience}, JWKSFile: is.JWKSFile, Algorithms: []string{"ES256"},
		Tenant: tenant}}
	cfg.Authz.DatabaseURL = "env://AUTHZ_DB"
	cfg.Authz.Audit = true
	getenv := func(k string) string {
		if k == "AUTHZ_DB" {
			return pg.URL("fraise_app", "postgres")
		}
		return ""
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The JWKS port the core follows, over TLS with the internal CA's
	// certificate (security #13, defect 5): the CA of every hop.
	jwksLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	env := Env{Getenv: getenv, Stdout: io.Discard, Stderr: io.Discard}
	go func() {
		done <- serveAuthz(runCtx, cfg, env, slog.New(slog.NewTextHandler(io.Discard, nil)), ln, adminLn, jwksLn)
	}()
	t.Cleanup(cancel)

	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, cfg.TLS, cfg.TLS.GatewayCert, cfg.TLS.GatewayKey))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitCtx, stop := context.WithTimeout(ctx, 20*time.Second)
	defer stop()
	if _, err := healthpb.NewHealthClient(conn).Check(waitCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("health: %v", err)
	}
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: "POST", Path: "/graphql", Host: "fraise.test",
			Headers: map[string]string{"authorization": "Bearer " + raw, "content-type": "application/json"},
			Body:    `{"query":"{ users { id } }"}`,
		}},
	}})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("API key check: got %v, %v, want allowed", resp, err)
	}
	var signed string
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == assertion.Header {
			signed = h.GetHeader().GetValue()
		}
	}

	r, err := http.Get("http://" + adminLn.Addr().String() + extauthz.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	keys, err := assertion.ParseJWKS(b)
	if err != nil {
		t.Fatalf("admin JWKS: %v (%s)", err, b)
	}
	a, err := assertion.NewVerifier(keys, nil).Verify(signed, assertion.AudienceGraphQL)
	if err != nil || a.Principal.Subject != "apikey:"+k.ID {
		t.Fatalf("assertion: got %+v, %v, want apikey:%s", a, err, k.ID)
	}
	// A core following the JWKS port with its client (tls.ca) verifies it.
	client, err := assertionKeyClient(cfg.TLS.CA)
	if err != nil {
		t.Fatal(err)
	}
	core := assertion.NewVerifier(nil, nil)
	if err := followAssertionKeys(runCtx, core, "https://"+jwksLn.Addr().String()+extauthz.JWKSPath, client, time.Hour,
		slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatalf("following the JWKS port: %v", err)
	}
	if a, err := core.Verify(signed, assertion.AudienceGraphQL); err != nil || a.Principal.Subject != "apikey:"+k.ID {
		t.Fatalf("assertion through the JWKS port: got %+v, %v, want apikey:%s", a, err, k.ID)
	}

	// A refused request too, then the admin port's metrics count both.
	if resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-2", Method: "POST", Path: "/graphql", Host: "fraise.test", Headers: map[string]string{"content-type": "application/json"},
		}},
	}}); err != nil || resp.GetDeniedResponse() == nil {
		t.Fatalf("check without a credential: got %v, %v, want denied", resp, err)
	}
	r, err = http.Get("http://" + adminLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	for _, want := range []string{
		`fraise_authz_checks_total{kind="apikey",op="read",result="allow",status="200"} 1`,
		`fraise_authz_checks_total{kind="none",op="",result="deny",status="401"} 1`,
		`fraise_authz_check_duration_seconds_count{result="allow"} 1`,
		`fraise_authz_policy_reloads_total{result="loaded"} 1`,
		`fraise_authz_policy_info{revision="`,
		"go_goroutines ",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A token of the bound realm naming another tenant is refused.
	other := is.Sign(t, is.Claims("mallory", "22222222-2222-4222-8222-222222222222", "admin"))
	if resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-3", Method: "POST", Path: "/graphql", Host: "fraise.test",
			Headers: map[string]string{"authorization": "Bearer " + other, "content-type": "application/json"},
			Body:    `{"query":"{ users { id } }"}`,
		}},
	}}); err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("token naming a tenant outside its issuer's: got %v, %v, want denied with 401", resp, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serveAuthz: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serveAuthz did not stop")
	}
	c, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var subject, reason string
	if err := c.QueryRow(ctx, "select subject, reason from fraise.authz_decisions where request_id = 'req-1'").Scan(&subject, &reason); err != nil {
		t.Fatalf("audit row: %v", err)
	}
	if subject != "apikey:"+k.ID || !strings.Contains(reason, "viewer") {
		t.Fatalf("audit row: got %q %q", subject, reason)
	}
	var used *time.Time
	if err := c.QueryRow(ctx, "select last_used_at from fraise.api_keys where id = $1", k.ID).Scan(&used); err != nil || used == nil {
		t.Fatalf("last use: got %v, %v, want it written on shutdown", used, err)
	}
}

// TestServeAuthzStoppedWhileStarting stops extauthz before it has loaded
// its policy (whose tests run first): a stop, not a failure, and its
// ports are closed.
func TestServeAuthzStoppedWhileStarting(t *testing.T) {
	keyFile := mustAssertionKeyFile(t)
	is := tokentest.NewIssuer(t, "https://idp.test/", "fraise", time.Now())
	cfg := config.Default()
	cfg.Authz.AssertionKey = "file://" + keyFile
	cfg.Authz.Issuers = []config.Issuer{{Issuer: is.Issuer, Audiences: []string{is.Audience}, JWKSFile: is.JWKSFile, Algorithms: []string{"ES256"}}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	env := Env{Getenv: func(string) string { return "" }, Stdout: io.Discard, Stderr: io.Discard}
	if err := serveAuthz(ctx, cfg, env, slog.New(slog.NewTextHandler(io.Discard, nil)), ln, nil, nil); err != nil {
		t.Fatalf("stopped while starting: got %v, want a clean stop", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the gRPC port still accepts connections")
	}
}

// mustAssertionKeyFile writes a new Ed25519 assertion key as PEM and
// returns its path.
func mustAssertionKeyFile(t *testing.T) string {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "assertion.key")
	pem, err := assertion.MarshalPrivateKeyPEM(mustEdKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile
}
