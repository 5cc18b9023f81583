package extauthz_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/apikey"
)

// settableClock is the clock of the API key cache and lookup buckets.
type settableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *settableClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *settableClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fromPeer is req as Envoy sends it for a client at address ip presenting
// the client certificate cert (URL-encoded PEM).
func fromPeer(req *authv3.CheckRequest, ip, cert string) *authv3.CheckRequest {
	req.Attributes.Source = &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 51234},
		}}},
		Certificate: cert,
	}
	return req
}

// TestCheckAPIKeysUnderJunkKeys is security issue #13, defect 6: one
// global bucket of 100 lookups a second, run before any rate limit, let
// about 100 made-up key ids a second from one peer turn every real API
// key client away once its cache entry expired. With the clock injected,
// one peer sends 150 made-up keys every second for three cache lifetimes;
// the real key's client, another peer, is answered every second, past
// each expiry of its cache entry (served from the cache while refreshed
// in the background), and a revocation still takes effect.
func TestCheckAPIKeysUnderJunkKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg, db := postgrestest.New(t)
	open := func(url string) *postgres.DB {
		d, err := postgres.Open(ctx, url, postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Close)
		return d
	}
	admin := postgres.NewAPIKeys(open(pg.AdminURL(db)))
	clk := &settableClock{t: now}
	k, real, err := apikey.Generate(apikey.NewKey{Tenant: tenantA, CreatedBy: "alice", Roles: []string{"viewer"}}, now.Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Create(ctx, k); err != nil {
		t.Fatal(err)
	}
	_, secret, _ := apikey.Parse(real)

	const ttl = 5 * time.Second
	refreshed := make(chan error, 8)
	keys := apikey.NewAuthenticator(postgres.NewAPIKeys(open(pg.URL("fraise_app", db))), apikey.Options{
		Now: clk.Now, CacheTTL: ttl, MaxLookupsPerSecond: 100, DefaultTier: "default",
		Refreshed: func(id string, err error) {
			if id == k.ID {
				refreshed <- err
			}
		},
	})
	t.Cleanup(keys.Close)
	f := mustFixture(t, func(o *extauthz.Options) { o.APIKeys = keys })
	const q = "{ users { id } }"
	realClient := func() *authv3.CheckResponse {
		return mustCheck(t, f.client, fromPeer(graphqlRequest("Bearer "+real, q), "10.0.0.2", "-----BEGIN%20CERTIFICATE-----billing"))
	}

	junk, fetched := 0, clk.Now() // when the real key's record was last read
	for sec := 0; sec < 3*int(ttl/time.Second)+1; sec++ {
		limited := 0
		for range 150 {
			junk++
			d := mustDenial(t, mustCheck(t, f.client, fromPeer(graphqlRequest(fmt.Sprintf("Bearer frs_%016x_%s", 0xdead0000+junk, secret), q),
				"203.0.113.66", "-----BEGIN%20CERTIFICATE-----junk")))
			switch d.status {
			case 429:
				limited++
			case 401:
			default:
				t.Fatalf("second %d: junk key got %d, want 401 or 429", sec, d.status)
			}
		}
		if limited < 100 {
			t.Errorf("second %d: got %d of 150 junk keys limited, want the peer held to its own few lookups", sec, limited)
		}
		if ok := realClient().GetOkResponse(); ok == nil {
			lines := f.logs.lines(t)
			t.Fatalf("second %d (%v after its lookup): the real key's client was refused: %v, want allowed",
				sec, clk.Now().Sub(fetched), lines[len(lines)-1]["reason"])
		}
		if clk.Now().Sub(fetched) >= ttl {
			// Served from the cache; its record is read again meanwhile.
			if err := waitRefresh(t, refreshed); err != nil {
				t.Fatalf("second %d: background refresh: %v", sec, err)
			}
			fetched = clk.Now()
		}
		clk.Add(time.Second)
	}

	// A revocation takes effect once the refresh that follows the cache
	// lifetime has read it.
	if err := admin.Revoke(ctx, k.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Add(ttl)
	if realClient().GetOkResponse() == nil {
		t.Fatal("revoked, stale entry: got refused, want served while the refresh runs")
	}
	if err := waitRefresh(t, refreshed); err != nil {
		t.Fatal(err)
	}
	d := mustDenial(t, realClient())
	lines := f.logs.lines(t)
	if r, _ := lines[len(lines)-1]["reason"].(string); d.status != 401 || !strings.Contains(r, "revoked") {
		t.Fatalf("after the refresh: got %d %q, want 401 revoked", d.status, r)
	}
}

// waitRefresh waits for the background refresh Options.Refreshed reports;
// the timeout only turns a missing refresh into a failure.
func waitRefresh(tb testing.TB, refreshed <-chan error) error {
	tb.Helper()
	select {
	case err := <-refreshed:
		return err
	case <-time.After(10 * time.Second):
		tb.Fatal("got no background refresh of the stale key, want one")
		return nil
	}
}
