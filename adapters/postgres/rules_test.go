package postgres_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// Secret action URLs and signing secrets (security #13, defect 7a).
const (
	slackURL = "https://hooks.slack.com/services/T0001/B0001/slackSECRETslackSECRET42"
	tokenURL = "https://hooks.acme.test/in?token=tokSECRET"
	plainURL = "https://hooks.acme.test/plain"
)

// secretParts are what must never reach the core's role through the rule
// API or the rules table.
var secretParts = []string{"slackSECRET", "tokSECRET", "s3cret"}

// appRead returns what the core's role reads with sql in tenant's
// transaction, as one JSON text.
func appRead(tb testing.TB, d *postgres.DB, tenant, sql string) (string, error) {
	tb.Helper()
	var out string
	err := d.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, sql)
		out = string(b)
		return err
	})
	return out, err
}

func mustNoSecret(tb testing.TB, what, s string) {
	tb.Helper()
	for _, p := range secretParts {
		if strings.Contains(s, p) {
			tb.Fatalf("%s holds the secret %q: %s", what, p, s)
		}
	}
}

// enabledActions returns the actions the dispatcher gets for rule id.
func enabledActions(tb testing.TB, l *postgres.EventLog, id string) []core.Action {
	tb.Helper()
	rules, err := l.EnabledRules(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range rules {
		if r.ID == id {
			return r.Actions
		}
	}
	tb.Fatalf("rule %s is not among the enabled rules", id)
	return nil
}

// TestRuleSecrets: the rule API (v_observer_rule, the functions' results)
// and the rules table the core's role reads show secret URLs redacted and
// no signing secret; only the dispatcher's function returns them whole;
// an update that sends back what the API shows keeps them.
func TestRuleSecrets(t *testing.T) {
	admin, l, d := mustObserved(t)
	ctx := context.Background()
	actions := []map[string]any{
		{"kind": "slack", "url": slackURL, "template": "{{op}}"},
		{"kind": "webhook", "url": tokenURL},
		{"kind": "webhook", "url": plainURL, "secret": "s3cret"},
	}
	in, _ := json.Marshal(map[string]any{"name": "secrets", "table": "public.orders", "actions": actions})
	r := call(t, d, tenantA, "fn_create_observer_rule($1::jsonb)", string(in))
	if r.Status != "ok" {
		t.Fatalf("create: got %+v", r)
	}
	mustNoSecret(t, "the created rule", string(r.Data))
	var data struct{ Actions []map[string]any }
	if err := json.Unmarshal(r.Data, &data); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"kind":"slack","secretUrl":true,"signed":false,"template":"{{op}}","url":"https://hooks.slack.com/services/***"}`,
		`{"kind":"webhook","secretUrl":true,"signed":false,"url":"https://hooks.acme.test/in/***"}`,
		`{"kind":"webhook","secretUrl":false,"signed":true,"url":"https://hooks.acme.test/plain"}`,
	}
	for i, a := range data.Actions {
		if got, _ := json.Marshal(a); i >= len(want) || string(got) != want[i] {
			t.Fatalf("action %d as the API shows it: got %s, want %s", i, got, want[min(i, len(want)-1)])
		}
	}
	if len(data.Actions) != len(want) {
		t.Fatalf("got %d actions, want %d", len(data.Actions), len(want))
	}

	// The core's role reads neither the view nor the table with a secret in
	// it, and cannot read the secrets table at all.
	for _, q := range []string{
		"select to_jsonb(array_agg(v.data)) from v_observer_rule v",
		"select to_jsonb(array_agg(r.actions)) from fraise.observer_rules r",
	} {
		got, err := appRead(t, d, tenantA, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		mustNoSecret(t, q, got)
	}
	if _, err := appRead(t, d, tenantA, "select to_jsonb(array_agg(s)) from fraise.observer_action_secrets s"); core.ErrorCode(err) == "" {
		t.Fatalf("the core's role read the secrets table: got err %v, want permission denied", err)
	}

	// The dispatcher gets the actions whole.
	wantFull := func(tb testing.TB, got []core.Action, slack, token, plain, secret string) {
		tb.Helper()
		if len(got) != 3 || got[0].URL != slack || got[1].URL != token || got[2].URL != plain || got[2].Secret != secret ||
			got[0].Secret != "" || got[1].Secret != "" {
			tb.Fatalf("dispatcher's actions: got %+v, want %s, %s, %s with secret %q", got, slack, token, plain, secret)
		}
	}
	wantFull(t, enabledActions(t, l, r.ID), slackURL, tokenURL, plainURL, "s3cret")

	// Sending back what the API shows (a template changed) keeps the
	// secret URLs and the signing secret; so does a patch without actions.
	shown := data.Actions
	shown[0]["template"] = "changed {{op}}"
	patch, _ := json.Marshal(map[string]any{"actions": shown})
	if got := call(t, d, tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", r.ID, string(patch)); got.Status != "ok" {
		t.Fatalf("update with the shown actions: got %+v", got)
	}
	wantFull(t, enabledActions(t, l, r.ID), slackURL, tokenURL, plainURL, "s3cret")
	if got := call(t, d, tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", r.ID, `{"condition":"after.total > 1"}`); got.Status != "ok" {
		t.Fatalf("update of the condition: got %+v", got)
	}
	wantFull(t, enabledActions(t, l, r.ID), slackURL, tokenURL, plainURL, "s3cret")

	// Actions reordered still find their secrets.
	reordered, _ := json.Marshal(map[string]any{"actions": []any{shown[2], shown[1], shown[0]}})
	if got := call(t, d, tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", r.ID, string(reordered)); got.Status != "ok" {
		t.Fatalf("update with the actions reordered: got %+v", got)
	}
	got := enabledActions(t, l, r.ID)
	if len(got) != 3 || got[0].URL != plainURL || got[0].Secret != "s3cret" || got[1].URL != tokenURL || got[2].URL != slackURL {
		t.Fatalf("reordered actions: got %+v", got)
	}

	tests := []struct {
		name, patch, status string
		check               func(tb testing.TB, got []core.Action)
	}{
		{"a webhook moved to another URL loses its signing secret",
			`{"actions":[{"kind":"webhook","url":"https://elsewhere.test/x"}]}`, "ok",
			func(tb testing.TB, got []core.Action) {
				if len(got) != 1 || got[0].URL != "https://elsewhere.test/x" || got[0].Secret != "" {
					tb.Fatalf("got %+v, want the new URL without a secret", got)
				}
			}},
		{"a redacted URL no action of the rule has is refused",
			`{"actions":[{"kind":"slack","url":"https://hooks.slack.com/services/***"}]}`, "invalid", nil},
		{"a new secret replaces none", `{"actions":[{"kind":"webhook","url":"https://elsewhere.test/x","secret":"n3w"}]}`, "ok",
			func(tb testing.TB, got []core.Action) {
				if len(got) != 1 || got[0].Secret != "n3w" {
					tb.Fatalf("got %+v, want secret n3w", got)
				}
			}},
		{"an empty secret removes it", `{"actions":[{"kind":"webhook","url":"https://elsewhere.test/x","secret":""}]}`, "ok",
			func(tb testing.TB, got []core.Action) {
				if len(got) != 1 || got[0].Secret != "" {
					tb.Fatalf("got %+v, want no secret", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := call(t, d, tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", r.ID, tt.patch)
			if res.Status != tt.status {
				t.Fatalf("got %+v, want status %s", res, tt.status)
			}
			if tt.check != nil {
				tt.check(t, enabledActions(t, l, r.ID))
			}
		})
	}
	// Another tenant's update cannot touch the secrets.
	if got := call(t, d, tenantB, "fn_update_observer_rule($1::uuid, $2::jsonb)", r.ID, string(patch)); got.Status != "not_found" {
		t.Fatalf("other tenant's update: got %+v, want not_found", got)
	}
	// Deleting the rule deletes its secrets.
	if got := call(t, d, tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", r.ID, string(in)); got.Status != "ok" {
		t.Fatalf("update back: got %+v", got)
	}
	if got := call(t, d, tenantA, "fn_delete_observer_rule($1::uuid)", r.ID); got.Status != "ok" {
		t.Fatalf("delete: got %+v", got)
	}
	var n int
	if err := admin.QueryRow(ctx, "select count(*) from fraise.observer_action_secrets").Scan(&n); err != nil || n != 0 {
		t.Fatalf("secrets left after the delete: %d %v", n, err)
	}
}

// TestRuleSecretsOfOlderRules: a rule stored whole before migration 0010
// has its secrets moved apart by the migration's own function.
func TestRuleSecretsOfOlderRules(t *testing.T) {
	admin, l, d := mustObserved(t)
	ctx := context.Background()
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var id string
	if err := tx.QueryRow(ctx, `select set_config('fraise.tenant', $1, true)`, tenantA).Scan(new(string)); err != nil {
		t.Fatal(err)
	}
	err = tx.QueryRow(ctx, `insert into fraise.observer_rules (tenant_id, name, table_name, actions)
		values ($1, 'old', 'public.orders', $2::jsonb) returning id::text`, tenantA,
		`[{"kind":"slack","url":"`+slackURL+`"},{"kind":"webhook","url":"`+plainURL+`","secret":"s3cret"}]`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `update fraise.observer_rules r set actions = fraise.observer_store_actions(r.id, r.tenant_id, r.actions) where r.id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := appRead(t, d, tenantA, "select to_jsonb(array_agg(r.actions)) from fraise.observer_rules r")
	if err != nil {
		t.Fatal(err)
	}
	mustNoSecret(t, "the older rule's actions", got)
	acts := enabledActions(t, l, id)
	if len(acts) != 2 || acts[0].URL != slackURL || acts[1].URL != plainURL || acts[1].Secret != "s3cret" {
		t.Fatalf("the older rule's actions for the dispatcher: got %+v", acts)
	}
}

