package extauthz_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) {
	if os.Getenv(loadGenEnv) != "" { // started by BenchmarkCheckLoad
		if err := runLoadGenerator(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(harness.Main(m))
}

// TestCheckAPIKeys runs API keys through Check against the harness's
// PostgreSQL, with decisions going to the audit table.
func TestCheckAPIKeys(t *testing.T) {
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
	appDB := open(pg.URL("fraise_app", db))
	create := func(n apikey.NewKey, at time.Time) (string, string) {
		k, raw, err := apikey.Generate(n, at, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
		return k.ID, raw
	}
	goodID, good := create(apikey.NewKey{Tenant: tenantA, CreatedBy: "alice", Roles: []string{"viewer"}}, now)
	_, expired := create(apikey.NewKey{Tenant: tenantA, CreatedBy: "alice", Roles: []string{"viewer"}, TTL: time.Minute}, now.Add(-time.Hour))
	revokedID, revoked := create(apikey.NewKey{Tenant: tenantA, CreatedBy: "alice", Roles: []string{"viewer"}}, now)
	if err := admin.Revoke(ctx, revokedID, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, goodSecret, _ := apikey.Parse(good)
	_, otherSecret, _ := apikey.Parse(revoked)

	keys := apikey.NewAuthenticator(postgres.NewAPIKeys(appDB), apikey.Options{Now: clock, DefaultTier: "default"})
	t.Cleanup(keys.Close)
	f := mustFixture(t, func(o *extauthz.Options) {
		o.APIKeys = keys
		o.Decisions = postgres.NewDecisions(appDB)
	})

	for _, tc := range []struct{ name, key, reason string }{
		{name: "unknown", key: "frs_0123456789abcdef_" + goodSecret, reason: "unknown"},
		{name: "wrong secret", key: "frs_" + goodID + "_" + otherSecret, reason: "wrong secret"},
		{name: "expired", key: expired, reason: "expired"},
		{name: "revoked", key: revoked, reason: "revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustDenial(t, mustCheck(t, f.client, graphqlRequest("Bearer "+tc.key, "{ users { id } }")))
			if d.status != 401 || d.body != generic401 || d.headers["www-authenticate"] != `Bearer error="invalid_token"` {
				t.Fatalf("got %d %s %v, want the generic 401", d.status, d.body, d.headers)
			}
			lines := f.logs.lines(t)
			if r, _ := lines[len(lines)-1]["reason"].(string); !strings.Contains(r, tc.reason) {
				t.Fatalf("got decision log reason %q, want it to say %q", r, tc.reason)
			}
		})
	}

	t.Run("valid", func(t *testing.T) {
		resp := mustCheck(t, f.client, graphqlRequest("Bearer "+good, "{ users { id } }"))
		ok := resp.GetOkResponse()
		if ok == nil {
			t.Fatalf("got %v, want allowed", resp)
		}
		h := headerMap(ok.GetHeaders())
		if h[extauthz.HeaderSubject] != "apikey:"+goodID || h[extauthz.HeaderTenant] != tenantA {
			t.Fatalf("got subject %q tenant %q, want apikey:%s and %s", h[extauthz.HeaderSubject], h[extauthz.HeaderTenant], goodID, tenantA)
		}
		a, err := f.verifier.Verify(h["x-fraise-assertion"], assertion.AudienceGraphQL)
		if err != nil || a.Principal.Subject != "apikey:"+goodID || a.Principal.Kind != "apikey" {
			t.Fatalf("got assertion %+v, %v, want the API key principal", a, err)
		}
		if d := mustDenial(t, mustCheck(t, f.client, graphqlRequest("Bearer "+good, "mutation { createUser { id } }"))); d.status != 403 {
			t.Fatalf("got %d for a viewer key's mutation, want 403", d.status)
		}
	})

	if strings.Contains(f.logs.String(), goodSecret) || strings.Contains(f.logs.String(), otherSecret) {
		t.Error("the decision log contains an API key secret")
	}

	t.Run("too many lookups of unknown keys", func(t *testing.T) {
		limited := apikey.NewAuthenticator(postgres.NewAPIKeys(appDB), apikey.Options{Now: clock, MaxLookupsPerSecond: 1})
		t.Cleanup(limited.Close)
		lf := mustFixture(t, func(o *extauthz.Options) { o.APIKeys = limited })
		mustDenial(t, mustCheck(t, lf.client, graphqlRequest("Bearer frs_00000000000000a1_"+goodSecret, "{ users { id } }")))
		d := mustDenial(t, mustCheck(t, lf.client, graphqlRequest("Bearer frs_00000000000000a2_"+goodSecret, "{ users { id } }")))
		if d.status != 429 || d.headers["retry-after"] != "1" || !strings.Contains(d.body, "RATE_LIMITED") {
			t.Fatalf("got %d %v %s, want 429 with Retry-After and RATE_LIMITED", d.status, d.headers, d.body)
		}
	})

	t.Run("audit table", func(t *testing.T) {
		f.srv.Close() // flushes the queue
		conn, err := pgx.Connect(ctx, pg.AdminURL(db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n, allowed int
		var subject, revision string
		err = conn.QueryRow(ctx, `select count(*), count(*) filter (where allow),
			max(subject) filter (where allow), max(policy_revision) from fraise.authz_decisions`).Scan(&n, &allowed, &subject, &revision)
		if err != nil {
			t.Fatal(err)
		}
		if n != 6 || allowed != 1 || subject != "apikey:"+goodID || revision != f.srv.PolicyRevision() {
			t.Fatalf("got %d decisions (%d allowed, subject %q, revision %q), want 6 (1 allowed by apikey:%s, revision %s)",
				n, allowed, subject, revision, goodID, f.srv.PolicyRevision())
		}
		var leaked bool
		if err := conn.QueryRow(ctx, `select bool_or(reason like '%' || $1 || '%') from fraise.authz_decisions`, goodSecret).Scan(&leaked); err != nil || leaked {
			t.Fatalf("got leaked=%v (%v), want no secret in the audit table", leaked, err)
		}
		app, err := pgx.Connect(ctx, pg.URL("fraise_app", db))
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close(ctx)
		if _, err := app.Exec(ctx, "delete from fraise.authz_decisions"); err == nil {
			t.Fatal("got no error deleting audit rows as the application role, want permission denied")
		}
	})
}
