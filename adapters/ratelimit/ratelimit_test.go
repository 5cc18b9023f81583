package ratelimit_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
)

// mustCerts writes a development CA and its certificates (server, end
// user, gateway, core client) for one test.
func mustCerts(tb testing.TB) devcerts.Files {
	tb.Helper()
	f, err := devcerts.Generate(tb.TempDir(), devcerts.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// serverTLS is the service's mutual TLS as Fraise configures it, from the
// files of f, and the watcher that reads them again: the gateway and the
// core may call it.
func serverTLS(tb testing.TB, f devcerts.Files) (*tls.Config, *secretfile.Watcher) {
	tb.Helper()
	w := secretfile.NewWatcher(nil)
	cert, err := w.KeyPair("tls.server_cert", f.ServerCert, f.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	cas, err := w.CertPool("tls.ca", f.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	return secretfile.ServerTLS{Cert: cert, ClientCAs: cas, ClientSANs: []string{devcerts.GatewayName, devcerts.CoreClientName}}.Config(), w
}

// mustStart starts the service on a free loopback port with o's limits,
// Redis at redis and certs' TLS.
func mustStart(tb testing.TB, redis string, certs devcerts.Files, o ratelimit.Options) *ratelimit.Service {
	tb.Helper()
	o.GRPCAddr, o.RedisAddr = "127.0.0.1:0", redis
	if o.TLS == nil {
		o.TLS, _ = serverTLS(tb, certs)
	}
	s, err := ratelimit.Start(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// clientTLS returns a client's TLS configuration trusting the CAs in
// caFiles for the name localhost, presenting cert (none when empty).
func clientTLS(tb testing.TB, cert, key string, caFiles ...string) *tls.Config {
	tb.Helper()
	pool := x509.NewCertPool()
	for _, f := range caFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	c := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			tb.Fatal(err)
		}
		c.Certificates = []tls.Certificate{kp}
	}
	return c
}

func mustConn(tb testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// mustService starts the service and returns a client presenting the
// gateway's certificate, as Envoy does.
func mustService(tb testing.TB, redis string, o ratelimit.Options) (rlsv3.RateLimitServiceClient, *ratelimit.Service) {
	tb.Helper()
	certs := mustCerts(tb)
	s := mustStart(tb, redis, certs, o)
	gw := credentials.NewTLS(clientTLS(tb, certs.GatewayCert, certs.GatewayKey, certs.CACert))
	return rlsv3.NewRateLimitServiceClient(mustConn(tb, s.GRPCAddr(), gw)), s
}

// desc builds one descriptor from key, value pairs.
func desc(kv ...string) *commonrl.RateLimitDescriptor {
	d := &commonrl.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func try(c rlsv3.RateLimitServiceClient, ds ...*commonrl.RateLimitDescriptor) (*rlsv3.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "fraise", Descriptors: ds, HitsAddend: 1})
}

func ask(tb testing.TB, c rlsv3.RateLimitServiceClient, ds ...*commonrl.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	tb.Helper()
	r, err := try(c, ds...)
	if err != nil {
		tb.Fatalf("ShouldRateLimit: %v", err)
	}
	return r
}

func header(r *rlsv3.RateLimitResponse, key string) string {
	for _, h := range r.ResponseHeadersToAdd {
		if h.Key == key {
			return h.Value
		}
	}
	return ""
}

func hour(n uint32) ratelimit.Limit { return ratelimit.Limit{Requests: n, Unit: "hour"} }

// eventually retries f until it returns true or ten seconds pass: the
// service reloads its configuration and reconnects to Redis asynchronously.
func eventually(tb testing.TB, what string, f func(i int) bool) {
	tb.Helper()
	i := 0
	await.Until(tb, 10*time.Second, what, func() bool { i++; return f(i - 1) })
}

func TestConfigYAML(t *testing.T) {
	tests := []struct {
		name    string
		o       ratelimit.Options
		want    []string // lines the YAML must contain, in order
		wantErr string
	}{
		{
			name: "tiers and actions",
			o: ratelimit.Options{
				Tiers: map[string]ratelimit.Tier{
					"default":    {Tenant: ratelimit.Limit{Requests: 100, Unit: "second"}, Write: ratelimit.Limit{Requests: 10, Unit: "second", Shadow: true}},
					"enterprise": {Subject: ratelimit.Limit{Requests: 50, Unit: "minute"}},
				},
				Actions: map[string]ratelimit.Limit{"webhook": {Requests: 5, Unit: "second"}},
			},
			want: []string{
				"domain: fraise",
				"- key: tier", "  descriptors:", "  - key: tenant", "    rate_limit:", "      unit: second", "      requests_per_unit: 100",
				"    descriptors:", "    - key: op", "      value: write", "        requests_per_unit: 10", "      shadow_mode: true",
				"- key: tier", "  value: enterprise", "  - key: subject", "      unit: minute", "      requests_per_unit: 50",
				"- key: tenant", "  descriptors:", "  - key: action", "    value: webhook", "      requests_per_unit: 5",
			},
		},
		{name: "no default tier", o: ratelimit.Options{Tiers: map[string]ratelimit.Tier{"gold": {}}}, wantErr: `tier "default" is required`},
		{
			name:    "bad unit",
			o:       ratelimit.Options{Tiers: map[string]ratelimit.Tier{"default": {Read: ratelimit.Limit{Requests: 1, Unit: "fortnight"}}}},
			wantErr: "tier default: read: unit \"fortnight\"",
		},
		{
			name:    "bad action unit",
			o:       ratelimit.Options{Tiers: map[string]ratelimit.Tier{"default": {}}, Actions: map[string]ratelimit.Limit{"email": {Requests: 1}}},
			wantErr: "action email: unit \"\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ratelimit.ConfigYAML(tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest := string(b)
			for _, line := range tt.want {
				i := strings.Index(rest, line+"\n")
				if i < 0 {
					t.Fatalf("missing %q (in order) in:\n%s", line, b)
				}
				rest = rest[i+len(line):]
			}
		})
	}
}

// tiers is the configuration the integration tests share: small hourly
// budgets, so counts are exact whatever the clock does.
func tiers() ratelimit.Options {
	return ratelimit.Options{
		Tiers: map[string]ratelimit.Tier{
			"default":    {Tenant: hour(3), Read: hour(2), Write: hour(1), Flight: hour(1), Subject: hour(2)},
			"enterprise": {Tenant: hour(5), Subject: hour(4)},
		},
		Actions: map[string]ratelimit.Limit{"webhook": hour(2), "slack": hour(1), "email": hour(1)},
	}
}

func TestEachLimitKind(t *testing.T) {
	rd := harness.StartRedis(t)
	c, _ := mustService(t, rd.Addr, tiers())
	tests := []struct {
		name    string
		ds      []*commonrl.RateLimitDescriptor
		allowed int
	}{
		{"tenant, default tier", []*commonrl.RateLimitDescriptor{desc("tier", "default", "tenant", "t1")}, 3},
		{"tenant, enterprise tier", []*commonrl.RateLimitDescriptor{desc("tier", "enterprise", "tenant", "t2")}, 5},
		{"tenant, unknown tier falls back to default", []*commonrl.RateLimitDescriptor{desc("tier", "gold", "tenant", "t3")}, 3},
		{"read", []*commonrl.RateLimitDescriptor{desc("tier", "default", "tenant", "t4", "op", "read")}, 2},
		{"write", []*commonrl.RateLimitDescriptor{desc("tier", "default", "tenant", "t4", "op", "write")}, 1},
		{"flight", []*commonrl.RateLimitDescriptor{desc("tier", "default", "tenant", "t4", "op", "flight")}, 1},
		{"subject, default tier", []*commonrl.RateLimitDescriptor{desc("tier", "default", "subject", "apikey:k1")}, 2},
		{"subject, enterprise tier", []*commonrl.RateLimitDescriptor{desc("tier", "enterprise", "subject", "apikey:k2")}, 4},
		{"webhook action", []*commonrl.RateLimitDescriptor{desc("tenant", "t5", "action", "webhook")}, 2},
		{"slack action", []*commonrl.RateLimitDescriptor{desc("tenant", "t5", "action", "slack")}, 1},
		{"email action", []*commonrl.RateLimitDescriptor{desc("tenant", "t5", "action", "email")}, 1},
		{
			// What the gateway sends for a write: the tightest limit refuses.
			name: "gateway request with every descriptor",
			ds: []*commonrl.RateLimitDescriptor{
				desc("tier", "default", "tenant", "t6"),
				desc("tier", "default", "tenant", "t6", "op", "write"),
				desc("tier", "default", "subject", "user:u6"),
			},
			allowed: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := 0; i < tt.allowed; i++ {
				if r := ask(t, c, tt.ds...); r.OverallCode != rlsv3.RateLimitResponse_OK {
					t.Fatalf("request %d: got %v, want OK", i+1, r.OverallCode)
				}
			}
			r := ask(t, c, tt.ds...)
			if r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Fatalf("request %d: got %v, want OVER_LIMIT", tt.allowed+1, r.OverallCode)
			}
			if n, err := strconv.Atoi(header(r, ratelimit.HeaderReset)); err != nil || n <= 0 || n > 3600 {
				t.Errorf("got Retry-After %q, want the seconds until the hour resets", header(r, ratelimit.HeaderReset))
			}
			if got := header(r, ratelimit.HeaderLimit); !strings.HasPrefix(got, strconv.Itoa(tt.allowed)) {
				t.Errorf("got RateLimit-Limit %q, want %d", got, tt.allowed)
			}
		})
	}
	// Limits are per value: another tenant keeps its whole budget.
	if r := ask(t, c, desc("tier", "default", "tenant", "t7")); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("fresh tenant: got %v, want OK", r.OverallCode)
	}
	// An op the configuration does not limit is not refused.
	for i := 0; i < 4; i++ {
		if r := ask(t, c, desc("tier", "default", "tenant", "t8", "op", "admin")); r.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("unlimited op, request %d: got %v, want OK", i+1, r.OverallCode)
		}
	}
}

