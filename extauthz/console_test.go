package extauthz_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// consoleRequest is a CheckRequest for the console: cookie is the Cookie
// header ("" for none), csrf the X-CSRF-Token header ("" for none).
func consoleRequest(authz, cookie, csrf, method, path, body string) *authv3.CheckRequest {
	req := httpRequest(authz, method, path, body)
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	if cookie != "" {
		h["cookie"] = cookie
	}
	if csrf != "" {
		h["x-csrf-token"] = csrf
	}
	return req
}

const csrfValue = "0123456789abcdef0123456789abcdef"

// TestConsoleSessions checks who reaches which console path and how a
// refusal looks: pages redirect to the login page, APIs answer 401 or 403
// in the console's error shape, and a cookie-authenticated write needs the
// CSRF token.
func TestConsoleSessions(t *testing.T) {
	t.Parallel()
	f := mustFixture(t, func(o *extauthz.Options) { o.ConsoleDevLogin = true })
	admin, viewer := f.token(t, "admin"), f.token(t, "viewer")
	session := func(tok string) string { return "fraise_session=" + tok + "; fraise_csrf=" + csrfValue }
	tests := []struct {
		name                       string
		authz, cookie, csrf        string
		method, path, body         string
		want                       int // 200 for allowed
		wantCode, wantLocation     string
		wantIdentity, wantAudience bool
	}{
		{name: "login page without a session", method: "GET", path: "/console/login", want: 200},
		{name: "asset without a session", method: "GET", path: "/console/assets/app.js", want: 200},
		{name: "dev users without a session", method: "GET", path: "/console/api/dev/users", want: 200},
		{name: "dev login without a session", method: "POST", path: "/console/api/dev/login", body: `{"subject":"alice"}`, want: 200},
		{name: "app shell without a session", method: "GET", path: "/console/", want: 302, wantLocation: "/console/login"},
		{name: "prefix without a slash", method: "GET", path: "/console", want: 302, wantLocation: "/console/login"},
		{name: "api without a session", method: "GET", path: "/console/api/me", want: 401, wantCode: "UNAUTHENTICATED"},
		{name: "evaluate without a session", method: "POST", path: "/console/api/policies/evaluate", body: "{}", want: 401, wantCode: "UNAUTHENTICATED"},
		{name: "app shell with a bad cookie", cookie: "fraise_session=junk", method: "GET", path: "/console/", want: 302, wantLocation: "/console/login"},
		{name: "api with a bad cookie", cookie: "fraise_session=junk", method: "GET", path: "/console/api/me", want: 401, wantCode: "UNAUTHENTICATED"},
		{name: "two session cookies", cookie: "fraise_session=" + admin + "; fraise_session=" + viewer, method: "GET", path: "/console/api/me", want: 401, wantCode: "UNAUTHENTICATED"},
		{name: "app shell with a session", cookie: session(admin), method: "GET", path: "/console/", want: 200, wantIdentity: true, wantAudience: true},
		{name: "me with a session", cookie: session(viewer), method: "GET", path: "/console/api/me", want: 200, wantIdentity: true, wantAudience: true},
		{name: "me with a header", authz: "Bearer " + viewer, method: "GET", path: "/console/api/me", want: 200, wantIdentity: true, wantAudience: true},
		{name: "viewer evaluates", cookie: session(viewer), csrf: csrfValue, method: "POST", path: "/console/api/policies/evaluate", body: "{}", want: 403, wantCode: "FORBIDDEN"},
		{name: "viewer replays", cookie: session(viewer), csrf: csrfValue, method: "POST", path: "/console/api/policies/replay", body: "{}", want: 403, wantCode: "FORBIDDEN"},
		{name: "viewer replays a dead letter", cookie: session(viewer), csrf: csrfValue, method: "POST", path: "/console/api/observers/dlq/1-0/replay", want: 403, wantCode: "FORBIDDEN"},
		{name: "admin evaluates", cookie: session(admin), csrf: csrfValue, method: "POST", path: "/console/api/policies/evaluate", body: "{}", want: 200, wantIdentity: true, wantAudience: true},
		{name: "write without a CSRF header", cookie: session(admin), method: "POST", path: "/console/api/policies/evaluate", body: "{}", want: 403, wantCode: "csrf"},
		{name: "write with a wrong CSRF header", cookie: session(admin), csrf: strings.Repeat("f", 32), method: "POST", path: "/console/api/policies/evaluate", body: "{}", want: 403, wantCode: "csrf"},
		{name: "write with a CSRF header but no CSRF cookie", cookie: "fraise_session=" + admin, csrf: csrfValue, method: "POST", path: "/console/api/logout", want: 403, wantCode: "csrf"},
		{name: "write with two CSRF cookies", cookie: session(admin) + "; fraise_csrf=" + csrfValue, csrf: csrfValue, method: "POST", path: "/console/api/logout", want: 403, wantCode: "csrf"},
		{name: "write with a short CSRF token", cookie: "fraise_session=" + admin + "; fraise_csrf=x", csrf: "x", method: "POST", path: "/console/api/logout", want: 403, wantCode: "csrf"},
		{name: "graphql write by cookie without CSRF", cookie: session(admin), method: "POST", path: "/graphql", body: `{"query":"{ users { id } }"}`, want: 403, wantCode: "FORBIDDEN"},
		{name: "graphql by cookie with CSRF", cookie: session(admin), csrf: csrfValue, method: "POST", path: "/graphql", body: `{"query":"{ users { id } }"}`, want: 200, wantIdentity: true},
		{name: "graphql by header needs no CSRF", authz: "Bearer " + admin, cookie: "fraise_session=junk", method: "POST", path: "/graphql", body: `{"query":"{ users { id } }"}`, want: 200, wantIdentity: true},
		{name: "unknown console api", cookie: session(admin), method: "GET", path: "/console/api/nothing", want: 403, wantCode: "FORBIDDEN"},
		{name: "dot segments to the login page", method: "GET", path: "/console/assets/../api/me", want: 401, wantCode: "UNAUTHENTICATED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustCheck(t, f.client, consoleRequest(tt.authz, tt.cookie, tt.csrf, tt.method, tt.path, tt.body))
			if tt.want == 200 {
				ok := resp.GetOkResponse()
				if ok == nil {
					d := mustDenial(t, resp)
					t.Fatalf("got %d %s, want allowed", d.status, d.body)
				}
				h := headerMap(ok.GetHeaders())
				if got := h[assertion.Header] != ""; got != tt.wantIdentity {
					t.Fatalf("got identity headers %v, want %v", got, tt.wantIdentity)
				}
				if tt.wantIdentity {
					a, err := f.verifier.Verify(h[assertion.Header], map[bool]string{true: assertion.AudienceConsole, false: assertion.AudienceGraphQL}[tt.wantAudience])
					if err != nil {
						t.Fatalf("assertion: %v", err)
					}
					if a.Path != strings.Split(tt.path, "?")[0] {
						t.Errorf("assertion path: got %q, want %q", a.Path, tt.path)
					}
				}
				return
			}
			d := mustDenial(t, resp)
			if d.status != tt.want {
				t.Fatalf("got %d %s, want %d", d.status, d.body, tt.want)
			}
			if tt.wantLocation != "" {
				if d.headers["location"] != tt.wantLocation {
					t.Errorf("got location %q, want %q", d.headers["location"], tt.wantLocation)
				}
				return
			}
			var body struct {
				Error  struct{ Code, Message string } `json:"error"`
				Errors []struct {
					Extensions struct{ Code string } `json:"extensions"`
				} `json:"errors"`
			}
			if err := json.Unmarshal([]byte(d.body), &body); err != nil {
				t.Fatalf("body %q: %v", d.body, err)
			}
			code := body.Error.Code
			if !strings.HasPrefix(tt.path, "/console") && len(body.Errors) > 0 {
				code = body.Errors[0].Extensions.Code
			}
			if code != tt.wantCode {
				t.Errorf("got code %q (body %s), want %q", code, d.body, tt.wantCode)
			}
		})
	}
}

