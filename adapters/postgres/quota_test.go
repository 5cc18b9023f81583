package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// mustRules adds what the observers' migration adds for its rules table: a
// tenant table counted as "observer_rules", and a creating function that
// checks the quotas first.
func mustRules(tb testing.TB, f fixture) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `
CREATE TABLE public.test_rules (
    id        bigserial PRIMARY KEY,
    tenant_id uuid NOT NULL DEFAULT nullif(current_setting('fraise.tenant', true), '')::uuid,
    actions   int NOT NULL);
ALTER TABLE public.test_rules ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.test_rules
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
GRANT SELECT, INSERT, DELETE ON public.test_rules TO fraise_app;
GRANT USAGE ON SEQUENCE public.test_rules_id_seq TO fraise_app;
SELECT fraise.track_quota('observer_rules', 'public.test_rules');
CREATE FUNCTION public.create_test_rule(n_actions int) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_id bigint;
BEGIN
    PERFORM fraise.check_quota('observer_rules');
    PERFORM fraise.check_quota('actions_per_rule', n_actions);
    INSERT INTO public.test_rules (actions) VALUES (n_actions) RETURNING id INTO v_id;
    RETURN to_jsonb(v_id);
END $$;
INSERT INTO fraise.tier_quotas VALUES ('small', 'observer_rules', 3), ('small', 'actions_per_rule', 2);
UPDATE fraise.tenants SET tier = 'small' WHERE id = '`+demo.TenantAcme+`';
UPDATE fraise.tenants SET tier = 'gold' WHERE id = '`+demo.TenantGlobex+`';`)
	if err != nil {
		tb.Fatal(err)
	}
}

func inTenant(tb testing.TB, d *postgres.DB, tenant, sql string, args ...any) ([]byte, error) {
	tb.Helper()
	var out []byte
	err := d.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, sql, args...)
		out = b
		return err
	})
	return out, err
}

type quota struct {
	Resource string `json:"resource"`
	Tier     string `json:"tier"`
	Limit    *int64 `json:"limit"`
	Used     int64  `json:"used"`
}

// usage reads the tenant's quotas through the view GraphQL serves.
func usage(tb testing.TB, d *postgres.DB, tenant string) map[string]quota {
	tb.Helper()
	b, err := inTenant(tb, d, tenant, "select data from v_tenant_quota")
	if err != nil {
		tb.Fatal(err)
	}
	var row struct {
		ID     string  `json:"id"`
		Tier   string  `json:"tier"`
		Quotas []quota `json:"quotas"`
	}
	if err := json.Unmarshal(b, &row); err != nil {
		tb.Fatalf("v_tenant_quota %s: %v", b, err)
	}
	if row.ID != tenant {
		tb.Fatalf("got the row of tenant %q, want %q", row.ID, tenant)
	}
	m := map[string]quota{}
	for _, q := range row.Quotas {
		m[q.Resource] = q
	}
	return m
}

