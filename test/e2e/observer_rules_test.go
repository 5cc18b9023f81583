package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// TestObserverRulesThroughTheGateway manages observer rules over GraphQL
// through Envoy, extauthz's RBAC policy and the core, with [observers]
// enabled: viewers read, operators create and update but never delete,
// admins delete, and one tenant never sees another's rules.
func TestObserverRulesThroughTheGateway(t *testing.T) {
	t.Parallel()
	const slackSecret = "slackSECRETslackSECRET42"
	const slackURL = "https://hooks.slack.com/services/T0001/B0001/" + slackSecret
	s := stack.StartWith(t, stack.Options{TOML: "\n[observers]\nenabled = true\n"})
	admin := s.Token(t, demo.TenantAcme, "alice", "admin")
	operator := s.Token(t, demo.TenantAcme, "olga", "operator")
	viewer := s.Token(t, demo.TenantAcme, "victor", "viewer")
	globex := s.Token(t, demo.TenantGlobex, "gina", "admin")
	s.MustServe(t, admin)

	const create = `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded status rule { id name } } }`
	rule := func(name string) map[string]any {
		return map[string]any{"query": create, "variables": map[string]any{"in": map[string]any{
			"name": name, "table": "public.posts", "operations": []any{"INSERT"}, "condition": "after.published == true",
			"columns": []any{"id", "title", "published"},
			"actions": []any{map[string]any{"kind": "webhook", "url": "https://hooks.example.com/posts"},
				map[string]any{"kind": "slack", "url": slackURL}},
		}}}
	}
	mustRuleID := func(status int, g stack.Response, field string) string {
		t.Helper()
		if status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("%s: status %d errors %+v", field, status, g.Errors)
		}
		var data map[string]struct {
			Succeeded bool
			Rule      struct{ ID string }
		}
		if err := json.Unmarshal(g.Data, &data); err != nil {
			t.Fatal(err)
		}
		if !data[field].Succeeded || data[field].Rule.ID == "" {
			t.Fatalf("%s: %s", field, g.Data)
		}
		return data[field].Rule.ID
	}

	// A viewer may not run mutations at all.
	status, g := s.GraphQL(t, viewer, rule("by-viewer"))
	wantCode(t, status, g, http.StatusForbidden, "FORBIDDEN")

	// An operator creates and updates.
	status, g = s.GraphQL(t, operator, rule("published-posts"))
	id := mustRuleID(status, g, "createObserverRule")
	status, g = s.GraphQL(t, operator, map[string]any{
		"query":     `mutation($id: ID!) { updateObserverRule(id: $id, input: {condition: "after.published"}) { succeeded status rule { id } } }`,
		"variables": map[string]any{"id": id},
	})
	mustRuleID(status, g, "updateObserverRule")

	// A bad condition is refused by the core with INVALID.
	bad := rule("bad")
	bad["variables"].(map[string]any)["in"].(map[string]any)["condition"] = "after.published =="
	status, g = s.GraphQL(t, operator, bad)
	if status != http.StatusOK || len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != "INVALID" {
		t.Fatalf("bad condition: status %d errors %+v", status, g.Errors)
	}
	// and audited as a failure: `fraise serve` gives the engine the audit
	// log (graphql.Options.Audit), which nothing else would notice missing.
	conn, err := pgx.Connect(context.Background(), s.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var audited int
	if err := conn.QueryRow(context.Background(), `select count(*) from fraise.audit_log
		where subject = 'olga' and operation = 'createObserverRule' and outcome = 'error:INVALID'`).Scan(&audited); err != nil {
		t.Fatal(err)
	}
	if audited != 1 {
		t.Fatalf("got %d audit rows of the refused rule, want 1", audited)
	}

	// The viewer reads the rules; the other tenant sees none of them.
	const list = `{ observerRules { id name condition } }`
	for _, tc := range []struct {
		name, token string
		want        int
	}{{"viewer of the tenant", viewer, 1}, {"admin of another tenant", globex, 0}} {
		status, g := s.GraphQL(t, tc.token, map[string]any{"query": list})
		if status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("%s: status %d errors %+v", tc.name, status, g.Errors)
		}
		var data struct {
			ObserverRules []struct{ ID, Name, Condition string }
		}
		if err := json.Unmarshal(g.Data, &data); err != nil {
			t.Fatal(err)
		}
		if len(data.ObserverRules) != tc.want || tc.want == 1 && data.ObserverRules[0].Condition != "after.published" {
			t.Fatalf("%s: got %+v, want %d rules", tc.name, data.ObserverRules, tc.want)
		}
	}

	// A Slack URL is a credential: the viewer, and the operator who wrote
	// it, read it redacted (security #13, defect 7a).
	for _, token := range []string{viewer, operator} {
		status, g := s.GraphQL(t, token, map[string]any{"query": `{ observerRules { actions { kind url } } }`})
		if status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("listing actions: status %d errors %+v", status, g.Errors)
		}
		var data struct {
			ObserverRules []struct{ Actions []struct{ Kind, URL string } }
		}
		if err := json.Unmarshal(g.Data, &data); err != nil {
			t.Fatal(err)
		}
		var slack []string
		for _, r := range data.ObserverRules {
			for _, a := range r.Actions {
				if a.Kind == "slack" {
					slack = append(slack, a.URL)
				}
			}
		}
		if strings.Contains(string(g.Data), slackSecret) || len(slack) != 1 || slack[0] != "https://hooks.slack.com/services/***" {
			t.Fatalf("listing actions: got %s, want the Slack URL redacted", g.Data)
		}
	}

	// Deleting: the operator is refused by the policy, the admin is not.
	del := map[string]any{"query": `mutation($id: ID!) { deleteObserverRule(id: $id) { succeeded status rule { id } } }`,
		"variables": map[string]any{"id": id}}
	status, g = s.GraphQL(t, operator, del)
	wantCode(t, status, g, http.StatusForbidden, "FORBIDDEN")
	status, g = s.GraphQL(t, globex, del)
	var other struct{ DeleteObserverRule map[string]any }
	_ = json.Unmarshal(g.Data, &other)
	if status != http.StatusOK || len(g.Errors) > 0 || other.DeleteObserverRule["status"] != "not_found" || other.DeleteObserverRule["rule"] != nil {
		t.Fatalf("another tenant's delete: status %d data %s errors %+v", status, g.Data, g.Errors)
	}
	status, g = s.GraphQL(t, admin, del)
	if got := mustRuleID(status, g, "deleteObserverRule"); got != id {
		t.Fatalf("deleted %s, want %s", got, id)
	}
}

