package ruleapi_test

// Rule management through the GraphQL engine, as `fraise serve` wires it
// with [observers] enabled: the demo schema with the rules fragment merged
// in, the Go hooks, and the harness's PostgreSQL with every migration.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/core/observe/ruleapi"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

// Two tenants the tests' rules belong to; the rule tables need no rows of
// theirs elsewhere.
const (
	obsTenantA = "00000000-0000-0000-0000-0000000000aa"
	obsTenantB = "00000000-0000-0000-0000-0000000000bb"
)

type rulesEnv struct {
	engine   *graphql.Engine
	adminURL string
}

func mustRulesEngine(tb testing.TB) rulesEnv {
	tb.Helper()
	harness.SkipShort(tb)
	ctx := context.Background()
	pg, name := postgrestest.NewDemo(tb)
	db, err := postgres.Open(ctx, pg.URL("fraise_app", name), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	s, err := graphql.ParseSchema(ruleapi.Merge(demo.SDL))
	if err != nil {
		tb.Fatal(err)
	}
	// The wrappers of migration 0009 must satisfy the engine's contract.
	if err := s.Check(ctx, db); err != nil {
		tb.Fatal(err)
	}
	e := graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db, Hooks: ruleapi.Hooks(&observe.Rules{Compiler: observe.NewCompiler(), Protection: ruleapi.Protection(s), Store: db}), Session: db, Audit: db})
	return rulesEnv{engine: e, adminURL: pg.AdminURL(name)}
}

// admin runs sql as the database owner and returns its rows.
func (r rulesEnv) admin(tb testing.TB, sql string, args ...any) [][]any {
	tb.Helper()
	return postgrestest.Query(tb, r.adminURL, sql, args...)
}

// do runs query as subject of tenant and returns the response.
func (r rulesEnv) do(tenant, query string, vars map[string]any) *graphql.Response {
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "rules-tester", Tenant: tenant})
	return r.engine.Execute(ctx, graphql.Request{Query: query, Variables: vars})
}

// mustOK runs query, fails on any error, and decodes the data.
func (r rulesEnv) mustOK(tb testing.TB, tenant, query string, vars map[string]any) map[string]any {
	tb.Helper()
	resp := r.do(tenant, query, vars)
	if len(resp.Errors) > 0 {
		tb.Fatalf("%s: errors %+v", query, resp.Errors[0])
	}
	var data map[string]any
	if err := json.Unmarshal(resp.Data, &data); err != nil {
		tb.Fatal(err)
	}
	return data
}

func mustErrCode(tb testing.TB, resp *graphql.Response, code string) {
	tb.Helper()
	if len(resp.Errors) == 0 {
		tb.Fatalf("want error %s, got data %s", code, resp.Data)
	}
	if got := resp.Errors[0].Extensions["code"]; got != code {
		tb.Fatalf("want error %s, got %v: %s", code, got, resp.Errors[0].Message)
	}
}

const (
	createRule = `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) {
		succeeded status errorClass message rule { id name table operations condition enabled version actions { kind url } } } }`
	listRules = `{ observerRules(orderBy: [{name: ASC}]) { id name condition enabled } }`
)

func bigOrders(name, cond string) map[string]any {
	return map[string]any{"name": name, "table": "public.orders", "operations": []any{"INSERT", "UPDATE"},
		"condition": cond, "columns": []any{"id", "total", "note"},
		"actions": []any{map[string]any{"kind": "webhook", "url": "https://hooks.example.com/x", "secret": "s3cret"}}}
}

