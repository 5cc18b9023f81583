package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fraise-dev/fraise/adapters/console"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/policies"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// fixture is a console over a migrated demo database, a Redis queue, the
// embedded policy folder and a signer standing in for extauthz.
type fixture struct {
	h      *console.Handler
	signer *assertion.Signer
	db     *postgres.DB
	queue  *redis.Queue
	n      int
}

var assets = fstest.MapFS{
	"index.html":     {Data: []byte("<!doctype html><html><script src=\"assets/app.js\"></script></html>")},
	"login.html":     {Data: []byte("<!doctype html><html>login</html>")},
	"assets/app.js":  {Data: []byte("console.log(1)")},
	"assets/app.css": {Data: []byte("body{}")},
}

func mustFixture(tb testing.TB, mods ...func(*console.Options)) *fixture {
	tb.Helper()
	harness.SkipShort(tb)
	pg, name := postgrestest.NewDemo(tb)
	db, err := postgres.Open(context.Background(), pg.URL(postgrestest.AppRole, name), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	rd := harness.StartRedis(tb)
	q := redis.New(redis.Options{Addr: rd.Addr})
	tb.Cleanup(func() { q.Close() })
	schema, err := graphql.ParseSchema(demo.SDL)
	if err != nil {
		tb.Fatal(err)
	}
	signer, keys := assertiontest.New(tb, time.Now)
	o := console.Options{
		Verifier: assertion.NewVerifier(keys, nil), Assets: assets, Policies: policies.FS,
		Store: postgres.NewConsole(db), Cost: graphql.NewEngine(schema, db, graphql.Options{Batcher: db, Writer: db}), Observers: q,
		TraceURL: "https://traces.example/{trace_id}",
	}
	for _, m := range mods {
		m(&o)
	}
	h, err := console.New(o)
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{h: h, signer: signer, db: db, queue: q}
}

// do sends a request as extauthz would let it through: with an assertion
// for roles in Acme bound to it (none when roles is nil).
func (f *fixture) do(tb testing.TB, method, path string, roles []string, body string) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if roles != nil {
		f.n++
		b := assertion.Binding{Audience: assertion.AudienceConsole, Method: method, Path: strings.Split(path, "?")[0]}
		if body != "" {
			b.Body = core.DocumentHash(body)
		}
		a, err := f.signer.Sign(core.Principal{Subject: "alice", Tenant: demo.TenantAcme, Roles: roles, Kind: core.KindJWT},
			"req-"+strings.Repeat("x", f.n), b)
		if err != nil {
			tb.Fatal(err)
		}
		req.Header.Set(assertion.Header, a)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	return w
}

// mustJSON decodes w's body into v after checking its status.
func mustJSON(tb testing.TB, w *httptest.ResponseRecorder, status int, v any) {
	tb.Helper()
	if w.Code != status {
		tb.Fatalf("got %d %s, want %d", w.Code, w.Body, status)
	}
	if v != nil {
		if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
			tb.Fatalf("body %s: %v", w.Body, err)
		}
	}
}

func TestServingAndSessions(t *testing.T) {
	f := mustFixture(t)
	admin := []string{"admin"}
	tests := []struct {
		name         string
		method, path string
		roles        []string
		want         int
		wantBody     string
	}{
		{name: "login page", method: "GET", path: "/console/login", want: 200, wantBody: "login"},
		{name: "asset", method: "GET", path: "/console/assets/app.js", want: 200, wantBody: "console.log"},
		{name: "missing asset", method: "GET", path: "/console/assets/nope.js", want: 404},
		{name: "shell without an assertion", method: "GET", path: "/console/", want: 401},
		{name: "api without an assertion", method: "GET", path: "/console/api/me", want: 401},
		{name: "shell", method: "GET", path: "/console/", roles: admin, want: 200, wantBody: "<script src"},
		{name: "prefix redirects to the shell", method: "GET", path: "/console", roles: admin, want: 302},
		{name: "unknown api", method: "GET", path: "/console/api/nothing", roles: admin, want: 404},
		{name: "wrong method", method: "DELETE", path: "/console/api/me", roles: admin, want: 404},
		{name: "dev login off", method: "POST", path: "/console/api/dev/login", want: 404},
		{name: "dev users off", method: "GET", path: "/console/api/dev/users", want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.do(t, tt.method, tt.path, tt.roles, "")
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("got %d %q, want %d with %q", w.Code, w.Body, tt.want, tt.wantBody)
			}
			if got := w.Header().Get("Content-Security-Policy"); got != console.CSP {
				t.Errorf("got CSP %q, want %q", got, console.CSP)
			}
			if w.Header().Get("X-Frame-Options") != "DENY" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("got headers %v, want X-Frame-Options DENY and nosniff", w.Header())
			}
		})
	}
}

