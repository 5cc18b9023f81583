package apikey_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

const tenant = "11111111-1111-4111-8111-111111111111"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// stores are the same database as the owner (what `fraise apikey` uses)
// and as the application role (what extauthz uses).
type stores struct {
	admin, app *postgres.APIKeys
}

func mustStores(tb testing.TB) stores {
	tb.Helper()
	ctx := context.Background()
	pg, db := postgrestest.New(tb)
	open := func(url string) *postgres.APIKeys {
		d, err := postgres.Open(ctx, url, postgres.Options{})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(d.Close)
		return postgres.NewAPIKeys(d)
	}
	return stores{admin: open(pg.AdminURL(db)), app: open(pg.URL("fraise_app", db))}
}

func mustCreate(tb testing.TB, s apikey.Store, n apikey.NewKey, now time.Time) (apikey.Key, string) {
	tb.Helper()
	k, raw, err := apikey.Generate(n, now, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Create(context.Background(), k); err != nil {
		tb.Fatal(err)
	}
	return k, raw
}

func TestGenerateAndParse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	k, raw, err := apikey.Generate(apikey.NewKey{Tenant: tenant, CreatedBy: "alice", Roles: []string{"viewer"}}, now,
		bytes.NewReader(bytes.Repeat([]byte{0xab}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(raw, "frs_abababababababab_") || !apikey.Looks(raw) {
		t.Fatalf("got key %q, want frs_<id>_<secret>", raw)
	}
	id, secret, err := apikey.Parse(raw)
	if err != nil || id != k.ID {
		t.Fatalf("got %q, %v, want id %q", id, err, k.ID)
	}
	if !bytes.Equal(apikey.Hash(secret), k.Hash) || bytes.Contains(k.Hash, []byte(secret)) {
		t.Fatal("got a stored hash that is not SHA-256 of the secret")
	}
	if got, want := k.ExpiresAt.Sub(k.CreatedAt), 90*24*time.Hour; got != want {
		t.Fatalf("got lifetime %v, want the default %v", got, want)
	}
	for _, bad := range []string{"", "frs_", "frs_abc_def", "frs_" + k.ID, "frs_" + strings.ToUpper(k.ID) + "_" + secret,
		"frs_" + k.ID + "_" + secret + "x", "frs_zzzzzzzzzzzzzzzz_" + secret, "xyz_" + k.ID + "_" + secret} {
		if _, _, err := apikey.Parse(bad); !errors.Is(err, apikey.ErrInvalid) {
			t.Errorf("Parse(%q): got %v, want ErrInvalid", bad, err)
		}
	}
	if _, _, err := apikey.Generate(apikey.NewKey{Tenant: tenant, CreatedBy: "a", Roles: []string{"a,b"}}, now, nil); err == nil {
		t.Error("got no error for a role with a comma, want one")
	}
}

func TestVerify(t *testing.T) {
	s := mustStores(t)
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	ctx := context.Background()
	good, goodRaw := mustCreate(t, s.admin, apikey.NewKey{Tenant: tenant, CreatedBy: "alice", Name: "ci",
		Roles: []string{"operator"}, Scopes: []string{"read:User.email"}}, clk.Now())
	_, expiredRaw := mustCreate(t, s.admin, apikey.NewKey{Tenant: tenant, CreatedBy: "alice", TTL: time.Hour}, clk.Now().Add(-2*time.Hour))
	revoked, revokedRaw := mustCreate(t, s.admin, apikey.NewKey{Tenant: tenant, CreatedBy: "alice"}, clk.Now())
	if err := s.admin.Revoke(ctx, revoked.ID, clk.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, goodSecret, _ := apikey.Parse(goodRaw)
	_, otherSecret, _ := apikey.Parse(revokedRaw)
	refreshed := make(chan error, 8)
	a := apikey.NewAuthenticator(s.app, apikey.Options{Now: clk.Now, DefaultTier: "default",
		Refreshed: func(_ string, err error) { refreshed <- err }})
	t.Cleanup(a.Close)

	for _, tc := range []struct {
		name, raw, want string
	}{
		{name: "unknown", raw: "frs_0123456789abcdef_" + goodSecret, want: "unknown"},
		{name: "wrong secret", raw: "frs_" + good.ID + "_" + otherSecret, want: "wrong secret"},
		{name: "expired", raw: expiredRaw, want: "expired"},
		{name: "revoked", raw: revokedRaw, want: "revoked"},
		{name: "malformed", raw: "frs_nope", want: "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Verify(ctx, tc.raw)
			if !errors.Is(err, apikey.ErrInvalid) || core.ErrorCode(err) != core.CodeUnauthenticated || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an unauthenticated refusal saying %q", err, tc.want)
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		p, err := a.Verify(ctx, goodRaw)
		if err != nil {
			t.Fatalf("got %v, want the key accepted", err)
		}
		want := core.Principal{Subject: "apikey:" + good.ID, Tenant: tenant, Roles: []string{"operator"},
			Scopes: []string{"read:User.email"}, Kind: core.KindAPIKey, Tier: "default"}
		if p.Subject != want.Subject || p.Tenant != want.Tenant || p.Kind != want.Kind ||
			strings.Join(p.Roles, ",") != "operator" || strings.Join(p.Scopes, " ") != "read:User.email" || p.Tier != "default" {
			t.Fatalf("got %+v, want %+v", p, want)
		}
	})

	t.Run("last use is written in a batch on flush", func(t *testing.T) {
		if k, _ := s.admin.Get(ctx, good.ID); !k.LastUsedAt.IsZero() {
			t.Fatalf("got last use %v before a flush, want none (no write per request)", k.LastUsedAt)
		}
		a.Flush(ctx)
		k, err := s.admin.Get(ctx, good.ID)
		if err != nil || !k.LastUsedAt.Equal(clk.Now()) {
			t.Fatalf("got last use %v (%v), want %v", k.LastUsedAt, err, clk.Now())
		}
	})

	t.Run("revocation takes effect once the cache lifetime's refresh reads it", func(t *testing.T) {
		if err := s.admin.Revoke(ctx, good.ID, clk.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Verify(ctx, goodRaw); err != nil {
			t.Fatalf("got %v within the cache lifetime, want the cached record to serve", err)
		}
		clk.Add(apikey.DefaultCacheTTL)
		if _, err := a.Verify(ctx, goodRaw); err != nil {
			t.Fatalf("got %v at the cache lifetime, want the cached record served while it is read again", err)
		}
		if err := mustRefreshed(t, refreshed); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Verify(ctx, goodRaw); err == nil || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("got %v after the refresh, want revoked", err)
		}
	})
}

func TestStore(t *testing.T) {
	s := mustStores(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	k, _ := mustCreate(t, s.admin, apikey.NewKey{Tenant: tenant, CreatedBy: "alice", Name: "one"}, now)
	mustCreate(t, s.admin, apikey.NewKey{Tenant: "22222222-2222-4222-8222-222222222222", CreatedBy: "carol"}, now)

	if err := s.admin.Create(ctx, k); core.ErrorCode(err) != core.CodeConflict {
		t.Errorf("create twice: got %v, want CONFLICT", err)
	}
	if _, err := s.app.Get(ctx, "ffffffffffffffff"); core.ErrorCode(err) != core.CodeNotFound {
		t.Errorf("get unknown: got %v, want NOT_FOUND", err)
	}
	got, err := s.app.Get(ctx, k.ID)
	if err != nil || got.Tenant != tenant || !bytes.Equal(got.Hash, k.Hash) || !got.ExpiresAt.Equal(k.ExpiresAt) {
		t.Fatalf("got %+v, %v, want the stored key", got, err)
	}
	if l, err := s.admin.List(ctx, tenant); err != nil || len(l) != 1 || l[0].ID != k.ID {
		t.Errorf("list tenant: got %v, %v, want one key", l, err)
	}
	if l, err := s.admin.List(ctx, ""); err != nil || len(l) != 2 {
		t.Errorf("list all: got %d keys, %v, want 2", len(l), err)
	}
	if _, err := s.app.List(ctx, tenant); err == nil {
		t.Error("list as the application role: got no error, want permission denied")
	}
	if err := s.app.Revoke(ctx, k.ID, now); err == nil {
		t.Error("revoke as the application role: got no error, want permission denied")
	}
	if err := s.admin.Revoke(ctx, k.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := s.admin.Revoke(ctx, k.ID, now); core.ErrorCode(err) != core.CodeNotFound {
		t.Errorf("revoke twice: got %v, want NOT_FOUND", err)
	}
	later := now.Add(time.Hour)
	if err := s.app.TouchLastUsed(ctx, map[string]time.Time{k.ID: later, "0000000000000000": later}); err != nil {
		t.Fatal(err)
	}
	if err := s.app.TouchLastUsed(ctx, map[string]time.Time{k.ID: now}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.admin.Get(ctx, k.ID); !got.LastUsedAt.Equal(later) {
		t.Errorf("got last use %v, want %v (never backwards)", got.LastUsedAt, later)
	}
}

// mustRefreshed waits for a background refresh Options.Refreshed reports;
// the timeout only turns a missing refresh into a failure.
func mustRefreshed(tb testing.TB, refreshed <-chan error) error {
	tb.Helper()
	select {
	case err := <-refreshed:
		return err
	case <-time.After(10 * time.Second):
		tb.Fatal("got no background refresh, want one")
		return nil
	}
}

// TestLookupLimits bounds store lookups of ids not known to be keys per
// client, then together, then all lookups, on the injected clock: a
// client over its own allowance is refused while others are looked up,
// and the unknown ids never take the room known keys are read again in.
func TestLookupLimits(t *testing.T) {
	s := mustStores(t)
	ctx := context.Background()
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	_, goodRaw := mustCreate(t, s.admin, apikey.NewKey{Tenant: tenant, CreatedBy: "alice", Roles: []string{"viewer"}}, clk.Now())
	_, secret, _ := apikey.Parse(goodRaw)
	n := 0
	bogus := func() string { n++; return fmt.Sprintf("frs_%016x_%s", 0xbad0+n, secret) }
	from := func(client string) context.Context { return apikey.WithClient(ctx, client) }
	refreshed := make(chan error, 8)
	a := apikey.NewAuthenticator(s.app, apikey.Options{Now: clk.Now, CacheTTL: time.Minute,
		MaxLookupsPerSecond: 4, MaxUnknownLookupsPerSecond: 3, MaxClientLookupsPerSecond: 2,
		Refreshed: func(_ string, err error) { refreshed <- err }})
	t.Cleanup(a.Close)

	steps := []struct {
		name, client, raw string
		want              core.Code // "" accepted
		reason            string
	}{
		{name: "the real key, first seen", client: "ip:10.0.0.2", raw: goodRaw},
		{name: "junk 1 of the junk client's 2", client: "ip:203.0.113.66", raw: bogus(), want: core.CodeUnauthenticated},
		{name: "junk 2 of 2", client: "ip:203.0.113.66", raw: bogus(), want: core.CodeUnauthenticated},
		{name: "junk 3: over the client's allowance", client: "ip:203.0.113.66", raw: bogus(), want: core.CodeRateLimited, reason: `client "ip:203.0.113.66"`},
		{name: "the real key, cached", client: "ip:203.0.113.66", raw: goodRaw},
		{name: "another client: the unknown ids' allowance is used up", client: "ip:198.51.100.7", raw: bogus(), want: core.CodeRateLimited, reason: "ids not known to be keys"},
		{name: "a junk id already looked up costs nothing", client: "ip:198.51.100.7", raw: fmt.Sprintf("frs_%016x_%s", 0xbad0+1, secret), want: core.CodeUnauthenticated},
	}
	for _, st := range steps {
		_, err := a.Verify(from(st.client), st.raw)
		if core.ErrorCode(err) != st.want || st.reason != "" && !strings.Contains(err.Error(), st.reason) {
			t.Fatalf("%s: got %v (%s), want %q mentioning %q", st.name, err, core.ErrorCode(err), st.want, st.reason)
		}
	}

	// A minute later, past the cache lifetime: junk from three clients
	// uses up the unknown ids' allowance, a fourth client is refused, and
	// the stale real key is still served and read again in the room the
	// unknown ids cannot take.
	clk.Add(time.Minute)
	for _, c := range []string{"ip:10.0.0.3", "ip:10.0.0.4", "ip:10.0.0.5"} {
		if _, err := a.Verify(from(c), bogus()); core.ErrorCode(err) != core.CodeUnauthenticated {
			t.Fatalf("junk from %s: got %v, want looked up", c, err)
		}
	}
	if _, err := a.Verify(from("ip:10.0.0.6"), bogus()); core.ErrorCode(err) != core.CodeRateLimited || !strings.Contains(err.Error(), "more than 3 lookups/s of ids not known") {
		t.Fatalf("fourth junk client: got %v, want refused for the unknown ids' allowance", err)
	}
	if _, err := a.Verify(from("ip:10.0.0.2"), goodRaw); err != nil {
		t.Fatalf("stale real key: got %v, want served", err)
	}
	if err := mustRefreshed(t, refreshed); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Second)
	if _, err := a.Verify(from("ip:203.0.113.66"), bogus()); core.ErrorCode(err) != core.CodeUnauthenticated {
		t.Fatalf("a second later: got %v, want the junk client looked up again", err)
	}
}