// TestConsoleDevLoginOff checks that without the development login its
// APIs need a session like any other.
func TestConsoleDevLoginOff(t *testing.T) {
	t.Parallel()
	f := mustFixture(t)
	for _, path := range []string{"/console/api/dev/users", "/console/api/dev/login"} {
		method := http.MethodGet
		if strings.HasSuffix(path, "login") {
			method = http.MethodPost
		}
		d := mustDenial(t, mustCheck(t, f.client, consoleRequest("", "", "", method, path, "")))
		if d.status != http.StatusUnauthorized {
			t.Errorf("%s %s: got %d, want 401", method, path, d.status)
		}
	}
}

// TestConsoleInputReachesThePolicy checks input.console: a policy that
// grants by it sees the path below the prefix and the session's kind.
func TestConsoleInputReachesThePolicy(t *testing.T) {
	t.Parallel()
	f := mustFixture(t, func(o *extauthz.Options) {
		o.PolicyFS = fstest.MapFS{"p.rego": {Data: []byte(`package fraise.authz
decision := {"allow": true, "reason": "cookie console"} if {
	input.console.path == "/api/me"
	input.console.session == "cookie"
} else := {"allow": false, "reason": "no"}
`)}, "p_test.rego": {Data: []byte(`package fraise.authz_test
import data.fraise.authz
test_console if authz.decision.allow with input as {"console": {"path": "/api/me", "session": "cookie"}}
`)}}
	})
	tok := f.token(t, "viewer")
	if mustCheck(t, f.client, consoleRequest("", "fraise_session="+tok, "", "GET", "/console/api/me", "")).GetOkResponse() == nil {
		t.Error("cookie session: got denied, want allowed")
	}
	if mustCheck(t, f.client, consoleRequest("Bearer "+tok, "", "", "GET", "/console/api/me", "")).GetOkResponse() != nil {
		t.Error("header session: got allowed, want denied")
	}
}
