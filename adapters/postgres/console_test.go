package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
)

// TestConsoleReadsOneTenant records decisions of two tenants and reads
// them back through the console's store: each tenant sees its own only,
// filtered, with the policy input kept as sent.
func TestConsoleReadsOneTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	f := mustDemo(t)
	db := mustOpen(t, f, postgres.Options{})
	ctx := context.Background()
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	in := json.RawMessage(`{"principal":{"roles":["viewer"],"tenant":"` + demo.TenantAcme + `"},"graphql":{"operation":"mutation","root_fields":["createPost"]}}`)
	ds := []decisionlog.Decision{
		{ID: "d0", At: base.Add(-time.Minute), Subject: "alice", Tenant: demo.TenantAcme, Allow: true, Status: 200, Reason: "console", Method: "GET", Path: "/console/api/me", Input: in},
		{ID: "d1", At: base, Subject: "alice", Tenant: demo.TenantAcme, Operation: "query", OperationName: "Users", Allow: true, Status: 200, Reason: "role viewer permits", Method: "POST", Path: "/graphql", TraceID: "0af7651916cd43dd8448eb211c80319c", Input: in},
		{ID: "d2", At: base.Add(time.Minute), Subject: "victor", Tenant: demo.TenantAcme, Operation: "mutation", OperationName: "CreatePost", Allow: false, Status: 403, Reason: "roles [viewer] do not permit mutation", Input: in},
		{ID: "d3", At: base.Add(2 * time.Minute), Subject: "victor", Tenant: demo.TenantAcme, Allow: false, Status: 429, Reason: "rate limited"},
		{ID: "d4", At: base.Add(3 * time.Minute), Subject: "carol", Tenant: demo.TenantGlobex, Operation: "query", Allow: true, Status: 200, Reason: "ok", Input: in},
	}
	if err := postgres.NewDecisions(db).RecordDecisions(ctx, ds); err != nil {
		t.Fatal(err)
	}
	c := postgres.NewConsole(db)
	deny := false
	tests := []struct {
		name   string
		tenant string
		f      decisionlog.Filter
		want   []string
	}{
		{name: "all of acme, newest first", tenant: demo.TenantAcme, want: []string{"d3", "d2", "d1", "d0"}},
		{name: "without the console's own", tenant: demo.TenantAcme, f: decisionlog.Filter{ExcludeConsole: true}, want: []string{"d3", "d2", "d1"}},
		{name: "globex sees its own", tenant: demo.TenantGlobex, want: []string{"d4"}},
		{name: "refusals", tenant: demo.TenantAcme, f: decisionlog.Filter{Allow: &deny}, want: []string{"d3", "d2"}},
		{name: "by subject", tenant: demo.TenantAcme, f: decisionlog.Filter{Subject: "alice", ExcludeConsole: true}, want: []string{"d1"}},
		{name: "by operation name", tenant: demo.TenantAcme, f: decisionlog.Filter{Operation: "CreatePost"}, want: []string{"d2"}},
		{name: "by reason, any case", tenant: demo.TenantAcme, f: decisionlog.Filter{Reason: "DO NOT PERMIT"}, want: []string{"d2"}},
		{name: "by time", tenant: demo.TenantAcme, f: decisionlog.Filter{Since: base.Add(30 * time.Second), Until: base.Add(90 * time.Second)}, want: []string{"d2"}},
		{name: "with input only", tenant: demo.TenantAcme, f: decisionlog.Filter{WithInput: true}, want: []string{"d2", "d1", "d0"}},
		{name: "limit", tenant: demo.TenantAcme, f: decisionlog.Filter{Limit: 1}, want: []string{"d3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decisions(ctx, tt.tenant, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.ID)
				if d.Tenant != tt.tenant {
					t.Errorf("decision %s: got tenant %s, want %s", d.ID, d.Tenant, tt.tenant)
				}
			}
			if !equalStrings(ids, tt.want) {
				t.Errorf("got %v, want %v", ids, tt.want)
			}
		})
	}
	got, err := c.Decisions(ctx, demo.TenantAcme, decisionlog.Filter{Subject: "alice", ExcludeConsole: true})
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	d := got[0]
	var gotIn, wantIn any
	_ = json.Unmarshal(d.Input, &gotIn)
	_ = json.Unmarshal(in, &wantIn)
	if b1, b2 := mustJSON(t, gotIn), mustJSON(t, wantIn); b1 != b2 || d.Method != "POST" || d.Path != "/graphql" || d.TraceID != "0af7651916cd43dd8448eb211c80319c" || !d.At.Equal(base) {
		t.Errorf("got %+v (input %s), want the decision as recorded", d, d.Input)
	}

	refusals, err := c.Refusals(ctx, demo.TenantAcme, base.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(refusals) != 1 || refusals[0].RateLimit != 1 || refusals[0].Admission != 0 || !refusals[0].Hour.Equal(base) {
		t.Errorf("refusals: got %+v, want one hour with one rate-limit refusal", refusals)
	}
	q, err := c.Quota(ctx, demo.TenantAcme)
	if err != nil {
		t.Fatal(err)
	}
	if q.Tier == "" || len(q.Quotas) == 0 {
		t.Errorf("quota: got %+v, want a tier and quotas", q)
	}
	if _, err := c.Rules(ctx, demo.TenantAcme); err != nil {
		t.Errorf("rules: %v", err)
	}
	if _, err := c.PersistedOperations(ctx, demo.TenantAcme); err != nil {
		t.Errorf("persisted: %v", err)
	}
	if _, err := c.Decisions(ctx, "not-a-uuid", decisionlog.Filter{}); core.ErrorCode(err) != core.CodeInvalid {
		t.Errorf("bad tenant: got %v, want INVALID", err)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustJSON(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