// TestRedactionMatchesGo: the SQL functions that decide which action URLs
// the rule API shows redacted (migration 0010) and the Go functions that
// redact logs and dead letters (core) apply the same rule (security #13,
// defect 7b): one rule, whichever side applies it.
func TestRedactionMatchesGo(t *testing.T) {
	admin, _, _ := mustObserved(t)
	ctx := context.Background()
	cases := [][2]string{}
	for _, kind := range []string{"webhook", "slack", "email"} {
		for _, u := range []string{
			"https://hooks.acme.test/orders", "https://hooks.acme.test/orders?source=fraise",
			"https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXX", "https://hooks.slack.com",
			"https://user:pw@hooks.acme.test/in", "https://hooks.acme.test/a@b", "https://a@b@c.test/x",
			"https://hooks.acme.test/in?token=abc", "https://hooks.acme.test/in?X-Api-KEY=abc", "https://h.test/in?t%6Fken=1",
			"https://hooks.acme.test/in#access_token=abc", "https://hooks.acme.test?token=abc", "https://hooks.acme.test#x",
			"https://discord.test/api/webhooks/123/abcdefghijklmnopqrstuvwxyz0123", "https://h.test/abcdefghijklmnopqrstuvwxyz0123/x",
			"https://h.test/abcdefghijklmnopqrstuvw", "https://h.test/abcdefghijklmnopqrstuvwx", "https://h.test//x", "https://h.test/",
			"http://u:p@127.0.0.1:8080/x?sig=1", "hooks.acme.test/in", "", "HTTPS://H.TEST/X?PASSWORD=1", "https://h.test/é?ünïcode",
			"https://h.test/ééééééééééééééééééééééé", "https://h.test/éééééééééééééééééééééééé", "https://h.test/a\nb?c",
		} {
			cases = append(cases, [2]string{kind, u})
		}
	}
	// And the Go fuzz target's seed corpus.
	files, _ := filepath.Glob("../../core/testdata/fuzz/FuzzRedactActionURL/*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "string("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				args = append(args, s)
			}
		}
		if len(args) == 2 {
			cases = append(cases, [2]string{args[0], args[1]})
		}
	}
	for _, c := range cases {
		var secret bool
		var red string
		if err := admin.QueryRow(ctx, "select fraise.action_url_secret($1, $2), fraise.redact_action_url($1, $2)", c[0], c[1]).Scan(&secret, &red); err != nil {
			t.Fatalf("%q %q: %v", c[0], c[1], err)
		}
		if want := core.ActionURLSecret(c[0], c[1]); secret != want {
			t.Errorf("secret(%q, %q): SQL says %v, Go %v", c[0], c[1], secret, want)
		}
		if want := core.RedactActionURL(c[0], c[1]); red != want {
			t.Errorf("redact(%q, %q): SQL gives %q, Go %q", c[0], c[1], red, want)
		}
	}
}