// TestAssertionIsBoundAndSpent: an assertion for another path, another
// body or another audience is refused, and one is used once.
func TestAssertionIsBoundAndSpent(t *testing.T) {
	f := mustFixture(t)
	sign := func(aud, method, path, body string) string {
		b := assertion.Binding{Audience: aud, Method: method, Path: path}
		if body != "" {
			b.Body = core.DocumentHash(body)
		}
		f.n++
		a, err := f.signer.Sign(core.Principal{Subject: "alice", Tenant: demo.TenantAcme, Roles: []string{"admin"}}, "bound-"+strings.Repeat("y", f.n), b)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	send := func(a, method, path, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set(assertion.Header, a)
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		return w.Code
	}
	tests := []struct {
		name   string
		a      string
		method string
		path   string
		body   string
		want   int
	}{
		{"other path", sign(assertion.AudienceConsole, "GET", "/console/api/quotas", ""), "GET", "/console/api/decisions", "", 401},
		{"other body", sign(assertion.AudienceConsole, "POST", "/console/api/cost", `{"query":"{ users { id } }"}`), "POST", "/console/api/cost", `{"query":"{ posts { id } }"}`, 401},
		{"graphql audience", sign(assertion.AudienceGraphQL, "GET", "/console/api/me", ""), "GET", "/console/api/me", "", 401},
		{"bound", sign(assertion.AudienceConsole, "GET", "/console/api/me", ""), "GET", "/console/api/me", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := send(tt.a, tt.method, tt.path, tt.body); got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
	a := sign(assertion.AudienceConsole, "GET", "/console/api/me", "")
	if first, second := send(a, "GET", "/console/api/me", ""), send(a, "GET", "/console/api/me", ""); first != 200 || second != 401 {
		t.Errorf("replayed assertion: got %d then %d, want 200 then 401", first, second)
	}
}

func TestMeNamesTheRolesScreens(t *testing.T) {
	f := mustFixture(t)
	for _, tt := range []struct {
		roles []string
		want  []string
	}{
		{[]string{"admin"}, []string{"decisions", "explorer", "observers", "playground", "quotas"}},
		{[]string{"operator"}, []string{"decisions", "explorer", "observers", "quotas"}},
		{[]string{"security"}, []string{"decisions", "explorer", "playground"}},
		{[]string{"viewer"}, []string{"decisions", "explorer", "quotas"}},
		{[]string{"nobody"}, []string{}},
	} {
		t.Run(strings.Join(tt.roles, ","), func(t *testing.T) {
			var me struct {
				Subject, Tenant string
				Roles, Screens  []string
			}
			mustJSON(t, f.do(t, "GET", "/console/api/me", tt.roles, ""), 200, &me)
			if !slices.Equal(me.Screens, tt.want) || me.Tenant != demo.TenantAcme || me.Subject != "alice" {
				t.Errorf("got %+v, want screens %v", me, tt.want)
			}
		})
	}
}

// allowViewerMutations is a draft of the live policy in which viewers may
// also run mutations, with a trace note.
func allowViewerMutations(t *testing.T) []map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../policies/authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	rego := strings.Replace(string(b), "decision := deny(401,", "decision := {\"allow\": true, \"reason\": \"draft: viewers may mutate\"} if {\n\ttrace(\"viewer mutation allowed by the draft\")\n\t\"viewer\" in principal_roles\n\tinput.graphql.operation == \"mutation\"\n} else := deny(401,", 1)
	if rego == string(b) {
		t.Fatal("authz.rego no longer starts its decision with deny(401: update the test's draft")
	}
	return []map[string]string{{"path": "authz.rego", "content": rego}}
}

func body(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPlayground(t *testing.T) {
	f := mustFixture(t)
	sec := []string{"security"}
	ctx := context.Background()

	var live struct {
		Files []struct{ Path, Content string }
		Data  map[string]any
	}
	mustJSON(t, f.do(t, "GET", "/console/api/policies", sec, ""), 200, &live)
	var paths []string
	for _, fl := range live.Files {
		paths = append(paths, fl.Path)
	}
	if !slices.Contains(paths, "authz.rego") || !slices.Contains(paths, "authz_test.rego") || live.Data["roles"] == nil {
		t.Fatalf("live policies: got files %v and data keys %v", paths, live.Data)
	}

	t.Run("check", func(t *testing.T) {
		var got struct {
			OK     bool
			Errors []struct {
				Path     string
				Row, Col int
				Message  string
			}
		}
		bad := []map[string]string{{"path": "authz.rego", "content": "package fraise.authz\n\ndecision := {\"allow\": true\n"}}
		mustJSON(t, f.do(t, "POST", "/console/api/policies/check", sec, body(t, map[string]any{"files": bad})), 200, &got)
		if got.OK || len(got.Errors) == 0 || got.Errors[0].Path != "authz.rego" || got.Errors[0].Row == 0 {
			t.Errorf("syntax error: got %+v, want it at authz.rego with a row", got)
		}
		unused := []map[string]string{{"path": "authz.rego", "content": "package fraise.authz\n\ndecision := {\"allow\": true, \"reason\": \"x\"} if {\n\tx := 1\n}\n"}}
		mustJSON(t, f.do(t, "POST", "/console/api/policies/check", sec, body(t, map[string]any{"files": unused})), 200, &got)
		if got.OK || len(got.Errors) == 0 || got.Errors[0].Row != 4 {
			t.Errorf("strict compile error: got %+v, want the unused variable at row 4", got)
		}
		mustJSON(t, f.do(t, "POST", "/console/api/policies/check", sec, body(t, map[string]any{"files": allowViewerMutations(t)})), 200, &got)
		if !got.OK {
			t.Errorf("valid draft: got %+v, want ok", got)
		}
	})

	mutation := map[string]any{
		"request":   map[string]any{"method": "POST", "path": "/graphql", "host": "", "headers": map[string]string{}},
		"principal": map[string]any{"subject": "victor", "tenant": demo.TenantAcme, "roles": []string{"viewer"}, "scopes": []string{}, "kind": "jwt", "claims": map[string]any{}},
		"graphql":   map[string]any{"operation": "mutation", "name": "CreatePost", "root_fields": []string{"createPost"}},
	}
	t.Run("evaluate", func(t *testing.T) {
		type outcome struct {
			Allow        bool
			Reason, Rule string
			Notes        []string
		}
		var got struct {
			Draft, Live outcome
			Changed     bool
		}
		mustJSON(t, f.do(t, "POST", "/console/api/policies/evaluate", sec, body(t, map[string]any{"files": allowViewerMutations(t), "input": mutation})), 200, &got)
		if !got.Draft.Allow || got.Live.Allow || !got.Changed {
			t.Fatalf("got %+v, want the draft to allow what the live policy refuses", got)
		}
		if !strings.HasPrefix(got.Draft.Rule, "authz.rego:") || !slices.Contains(got.Draft.Notes, "viewer mutation allowed by the draft") {
			t.Errorf("draft explanation: got rule %q notes %v, want the rule's place and the trace note", got.Draft.Rule, got.Draft.Notes)
		}
		if !strings.Contains(got.Live.Reason, "do not permit") {
			t.Errorf("live reason: got %q", got.Live.Reason)
		}
	})

	t.Run("input", func(t *testing.T) {
		var got struct{ Input map[string]any }
		mustJSON(t, f.do(t, "POST", "/console/api/policies/input", sec, `{"role":"viewer","operation":"mutation","fields":["createPost"]}`), 200, &got)
		var ev struct{ Live struct{ Allow bool } }
		mustJSON(t, f.do(t, "POST", "/console/api/policies/evaluate", sec, body(t, map[string]any{"files": allowViewerMutations(t), "input": got.Input})), 200, &ev)
		if got.Input["graphql"] == nil || ev.Live.Allow {
			t.Errorf("built input %v: live allowed %v, want a GraphQL mutation the live policy refuses", got.Input, ev.Live.Allow)
		}
	})

	t.Run("test", func(t *testing.T) {
		var files []map[string]string
		for _, fl := range live.Files {
			files = append(files, map[string]string{"path": fl.Path, "content": fl.Content})
		}
		var got struct {
			Passed, Failed int
			Results        []struct {
				Name    string
				Pass    bool
				Message string
			}
		}
		mustJSON(t, f.do(t, "POST", "/console/api/policies/test", sec, body(t, map[string]any{"files": files})), 200, &got)
		if got.Passed == 0 || got.Failed != 0 {
			t.Errorf("live files: got %d passed %d failed, want all passing", got.Passed, got.Failed)
		}
		// The draft that lets viewers mutate breaks the live tests.
		files = append(allowViewerMutations(t), map[string]string{"path": "authz_test.rego", "content": testContent(live.Files)})
		mustJSON(t, f.do(t, "POST", "/console/api/policies/test", sec, body(t, map[string]any{"files": files})), 200, &got)
		if got.Failed == 0 {
			t.Errorf("draft letting viewers mutate: got %d failed, want the viewer tests failing", got.Failed)
		}
	})

	t.Run("replay", func(t *testing.T) {
		in, _ := json.Marshal(mutation)
		query := map[string]any{"principal": mutation["principal"], "request": mutation["request"],
			"graphql": map[string]any{"operation": "query", "name": "", "root_fields": []string{"users"}}}
		qin, _ := json.Marshal(query)
		now := time.Now().UTC()
		if err := postgres.NewDecisions(f.db).RecordDecisions(ctx, []decisionlog.Decision{
			{ID: "refused-mutation", At: now, Subject: "victor", Tenant: demo.TenantAcme, Operation: "mutation", Allow: false, Status: 403, Reason: "roles [viewer] do not permit", Input: in},
			{ID: "allowed-query", At: now.Add(-time.Second), Subject: "victor", Tenant: demo.TenantAcme, Operation: "query", Allow: true, Status: 200, Reason: "ok", Input: qin},
			{ID: "globex", At: now, Subject: "dave", Tenant: demo.TenantGlobex, Operation: "mutation", Allow: false, Status: 403, Reason: "no", Input: in},
		}); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Replayed int
			Changed  []struct {
				Decision    struct{ ID string }
				Live, Draft struct{ Allow bool }
			}
		}
		mustJSON(t, f.do(t, "POST", "/console/api/policies/replay", sec, body(t, map[string]any{"files": allowViewerMutations(t), "limit": 10})), 200, &got)
		if got.Replayed != 2 || len(got.Changed) != 1 || got.Changed[0].Decision.ID != "refused-mutation" || got.Changed[0].Live.Allow || !got.Changed[0].Draft.Allow {
			t.Errorf("got %+v, want 2 replayed (Acme's) and the refused mutation changed", got)
		}
	})

	t.Run("export", func(t *testing.T) {
		var got struct{ Diff string }
		mustJSON(t, f.do(t, "POST", "/console/api/policies/export", sec, body(t, map[string]any{"files": allowViewerMutations(t)})), 200, &got)
		for _, want := range []string{"--- a/authz.rego\n+++ b/authz.rego\n@@ -", "+\ttrace(\"viewer mutation allowed by the draft\")\n", "--- a/authz_test.rego\n+++ /dev/null\n"} {
			if !strings.Contains(got.Diff, want) {
				t.Errorf("diff lacks %q:\n%s", want, got.Diff)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tt := range []struct {
			name, path, body string
			want             int
		}{
			{"no body", "/console/api/policies/evaluate", "", 400},
			{"unknown field", "/console/api/policies/evaluate", `{"files":[],"inputs":{}}`, 400},
			{"path escaping the folder", "/console/api/policies/check", `{"files":[{"path":"../x.rego","content":"package x"}]}`, 400},
			{"not a policy file", "/console/api/policies/check", `{"files":[{"path":"x.sh","content":"rm -rf /"}]}`, 400},
			{"draft that does not compile", "/console/api/policies/evaluate", `{"files":[{"path":"a.rego","content":"package"}],"input":{}}`, 400},
			{"replay too many", "/console/api/policies/replay", body(t, map[string]any{"files": allowViewerMutations(t), "limit": 100000}), 400},
			{"draft calling http.send", "/console/api/policies/evaluate", body(t, map[string]any{"input": map[string]any{}, "files": []map[string]string{{"path": "a.rego",
				"content": "package fraise.authz\n\ndecision := {\"allow\": r.status_code == 200, \"reason\": \"x\"} if {\n\tr := http.send({\"method\": \"GET\", \"url\": \"http://169.254.169.254/\"})\n}\n"}}}), 400},
			{"draft test reading the environment", "/console/api/policies/test", body(t, map[string]any{"files": []map[string]string{
				{"path": "a.rego", "content": "package fraise.authz\n\ndecision := {\"allow\": false, \"reason\": \"x\"}\n"},
				{"path": "a_test.rego", "content": "package fraise.authz_test\n\ntest_env if {\n\tprint(opa.runtime().env)\n}\n"}}}), 400},
			{"draft replaying http.send", "/console/api/policies/replay", body(t, map[string]any{"files": []map[string]string{{"path": "a.rego",
				"content": "package fraise.authz\n\ndecision := {\"allow\": true, \"reason\": x} if {\n\tx := net.lookup_ip_addr(\"example.com\")[0]\n}\n"}}}), 400},
		} {
			t.Run(tt.name, func(t *testing.T) {
				w := f.do(t, "POST", tt.path, sec, tt.body)
				var e struct {
					Error struct{ Code, Message string }
				}
				mustJSON(t, w, tt.want, &e)
				if e.Error.Code == "" || e.Error.Message == "" {
					t.Errorf("got %s, want an error with a code and a message", w.Body)
				}
			})
		}
	})
}

func testContent(files []struct{ Path, Content string }) string {
	for _, f := range files {
		if f.Path == "authz_test.rego" {
			return f.Content
		}
	}
	return ""
}

func TestDecisionsExplorerQuotas(t *testing.T) {
	f := mustFixture(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := postgres.NewDecisions(f.db).RecordDecisions(ctx, []decisionlog.Decision{
		{ID: "a", At: now, Subject: "victor", Tenant: demo.TenantAcme, Operation: "mutation", OperationName: "CreatePost", Allow: false, Status: 403, Reason: "roles [viewer] do not permit", TraceID: "0af7651916cd43dd8448eb211c80319c", Input: []byte(`{"x":1}`)},
		{ID: "b", At: now.Add(-time.Minute), Subject: "alice", Tenant: demo.TenantAcme, Operation: "query", Allow: true, Status: 200, Reason: "ok"},
		{ID: "c", At: now.Add(-2 * time.Minute), Subject: "victor", Tenant: demo.TenantAcme, Allow: false, Status: 429, Reason: "rate limited"},
	}); err != nil {
		t.Fatal(err)
	}
	viewer := []string{"viewer"}
	t.Run("decisions", func(t *testing.T) {
		for _, tt := range []struct {
			query string
			want  []string
		}{
			{"", []string{"a", "b", "c"}},
			{"?decision=deny", []string{"a", "c"}},
			{"?subject=alice", []string{"b"}},
			{"?operation=CreatePost&decision=deny", []string{"a"}},
			{"?reason=RATE", []string{"c"}},
			{"?since=" + now.Add(-90*time.Second).Format(time.RFC3339) + "&limit=1", []string{"a"}},
		} {
			var got []struct {
				ID, Decision, TraceID, TraceURL string
				Input                           json.RawMessage
			}
			mustJSON(t, f.do(t, "GET", "/console/api/decisions"+tt.query, viewer, ""), 200, &got)
			var ids []string
			for _, d := range got {
				ids = append(ids, d.ID)
				if d.ID == "a" && (d.Decision != "deny" || d.TraceURL != "https://traces.example/0af7651916cd43dd8448eb211c80319c" || string(d.Input) != `{"x":1}`) {
					t.Errorf("decision a: got %+v (input %s)", d, d.Input)
				}
			}
			if !slices.Equal(ids, tt.want) {
				t.Errorf("%q: got %v, want %v", tt.query, ids, tt.want)
			}
		}
		for _, q := range []string{"?decision=maybe", "?since=yesterday", "?limit=0", "?tenant=" + demo.TenantGlobex} {
			if w := f.do(t, "GET", "/console/api/decisions"+q, viewer, ""); w.Code != 400 && w.Code != 403 {
				t.Errorf("%q: got %d, want 400 or 403", q, w.Code)
			}
		}
	})
	t.Run("cost", func(t *testing.T) {
		var got struct {
			Cost, Limit, Depth, MaxDepth int
			Errors                       []string
		}
		mustJSON(t, f.do(t, "POST", "/console/api/cost", viewer, `{"query":"{ users { id posts { id } } }"}`), 200, &got)
		if got.Cost <= 0 || got.Limit != 50000 || got.Depth != 3 || got.MaxDepth != 10 || len(got.Errors) != 0 {
			t.Errorf("got %+v, want a cost, depth 3 and the default limits", got)
		}
		mustJSON(t, f.do(t, "POST", "/console/api/cost", viewer, `{"query":"{ nope }"}`), 200, &got)
		if len(got.Errors) == 0 {
			t.Errorf("unknown field: got %+v, want a validation error", got)
		}
	})
	t.Run("persisted", func(t *testing.T) {
		doc := "query Users { users { id } }"
		if err := postgres.NewPersistedDocuments(f.db, postgres.PersistedOptions{}).Put(ctx, demo.TenantAcme, core.DocumentHash(doc), doc); err != nil {
			t.Fatal(err)
		}
		var got []struct{ ID, Name, Operation, Document string }
		mustJSON(t, f.do(t, "GET", "/console/api/persisted", viewer, ""), 200, &got)
		if len(got) != 1 || got[0].Name != "Users" || got[0].Operation != "query" || got[0].ID != core.DocumentHash(doc) {
			t.Errorf("got %+v, want the Users query", got)
		}
	})
	t.Run("quotas", func(t *testing.T) {
		var got []struct {
			Tenant, Tier string
			Quotas       []struct {
				Name  string
				Used  int64
				Limit *int64
			}
			Refusals []struct{ Ratelimit, Admission int64 }
		}
		mustJSON(t, f.do(t, "GET", "/console/api/quotas", viewer, ""), 200, &got)
		if len(got) != 1 || got[0].Tenant != demo.TenantAcme || got[0].Tier == "" || len(got[0].Quotas) == 0 {
			t.Fatalf("got %+v, want Acme's tier and quotas", got)
		}
		var rl int64
		for _, r := range got[0].Refusals {
			rl += r.Ratelimit
		}
		if rl != 1 {
			t.Errorf("got refusals %+v, want the one rate-limited decision", got[0].Refusals)
		}
	})
}

func TestObserversAndDeadLetters(t *testing.T) {
	f := mustFixture(t, func(o *console.Options) {
		o.Breaker = func(tenant string, a core.Action) string {
			if tenant == demo.TenantAcme && strings.Contains(a.URL, "failing") {
				return "open"
			}
			return "closed"
		}
	})
	ctx := context.Background()
	for _, r := range []string{
		`{"name": "to a failing hook", "table": "public.posts", "operations": ["INSERT"], "columns": ["id"], "actions": [{"kind": "webhook", "url": "https://failing.example/hook"}]}`,
		`{"name": "to a good hook", "table": "public.posts", "operations": ["INSERT"], "columns": ["id"], "actions": [{"kind": "webhook", "url": "https://good.example/hook"}]}`,
	} {
		if err := f.db.InTenant(ctx, demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
			_, err := q.QueryJSON(ctx, "select to_jsonb(fraise.graphql_create_observer_rule($1::jsonb))", r)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	op := []string{"operator"}
	job := core.Job{ID: "job-1", Tenant: demo.TenantAcme, RuleID: "r1", RuleName: "demo: new posts", Attempt: 5,
		Action: core.Action{Kind: "webhook", URL: "http://127.0.0.1:1/hook"}, EnqueuedAt: time.Now()}
	if err := f.queue.DeadLetter(ctx, core.Delivery{}, job, "gave up: 404"); err != nil {
		t.Fatal(err)
	}
	var obs struct {
		Rules []struct {
			Name, Table, Action, Breaker string
			Events                       []string
		}
		Backlog struct{ Pending int64 }
	}
	mustJSON(t, f.do(t, "GET", "/console/api/observers", op, ""), 200, &obs)
	breakers := map[string]string{}
	for _, r := range obs.Rules {
		breakers[r.Name] = r.Breaker
		if r.Table != "public.posts" || len(r.Events) != 1 || !strings.HasPrefix(r.Action, "webhook https://") {
			t.Errorf("rule %+v: want the rule as created", r)
		}
	}
	if breakers["to a failing hook"] != "open" || breakers["to a good hook"] != "closed" {
		t.Errorf("got breakers %v, want the failing hook's open and the good one's closed", breakers)
	}
	var dead []struct {
		ID, Rule, Error string
		Attempts        int
	}
	mustJSON(t, f.do(t, "GET", "/console/api/observers/dlq", op, ""), 200, &dead)
	if len(dead) != 1 || dead[0].Rule != "demo: new posts" || dead[0].Error != "gave up: 404" || dead[0].Attempts != 5 {
		t.Fatalf("got %+v, want the dead letter", dead)
	}
	var replayed struct{ Replayed bool }
	mustJSON(t, f.do(t, "POST", "/console/api/observers/dlq/"+dead[0].ID+"/replay", op, ""), 200, &replayed)
	if !replayed.Replayed {
		t.Error("got replayed false")
	}
	mustJSON(t, f.do(t, "GET", "/console/api/observers", op, ""), 200, &obs)
	if obs.Backlog.Pending != 1 {
		t.Errorf("backlog after the replay: got %d, want 1", obs.Backlog.Pending)
	}
	if w := f.do(t, "POST", "/console/api/observers/dlq/"+dead[0].ID+"/replay", op, ""); w.Code != 404 {
		t.Errorf("second replay: got %d, want 404", w.Code)
	}
}

func TestDevLogin(t *testing.T) {
	users := []console.DevUser{{Subject: "victor", Tenant: demo.TenantAcme, Roles: []string{"viewer"}, Label: "Victor"}}
	f := mustFixture(t, func(o *console.Options) {
		o.DevLogin = &console.DevLogin{Users: users, Mint: func(u console.DevUser, ttl time.Duration) (string, error) {
			return "token-of-" + u.Subject, nil
		}}
	})
	var got []console.DevUser
	mustJSON(t, f.do(t, "GET", "/console/api/dev/users", nil, ""), 200, &got)
	if len(got) != 1 || got[0].Subject != "victor" {
		t.Errorf("users: got %+v", got)
	}
	w := f.do(t, "POST", "/console/api/dev/login", nil, `{"subject":"victor"}`)
	if w.Code != http.StatusNoContent {
		t.Fatalf("login: got %d %s", w.Code, w.Body)
	}
	cookies := map[string]*http.Cookie{}
	for _, c := range w.Result().Cookies() {
		cookies[c.Name] = c
	}
	s, c := cookies[console.SessionCookie], cookies[console.CSRFCookie]
	if s == nil || s.Value != "token-of-victor" || !s.HttpOnly || !s.Secure || s.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie: got %+v", s)
	}
	if c == nil || c.HttpOnly || !c.Secure || len(c.Value) != 64 {
		t.Errorf("CSRF cookie: got %+v", c)
	}
	if w := f.do(t, "POST", "/console/api/dev/login", nil, `{"subject":"mallory"}`); w.Code != 404 {
		t.Errorf("unknown user: got %d, want 404", w.Code)
	}
	form := httptest.NewRequest("POST", "/console/api/dev/login", strings.NewReader(`{"subject":"victor"}`))
	form.Header.Set("Content-Type", "text/plain")
	fw := httptest.NewRecorder()
	f.h.ServeHTTP(fw, form)
	if fw.Code != 400 || len(fw.Result().Cookies()) != 0 {
		t.Errorf("cross-site text/plain login: got %d with cookies %v, want 400 and none", fw.Code, fw.Result().Cookies())
	}
	w = f.do(t, "POST", "/console/api/logout", []string{"viewer"}, "")
	if w.Code != http.StatusNoContent || len(w.Result().Cookies()) != 2 || w.Result().Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: got %d cookies %v, want both cleared", w.Code, w.Result().Cookies())
	}
}

// TestObserversRecentDeliveries: a rule's deliveries are the workers'
// recent attempts, delivered and failed, newest first, as a worker over
// the same Redis recorded them; the backlog names its oldest job's age.
func TestObserversRecentDeliveries(t *testing.T) {
	f := mustFixture(t, func(o *console.Options) { o.Deliveries = o.Observers.(*redis.Queue) })
	ctx := context.Background()
	if err := f.db.InTenant(ctx, demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, "select to_jsonb(fraise.graphql_create_observer_rule($1::jsonb))",
			`{"name": "to a hook", "table": "public.posts", "operations": ["INSERT"], "columns": ["id"], "actions": [{"kind": "webhook", "url": "https://hooks.example/hook"}]}`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rules, err := postgres.NewConsole(f.db).Rules(ctx, demo.TenantAcme)
	if err != nil || len(rules) == 0 {
		t.Fatalf("rules %v: %v", rules, err)
	}
	var ruleID string
	for _, r := range rules {
		if r.Name == "to a hook" {
			ruleID = r.ID
		}
	}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(target.Close)
	// Two jobs of the rule: one whose target is down (retried), then one
	// delivered.
	var jobs []core.Job
	for i, path := range []string{"/down", "/ok"} {
		jobs = append(jobs, core.Job{ID: "job-" + path[1:], Tenant: demo.TenantAcme, RuleID: ruleID, RuleName: "to a hook",
			EnqueuedAt: time.Now().Add(-time.Duration(2-i) * time.Minute),
			Action:     core.Action{Kind: core.ActionWebhook, URL: target.URL + path}})
	}
	if err := f.queue.Enqueue(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	type view struct {
		Rules []struct {
			Name       string
			Deliveries []struct {
				Time       time.Time
				Status     string
				Attempts   int
				Error      string
				HTTPStatus int
			}
		}
		Backlog struct {
			Pending          int64
			OldestAgeSeconds float64
		}
	}
	op := []string{"operator"}
	var before view
	mustJSON(t, f.do(t, "GET", "/console/api/observers", op, ""), 200, &before)
	if before.Backlog.Pending != 2 || before.Backlog.OldestAgeSeconds < 120 || before.Backlog.OldestAgeSeconds > 3600 {
		t.Errorf("backlog %+v, want 2 pending, the oldest two minutes old", before.Backlog)
	}
	w := &observe.Worker{Queue: f.queue, Deliveries: f.queue, MaxAttempts: 5,
		Notifiers: map[string]core.Notifier{core.ActionWebhook: webhook.New(webhook.Options{AllowPrivate: true})}}
	ds, err := f.queue.Fetch(ctx, "c1", 10, func(string) int { return 10 }, 100*time.Millisecond)
	if err != nil || len(ds) != 2 {
		t.Fatalf("fetched %d jobs (%v), want 2", len(ds), err)
	}
	for _, d := range ds { // in the order enqueued: /down, then /ok
		w.Process(ctx, d)
	}
	var after view
	mustJSON(t, f.do(t, "GET", "/console/api/observers", op, ""), 200, &after)
	for _, r := range after.Rules {
		if r.Name != "to a hook" {
			continue
		}
		got := r.Deliveries
		if len(got) != 2 || got[0].Status != "delivered" || got[0].Attempts != 1 || got[0].Error != "" ||
			got[1].Status != "failed" || got[1].HTTPStatus != 503 || got[1].Error == "" || got[0].Time.Before(got[1].Time) {
			t.Fatalf("got deliveries %+v, want the delivered one, then the failed one (503)", got)
		}
		return
	}
	t.Fatalf("no rule \"to a hook\" in %+v", after.Rules)
}