func TestObserverRulesThroughGraphQL(t *testing.T) {
	r := mustRulesEngine(t)
	const a, b = obsTenantA, obsTenantB

	// Create, then read back by list and by id.
	d := r.mustOK(t, a, createRule, map[string]any{"in": bigOrders("big", "after.total > 1000")})
	res := d["createObserverRule"].(map[string]any)
	if res["succeeded"] != true || res["status"] != "created" {
		t.Fatalf("create: %v", res)
	}
	rule := res["rule"].(map[string]any)
	id := rule["id"].(string)
	if rule["condition"] != "after.total > 1000" || rule["enabled"] != true || rule["version"] != float64(1) {
		t.Fatalf("created rule: %v", rule)
	}
	d = r.mustOK(t, a, listRules, nil)
	if got := d["observerRules"].([]any); len(got) != 1 || got[0].(map[string]any)["id"] != id {
		t.Fatalf("list: %v", got)
	}
	d = r.mustOK(t, a, `query($id: ID!) { observerRule(id: $id) { name actions { kind url } } }`, map[string]any{"id": id})
	if got := plainJSON(d["observerRule"]); got != `{"actions":[{"kind":"webhook","url":"https://hooks.example.com/x"}],"name":"big"}` {
		t.Fatalf("by id: %s", got)
	}
	// The where argument of the engine filters rules like any view.
	d = r.mustOK(t, a, `{ observerRules(where: {name: {eq: "nope"}}) { id } }`, nil)
	if got := d["observerRules"].([]any); len(got) != 0 {
		t.Fatalf("where: %v", got)
	}

	// Tenant B sees none of A's rules, and cannot change them.
	d = r.mustOK(t, b, listRules, nil)
	if got := d["observerRules"].([]any); len(got) != 0 {
		t.Fatalf("tenant B lists A's rules: %v", got)
	}
	d = r.mustOK(t, b, `mutation($id: ID!) { disableObserverRule(id: $id) { succeeded errorClass } }`, map[string]any{"id": id})
	if got := d["disableObserverRule"].(map[string]any); got["succeeded"] != false || got["errorClass"] != "not_found" {
		t.Fatalf("tenant B disabled A's rule: %v", got)
	}

	// Update: the patch keeps what it does not name.
	d = r.mustOK(t, a, `mutation($id: ID!, $p: ObserverRulePatch!) { updateObserverRule(id: $id, input: $p) {
		succeeded status rule { name condition version operations } } }`,
		map[string]any{"id": id, "p": map[string]any{"condition": "after.total > 5000"}})
	if got := plainJSON(d["updateObserverRule"]); got != `{"rule":{"condition":"after.total > 5000","name":"big","operations":["INSERT","UPDATE"],"version":2},"status":"updated","succeeded":true}` {
		t.Fatalf("update: %s", got)
	}

	// Disable and enable.
	for _, step := range []struct {
		name, field string
		enabled     bool
	}{{"disable", "disableObserverRule", false}, {"enable", "enableObserverRule", true}} {
		d = r.mustOK(t, a, `mutation($id: ID!) { `+step.field+`(id: $id) { succeeded status rule { enabled } } }`, map[string]any{"id": id})
		got := d[step.field].(map[string]any)
		if got["succeeded"] != true || got["rule"].(map[string]any)["enabled"] != step.enabled {
			t.Fatalf("%s: %v", step.name, got)
		}
		if rows := r.admin(t, `select enabled from fraise.observer_rules where id = $1`, id); rows[0][0] != step.enabled {
			t.Fatalf("%s: stored enabled %v", step.name, rows[0][0])
		}
	}

	// A bad condition or action is refused in Go before anything is stored.
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		want        string
	}{
		{"create with a bad condition", createRule, map[string]any{"in": bigOrders("bad", "after.total >")}, "condition"},
		{"create with a non-boolean condition", createRule, map[string]any{"in": bigOrders("bad", "after.total + 1")}, "bool"},
		{"create with a bad url", createRule, map[string]any{"in": map[string]any{"name": "bad", "table": "public.orders", "columns": []any{},
			"actions": []any{map[string]any{"kind": "webhook", "url": "ftp://x"}}}}, "url"},
		{"create with a bad template", createRule, map[string]any{"in": map[string]any{"name": "bad", "table": "public.orders", "columns": []any{},
			"actions": []any{map[string]any{"kind": "slack", "url": "https://x.example", "template": "{{ .after.total "}}}}, "template"},
		{"update to a bad condition", `mutation($id: ID!) { updateObserverRule(id: $id, input: {condition: "after.total > > 1"}) { succeeded } }`,
			map[string]any{"id": id}, "condition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.do(a, tc.query, tc.vars)
			mustErrCode(t, resp, "INVALID")
			if !strings.Contains(strings.ToLower(resp.Errors[0].Message), tc.want) {
				t.Fatalf("message %q does not mention %s", resp.Errors[0].Message, tc.want)
			}
		})
	}
	if rows := r.admin(t, `select count(*), max(condition) from fraise.observer_rules`); rows[0][0] != int64(1) || rows[0][1] != "after.total > 5000" {
		t.Fatalf("refused rules changed the table: %v", rows)
	}

	// Test against sample events: by id, and an unsaved rule.
	testQ := `query($id: ID, $rule: ObserverRuleInput, $ev: ObserverEventInput!) {
		testObserverRule(id: $id, rule: $rule, event: $ev) { matched messages { kind url body } } }`
	for _, tc := range []struct {
		name    string
		vars    map[string]any
		matched bool
	}{
		{"stored rule, matching", map[string]any{"id": id, "ev": map[string]any{"op": "INSERT", "after": map[string]any{"total": 6000}}}, true},
		{"stored rule, below the threshold", map[string]any{"id": id, "ev": map[string]any{"op": "INSERT", "after": map[string]any{"total": 10}}}, false},
		{"stored rule, operation not watched", map[string]any{"id": id, "ev": map[string]any{"op": "DELETE", "before": map[string]any{"total": 6000}}}, false},
		{"unsaved rule, matching", map[string]any{"rule": bigOrders("x", "after.note == 'vip'"), "ev": map[string]any{"op": "UPDATE",
			"before": map[string]any{"note": ""}, "after": map[string]any{"note": "vip"}, "changed": []any{"note"}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := r.mustOK(t, a, testQ, tc.vars)
			got := d["testObserverRule"].(map[string]any)
			msgs := got["messages"].([]any)
			if got["matched"] != tc.matched || (len(msgs) == 1) != tc.matched {
				t.Fatalf("got %v, want matched %v", got, tc.matched)
			}
			if tc.matched {
				m := msgs[0].(map[string]any)
				if m["kind"] != "webhook" || m["url"] != "https://hooks.example.com/x" || !strings.Contains(m["body"].(string), `"total"`) && !strings.Contains(m["body"].(string), "vip") {
					t.Fatalf("message %v", m)
				}
			}
		})
	}
	mustErrCode(t, r.do(a, testQ, map[string]any{"ev": map[string]any{"op": "INSERT"}}), "INVALID")
	mustErrCode(t, r.do(b, testQ, map[string]any{"id": id, "ev": map[string]any{"op": "INSERT"}}), "NOT_FOUND")

	// Past the tier's quota: QUOTA_EXCEEDED, nothing stored.
	r.admin(t, `update fraise.tier_quotas set max_count = 2 where tier = 'default' and resource = 'observer_rules'`)
	r.mustOK(t, a, createRule, map[string]any{"in": bigOrders("second", "")})
	mustErrCode(t, r.do(a, createRule, map[string]any{"in": bigOrders("third", "")}), "QUOTA_EXCEEDED")
	if rows := r.admin(t, `select count(*) from fraise.observer_rules where tenant_id = $1`, a); rows[0][0] != int64(2) {
		t.Fatalf("rules past the quota: %v", rows[0][0])
	}

	// Delete returns the rule as it was.
	d = r.mustOK(t, a, `mutation($id: ID!) { deleteObserverRule(id: $id) { succeeded status rule { name } } }`, map[string]any{"id": id})
	if got := plainJSON(d["deleteObserverRule"]); got != `{"rule":{"name":"big"},"status":"deleted","succeeded":true}` {
		t.Fatalf("delete: %s", got)
	}
	d = r.mustOK(t, a, listRules, nil)
	if got := d["observerRules"].([]any); len(got) != 1 || got[0].(map[string]any)["name"] != "second" {
		t.Fatalf("after delete: %v", got)
	}

	// Every mutation left an audit row: tenant, subject, operation,
	// resource and outcome, the refused ones included.
	rows := r.admin(t, `select tenant_id::text, subject, operation, coalesce(resource_id, ''), outcome
		from fraise.audit_log order by id`)
	var got []string
	for _, row := range rows {
		res := row[3].(string)
		if res == id {
			res = "ID"
		} else if res != "" {
			res = "other"
		}
		got = append(got, strings.Join([]string{row[0].(string)[34:], row[1].(string), row[2].(string), res, row[4].(string)}, " "))
	}
	want := []string{
		"aa rules-tester createObserverRule ID created",
		"bb rules-tester disableObserverRule  not_found",
		"aa rules-tester updateObserverRule ID updated",
		"aa rules-tester disableObserverRule ID disabled",
		"aa rules-tester enableObserverRule ID enabled",
		"aa rules-tester createObserverRule  error:INVALID",
		"aa rules-tester createObserverRule  error:INVALID",
		"aa rules-tester createObserverRule  error:INVALID",
		"aa rules-tester createObserverRule  error:INVALID",
		"aa rules-tester updateObserverRule  error:INVALID",
		"aa rules-tester createObserverRule other created",
		"aa rules-tester createObserverRule  error:QUOTA_EXCEEDED",
		"aa rules-tester deleteObserverRule ID deleted",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("audit rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWithObserverRulesMergesIntoAnySchema(t *testing.T) {
	for _, tc := range []struct{ name, sdl string }{
		{"schema without mutations", `type Thing { id: ID! } type Query { things: [Thing!]! }`},
		{"schema with mutations", `type Thing { id: ID! } type Query { things: [Thing!]! }
			type ThingResult { succeeded: Boolean! } type Mutation { touchThing(id: ID!): ThingResult! }`},
		{"renamed mutation root", `schema { query: Query mutation: Writes } type Thing { id: ID! } type Query { things: [Thing!]! }
			type ThingResult { succeeded: Boolean! } type Writes { touchThing(id: ID!): ThingResult! }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := graphql.ParseSchema(ruleapi.Merge(tc.sdl))
			if err != nil {
				t.Fatal(err)
			}
			views := s.Views()
			if views["ObserverRule"] != "v_observer_rule" || views["Thing"] != "v_thing" {
				t.Fatalf("views %v", views)
			}
		})
	}
}

// plainJSON is v as JSON without HTML escaping, to compare with literals.
func plainJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

// TestObserverRuleSecretsThroughGraphQL: a Slack URL, a webhook URL with a
// token and a signing secret are never returned by the rule API, and a
// rule updated with its actions as the API shows them keeps them
// (security #13, defect 7a).
func TestObserverRuleSecretsThroughGraphQL(t *testing.T) {
	r := mustRulesEngine(t)
	const a = obsTenantA
	const (
		slackURL = "https://hooks.slack.com/services/T0001/B0001/slackSECRETslackSECRET42"
		tokenURL = "https://hooks.example.com/in?api_key=keySECRET"
	)
	mustNoSecret := func(tb testing.TB, what string, v any) {
		tb.Helper()
		s := plainJSON(v)
		for _, p := range []string{"slackSECRET", "keySECRET", "s3cret"} {
			if strings.Contains(s, p) {
				tb.Fatalf("%s holds the secret %q: %s", what, p, s)
			}
		}
	}
	in := map[string]any{"name": "secrets", "table": "public.orders", "operations": []any{"INSERT"}, "columns": []any{"id"},
		"actions": []any{
			map[string]any{"kind": "slack", "url": slackURL, "template": "{{op}}"},
			map[string]any{"kind": "webhook", "url": tokenURL, "secret": "s3cret"},
		}}
	const fields = `id actions { kind url template }`
	d := r.mustOK(t, a, `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded rule { `+fields+` } } }`,
		map[string]any{"in": in})
	mustNoSecret(t, "createObserverRule", d)
	id := d["createObserverRule"].(map[string]any)["rule"].(map[string]any)["id"].(string)
	d = r.mustOK(t, a, `query($id: ID!) { observerRule(id: $id) { actions { kind url secretUrl signed template } } }`, map[string]any{"id": id})
	rule := d["observerRule"].(map[string]any)
	wantShown := `[{"kind":"slack","secretUrl":true,"signed":false,"template":"{{op}}","url":"https://hooks.slack.com/services/***"},` +
		`{"kind":"webhook","secretUrl":true,"signed":true,"template":null,"url":"https://hooks.example.com/in/***"}]`
	if got := plainJSON(rule["actions"]); got != wantShown {
		t.Fatalf("created actions: got %s, want %s", got, wantShown)
	}
	for _, q := range []string{
		`{ observerRules { ` + fields + ` } }`,
		`query($id: ID!) { observerRule(id: $id) { ` + fields + ` } }`,
		`query($id: ID!) { testObserverRule(id: $id, event: {op: "INSERT", after: {total: 1}}) { matched messages { kind url body } } }`,
	} {
		mustNoSecret(t, q, r.mustOK(t, a, q, map[string]any{"id": id}))
	}

	// An update sending the actions back as shown (a template changed)
	// keeps the URLs and the signing secret the dispatcher uses.
	shown := rule["actions"].([]any)
	for _, x := range shown {
		act := x.(map[string]any)
		delete(act, "secretUrl")
		delete(act, "signed")
		if act["template"] == nil {
			delete(act, "template")
		}
	}
	shown[0].(map[string]any)["template"] = "changed {{op}}"
	d = r.mustOK(t, a, `mutation($id: ID!, $p: ObserverRulePatch!) { updateObserverRule(id: $id, input: $p) { succeeded rule { `+fields+` } } }`,
		map[string]any{"id": id, "p": map[string]any{"actions": shown}})
	mustNoSecret(t, "updateObserverRule", d)
	if got := d["updateObserverRule"].(map[string]any)["succeeded"]; got != true {
		t.Fatalf("update: got %v", d)
	}
	rows := r.admin(t, `select actions::text from fraise.observer_rules_enabled() where id = $1`, id)
	var acts []core.Action
	if err := json.Unmarshal([]byte(rows[0][0].(string)), &acts); err != nil {
		t.Fatal(err)
	}
	if len(acts) != 2 || acts[0].URL != slackURL || acts[0].Template != "changed {{op}}" || acts[1].URL != tokenURL || acts[1].Secret != "s3cret" {
		t.Fatalf("the dispatcher's actions after the update: got %+v", acts)
	}
}

// doAs runs query as principal p.
func (r rulesEnv) doAs(p core.Principal, query string, vars map[string]any) *graphql.Response {
	return r.engine.Execute(core.WithPrincipal(context.Background(), p), graphql.Request{Query: query, Variables: vars})
}

// TestObserverRuleColumnsThroughGraphQL: a rule names the columns it
// captures; naming one the schema masks (User.email) or restricts
// (Post.internalNote) needs the scope that lifts it, when the rule is
// created and whenever it is changed (security #13, defect 7c).
func TestObserverRuleColumnsThroughGraphQL(t *testing.T) {
	r := mustRulesEngine(t)
	const a = obsTenantA
	plain := core.Principal{Subject: "olga", Tenant: a, Roles: []string{"operator"}}
	unmasker := core.Principal{Subject: "alice", Tenant: a, Roles: []string{"admin"}, Scopes: []string{"read:User.email"}}
	rule := func(name, table string, columns ...any) map[string]any {
		return map[string]any{"in": map[string]any{"name": name, "table": table, "columns": columns,
			"actions": []any{map[string]any{"kind": "webhook", "url": "https://hooks.example.com/" + name}}}}
	}
	const create = `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded rule { id columns } } }`
	const update = `mutation($id: ID!, $p: ObserverRulePatch!) { updateObserverRule(id: $id, input: $p) { succeeded rule { columns } } }`
	ids := map[string]string{}
	for _, tc := range []struct {
		name string
		p    core.Principal
		vars map[string]any
		want string // extensions.code, "" for created
		says string // in the message
	}{
		{"a masked column without the scope", plain, rule("emails", "public.users", "id", "email"), "FORBIDDEN", "read:User.email"},
		{"a masked column with the scope", unmasker, rule("emails", "public.users", "id", "email"), "", ""},
		{"a restricted column, snake_case, without the scope", unmasker, rule("notes", "public.posts", "id", "internal_note"), "FORBIDDEN", "read:Post.internalNote"},
		{"unprotected columns", plain, rule("titles", "public.posts", "id", "title"), "", ""},
		{"a template reading a column not captured", plain, map[string]any{"in": map[string]any{"name": "tpl", "table": "public.posts",
			"columns": []any{"id"}, "actions": []any{map[string]any{"kind": "slack", "url": "https://hooks.example.com/s",
				"template": "{{after.title}}"}}}}, "INVALID", "title"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.doAs(tc.p, create, tc.vars)
			if tc.want != "" {
				mustErrCode(t, resp, tc.want)
				if !strings.Contains(resp.Errors[0].Message, tc.says) {
					t.Fatalf("message %q does not mention %s", resp.Errors[0].Message, tc.says)
				}
				return
			}
			if len(resp.Errors) > 0 {
				t.Fatalf("got errors %+v", resp.Errors)
			}
			var d struct {
				CreateObserverRule struct {
					Succeeded bool
					Rule      struct {
						ID      string
						Columns []string
					}
				}
			}
			_ = json.Unmarshal(resp.Data, &d)
			if !d.CreateObserverRule.Succeeded || len(d.CreateObserverRule.Rule.Columns) != 2 {
				t.Fatalf("got %s, want the rule with its columns", resp.Data)
			}
			ids[tc.vars["in"].(map[string]any)["name"].(string)] = d.CreateObserverRule.Rule.ID
		})
	}

	// Changing a rule that captures a masked column, if only its target,
	// needs the scope: it decides where the column goes.
	for _, tc := range []struct {
		name, rule string
		p          core.Principal
		patch      map[string]any
		want       string
	}{
		{"retargeting a rule that captures email, without the scope", "emails", plain,
			map[string]any{"actions": []any{map[string]any{"kind": "webhook", "url": "https://attacker.example/x"}}}, "FORBIDDEN"},
		{"adding a restricted column, without the scope", "titles", plain, map[string]any{"columns": []any{"id", "title", "internal_note"}}, "FORBIDDEN"},
		{"adding a masked column, without the scope", "titles", plain, map[string]any{"columns": []any{"id", "email"}}, "FORBIDDEN"},
		{"retargeting it with the scope", "emails", unmasker,
			map[string]any{"actions": []any{map[string]any{"kind": "webhook", "url": "https://hooks.example.com/other"}}}, ""},
		{"a condition of a rule of unprotected columns", "titles", plain, map[string]any{"condition": "after.title != ''"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.doAs(tc.p, update, map[string]any{"id": ids[tc.rule], "p": tc.patch})
			if tc.want != "" {
				mustErrCode(t, resp, tc.want)
				return
			}
			var d struct{ UpdateObserverRule struct{ Succeeded bool } }
			_ = json.Unmarshal(resp.Data, &d)
			if len(resp.Errors) > 0 || !d.UpdateObserverRule.Succeeded {
				t.Fatalf("got %s %+v, want it updated", resp.Data, resp.Errors)
			}
		})
	}
	rows := r.admin(t, `select name, array_to_string(columns, ','), actions->0->>'url' from fraise.observer_rules order by name`)
	got := fmt.Sprint(rows)
	if want := "[[emails email,id https://hooks.example.com/other] [titles id,title https://hooks.example.com/titles]]"; got != want {
		t.Fatalf("stored rules: got %s, want %s", got, want)
	}

	// Testing a rule shows what it would send: its columns only.
	d := r.mustOK(t, a, `query($ev: ObserverEventInput!, $rule: ObserverRuleInput) { testObserverRule(rule: $rule, event: $ev) {
		matched messages { body } } }`, map[string]any{"rule": rule("t", "public.posts", "id", "title")["in"],
		"ev": map[string]any{"op": "INSERT", "key": map[string]any{"id": 1}, "after": map[string]any{"id": 1, "title": "Hi", "internal_note": "secret note"}}})
	if body := plainJSON(d); !strings.Contains(body, "Hi") || strings.Contains(body, "secret note") {
		t.Fatalf("test message: got %s, want the title and not the note", body)
	}
}
