package security_test

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/console"
	"github.com/fraise-dev/fraise/adapters/console/web"
)

// consoleAPIs are every console API, by method and path: none may answer
// without a session.
var consoleAPIs = []struct{ method, path string }{
	{"GET", "/console/api/me"}, {"POST", "/console/api/logout"},
	{"GET", "/console/api/persisted"}, {"POST", "/console/api/cost"},
	{"GET", "/console/api/policies"}, {"POST", "/console/api/policies/check"},
	{"POST", "/console/api/policies/evaluate"}, {"POST", "/console/api/policies/input"},
	{"POST", "/console/api/policies/test"}, {"POST", "/console/api/policies/replay"},
	{"POST", "/console/api/policies/export"}, {"GET", "/console/api/decisions"},
	{"GET", "/console/api/observers"}, {"GET", "/console/api/observers/dlq"},
	{"POST", "/console/api/observers/dlq/1700000000000-0/replay"}, {"GET", "/console/api/quotas"},
}

// playgroundDraft is a draft the playground's APIs accept: the live
// policy's own file name, allowing everything.
const playgroundDraft = `{"files":[{"path":"authz.rego","content":"package fraise.authz\ndecision := {\"allow\": true, \"reason\": \"draft\"}\n"}],` +
	`"input":{"principal":{"roles":["viewer"]}},"limit":5}`

// csrfToken is the CSRF cookie's value the suite's sessions carry.
const csrfToken = "5f4dcc3b5aa765d61d8327deb882cf995f4dcc3b5aa765d61d8327deb882cf99"

