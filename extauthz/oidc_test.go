package extauthz_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
)

// TestCheckOIDCProviderRotation issues tokens from an OpenID Connect
// provider served over loopback HTTP (discovery document and JWKS), rotates
// its keys mid-test, and checks that extauthz keeps validating: a token
// signed with a new key makes it refetch the JWKS once, and a retired key
// stops verifying once the provider no longer publishes it.
func TestCheckOIDCProviderRotation(t *testing.T) {
	t.Parallel()
	p := tokentest.NewProvider(t, audience)
	clk := &movingClock{t: now}
	f := mustFixture(t, func(o *extauthz.Options) {
		o.Issuers = append(o.Issuers, p.Config())
		o.HTTPClient = p.Server.Client()
		o.Now = clk.Now
	})
	query := func(tok string) bool {
		t.Helper()
		resp := mustCheck(t, f.client, graphqlRequest("Bearer "+tok, "{ users { id } }"))
		return resp.GetOkResponse() != nil
	}
	claims := map[string]any{"sub": "carol", "tenant": tenantA, "roles": []string{"viewer"}}

	first := p.Sign(t, now, claims)
	if !query(first) {
		t.Fatalf("first key: got denied (%s), want allowed", f.logs.String())
	}
	fetches := p.JWKSFetches.Load()

	// Rotation: the provider publishes a second key and signs with it. An
	// unknown key id refetches the JWKS at most every 30 s.
	p.Rotate(t, false)
	if query(p.Sign(t, now, claims)) {
		t.Fatal("rotated key within 30 s of the last fetch: got allowed, want the refetch rate-limited")
	}
	if got := p.JWKSFetches.Load(); got != fetches {
		t.Fatalf("got %d JWKS fetches, want still %d (rate-limited)", got, fetches)
	}
	clk.Add(31 * time.Second)
	second := p.Sign(t, now, claims)
	for range 10 {
		if !query(second) {
			t.Fatalf("rotated key: got denied (%s), want allowed", f.logs.String())
		}
	}
	if !query(first) {
		t.Fatal("first key while still published: got denied, want allowed")
	}
	if got := p.JWKSFetches.Load(); got != fetches+1 {
		t.Fatalf("got %d JWKS fetches after the rotation, want exactly one more than %d", got, fetches)
	}

	// The provider retires both earlier keys. The third key's unknown kid
	// refetches the JWKS, after which the retired keys no longer verify.
	p.Rotate(t, true)
	clk.Add(31 * time.Second)
	third := p.Sign(t, now, claims)
	if !query(third) {
		t.Fatalf("third key: got denied (%s), want allowed", f.logs.String())
	}
	if query(second) {
		t.Fatal("retired key: got allowed, want refused once the provider stopped publishing it")
	}
	if !strings.Contains(f.logs.String(), `unknown key id \"key-2\"`) {
		t.Fatalf("got decision log %s, want the retired key's refusal reason", f.logs.String())
	}
}

type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *movingClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