func TestShadowLimitCountsWithoutRefusing(t *testing.T) {
	if raceDetector {
		t.Skip("envoyproxy/ratelimit races with itself on a limits reload (race_on_test.go); tested without -race")
	}
	rd := harness.StartRedis(t)
	o := tiers()
	d := o.Tiers["default"]
	d.Tenant.Shadow = true
	o.Tiers["default"] = d
	c, svc := mustService(t, rd.Addr, o)
	tenant := desc("tier", "default", "tenant", "s1")
	var last *rlsv3.RateLimitResponse
	for i := 0; i < 5; i++ {
		if last = ask(t, c, tenant); last.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("request %d: got %v, want OK in shadow mode", i+1, last.OverallCode)
		}
	}
	if got := last.Statuses[0].GetLimitRemaining(); got != 0 {
		t.Errorf("got %d remaining after 5 requests on a budget of 3, want 0: shadow mode must count", got)
	}
	// Enforcing the limit refuses the tenant at once: its requests were
	// counted all along.
	d.Tenant.Shadow = false
	o.Tiers["default"] = d
	if err := svc.Reload(o); err != nil {
		t.Fatal(err)
	}
	eventually(t, "enforcing the shadow limit", func(int) bool {
		return ask(t, c, tenant).OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT
	})
}

