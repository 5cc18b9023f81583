package console_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/console/web"
)

// fixtureServer serves the console's assets and the contract's APIs
// (/work/wt/console-contract.md, docs/console.md) from canned data: it
// lets the browser script be developed without the whole stack, with
// -console.fixture. The test that counts runs through the real ingress.
type fixtureServer struct {
	mu       sync.Mutex
	dlq      []map[string]any
	delivery []map[string]any
	live     string
}

var fixtureUsers = []struct {
	Subject, Role string
	Screens       []string
}{
	{"alice", "admin", []string{"explorer", "playground", "decisions", "observers", "quotas"}},
	{"oscar", "operator", []string{"explorer", "decisions", "observers", "quotas"}},
	{"sam", "security", []string{"explorer", "playground", "decisions"}},
	{"vera", "viewer", []string{"explorer", "decisions", "quotas"}},
}

func startFixture(t *testing.T) *httptest.Server {
	live, err := os.ReadFile("../../policies/authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixtureServer{live: string(live), dlq: []map[string]any{{
		"id": "17", "rule": "order-created", "time": time.Now().Add(-time.Hour).Format(time.RFC3339),
		"error": "POST http://receiver: 503", "attempts": 5, "payload": map[string]any{"id": 42},
	}}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func (f *fixtureServer) user(r *http.Request) (string, []string, bool) {
	c, err := r.Cookie("fraise_session")
	if err != nil {
		return "", nil, false
	}
	for _, u := range fixtureUsers {
		if u.Subject == c.Value {
			return u.Role, u.Screens, true
		}
	}
	return "", nil, false
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, status int, code string) {
	reply(w, status, map[string]any{"error": map[string]string{"code": code, "message": code}})
}

