package coretest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
)

// RuleStoreFixture is an implementation of core.RuleStore under test and
// the means to change its rules, as the rule API does.
type RuleStoreFixture struct {
	Rules core.RuleStore
	// Create creates r for r.Tenant (r.ID and r.Version ignored) and
	// returns its id.
	Create func(tb testing.TB, r core.Rule) string
	// SetCondition changes the condition of tenant's rule id.
	SetCondition func(tb testing.TB, tenant, id, condition string)
	// SetEnabled enables or disables tenant's rule id.
	SetEnabled func(tb testing.TB, tenant, id string, enabled bool)
	// Delete deletes tenant's rule id.
	Delete func(tb testing.TB, tenant, id string)
}

// NewRuleStoreFixture returns an in-memory RuleStore and its writers.
func NewRuleStoreFixture(*testing.T) RuleStoreFixture {
	s := NewRuleStore()
	change := func(tb testing.TB, id string, fn func(*core.Rule)) {
		tb.Helper()
		r, ok := s.Rule(id)
		if !ok {
			tb.Fatalf("no rule %s", id)
		}
		fn(&r)
		s.Put(r)
	}
	return RuleStoreFixture{
		Rules: s,
		Create: func(_ testing.TB, r core.Rule) string {
			r.ID = ""
			return s.Put(r).ID
		},
		SetCondition: func(tb testing.TB, _, id, c string) { change(tb, id, func(r *core.Rule) { r.Condition = c }) },
		SetEnabled:   func(tb testing.TB, _, id string, on bool) { change(tb, id, func(r *core.Rule) { r.Enabled = on }) },
		Delete: func(tb testing.TB, _, id string) {
			if !s.Delete(id) {
				tb.Fatalf("no rule %s", id)
			}
		},
	}
}

// ContractRule returns a rule of tenant named name, as the contract suites
// create it: enabled, on public.orders, with a webhook action.
func ContractRule(tenant, name string) core.Rule {
	return core.Rule{Tenant: tenant, Name: name, Table: "public.orders", Operations: []string{core.OpInsert},
		Actions: []core.Action{{Kind: core.ActionWebhook, URL: "https://hooks.example.test/" + name}}, Enabled: true}
}

