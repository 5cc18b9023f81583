package e2e_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/adapters/smtp/smtptest"
	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/test/stack"
)

// rotationTOML configures what TestSecretsRotateUnderLoad rotates beyond
// the stack's own: observers with a webhook and an email action, asking
// the rate limiter before each (hour-long action limits, so that every
// Allow call is counted in Redis), an SMTP login and a Flight ticket key
// in files, and the tier the streams run in.
const rotationTOML = `
[ratelimit.tiers.bulk]
tenant = { requests = 1000000, unit = "minute" }
[ratelimit.actions]
webhook = { requests = 1000000, unit = "hour" }
email = { requests = 1000000, unit = "hour" }
[observers]
enabled = true
allow_private_targets = true
rate_limits = true
[observers.smtp]
addr = %q
from = "fraise@localhost"
username = %q
password = %q
ca = %q
[flight]
ticket_key = %q
[[flight.datasets]]
name = "people.users"
graphql_type = "User"
columns = [{ name = "id", type = "uuid" }, { name = "name", type = "text" }]
`

// TestSecretsRotateUnderLoad runs the whole stack with every hop on TLS,
// PostgreSQL and Redis included (TLS-only servers wanting client
// certificates and passwords), Envoy following fraise xds, and rotates
// every kind of secret in turn while a steady stream of reads and a
// stream of writes (each firing a signed webhook and an email through the
// observers) run: the internal servers' certificate, the gateway's and
// the core's client certificates, the client certificates towards
// PostgreSQL and Redis, the database password, the Redis password, the
// assertion key, the Flight ticket key, the SMTP login and a webhook's
// signing key. Each rotation is shown taken (a new connection presenting
// the new certificate, a reload counted in /metrics or logged, a backend
// connected with the new credential; the renewed certificate's expiry in
// fraise_tls_certificate_expiry_timestamp_seconds of the core and
// extauthz, and in Envoy's own expiry gauges for its listener and its
// client certificate) before the next, and every request,
// delivery and rate-limit decision is counted: none may fail. The counts
// are printed.
func TestSecretsRotateUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	mail := smtptest.Start(t)
	files := map[string]string{}
	for name, content := range map[string]string{
		"smtp-username": mail.Username, "smtp-password": mail.Password, "smtp-ca.pem": string(mail.CAPEM),
		"ticket-key": strings.Repeat("t", 32) + "\n",
	} {
		files[name] = filepath.Join(dir, name)
		write(files[name], content)
	}
	// The core trusts a second assertion key: a spare one now, the next
	// one when the key rotates.
	_, spare, _ := ed25519.GenerateKey(rand.Reader)
	files["next.pub"] = filepath.Join(dir, "next.pub")
	write(files["next.pub"], string(mustPublicPEM(t, spare)))

	s := stack.StartWith(t, stack.Options{
		XDS: true, DataTLS: true,
		TOML: fmt.Sprintf(rotationTOML, mail.Addr, "file://"+files["smtp-username"], "file://"+files["smtp-password"],
			files["smtp-ca.pem"], "file://"+files["ticket-key"]),
		SetupSQL:      "SELECT fraise.observe_table('public.posts')",
		AssertionKeys: []string{"file://" + files["next.pub"]},
		Env: map[string]string{
			// Info: the rate limiter's and extauthz's reloads are logged.
			"FRAISE_LOG_LEVEL":                  "info",
			"FRAISE_SECRETS_RELOAD_INTERVAL":    "100ms",
			"FRAISE_AUTHZ_ASSERTION_KEY_RELOAD": "100ms",
			"FRAISE_DATABASE_MAX_CONN_LIFETIME": "1s",
			"FRAISE_REDIS_MAX_CONN_LIFETIME":    "1s",
			// A limiter that cannot reach Redis refuses: a Redis
			// credential that does not work fails requests, visibly.
			"FRAISE_RATELIMIT_FAILURE_MODE_DENY": "true",
			"FRAISE_GATEWAY_AUTHZ_TIMEOUT":       "5s",
			// Envoy's 100ms for the limiter's answer is missed on a
			// loaded machine, and then refused (failure_mode_deny): a
			// failure the rotations did not cause. A credential Redis
			// refuses still fails at once.
			"FRAISE_RATELIMIT_TIMEOUT": "5s",
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(s.Logs(), "\n") {
				// At info level every decision is logged: leave them out.
				// Save the access log's failures: their flags say which
				// hop failed.
				if !strings.Contains(l, `msg="authz decision"`) && (!strings.HasPrefix(l, "envoy: {") || !strings.Contains(l, `"status":200`)) {
					lines = append(lines, l)
				}
			}
			t.Logf("fraise dev's log but decisions and the access log, the last lines:\n%s", strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
	})
	token := func(subject, roles string) string {
		return strings.TrimSpace(s.Run(t, "token", "--dir", s.Dir, "--tenant", demo.TenantAcme, "--subject", subject, "--roles", roles, "--tier", "bulk"))
	}
	reader, admin, analyst := token("alice", "viewer"), token("root", "admin"), token("ann", "analyst")
	s.MustServe(t, admin)

	// The observer rule: every post fires a signed webhook and an email.
	hook := newSignedHook(t, "whsec-1")
	status, g := s.GraphQL(t, admin, map[string]any{
		"query": `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded rule { id } } }`,
		"variables": map[string]any{"in": map[string]any{
			"name": "posts", "table": "public.posts", "operations": []any{"INSERT"}, "columns": []any{"id", "title"},
			"actions": []any{
				map[string]any{"kind": "webhook", "url": hook.URL, "secret": "whsec-1"},
				map[string]any{"kind": "email", "to": []any{"ops@acme.test"}, "subject": "Post {{after.title}}"},
			},
		}},
	})
	var created struct {
		CreateObserverRule struct {
			Succeeded bool
			Rule      struct{ ID string }
		}
	}
	if err := json.Unmarshal(g.Data, &created); status != http.StatusOK || err != nil || !created.CreateObserverRule.Succeeded {
		t.Fatalf("createObserverRule: status %d data %s errors %+v", status, g.Data, g.Errors)
	}
	ruleID := created.CreateObserverRule.Rule.ID

	reads := startStream(t, s, reader)
	reads.title = "secrets rotated under a steady stream"
	writes := startWrites(t, s, admin)
	reads.waitAnswers(t, settleAnswers)
	writes.waitAnswers(t, 3)

	ca, err := devcerts.LoadCA(s.Certs.CACert, s.Certs.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	phase := func(name string) {
		t.Helper()
		reads.next(t, name)
		writes.phase.Store(name)
	}
	settle := func() {
		t.Helper()
		reads.waitAnswers(t, settleAnswers)
		writes.waitAnswers(t, 3)
	}

	// 1. The internal servers' certificate, renewed in place: the core's
	// GraphQL and Flight ports, extauthz, the rate limiter and the xDS
	// server present it from their next handshake.
	phase("server cert")
	renewed, err := ca.Issue(s.Certs.ServerCert, s.Certs.ServerKey, devcerts.Leaf{Name: "localhost", Hosts: []string{"localhost", "127.0.0.1", "::1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"core graphql": s.Addrs.CoreHTTP, "core flight": s.Addrs.CoreFlight,
		"extauthz": s.Addrs.Authz, "ratelimit": s.Addrs.RateLimit, "xds": s.Addrs.XDS} {
		waitFor(t, name+" presenting the renewed certificate", func() (bool, string) {
			got := servedSerial(t, s, addr)
			return got == renewed.SerialNumber.Text(16), "serial " + got
		})
	}
	// Each process with a /metrics exports the renewed certificate's
	// expiry.
	for name, admin := range map[string]string{"core": s.Addrs.CoreAdmin, "extauthz": s.Addrs.AuthzAdmin} {
		waitExpiry(t, name, admin, "tls.server_cert", renewed)
	}
	waitEnvoyExpiry(t, s, renewed, "envoy_listener_ssl_certificate_expiration_unix_time_seconds")
	settle()

	// 2. The gateway's client certificate, renewed in place: Envoy follows
	// the files of its SDS secret.
	phase("gateway cert")
	gw, err := ca.Issue(s.Certs.GatewayCert, s.Certs.GatewayKey, devcerts.Leaf{Name: devcerts.GatewayName, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Envoy presenting the renewed gateway certificate", func() (bool, string) {
		got := envoyCertSerials(t, s)
		return got[gw.SerialNumber.Text(16)] > 0, fmt.Sprintf("TLS contexts by serial %v", got)
	})
	// Envoy exports each certificate's expiry itself, per cluster.
	waitEnvoyExpiry(t, s, gw, `envoy_cluster_ssl_certificate_expiration_unix_time_seconds{envoy_tls_certificate="upstream_certificate",envoy_cluster_name="core_http"}`)
	settle()

	// 3. The core's client certificate towards the rate limiter.
	phase("core client cert")
	reloads := coreReloads(t, s)
	if _, err := ca.Issue(s.Certs.CoreClientCert, s.Certs.CoreClientKey, devcerts.Leaf{Name: devcerts.CoreClientName, Client: true}); err != nil {
		t.Fatal(err)
	}
	reloads.wait(t, s, "tls.core_client_cert")
	settle()

	// 4. The client certificates towards PostgreSQL and Redis: the
	// database's new connections present the new one (pg_stat_ssl).
	phase("data certs")
	reloads = coreReloads(t, s)
	moves := strings.Count(s.Logs(), "moved to new redis connections")
	dbCert := s.Postgres.TLS.IssueClient(t, "fraise_app", s.Data.DatabaseCert, s.Data.DatabaseKey)
	redisCert := s.Redis.TLS.IssueClient(t, "fraise", s.Data.RedisCert, s.Data.RedisKey)
	reloads.wait(t, s, "database.tls.cert", "redis.tls.cert")
	waitExpiry(t, "core", s.Addrs.CoreAdmin, "database.tls.cert", dbCert)
	waitExpiry(t, "extauthz", s.Addrs.AuthzAdmin, "database.tls.cert", dbCert)
	waitExpiry(t, "core", s.Addrs.CoreAdmin, "redis.tls.cert", redisCert)
	waitFor(t, "database connections with the new client certificate", func() (bool, string) {
		n := queryInt(t, s, "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'fraise_app' AND s.client_serial = $1::numeric",
			dbCert.SerialNumber.String())
		return n >= 3, fmt.Sprintf("%d backends", n)
	})
	if !waitLogCount(s, "moved to new redis connections", moves+1) {
		t.Fatal("the rate limiter did not move to new Redis connections")
	}
	settle()

	// 5. The database password: the file first, ALTER ROLE after; new
	// connections authenticate with the new password.
	phase("database password")
	reloads = coreReloads(t, s)
	b, err := os.ReadFile(s.Data.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	write(s.Data.DatabaseURL, strings.Replace(string(b), stack.DatabasePassword, "app-password-2", 1))
	reloads.wait(t, s, "database.url")
	authzReloads(t, s).waitAtLeast(t, s, "authz.database_url", 1)
	// New connections are opened (connections live 1s) while the server
	// does not know the new password yet: they fall back to the previous.
	if !s.WaitLog("database password not accepted yet", 30*time.Second) {
		t.Fatal("no connection fell back to the previous database password before ALTER ROLE")
	}
	altered := time.Now()
	exec(t, s, "ALTER ROLE fraise_app PASSWORD 'app-password-2'")
	waitFor(t, "database connections opened with the new password", func() (bool, string) {
		n := queryInt(t, s, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'fraise_app' AND backend_start > $1", altered)
		return n >= 3, fmt.Sprintf("%d backends", n)
	})
	settle()

	// 6. The Redis password: both accepted during the change (ACL), the
	// file changed, the old one removed.
	phase("redis password")
	reloads = coreReloads(t, s)
	moves = strings.Count(s.Logs(), "moved to new redis connections")
	redisACL(t, s, stack.RedisPassword, ">redis-password-2")
	write(s.Data.RedisPassword, "redis-password-2\n")
	reloads.wait(t, s, "redis.password")
	if !waitLogCount(s, "moved to new redis connections", moves+1) {
		t.Fatal("the rate limiter did not move to the new Redis password")
	}
	redisACL(t, s, "redis-password-2", "<"+stack.RedisPassword)
	settle()

	// 7. The assertion key: the core trusts the next key first, then
	// extauthz signs with it.
	phase("assertion key")
	reloads = coreReloads(t, s)
	_, next, _ := ed25519.GenerateKey(rand.Reader)
	write(files["next.pub"], string(mustPublicPEM(t, next)))
	reloads.wait(t, s, "server.assertion_keys[1]")
	priv, err := assertion.MarshalPrivateKeyPEM(next)
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(s.Dir, "keys", "assertion.key"), string(priv))
	kid := assertion.KeyID(next.Public().(ed25519.PublicKey))
	if !s.WaitLog(" kid="+kid, 30*time.Second) {
		t.Fatal("extauthz did not rotate to the new assertion key")
	}
	settle()

	// 8. The Flight ticket key: a ticket issued before the rotation is
	// redeemed after it, and a new one too.
	phase("ticket key")
	fc := s.FlightClient(t, s.Addrs.Gateway)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fctx := stack.Bearer(ctx, analyst)
	users := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"people", "users"}}
	before := flightTicket(t, writes, fc, fctx, users)
	reloads = coreReloads(t, s)
	write(files["ticket-key"], strings.Repeat("u", 32)+"\n")
	reloads.wait(t, s, "flight.ticket_key")
	flightRead(t, writes, fc, fctx, before, "a ticket of the previous key")
	flightRead(t, writes, fc, fctx, flightTicket(t, writes, fc, fctx, users), "a ticket of the new key")
	settle()

	// 9. The SMTP login: the new one in the files before the mail server
	// knows it (sends fall back to the previous one), then the server
	// switched.
	phase("smtp login")
	reloads = coreReloads(t, s)
	write(files["smtp-username"], "fraise-2\n")
	write(files["smtp-password"], "s3cret-2\n")
	reloads.wait(t, s, "observers.smtp.username", "observers.smtp.password")
	// An email is sent before the mail server knows the new login: it
	// is refused, and sent again with the previous one.
	waitFor(t, "a send with the new login refused by the server", func() (bool, string) {
		n := mail.Refused()
		return n > 0, fmt.Sprintf("%d refused", n)
	})
	mail.Accept("fraise-2", "s3cret-2")
	mail.Revoke(mail.Username, mail.Password)
	sentBefore := len(mail.Messages())
	waitFor(t, "an email sent with the new login", func() (bool, string) {
		msgs := mail.Messages()
		for _, m := range msgs[sentBefore:] {
			if m.User == "fraise-2" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d emails since", len(msgs)-sentBefore)
	})
	settle()

	// 10. A webhook's signing key: a tenant's secret, stored with its
	// rule in the database and changed through the rule API; the receiver
	// accepts both while jobs signed with the old one drain.
	phase("webhook key")
	hook.accept("whsec-2")
	status, g = s.GraphQL(t, admin, map[string]any{
		"query": `mutation($id: ID!, $in: ObserverRulePatch!) { updateObserverRule(id: $id, input: $in) { succeeded } }`,
		"variables": map[string]any{"id": ruleID, "in": map[string]any{"actions": []any{
			map[string]any{"kind": "webhook", "url": hook.URL, "secret": "whsec-2"},
			map[string]any{"kind": "email", "to": []any{"ops@acme.test"}, "subject": "Post {{after.title}}"},
		}}},
	})
	var updated struct{ UpdateObserverRule struct{ Succeeded bool } }
	if err := json.Unmarshal(g.Data, &updated); status != http.StatusOK || err != nil || len(g.Errors) > 0 || !updated.UpdateObserverRule.Succeeded {
		t.Fatalf("updateObserverRule: status %d data %s errors %+v", status, g.Data, g.Errors)
	}
	waitFor(t, "a delivery signed with the new key", func() (bool, string) {
		n := hook.signedWith("whsec-2")
		return n > 0, fmt.Sprintf("%d deliveries", n)
	})
	settle()

	reads.finish(t)
	writes.finish(t)

	// Every write's webhook and email delivered, none retried or dead
	// lettered, signed with a key the receiver held.
	wrote := writes.ok.Load()
	waitFor(t, "every write's webhook and email delivered", func() (bool, string) {
		h, e := hook.count(), len(mail.Messages())
		return int64(h) >= wrote && int64(e) >= wrote, fmt.Sprintf("%d webhooks and %d emails for %d writes", h, e, wrote)
	})
	metrics := coreMetrics(t, s)
	retried := stack.MetricValue(metrics, `fraise_observer_jobs_total{outcome="retried"}`)
	dead := stack.MetricValue(metrics, `fraise_observer_jobs_total{outcome="dead_lettered"}`)
	deferred := stack.MetricValue(metrics, `fraise_observer_jobs_total{outcome="deferred"}`)
	// Every action asked the rate limiter over mutual TLS (none failed
	// open): its hour counters in Redis hold one hit per job.
	hits := actionHits(t, s)
	t.Logf("observers: %d writes, %d webhooks (%d badly signed), %d emails (%d logins refused and retried with the previous one), retried %v, dead-lettered %v, deferred %v, limiter hits %v",
		wrote, hook.count(), hook.bad.Load(), len(mail.Messages()), mail.Refused(), retried, dead, deferred, hits)
	fmt.Printf("observers under rotation: %d writes, %d webhooks, %d emails, %d bad signatures, %v retried, %v dead-lettered, limiter hits %v\n",
		wrote, hook.count(), len(mail.Messages()), hook.bad.Load(), retried, dead, hits)
	if hook.bad.Load() > 0 || retried > 0 || dead > 0 || deferred > 0 {
		t.Errorf("got %d badly signed webhooks, %v retried, %v dead-lettered and %v deferred jobs, want none", hook.bad.Load(), retried, dead, deferred)
	}
	if hits["webhook"] != wrote || hits["email"] != wrote {
		t.Errorf("rate limiter hits: got %v, want %d of each action (every job asked the limiter)", hits, wrote)
	}

	// The old credentials are refused now: the rotations were real.
	if _, err := pgx.Connect(context.Background(), s.Postgres.URLWithPassword("fraise_app", stack.DatabasePassword, s.Database)); err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Errorf("the old database password: got %v, want refused (28P01)", err)
	}
	old := goredis.NewClient(&goredis.Options{Addr: s.Redis.Addr, Password: stack.RedisPassword, TLSConfig: s.Redis.TLS.ClientConfig(t, "old")})
	defer old.Close()
	if err := old.Ping(context.Background()).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("the old Redis password: got %v, want WRONGPASS", err)
	}
	for _, bad := range []string{"WRONGPASS", "password authentication failed", "redis credentials changed but not accepted", "bad certificate", "unknown certificate"} {
		if strings.Contains(s.Logs(), bad) {
			t.Errorf("the stack logged %q: %s", bad, grepLines(s.Logs(), bad))
		}
	}
}

// mustPublicPEM is k's public key in PEM, as server.assertion_keys holds it.
func mustPublicPEM(tb testing.TB, k ed25519.PrivateKey) []byte {
	tb.Helper()
	b, err := assertion.MarshalPublicKeyPEM(k.Public().(ed25519.PublicKey))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// servedSerial connects to addr as Envoy does (the gateway's
// certificate, HTTP/2) and returns the serial of the certificate served,
// in hex.
func servedSerial(tb testing.TB, s *stack.Stack, addr string) string {
	tb.Helper()
	c := s.TLSConfig(tb, true)
	c.Certificates = []tls.Certificate{s.GatewayCertificate(tb)}
	c.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16)
}

// reloadCounts are the loaded reloads of each secret as a component's
// /metrics counted them at one moment.
type reloadCounts struct {
	exposition string
	admin      string
}

func coreMetrics(tb testing.TB, s *stack.Stack) string {
	tb.Helper()
	_, body := httpGet(tb, http.DefaultClient, "http://"+s.Addrs.CoreAdmin+"/metrics")
	return body
}

func coreReloads(tb testing.TB, s *stack.Stack) reloadCounts {
	tb.Helper()
	return reloadCounts{exposition: coreMetrics(tb, s), admin: s.Addrs.CoreAdmin}
}

func authzReloads(tb testing.TB, s *stack.Stack) reloadCounts {
	tb.Helper()
	return reloadCounts{admin: s.Addrs.AuthzAdmin}
}

func reloadSeries(secret string) string {
	return fmt.Sprintf(`fraise_secret_reloads_total{result="loaded",secret=%q}`, secret)
}

// wait waits until each secret's loaded reloads rose past what r counted.
func (r reloadCounts) wait(tb testing.TB, s *stack.Stack, secrets ...string) {
	tb.Helper()
	for _, sec := range secrets {
		r.waitAtLeast(tb, s, sec, stack.MetricValue(r.exposition, reloadSeries(sec))+1)
	}
}

// waitAtLeast waits until the secret's loaded reloads reach n.
func (r reloadCounts) waitAtLeast(tb testing.TB, s *stack.Stack, secret string, n float64) {
	tb.Helper()
	waitFor(tb, secret+" reloaded", func() (bool, string) {
		_, body := httpGet(tb, http.DefaultClient, "http://"+r.admin+"/metrics")
		got := stack.MetricValue(body, reloadSeries(secret))
		return got >= n, fmt.Sprintf("%v reloads, want %v", got, n)
	})
}

// waitExpiry waits until the /metrics on admin (component name's)
// exports cert's expiry as that of the certificate it names key.
func waitExpiry(tb testing.TB, name, admin, key string, cert *x509.Certificate) {
	tb.Helper()
	series := fmt.Sprintf(`fraise_tls_certificate_expiry_timestamp_seconds{certificate=%q}`, key)
	waitFor(tb, name+" exporting the expiry of the new "+key, func() (bool, string) {
		_, body := httpGet(tb, http.DefaultClient, "http://"+admin+"/metrics")
		got := stack.MetricValue(body, series)
		return got == float64(cert.NotAfter.Unix()), fmt.Sprintf("%s = %v, want %d", series, got, cert.NotAfter.Unix())
	})
}

// waitEnvoyExpiry waits until a series of Envoy's /stats/prometheus
// starting with prefix exports cert's expiry.
func waitEnvoyExpiry(tb testing.TB, s *stack.Stack, cert *x509.Certificate, prefix string) {
	tb.Helper()
	waitFor(tb, "Envoy exporting the expiry of the new certificate as "+prefix, func() (bool, string) {
		var seen []string
		for _, l := range strings.Split(string(envoyAdmin(tb, s, "/stats/prometheus")), "\n") {
			if !strings.HasPrefix(l, prefix) {
				continue
			}
			i := strings.LastIndexByte(l, ' ')
			if f, err := strconv.ParseFloat(l[i+1:], 64); err == nil && f == float64(cert.NotAfter.Unix()) {
				return true, ""
			}
			seen = append(seen, l)
		}
		return false, fmt.Sprintf("%v, want %d", seen, cert.NotAfter.Unix())
	})
}

// waitLogCount waits up to 30s for the stack's log to hold substr n times.
func waitLogCount(s *stack.Stack, substr string, n int) bool {
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(s.Logs(), substr) < n {
		if time.Now().After(deadline) {
			return false
		}
		s.WaitLog(substr, time.Second)
	}
	return true
}

func queryInt(tb testing.TB, s *stack.Stack, sql string, args ...any) int {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.AdminURL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func exec(tb testing.TB, s *stack.Stack, sql string) {
	tb.Helper()
	stack.Exec(tb, s.AdminURL, sql)
}

// redisACL changes the default user's passwords (rule: ">new" adds one,
// "<old" removes one), authenticating with password.
func redisACL(tb testing.TB, s *stack.Stack, password, rule string) {
	tb.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Redis.Addr, Password: password, TLSConfig: s.Redis.TLS.ClientConfig(tb, "rotation-test")})
	defer c.Close()
	if err := c.Do(context.Background(), "ACL", "SETUSER", "default", rule).Err(); err != nil {
		tb.Fatalf("ACL SETUSER default %s: %v", rule, err)
	}
}

// actionHits sums the rate limiter's counters of each observer action in
// Redis (one key per tenant and hour).
func actionHits(tb testing.TB, s *stack.Stack) map[string]int64 {
	tb.Helper()
	ctx := context.Background()
	c := goredis.NewClient(&goredis.Options{Addr: s.Redis.Addr, Password: "redis-password-2", TLSConfig: s.Redis.TLS.ClientConfig(tb, "rotation-test")})
	defer c.Close()
	hits := map[string]int64{}
	for _, action := range []string{"webhook", "email"} {
		keys, err := c.Keys(ctx, "*_action_"+action+"_*").Result()
		if err != nil {
			tb.Fatal(err)
		}
		for _, k := range keys {
			n, err := c.Get(ctx, k).Int64()
			if err != nil {
				tb.Fatal(err)
			}
			hits[action] += n
		}
	}
	return hits
}

// flightTicket asks for a ticket of d, counting the call in w.
func flightTicket(tb testing.TB, w *writeStream, c flight.Client, ctx context.Context, d *flight.FlightDescriptor) *flight.Ticket {
	tb.Helper()
	w.extra.Add(1)
	info, err := c.GetFlightInfo(ctx, d)
	if err != nil {
		w.fail(fmt.Errorf("GetFlightInfo: %w", err))
		tb.Fatalf("GetFlightInfo: %v", err)
	}
	return info.Endpoint[0].Ticket
}

// flightRead redeems t, counting the call in w.
func flightRead(tb testing.TB, w *writeStream, c flight.Client, ctx context.Context, t *flight.Ticket, what string) {
	tb.Helper()
	w.extra.Add(1)
	stream, err := c.DoGet(ctx, t)
	if err == nil {
		for {
			if _, err = stream.Recv(); err != nil {
				break
			}
		}
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		w.fail(fmt.Errorf("DoGet, %s: %w", what, err))
		tb.Fatalf("DoGet, %s: %v", what, err)
	}
}

// signedHook is a webhook receiver that checks each delivery's signature
// against the keys it accepts and counts deliveries by key.
type signedHook struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []string
	byKey    map[string]int
	seen     map[string]bool // idempotency keys: a redelivery counts once
	bad      atomic.Int64
	received atomic.Int64
}