func TestTierChangesTakeEffect(t *testing.T) {
	if raceDetector {
		t.Skip("envoyproxy/ratelimit races with itself on a limits reload (race_on_test.go); tested without -race")
	}
	rd := harness.StartRedis(t)
	o := tiers()
	c, svc := mustService(t, rd.Addr, o)

	// A tenant moved to another tier (extauthz sends the new tier) gets
	// that tier's budget.
	for i := 0; i < 3; i++ {
		ask(t, c, desc("tier", "default", "tenant", "m1"))
	}
	if r := ask(t, c, desc("tier", "default", "tenant", "m1")); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("default tier exhausted: got %v, want OVER_LIMIT", r.OverallCode)
	}
	if r := ask(t, c, desc("tier", "enterprise", "tenant", "m1")); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("after moving to enterprise: got %v, want OK", r.OverallCode)
	}

	// A tier's limits changed in fraise.toml: regenerate, and the running
	// service reloads its runtime directory.
	o.Tiers["enterprise"] = ratelimit.Tier{Tenant: hour(1)}
	o.Tiers["platinum"] = ratelimit.Tier{Tenant: hour(2)}
	if err := svc.Reload(o); err != nil {
		t.Fatal(err)
	}
	eventually(t, "enterprise limit lowered to 1", func(i int) bool {
		d := desc("tier", "enterprise", "tenant", "probe"+strconv.Itoa(i))
		ask(t, c, d)
		return ask(t, c, d).OverallCode == rlsv3.RateLimitResponse_OVER_LIMIT
	})
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		if r := ask(t, c, desc("tier", "platinum", "tenant", "p1")); r.OverallCode != want {
			t.Errorf("new tier, request %d: got %v, want %v", i+1, r.OverallCode, want)
		}
	}
	// An invalid configuration is refused and the running one stays.
	if err := svc.Reload(ratelimit.Options{Tiers: map[string]ratelimit.Tier{"gold": {}}}); err == nil {
		t.Error("Reload without a default tier: got nil, want an error")
	}
	if r := ask(t, c, desc("tier", "platinum", "tenant", "p2")); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("after a refused reload: got %v, want OK", r.OverallCode)
	}
}