func (f *fixtureServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	p := r.URL.Path
	assets := web.Assets()
	switch {
	case p == "/console/login":
		http.ServeFileFS(w, r, assets, "login.html")
		return
	case strings.HasPrefix(p, "/console/assets/"):
		http.ServeFileFS(w, r, assets, strings.TrimPrefix(p, "/console/"))
		return
	case p == "/console/api/dev/users":
		var out []map[string]any
		for _, u := range fixtureUsers {
			out = append(out, map[string]any{"subject": u.Subject, "tenant": "acme", "roles": []string{u.Role}, "label": u.Subject + " (" + u.Role + ")"})
		}
		reply(w, 200, out)
		return
	case p == "/console/api/dev/login":
		var in struct{ Subject string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		http.SetCookie(w, &http.Cookie{Name: "fraise_session", Value: in.Subject, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.SetCookie(w, &http.Cookie{Name: "fraise_csrf", Value: "csrf-" + in.Subject, Path: "/", SameSite: http.SameSiteStrictMode})
		w.WriteHeader(204)
		return
	}
	role, screens, ok := f.user(r)
	if !ok {
		if p == "/console/" {
			http.Redirect(w, r, "/console/login", http.StatusFound)
			return
		}
		fail(w, 401, "unauthenticated")
		return
	}
	if r.Method != http.MethodGet {
		c, _ := r.Cookie("fraise_csrf")
		if c == nil || r.Header.Get("X-CSRF-Token") != c.Value {
			fail(w, 403, "csrf")
			return
		}
	}
	if strings.HasPrefix(p, "/console/api/policies") && !slices.Contains(screens, "playground") ||
		strings.HasSuffix(p, "/replay") && strings.Contains(p, "/dlq/") && role != "admin" && role != "operator" {
		fail(w, 403, "forbidden")
		return
	}
	var body struct {
		Files []struct{ Path, Content string }
		Query string
		Input map[string]any
	}
	if r.Method == http.MethodPost {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	edited := false
	for _, fl := range body.Files {
		if fl.Path == "authz.rego" && fl.Content != f.live {
			edited = true
		}
	}
	refused := map[string]any{"id": "101", "time": time.Now().Add(-5 * time.Minute).Format(time.RFC3339), "tenant": "acme",
		"subject": "vera", "operation": "mutation createOrder", "decision": "deny", "reason": "roles [viewer] do not permit mutation createOrder",
		"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "traceUrl": "",
		"input": map[string]any{"principal": map[string]any{"subject": "vera", "tenant": "acme", "roles": []string{"viewer"}}, "graphql": map[string]any{"operation": "mutation", "root_fields": []string{"createOrder"}}}}
	switch p {
	case "/console/":
		http.ServeFileFS(w, r, assets, "index.html")
	case "/graphql":
		w.Header().Set("x-fraise-trace-id", "0af7651916cd43dd8448eb211c80319c")
		reply(w, 200, map[string]any{"data": map[string]any{"orders": []map[string]any{{"id": 1, "total": 12.5}}}})
	case "/console/api/logout":
		http.SetCookie(w, &http.Cookie{Name: "fraise_session", Path: "/", MaxAge: -1})
		w.WriteHeader(204)
	case "/console/api/me":
		reply(w, 200, map[string]any{"subject": "x", "tenant": "acme", "roles": []string{role}, "screens": screens})
	case "/console/api/persisted":
		reply(w, 200, []map[string]any{{"id": "sha256:ab12", "name": "RecentOrders", "operation": "RecentOrders", "document": "query RecentOrders { orders { id total } }"}})
	case "/console/api/cost":
		reply(w, 200, map[string]any{"cost": len(body.Query) / 10, "limit": 1000, "depth": 2, "maxDepth": 10, "errors": []string{}})
	case "/console/api/policies":
		reply(w, 200, map[string]any{"files": []map[string]string{{"path": "authz.rego", "content": f.live}, {"path": "authz_test.rego", "content": "package fraise.authz_test\n"}}, "data": map[string]any{}})
	case "/console/api/policies/check":
		for _, fl := range body.Files {
			if i := strings.Index(fl.Content, "broken if {"); i >= 0 {
				row := strings.Count(fl.Content[:i], "\n") + 1
				reply(w, 200, map[string]any{"ok": false, "errors": []map[string]any{{"path": fl.Path, "row": row, "col": 1, "message": "rego_parse_error: unexpected eof token"}}})
				return
			}
		}
		reply(w, 200, map[string]any{"ok": true, "errors": []any{}})
	case "/console/api/policies/evaluate":
		deny := map[string]any{"allow": false, "reason": "roles [viewer] do not permit mutation createOrder", "rule": "data.fraise.authz.decision", "notes": []string{"authz.rego:24 deny"}}
		draft := deny
		if edited {
			draft = map[string]any{"allow": true, "reason": "role viewer permits mutation createOrder", "rule": "data.fraise.authz.permits", "notes": []string{}}
		}
		reply(w, 200, map[string]any{"draft": draft, "live": deny, "changed": edited})
	case "/console/api/policies/input":
		reply(w, 200, map[string]any{"input": map[string]any{"principal": map[string]any{"roles": []string{"viewer"}}, "graphql": map[string]any{"operation": "mutation", "root_fields": []string{"createOrder"}}}})
	case "/console/api/policies/test":
		reply(w, 200, map[string]any{"passed": 41, "failed": 0, "results": []map[string]any{{"name": "data.fraise.authz_test.test_viewer_reads", "pass": true}}})
	case "/console/api/policies/replay":
		changed := []any{}
		if edited {
			changed = append(changed, map[string]any{"decision": refused, "live": map[string]any{"allow": false, "reason": "roles [viewer] do not permit"}, "draft": map[string]any{"allow": true, "reason": "role viewer permits"}})
		}
		reply(w, 200, map[string]any{"replayed": 57, "changed": changed})
	case "/console/api/policies/export":
		reply(w, 200, map[string]any{"diff": "--- a/policies/authz.rego\n+++ b/policies/authz.rego\n@@ -1 +1,2 @@\n+# edited\n"})
	case "/console/api/decisions":
		rows := []any{refused, map[string]any{"id": "100", "time": time.Now().Add(-6 * time.Minute).Format(time.RFC3339), "tenant": "acme", "subject": "vera", "operation": "query RecentOrders", "decision": "allow", "reason": "role viewer permits query", "traceId": "5bf92f3577b34da6a3ce929d0e0e4736", "input": map[string]any{}}}
		if r.URL.Query().Get("decision") == "deny" {
			rows = rows[:1]
		}
		reply(w, 200, rows)
	case "/console/api/observers":
		f.mu.Lock()
		reply(w, 200, map[string]any{"rules": []map[string]any{{"name": "order-created", "table": "orders", "events": []string{"insert"}, "condition": "total > 100", "action": "webhook", "deliveries": f.delivery, "breaker": "closed"}}, "backlog": map[string]any{"pending": 0, "oldestAgeSeconds": 0}})
		f.mu.Unlock()
	case "/console/api/observers/dlq":
		f.mu.Lock()
		reply(w, 200, f.dlq)
		f.mu.Unlock()
	case "/console/api/quotas":
		var ref []map[string]any
		for i := range 12 {
			ref = append(ref, map[string]any{"time": time.Now().Add(time.Duration(i-12) * 5 * time.Minute).Format(time.RFC3339), "ratelimit": (i * 7) % 5, "admission": i % 3})
		}
		reply(w, 200, []map[string]any{{"tenant": "acme", "tier": "default", "quotas": []map[string]any{{"name": "requests/minute", "used": 21, "limit": 30}, {"name": "rows exported/day", "used": 3000, "limit": 100000}}, "refusals": ref}})
	default:
		if strings.HasPrefix(p, "/console/api/observers/dlq/") {
			f.mu.Lock()
			f.dlq = nil
			f.delivery = append(f.delivery, map[string]any{"time": time.Now().Format(time.RFC3339), "status": "delivered", "attempts": 1, "error": ""})
			f.mu.Unlock()
			reply(w, 200, map[string]any{"replayed": true})
			return
		}
		if _, err := fs.Stat(assets, strings.TrimPrefix(p, "/console/")); err == nil {
			fail(w, 404, "not_found")
			return
		}
		fail(w, 404, fmt.Sprintf("no route %s", p))
	}
}