func newSignedHook(tb testing.TB, key string) *signedHook {
	tb.Helper()
	h := &signedHook{keys: []string{key}, byKey: map[string]int{}, seen: map[string]bool{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.received.Add(1)
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, k := range h.keys {
			if webhook.Verify(k, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute) == nil {
				if id := r.Header.Get(webhook.HeaderIdempotencyKey); !h.seen[id] {
					h.seen[id] = true
					h.byKey[k]++
				}
				return
			}
		}
		h.bad.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	tb.Cleanup(h.Close)
	return h
}

func (h *signedHook) accept(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.keys = append(h.keys, key)
}

func (h *signedHook) signedWith(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byKey[key]
}

// count is the deliveries received with a good signature, each once.
func (h *signedHook) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// writeStream writes a post through Envoy every writeEvery, each firing
// the observer rule; every answer is counted and any but a 200 with the
// post fails the test. Flight calls the test makes are counted with it.
type writeStream struct {
	phase          atomic.Value // string
	sent, ok, done atomic.Int64
	extra          atomic.Int64 // Flight calls
	stop           chan struct{}
	wg             sync.WaitGroup
	mu             sync.Mutex
	failures       []string
	answered       chan struct{} // closed and replaced at each answer
}

const writeEvery = 250 * time.Millisecond

func startWrites(tb testing.TB, s *stack.Stack, token string) *writeStream {
	tb.Helper()
	status, g := s.GraphQL(tb, token, map[string]any{"query": `{ users { id } }`})
	var users struct{ Users []struct{ ID string } }
	if err := json.Unmarshal(g.Data, &users); status != http.StatusOK || err != nil || len(users.Users) == 0 {
		tb.Fatalf("users: status %d data %s", status, g.Data)
	}
	w := &writeStream{stop: make(chan struct{}), answered: make(chan struct{})}
	w.phase.Store("steady")
	c := newClient(tb, s, false)
	w.wg.Go(func() {
		tick := time.NewTicker(writeEvery)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			w.sent.Add(1)
			body, _ := json.Marshal(map[string]any{
				"query":     `mutation($in: CreatePostInput!) { createPost(input: $in) { __typename } }`,
				"variables": map[string]any{"in": map[string]any{"title": fmt.Sprintf("rotation %d", i), "authorId": users.Users[0].ID}},
			})
			if err := gatewayPost(c, s.Addrs.Gateway, token, body, stack.Response.HasData); err != nil {
				w.fail(fmt.Errorf("%s: %w", w.phase.Load(), err))
			} else {
				w.ok.Add(1)
			}
			w.done.Add(1)
			w.mu.Lock()
			close(w.answered)
			w.answered = make(chan struct{})
			w.mu.Unlock()
		}
	})
	tb.Cleanup(w.halt)
	return w
}

func (w *writeStream) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failures = append(w.failures, err.Error())
}

// waitAnswers waits until n more writes were answered.
func (w *writeStream) waitAnswers(tb testing.TB, n int64) {
	tb.Helper()
	want := w.done.Load() + n
	deadline := time.After(30 * time.Second)
	for w.done.Load() < want {
		w.mu.Lock()
		ch := w.answered
		w.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			tb.Fatalf("writes: not %d more answers within 30s", n)
		}
	}
}

func (w *writeStream) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// finish stops the writes, prints their counts and fails on any failure.
func (w *writeStream) finish(tb testing.TB) {
	tb.Helper()
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	line := fmt.Sprintf("writes under rotation (one every %s, each firing a webhook and an email): %d sent, %d ok, %d failed; Flight calls %d, failed %d\n",
		writeEvery, w.sent.Load(), w.ok.Load(), w.sent.Load()-w.ok.Load(), w.extra.Load(), len(w.failures)-int(w.sent.Load()-w.ok.Load()))
	tb.Log(line)
	fmt.Print(line)
	if len(w.failures) > 0 {
		tb.Errorf("%d writes or Flight calls failed, want 0; the first: %s", len(w.failures), strings.Join(w.failures[:min(len(w.failures), 5)], "\n"))
	}
}