// TestRuleColumns: a rule stores the columns it captures, the view shows
// them, the dispatcher gets them; a rule that names none has nil
// (security #13, defect 7c).
func TestRuleColumns(t *testing.T) {
	_, l, d := mustObserved(t)
	ctx := context.Background()
	rule := func(name, columns string) string {
		s := `{"name":"` + name + `","table":"public.orders","actions":[{"kind":"webhook","url":"https://a.test"}]`
		if columns != "" {
			s += `,"columns":` + columns
		}
		return s + "}"
	}
	named := call(t, d, tenantA, "fn_create_observer_rule($1::jsonb)", rule("named", `["total","id"]`))
	none := call(t, d, tenantA, "fn_create_observer_rule($1::jsonb)", rule("none", ""))
	empty := call(t, d, tenantA, "fn_create_observer_rule($1::jsonb)", rule("empty", `[]`))
	for _, r := range []result{named, none, empty} {
		if r.Status != "ok" {
			t.Fatalf("create: got %+v", r)
		}
	}
	var data struct{ Columns []string }
	_ = json.Unmarshal(named.Data, &data)
	if strings.Join(data.Columns, ",") != "id,total" {
		t.Fatalf("view's columns: got %v, want [id total]", data.Columns)
	}
	columnsOf := func(tb testing.TB, id string) []string {
		tb.Helper()
		rules, err := l.EnabledRules(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range rules {
			if r.ID == id {
				return r.Columns
			}
		}
		tb.Fatalf("no rule %s", id)
		return nil
	}
	if got := columnsOf(t, named.ID); strings.Join(got, ",") != "id,total" {
		t.Fatalf("dispatcher's columns: got %v", got)
	}
	if got := columnsOf(t, none.ID); got != nil {
		t.Fatalf("a rule naming no columns: got %#v, want nil", got)
	}
	if got := columnsOf(t, empty.ID); got == nil || len(got) != 0 {
		t.Fatalf("a rule naming an empty list: got %#v, want an empty list", got)
	}
	tests := []struct {
		name, patch, status, want string
	}{
		{"an update without columns keeps them", `{"condition":"after.total > 1"}`, "ok", "id,total"},
		{"an update with columns replaces them", `{"columns":["note"]}`, "ok", "note"},
		{"columns: null keeps them", `{"columns":null}`, "ok", "note"},
		{"a column that is not a string", `{"columns":[1]}`, "invalid", "note"},
		{"an empty name", `{"columns":[""]}`, "invalid", "note"},
		{"not a list", `{"columns":"note"}`, "invalid", "note"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := call(t, d, tenantA, "fn_update_observer_rule($1::uuid, $2::jsonb)", named.ID, tt.patch); got.Status != tt.status {
				t.Fatalf("got %+v, want status %s", got, tt.status)
			}
			if got := columnsOf(t, named.ID); strings.Join(got, ",") != tt.want {
				t.Fatalf("columns: got %v, want %s", got, tt.want)
			}
		})
	}
}