func TestRedisOutageAndRecovery(t *testing.T) {
	rd := harness.StartRedis(t)
	o := tiers()
	o.LocalCacheBytes = 1 << 20
	c, _ := mustService(t, rd.Addr, o)
	hot := desc("tier", "default", "tenant", "hot")
	for i := 0; i < 3; i++ {
		ask(t, c, hot)
	}
	if r := ask(t, c, hot); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("got %v, want OVER_LIMIT", r.OverallCode)
	}

	rd.Stop()
	// A key the local cache holds as over its limit is refused without Redis.
	if r, err := try(c, hot); err != nil || r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("over-limit key with Redis down: got %v, %v, want OVER_LIMIT from the local cache", r.GetOverallCode(), err)
	}
	// Any other request fails: the service answers an error, never OK or
	// OVER_LIMIT, and Envoy applies its failure mode (open by default).
	if r, err := try(c, desc("tier", "default", "tenant", "cold")); err == nil {
		t.Fatalf("Redis down: got %v, want an error", r.OverallCode)
	}

	if err := rd.Start(); err != nil {
		t.Fatal(err)
	}
	// The same service, never restarted, answers again once Redis is back:
	// each pooled connection that died with Redis fails one request (which
	// Envoy's failure mode covers) and is replaced, so recovery is when a
	// pool's worth of requests in a row succeed.
	eventually(t, "recovery after Redis restarts", func(i int) bool {
		for j := 0; j < 2*10; j++ {
			r, err := try(c, desc("tier", "default", "tenant", "cold-"+strconv.Itoa(i)+"-"+strconv.Itoa(j)))
			if err != nil || r.OverallCode != rlsv3.RateLimitResponse_OK {
				return false
			}
		}
		return true
	})
	// Redis kept nothing: counting starts again and is enforced again.
	d := desc("tier", "default", "tenant", "after")
	for i := 0; i < 3; i++ {
		if r := ask(t, c, d); r.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("after recovery, request %d: got %v, want OK", i+1, r.OverallCode)
		}
	}
	if r := ask(t, c, d); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("after recovery, request 4: got %v, want OVER_LIMIT", r.OverallCode)
	}
}

// TestStartLeavesTheEnvironmentAlone: the service's answers carry the
// rate-limit headers without Start setting the variables through which
// envoyproxy/ratelimit would add them itself: the process environment
// (that of every library and child process) is not the adapter's to change.
func TestStartLeavesTheEnvironmentAlone(t *testing.T) {
	keys := []string{"LIMIT_RESPONSE_HEADERS_ENABLED", "LIMIT_LIMIT_HEADER", "LIMIT_REMAINING_HEADER", "LIMIT_RESET_HEADER"}
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			t.Skipf("%s=%q is set in the test's environment", k, v)
		}
	}
	rd := harness.StartRedis(t)
	c, _ := mustService(t, rd.Addr, ratelimit.Options{Tiers: map[string]ratelimit.Tier{"default": {Tenant: hour(1)}}})
	for _, k := range keys {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("Start set %s=%q in the process environment", k, v)
		}
	}
	d := desc("tier", "default", "tenant", "t1")
	if r := ask(t, c, d); header(r, ratelimit.HeaderRemaining) != "0" || header(r, ratelimit.HeaderLimit) != "1" {
		t.Errorf("first request: got headers %v, want %s 1 and %s 0", r.ResponseHeadersToAdd, ratelimit.HeaderLimit, ratelimit.HeaderRemaining)
	}
	r := ask(t, c, d)
	if n, err := strconv.Atoi(header(r, ratelimit.HeaderReset)); r.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || err != nil || n <= 0 || n > 3600 {
		t.Errorf("second request: got %v with headers %v, want OVER_LIMIT and %s in (0, 3600]", r.OverallCode, r.ResponseHeadersToAdd, ratelimit.HeaderReset)
	}
}