var consoleAttacks = []attack{
	{
		name: "console-without-token", class: classConsole,
		does: "asks, without a token, for the console's shell (/console, /console/, /console/index.html) and calls each of its 16 APIs",
		want: "302 to /console/login for the pages and 401 UNAUTHENTICATED in the console's error shape for every API, with the CSP header, and nothing served",
		run: func(t *testing.T, e *env) string {
			for _, p := range []string{"/console", "/console/", "/console/index.html"} {
				st, h, b := e.consoleDo(t, "GET", p, nil, "")
				if st != http.StatusFound || h.Get("Location") != "/console/login" || strings.Contains(b, "<script") {
					t.Errorf("GET %s: got %d location %q %q, want 302 to /console/login", p, st, h.Get("Location"), b)
				}
				wantCSP(t, "GET "+p, h)
			}
			for _, a := range consoleAPIs {
				st, h, b := e.consoleDo(t, a.method, a.path, nil, "{}")
				if st != http.StatusUnauthorized || consoleCode(b) != "UNAUTHENTICATED" {
					t.Errorf("%s %s: got %d %q, want 401 UNAUTHENTICATED", a.method, a.path, st, b)
				}
				wantCSP(t, a.method+" "+a.path, h)
			}
			return fmt.Sprintf("3 pages redirected to the login page, %d APIs refused 401", len(consoleAPIs))
		},
	},
	{
		name: "console-forged-session", class: classConsole,
		does: "sends the console's session cookie holding junk, a token of an unknown issuer, an expired token, and two session cookies",
		want: "401 UNAUTHENTICATED for each API call and a redirect to the login page for the shell",
		run: func(t *testing.T, e *env) string {
			stranger := newIssuer(t, "https://stranger.example")
			expired := e.dev.claims(acme, "alice", "admin")
			expired["exp"] = 1
			sessions := []string{
				"fraise_session=junk",
				"fraise_session=" + stranger.token(t, acme, "alice", "admin"),
				"fraise_session=" + e.dev.sign(t, e.dev.header(), expired),
				"fraise_session=junk; fraise_session=" + e.token(t, acme, "alice", "admin"),
			}
			for i, c := range sessions {
				st, _, b := e.consoleDo(t, "GET", "/console/api/decisions", http.Header{"Cookie": {c}}, "")
				if st != http.StatusUnauthorized {
					t.Errorf("session %d: got %d %q, want 401", i, st, b)
				}
				if st, h, _ := e.consoleDo(t, "GET", "/console/", http.Header{"Cookie": {c}}, ""); st != http.StatusFound || h.Get("Location") != "/console/login" {
					t.Errorf("session %d: shell got %d, want 302 to the login page", i, st)
				}
			}
			return "4 forged sessions refused 401, shell redirected"
		},
	},
	{
		name: "console-viewer-playground", class: classConsole,
		does: "as a viewer with a valid session and CSRF token, calls the playground's evaluate, replay, test, check and export APIs and replays a dead letter",
		want: "403 FORBIDDEN from extauthz's policy for each: the viewer role has no playground screen and no dlq_replay action",
		run: func(t *testing.T, e *env) string {
			h := e.session(t, "victor", "viewer")
			for _, p := range []string{"evaluate", "replay", "test", "check", "export"} {
				st, _, b := e.consoleDo(t, "POST", "/console/api/policies/"+p, h, playgroundDraft)
				if st != http.StatusForbidden || consoleCode(b) != "FORBIDDEN" {
					t.Errorf("POST %s: got %d %q, want 403 FORBIDDEN", p, st, b)
				}
			}
			if st, _, b := e.consoleDo(t, "POST", "/console/api/observers/dlq/1700000000000-0/replay", h, ""); st != http.StatusForbidden {
				t.Errorf("DLQ replay: got %d %q, want 403", st, b)
			}
			// The same session reads what a viewer may: the refusals are
			// the role's, not a broken session.
			if st, _, b := e.consoleDo(t, "GET", "/console/api/decisions", h, ""); st != http.StatusOK {
				t.Errorf("viewer decisions: got %d %q, want 200", st, b)
			}
			// And a security engineer's session evaluates the same draft.
			if st, _, b := e.consoleDo(t, "POST", "/console/api/policies/evaluate", e.session(t, "sam", "security"), playgroundDraft); st != http.StatusOK {
				t.Errorf("security evaluate: got %d %q, want 200", st, b)
			}
			return "5 playground APIs and the DLQ replay refused 403 FORBIDDEN; the viewer still reads decisions"
		},
	},
	{
		name: "console-csrf", class: classConsole,
		does: "with an admin's session cookie, POSTs to the console's APIs and a mutation to /graphql as a cross-site page would: without X-CSRF-Token, with a wrong one, with a second planted fraise_csrf cookie, and as a form post",
		want: "403 with code csrf (FORBIDDEN for /graphql) every time and no post created; the same requests with the cookie's token are served",
		run: func(t *testing.T, e *env) string {
			tok := e.token(t, acme, "alice", "admin")
			cookie := "fraise_session=" + tok + "; fraise_csrf=" + csrfToken
			before := e.posts(t, acme)
			cases := []struct {
				name string
				h    http.Header
			}{
				{"no header", http.Header{"Cookie": {cookie}}},
				{"wrong header", http.Header{"Cookie": {cookie}, "X-Csrf-Token": {strings.Repeat("0", 64)}}},
				{"planted second cookie", http.Header{"Cookie": {cookie + "; fraise_csrf=" + strings.Repeat("a", 64)}, "X-Csrf-Token": {strings.Repeat("a", 64)}}},
				{"form post from another origin", http.Header{"Cookie": {cookie}, "Content-Type": {"application/x-www-form-urlencoded"}, "Origin": {"https://evil.example"}}},
			}
			for _, c := range cases {
				for _, p := range []string{"/console/api/policies/evaluate", "/console/api/logout"} {
					st, _, b := e.consoleDo(t, "POST", p, c.h, playgroundDraft)
					if st != http.StatusForbidden || consoleCode(b) != "csrf" {
						t.Errorf("%s, POST %s: got %d %q, want 403 csrf", c.name, p, st, b)
					}
				}
				status, _, g := e.post(t, e.s.Client, "", jsonBody(map[string]any{"query": createPost, "variables": createPostVars("csrf")}), c.h)
				if status != http.StatusForbidden || g.HasData() {
					t.Errorf("%s, /graphql mutation: got %d %+v, want 403", c.name, status, g.Errors)
				}
			}
			if after := e.posts(t, acme); after != before {
				t.Errorf("posts: got %d, want %d: a cross-site mutation ran", after, before)
			}
			h := http.Header{"Cookie": {cookie}, "X-Csrf-Token": {csrfToken}}
			if st, _, b := e.consoleDo(t, "POST", "/console/api/policies/evaluate", h, playgroundDraft); st != http.StatusOK {
				t.Errorf("with the token: got %d %q, want 200", st, b)
			}
			return "4 kinds of cross-site write refused 403 csrf on the console and on /graphql; served with the token"
		},
	},
	{
		name: "console-csp-everywhere", class: classConsole,
		does: "fetches the login page, every embedded asset, the application shell and an API answer with a session, and an unknown console path",
		want: "the strict Content-Security-Policy (no inline script or style, no framing) and nosniff on every answer",
		run: func(t *testing.T, e *env) string {
			paths := []string{"/console/login", "/console/assets/no-such-file.js"}
			_ = fs.WalkDir(web.Assets(), "assets", func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					paths = append(paths, "/console/"+p)
				}
				return nil
			})
			for _, p := range paths {
				st, h, _ := e.consoleDo(t, "GET", p, nil, "")
				if st != http.StatusOK && st != http.StatusNotFound {
					t.Errorf("GET %s: got %d, want it served (or 404) without a session", p, st)
				}
				wantCSP(t, "GET "+p, h)
			}
			h := e.session(t, "alice", "admin")
			for _, p := range []string{"/console/", "/console/index.html", "/console/api/me", "/console/api/nothing"} {
				st, hd, b := e.consoleDo(t, "GET", p, h, "")
				if p == "/console/" && (st != http.StatusOK || !strings.Contains(b, "<html")) {
					t.Errorf("GET %s with a session: got %d, want the shell", p, st)
				}
				wantCSP(t, "GET "+p, hd)
			}
			return fmt.Sprintf("CSP on %d answers", len(paths)+4)
		},
	},
	{
		name: "console-dev-login-cookies", class: classConsole,
		does: "signs in through the development login as the viewer and inspects the cookies it sets",
		want: "fraise_session HttpOnly, Secure, SameSite=Strict; fraise_csrf Secure, SameSite=Strict; the session's /api/me names the viewer's screens only",
		run: func(t *testing.T, e *env) string {
			st, h, b := e.consoleDo(t, "POST", "/console/api/dev/login", http.Header{"Content-Type": {"application/json"}}, `{"subject":"victor"}`)
			if st != http.StatusNoContent {
				t.Fatalf("dev login: got %d %q, want 204", st, b)
			}
			var session, csrf *http.Cookie
			for _, c := range (&http.Response{Header: h}).Cookies() {
				switch c.Name {
				case console.SessionCookie:
					session = c
				case console.CSRFCookie:
					csrf = c
				}
			}
			if session == nil || !session.HttpOnly || !session.Secure || session.SameSite != http.SameSiteStrictMode || session.Path != "/" {
				t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/", session)
			}
			if csrf == nil || csrf.HttpOnly || !csrf.Secure || csrf.SameSite != http.SameSiteStrictMode || len(csrf.Value) < 32 {
				t.Fatalf("CSRF cookie %+v: want readable, Secure, SameSite=Strict, 32+ characters", csrf)
			}
			st, _, b = e.consoleDo(t, "GET", "/console/api/me", http.Header{"Cookie": {session.Name + "=" + session.Value}}, "")
			var me struct {
				Subject string
				Screens []string
			}
			_ = json.Unmarshal([]byte(b), &me)
			if st != http.StatusOK || me.Subject != "victor" || !slices.Equal(me.Screens, []string{"decisions", "explorer", "quotas"}) {
				t.Errorf("me: got %d %q, want victor with decisions, explorer, quotas", st, b)
			}
			return "session HttpOnly Secure SameSite=Strict; viewer sees decisions, explorer, quotas"
		},
	},
	{
		name: "console-path-tricks", class: classConsole,
		does: "without a token, asks for /console/assets/../api/me, /console/login/../api/decisions, /console/assets/%2e%2e/api/me, /consolex/api/me and /console%2fapi%2fme",
		want: "401 for the spellings that normalise to an API, 404 or 400 for the others: the public paths lend no API their exemption",
		run: func(t *testing.T, e *env) string {
			got := e.pathsRefused(t, http.MethodGet, []string{"/console/assets/../api/me", "/console/login/../api/decisions"},
				false, http.StatusUnauthorized)
			got2 := e.pathsRefused(t, http.MethodGet, []string{"/console/assets/%2e%2e/api/me", "/consolex/api/me", "/console%2fapi%2fme"},
				false, http.StatusUnauthorized, http.StatusNotFound, http.StatusBadRequest)
			return got + "; " + got2
		},
	},
}