// TestRulesVersionMovesWithEveryChange: each change to the rules, made by
// the core's role, moves the version in its own transaction, so the
// dispatcher that reads the version after an event sees every rule
// committed before it.
func TestRulesVersionMovesWithEveryChange(t *testing.T) {
	_, l, d := mustObserved(t)
	ctx := context.Background()
	last, err := l.RulesVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	steps := []struct {
		name string
		sql  func() (string, []any)
	}{
		{"create", func() (string, []any) {
			return "fn_create_observer_rule($1::jsonb)", []any{`{"name":"v","table":"public.orders","actions":[{"kind":"webhook","url":"https://hooks.acme.test/v"}]}`}
		}},
		{"update", func() (string, []any) {
			return "fn_update_observer_rule($1::uuid, $2::jsonb)", []any{id, `{"condition":"true"}`}
		}},
		{"disable", func() (string, []any) { return "fn_disable_observer_rule($1::uuid)", []any{id} }},
		{"delete", func() (string, []any) { return "fn_delete_observer_rule($1::uuid)", []any{id} }},
	}
	for _, s := range steps {
		sql, args := s.sql()
		r := call(t, d, tenantA, sql, args...)
		if r.Status != "ok" {
			t.Fatalf("%s: got %+v", s.name, r)
		}
		if id == "" {
			id = r.ID
		}
		v, err := l.RulesVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if v <= last {
			t.Fatalf("after %s: version %d, want more than %d", s.name, v, last)
		}
		last = v
	}
}