// TestRuleStoreContract runs core.RuleStore's contract against the
// implementations newStore returns, a new one for each case. The cases run in parallel.
func TestRuleStoreContract(t *testing.T, newStore func(t *testing.T) RuleStoreFixture) {
	ctx := context.Background()
	enabled := func(tb testing.TB, s core.RuleStore) map[string]core.Rule {
		tb.Helper()
		rs, err := s.EnabledRules(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		out := map[string]core.Rule{}
		for _, r := range rs {
			out[r.ID] = r
		}
		return out
	}
	version := func(tb testing.TB, s core.RuleStore) int64 {
		tb.Helper()
		v, err := s.RulesVersion(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f RuleStoreFixture)
	}{
		{"a created rule is read back whole", func(t *testing.T, f RuleStoreFixture) {
			want := core.Rule{Tenant: TenantA, Name: "big orders", Table: "public.orders",
				Operations: []string{core.OpInsert, core.OpUpdate}, Condition: "after.total > 1000",
				Columns: []string{"total", "id"}, Enabled: true, Actions: []core.Action{
					{Kind: core.ActionWebhook, URL: "https://hooks.example.test/x", Secret: "s3cret"},
					{Kind: core.ActionEmail, To: []string{"sales@example.test"}, Subject: "Order {{key.id}}", Template: "{{after.total}}"},
				}}
			want.ID = f.Create(t, want)
			want.Version = 1
			want.Columns = []string{"id", "total"} // a set: kept sorted
			got, ok := enabled(t, f.Rules)[want.ID]
			if !ok {
				t.Fatalf("rule %s is not among the enabled rules", want.ID)
			}
			if !equalRules(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		}},
		{"columns named, none and empty are told apart", func(t *testing.T, f RuleStoreFixture) {
			for _, tc := range []struct {
				name    string
				columns []string
			}{{"none", nil}, {"empty", []string{}}, {"one", []string{"total"}}} {
				r := ContractRule(TenantA, tc.name)
				r.Columns = tc.columns
				id := f.Create(t, r)
				got := enabled(t, f.Rules)[id].Columns
				if (got == nil) != (tc.columns == nil) || !slices.Equal(got, tc.columns) {
					t.Errorf("%s: got columns %#v, want %#v", tc.name, got, tc.columns)
				}
			}
		}},
		{"every tenant's rules are read", func(t *testing.T, f RuleStoreFixture) {
			a := f.Create(t, ContractRule(TenantA, "a"))
			b := f.Create(t, ContractRule(TenantB, "b"))
			rs := enabled(t, f.Rules)
			if len(rs) != 2 || rs[a].Tenant != TenantA || rs[b].Tenant != TenantB {
				t.Fatalf("got %+v, want a of tenant A and b of tenant B", rs)
			}
		}},
		{"disabled and deleted rules are not read", func(t *testing.T, f RuleStoreFixture) {
			keep := f.Create(t, ContractRule(TenantA, "keep"))
			off := f.Create(t, ContractRule(TenantA, "off"))
			gone := f.Create(t, ContractRule(TenantA, "gone"))
			f.SetEnabled(t, TenantA, off, false)
			f.Delete(t, TenantA, gone)
			if rs := enabled(t, f.Rules); len(rs) != 1 || rs[keep].ID != keep {
				t.Fatalf("got %d rules, want only %s", len(rs), keep)
			}
			f.SetEnabled(t, TenantA, off, true)
			rs := enabled(t, f.Rules)
			if len(rs) != 2 || rs[off].Version != 3 {
				t.Fatalf("after enabling again: got %+v, want 2 rules, %s at version 3", rs, off)
			}
		}},
		{"the version moves with every change and only then", func(t *testing.T, f RuleStoreFixture) {
			last := version(t, f.Rules)
			if v := version(t, f.Rules); v != last {
				t.Fatalf("no change: version %d, then %d", last, v)
			}
			id := ""
			for _, step := range []struct {
				name string
				do   func()
			}{
				{"create", func() { id = f.Create(t, ContractRule(TenantA, "v")) }},
				{"update", func() { f.SetCondition(t, TenantA, id, "true") }},
				{"disable", func() { f.SetEnabled(t, TenantA, id, false) }},
				{"enable", func() { f.SetEnabled(t, TenantA, id, true) }},
				{"delete", func() { f.Delete(t, TenantA, id) }},
			} {
				step.do()
				v := version(t, f.Rules)
				if v <= last {
					t.Fatalf("after %s: version %d, want more than %d", step.name, v, last)
				}
				last = v
			}
		}},
		{"Changed signals a change", func(t *testing.T, f RuleStoreFixture) {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := f.Rules.Changed(cctx)
			f.Create(t, ContractRule(TenantA, "signal"))
			select {
			case _, ok := <-ch:
				if !ok {
					t.Fatal("Changed's channel closed, want a value")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no signal within 10 s of a change")
			}
		}},
		{"Changed's channel closes when its context ends", func(t *testing.T, f RuleStoreFixture) {
			cctx, cancel := context.WithCancel(ctx)
			ch := f.Rules.Changed(cctx)
			cancel()
			within(t, 10*time.Second, "Changed's channel closing", func() {
				for range ch {
				}
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

func equalRules(a, b core.Rule) bool {
	eqActions := slices.EqualFunc(a.Actions, b.Actions, func(x, y core.Action) bool {
		return x.Kind == y.Kind && x.URL == y.URL && x.Secret == y.Secret && slices.Equal(x.To, y.To) &&
			x.Subject == y.Subject && x.Template == y.Template
	})
	return a.ID == b.ID && a.Tenant == b.Tenant && a.Name == b.Name && a.Table == b.Table &&
		slices.Equal(a.Operations, b.Operations) && a.Condition == b.Condition && slices.Equal(a.Columns, b.Columns) &&
		eqActions && a.Enabled == b.Enabled && a.Version == b.Version
}