// consoleDo sends a request to the console through the ingress over
// HTTP/2 with the user's certificate, and returns the status, headers and
// body. Redirects are not followed.
func (e *env) consoleDo(t *testing.T, method, path string, h http.Header, body string) (int, http.Header, string) {
	t.Helper()
	var r io.Reader
	if body != "" && method != http.MethodGet {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+e.s.Addrs.Gateway+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	c := *e.s.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// session is the headers of a console session of subject in Acme with
// roles: the session cookie, the CSRF cookie and its header.
func (e *env) session(t *testing.T, subject, roles string) http.Header {
	t.Helper()
	return http.Header{
		"Cookie":       {"fraise_session=" + e.token(t, acme, subject, roles) + "; fraise_csrf=" + csrfToken},
		"X-Csrf-Token": {csrfToken},
	}
}

// consoleCode is the code of a console error body.
func consoleCode(body string) string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &b)
	return b.Error.Code
}

// wantCSP fails t when h lacks the console's Content-Security-Policy.
func wantCSP(t *testing.T, what string, h http.Header) {
	t.Helper()
	if got := h.Get("Content-Security-Policy"); got != console.CSP {
		t.Errorf("%s: got Content-Security-Policy %q, want %q", what, got, console.CSP)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: no X-Content-Type-Options: nosniff", what)
	}
}