// TestObserverRuleColumnsThroughTheGateway: a rule names the columns it
// captures; naming one the schema masks needs the unmask scope in the
// author's token, and a real webhook receives only the columns named
// (security #13, defect 7c).
func TestObserverRuleColumnsThroughTheGateway(t *testing.T) {
	t.Parallel()
	s := stack.StartWith(t, stack.Options{
		TOML:     "\n[observers]\nenabled = true\nallow_private_targets = true\n",
		SetupSQL: "SELECT fraise.observe_table('public.posts')",
	})
	operator := s.Token(t, demo.TenantAcme, "olga", "operator")
	unmasker := strings.TrimSpace(stack.Run(t, s.Getenv, "token", "--dir", s.Dir, "--tenant", demo.TenantAcme,
		"--subject", "alice", "--roles", "admin", "--scopes", "read:User.email"))
	s.MustServe(t, operator)

	bodies := make(chan []byte, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case bodies <- b:
		default:
		}
	}))
	t.Cleanup(hook.Close)

	const create = `mutation($in: ObserverRuleInput!) { createObserverRule(input: $in) { succeeded rule { id columns } } }`
	rule := func(name, table string, columns ...any) map[string]any {
		return map[string]any{"query": create, "variables": map[string]any{"in": map[string]any{
			"name": name, "table": table, "operations": []any{"INSERT"}, "columns": columns,
			"actions": []any{map[string]any{"kind": "webhook", "url": hook.URL + "/" + name}},
		}}}
	}
	for _, tc := range []struct {
		name, token string
		req         map[string]any
		want        string // extensions.code; "" for created
	}{
		{"an operator naming a masked column", operator, rule("emails", "public.users", "id", "email"), "FORBIDDEN"},
		{"an admin with the unmask scope", unmasker, rule("emails", "public.users", "id", "email"), ""},
		{"an operator naming unmasked columns", operator, rule("titles", "public.posts", "id", "title"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, g := s.GraphQL(t, tc.token, tc.req)
			if tc.want != "" {
				if len(g.Errors) == 0 || g.Errors[0].Extensions["code"] != tc.want || !strings.Contains(g.Errors[0].Message, "read:User.email") {
					t.Fatalf("got status %d data %s errors %+v, want %s naming read:User.email", status, g.Data, g.Errors, tc.want)
				}
				return
			}
			var data struct{ CreateObserverRule struct{ Succeeded bool } }
			_ = json.Unmarshal(g.Data, &data)
			if status != http.StatusOK || len(g.Errors) > 0 || !data.CreateObserverRule.Succeeded {
				t.Fatalf("got status %d data %s errors %+v, want the rule created", status, g.Data, g.Errors)
			}
		})
	}

	// A post written through the gateway reaches the webhook with its id and
	// title only.
	status, g := s.GraphQL(t, unmasker, map[string]any{"query": `{ users { id } }`})
	var users struct{ Users []struct{ ID string } }
	if err := json.Unmarshal(g.Data, &users); status != http.StatusOK || err != nil || len(users.Users) == 0 {
		t.Fatalf("users: status %d data %s", status, g.Data)
	}
	status, g = s.GraphQL(t, unmasker, map[string]any{"query": `mutation($in: CreatePostInput!) { createPost(input: $in) { __typename } }`,
		"variables": map[string]any{"in": map[string]any{"title": "Columns", "body": "bodySECRET", "authorId": users.Users[0].ID}}})
	if status != http.StatusOK || len(g.Errors) > 0 {
		t.Fatalf("createPost: status %d errors %+v", status, g.Errors)
	}
	var got []byte
	select {
	case got = <-bodies:
	case <-time.After(30 * time.Second):
		t.Fatal("the webhook received nothing within 30s")
	}
	var payload struct {
		Event struct {
			Table string
			After map[string]any
		}
	}
	if err := json.Unmarshal(got, &payload); err != nil {
		t.Fatal(err)
	}
	var cols []string
	for k := range payload.Event.After {
		cols = append(cols, k)
	}
	slices.Sort(cols)
	if payload.Event.Table != "public.posts" || strings.Join(cols, ",") != "id,title" || payload.Event.After["title"] != "Columns" ||
		strings.Contains(string(got), "bodySECRET") {
		t.Fatalf("webhook body: got %s, want the post's id and title only", got)
	}
}
