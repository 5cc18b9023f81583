package postgres_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
)

type result struct {
	Status  string          `json:"status"`
	Message string          `json:"message"`
	ID      string          `json:"id"`
	Data    json.RawMessage `json:"data"`
}

func call(tb testing.TB, d *postgres.DB, tenant, sql string, args ...any) result {
	tb.Helper()
	var r result
	err := d.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, "select to_jsonb(r) from "+sql+" r", args...)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &r)
	})
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return r
}

func TestRuleFunctions(t *testing.T) {
	_, l, d := mustObserved(t)
	ctx := context.Background()
	changed := l.Changed(ctx)
	input := `{"name":"big orders","table":"public.orders","operations":["INSERT"],"condition":"after.total > 1000",
		"actions":[{"kind":"webhook","url":"https://hooks.acme.test/x","secret":"s3cret"}]}`
	r := call(t, d, tenantA, "fn_create_observer_rule($1::jsonb)", input)
	if r.Status != "ok" || r.ID == "" {
		t.Fatalf("create: got %+v", r)
	}
	var data struct {
		Actions []map[string]any `json:"actions"`
		Enabled bool             `json:"enabled"`
	}
	_ = json.Unmarshal(r.Data, &data)
	if len(data.Actions) != 1 || data.Actions[0]["secret"] != nil || !data.Enabled {
		t.Fatalf("view data: got %s, want one action without its secret", r.Data)
	}
	<-changed // the dispatcher is told

	tests := []struct {
		name, tenant, sql string
		args              []any
		want              string
	}{
		{"duplicate name", tenantA, "fn_create_observer_rule($1::jsonb)", []any{input}, "conflict"},
		{"bad kind", tenantA, "fn_create_observer_rule($1::jsonb)", []any{`{"name":"x","table":"public.orders","actions":[{"kind":"fax"}]}`}, "invalid"},
		{"bad table", tenantA, "fn_create_observer_rule($1::jsonb)", []any{`{"name":"x","table":"orders; drop","actions":[{"kind":"webhook","url":"https://a"}]}`}, "invalid"},
		{"missing actions", tenantA, "fn_create_observer_rule($1::jsonb)", []any{`{"name":"x","table":"public.orders"}`}, "invalid"},
		{"other tenant cannot update", tenantB, "fn_update_observer_rule($1::uuid, $2::jsonb)", []any{r.ID, `{"name":"stolen"}`}, "not_found"},
		{"other tenant cannot delete", tenantB, "fn_delete_observer_rule($1::uuid)", []any{r.ID}, "not_found"},
		{"update", tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", []any{r.ID, `{"condition":"after.total > 5000"}`}, "ok"},
		{"disable", tenantA, "fn_disable_observer_rule($1::uuid)", []any{r.ID}, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := call(t, d, tt.tenant, tt.sql, tt.args...); got.Status != tt.want {
				t.Fatalf("got %+v, want status %s", got, tt.want)
			}
		})
	}
	rules, err := l.EnabledRules(ctx)
	if err != nil || len(rules) != 0 {
		t.Fatalf("enabled rules after disable: got %v %v, want none", rules, err)
	}
	if got := call(t, d, tenantA, "fn_enable_observer_rule($1::uuid)", r.ID); got.Status != "ok" {
		t.Fatalf("enable: %+v", got)
	}
	rules, _ = l.EnabledRules(ctx)
	if len(rules) != 1 || rules[0].Condition != "after.total > 5000" || rules[0].Tenant != tenantA ||
		rules[0].Actions[0].Secret != "s3cret" || rules[0].Version != 4 {
		t.Fatalf("enabled rules: got %+v", rules)
	}
	// Tenant B sees none of A's rules through the view.
	var n string
	_ = d.InTenant(ctx, tenantB, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, "select to_jsonb(count(*)) from v_observer_rule")
		n = string(b)
		return err
	})
	if n != "0" {
		t.Fatalf("tenant B sees %s of A's rules, want 0", n)
	}
	if got := call(t, d, tenantA, "fn_delete_observer_rule($1::uuid)", r.ID); got.Status != "ok" {
		t.Fatalf("delete: %+v", got)
	}
}

// TestRuleQuotas: rules count against the tenant's tier (0005, 0008): the
// rule past the tier's limit, and a rule with more actions than the tier
// allows, are refused with QUOTA_EXCEEDED; another tenant is not affected.
func TestRuleQuotas(t *testing.T) {
	admin, _, d := mustObserved(t)
	ctx := context.Background()
	for _, sql := range []string{
		`INSERT INTO fraise.tier_quotas (tier, resource, max_count) VALUES ('tiny', 'observer_rules', 1), ('tiny', 'actions_per_rule', 1)`,
		`INSERT INTO fraise.tenants (id, name, tier) VALUES ('` + tenantA + `', 'A', 'tiny') ON CONFLICT (id) DO UPDATE SET tier = 'tiny'`,
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	rule := func(name string, actions int) string {
		a := `{"kind":"webhook","url":"https://a.test"}`
		list := a
		for i := 1; i < actions; i++ {
			list += "," + a
		}
		return `{"name":"` + name + `","table":"public.orders","actions":[` + list + `]}`
	}
	create := func(tenant, input string) error {
		return d.InTenant(ctx, tenant, func(ctx context.Context, q core.Querier) error {
			_, err := q.QueryJSON(ctx, "select to_jsonb(r) from fn_create_observer_rule($1::jsonb) r", input)
			return err
		})
	}
	tests := []struct {
		name, tenant, input string
		want                core.Code
	}{
		{"two actions over a limit of one", tenantA, rule("wide", 2), core.CodeQuotaExceeded},
		{"first rule", tenantA, rule("one", 1), ""},
		{"second rule over a limit of one", tenantA, rule("two", 1), core.CodeQuotaExceeded},
		{"another tenant on the default tier", tenantB, rule("one", 2), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := core.ErrorCode(create(tt.tenant, tt.input)); got != tt.want {
				t.Fatalf("got code %q, want %q", got, tt.want)
			}
		})
	}
}
