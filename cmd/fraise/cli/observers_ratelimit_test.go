package cli

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/observers/obstest"
)

// TestObserversActionLimitOverMTLS runs the observers' workers as `fraise
// serve` wires them, with observers.rate_limits on, against the rate
// limiter `fraise ratelimit` runs: the workers present the core's client
// certificate (tls.core_client_cert) over mutual TLS, and the webhook
// limit of two an hour lets two deliveries through and holds the third.
func TestObserversActionLimitOverMTLS(t *testing.T) {
	p := mustPipeline(t)
	certs, err := devcerts.Generate(filepath.Join(t.TempDir(), "certs"), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &p.cfg
	c.TLS.CA, c.TLS.ServerCert, c.TLS.ServerKey = certs.CACert, certs.ServerCert, certs.ServerKey
	c.TLS.CoreClientCert, c.TLS.CoreClientKey = certs.CoreClientCert, certs.CoreClientKey
	c.RateLimit.GRPCAddr = "127.0.0.1:0"
	c.RateLimit.Actions = map[string]config.Limit{"webhook": {Requests: 2, Unit: "hour"}}
	// The first decision also opens the connection: a loaded machine must
	// not turn it into an error, which the workers would let through.
	c.RateLimit.Timeout = config.Duration{Duration: 5 * time.Second}
	c.Observers.RateLimits = true
	rl, err := startRateLimit(context.Background(), p.cfg, p.env, obstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	c.RateLimit.GRPCAddr = rl.GRPCAddr()

	hook := obstest.StartReceiver(t)
	p.Rule(t, obstest.TenantA, map[string]any{"name": "every order", "table": "public.orders", "operations": []string{"INSERT"},
		"actions": []map[string]any{{"kind": "webhook", "url": hook.URL}}})
	o, _ := p.start(t, "w1")
	p.SQL(t, obstest.TenantA, "insert into orders (id, tenant_id, total) values (1, $1, 1), (2, $1, 2), (3, $1, 3)", obstest.TenantA)
	await.Until(t, 10*time.Second, "two webhooks delivered and one held by the limit", func() bool {
		return hook.Delivered() == 2 && o.Stats().Deferred.Load() >= 1
	})
	if got := hook.Delivered(); got != 2 {
		t.Fatalf("got %d webhooks delivered, want 2 (the limit)", got)
	}
}