func wantQuotaExceeded(tb testing.TB, err error, resource string) {
	tb.Helper()
	if got := core.ErrorCode(err); got != core.CodeQuotaExceeded {
		tb.Fatalf("got %v (code %s), want QUOTA_EXCEEDED", err, got)
	}
	if msg := core.ErrorMessage(err); msg == "" || !contains(msg, resource) {
		tb.Errorf("got message %q, want one naming %s", msg, resource)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestQuotaRefusesTheRuleOverTheTierLimit(t *testing.T) {
	f := mustDemo(t)
	mustRules(t, f)
	d := mustOpen(t, f, postgres.Options{})
	acme := demo.TenantAcme // tier "small": 3 rules, 2 actions per rule

	for i := 0; i < 3; i++ {
		if _, err := inTenant(t, d, acme, "select create_test_rule(1)"); err != nil {
			t.Fatalf("rule %d: %v", i+1, err)
		}
	}
	_, err := inTenant(t, d, acme, "select create_test_rule(1)")
	wantQuotaExceeded(t, err, "observer_rules")

	got := usage(t, d, acme)
	if q := got["observer_rules"]; q.Used != 3 || q.Limit == nil || *q.Limit != 3 || q.Tier != "small" {
		t.Errorf("got observer_rules %+v, want 3 used of 3 in tier small", q)
	}
	if q := got["actions_per_rule"]; q.Limit == nil || *q.Limit != 2 {
		t.Errorf("got actions_per_rule %+v, want a limit of 2", q)
	}

	// Deleting a rule gives its place back.
	if _, err := inTenant(t, d, acme, "with d as (delete from test_rules where id = (select min(id) from test_rules) returning 1) select to_jsonb(count(*)) from d"); err != nil {
		t.Fatal(err)
	}
	if q := usage(t, d, acme)["observer_rules"]; q.Used != 2 {
		t.Errorf("after a delete: got %d used, want 2", q.Used)
	}
	if _, err := inTenant(t, d, acme, "select create_test_rule(2)"); err != nil {
		t.Errorf("rule after a delete: %v", err)
	}

	// Actions per rule: the rule's own count against the tier's limit.
	_, err = inTenant(t, d, acme, "select fraise.check_quota('actions_per_rule', 3)")
	wantQuotaExceeded(t, err, "actions_per_rule")
}

func TestQuotaUnknownTierFallsBackToDefault(t *testing.T) {
	f := mustDemo(t)
	mustRules(t, f)
	d := mustOpen(t, f, postgres.Options{})
	globex := demo.TenantGlobex // tier "gold", which tier_quotas does not name
	got := usage(t, d, globex)
	if q := got["observer_rules"]; q.Limit == nil || *q.Limit != 100 || q.Used != 0 || q.Tier != "gold" {
		t.Errorf("got %+v, want the default tier's 100 rules, none used", q)
	}
	if _, err := inTenant(t, d, globex, "select fraise.check_quota('actions_per_rule', 10)"); err != nil {
		t.Errorf("10 actions (the default limit): %v", err)
	}
	_, err := inTenant(t, d, globex, "select fraise.check_quota('actions_per_rule', 11)")
	wantQuotaExceeded(t, err, "actions_per_rule")
	// A resource no tier limits is unlimited.
	if _, err := inTenant(t, d, globex, "select fraise.check_quota('unlimited_things', 1000000)"); err != nil {
		t.Errorf("unlimited resource: %v", err)
	}
	// Each tenant sees only its own usage.
	if _, err := inTenant(t, d, demo.TenantAcme, "select create_test_rule(1)"); err != nil {
		t.Fatal(err)
	}
	if q := usage(t, d, globex)["observer_rules"]; q.Used != 0 {
		t.Errorf("Globex sees %d used, want 0: Acme's rule is not Globex's", q.Used)
	}
	b, err := inTenant(t, d, globex, "select to_jsonb(count(*)) from v_quota_usage where tenant_id <> $1", globex)
	if err != nil || string(b) != "0" {
		t.Errorf("other tenants' rows in v_quota_usage: got %s, %v, want 0", b, err)
	}
}

func TestQuotaHoldsUnderConcurrentCreates(t *testing.T) {
	f := mustDemo(t)
	mustRules(t, f)
	d := mustOpen(t, f, postgres.Options{MaxConns: 10})
	// Inserting directly, past check_quota: the counting trigger alone must
	// hold the limit when ten transactions race for three places.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := inTenant(t, d, demo.TenantAcme, "with i as (insert into test_rules (actions) values (1) returning id) select to_jsonb(count(*)) from i")
			mu.Lock()
			defer mu.Unlock()
			switch core.ErrorCode(err) {
			case "":
				ok++
			case core.CodeQuotaExceeded:
				refused++
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 3 || refused != 7 {
		t.Errorf("got %d created and %d refused, want 3 and 7", ok, refused)
	}
	if q := usage(t, d, demo.TenantAcme)["observer_rules"]; q.Used != 3 {
		t.Errorf("got %d used, want 3", q.Used)
	}
}

// TestQuotaThroughGraphQL reads usage and limits the way a tenant does: a
// GraphQL query served by the engine from the quota views.
func TestQuotaThroughGraphQL(t *testing.T) {
	f := mustDemo(t)
	mustRules(t, f)
	d := mustOpen(t, f, postgres.Options{})
	for i := 0; i < 2; i++ {
		if _, err := inTenant(t, d, demo.TenantAcme, "select create_test_rule(1)"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := graphql.ParseSchema(`
type Quota @view(name: "v_quota_usage") {
  id: ID!
  resource: String!
  tier: String!
  limit: Int
  used: Int!
}
type TenantQuota @view(name: "v_tenant_quota") {
  id: ID!
  tier: String!
  quotas: [Quota!]!
}
type Query {
  tenantQuota(id: ID!): TenantQuota
  quotaUsage: [Quota!]!
}`)
	if err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, d, graphql.Options{Batcher: d, Writer: d})
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "x", Tenant: demo.TenantAcme})
	r := e.Execute(ctx, graphql.Request{Query: fmt.Sprintf(`{ tenantQuota(id: %q) { tier quotas { resource limit used } } }`, demo.TenantAcme)})
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %+v", r.Errors[0])
	}
	want := `{"tenantQuota":{"tier":"small","quotas":[{"resource":"actions_per_rule","limit":2,"used":0},{"resource":"observer_rules","limit":3,"used":2}]}}`
	if got, want := compact(t, r.Data), compact(t, []byte(want)); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	r = e.Execute(ctx, graphql.Request{Query: `{ quotaUsage { resource used } }`})
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %+v", r.Errors[0])
	}
	var got struct {
		QuotaUsage []struct {
			Resource string `json:"resource"`
			Used     int    `json:"used"`
		} `json:"quotaUsage"`
	}
	if err := json.Unmarshal(r.Data, &got); err != nil {
		t.Fatal(err)
	}
	used := map[string]int{}
	for _, q := range got.QuotaUsage {
		used[q.Resource] = q.Used
	}
	if len(used) != 2 || used["observer_rules"] != 2 {
		t.Errorf("got %+v, want observer_rules used 2 among 2 resources", got.QuotaUsage)
	}
}

func compact(tb testing.TB, b []byte) string {
	tb.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
