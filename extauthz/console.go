package extauthz

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fraise-dev/fraise/core"
)

// The console's session cookies and CSRF header (docs/console.md): the
// session cookie carries the bearer token for browsers, which cannot set an
// Authorization header on a page load; the CSRF cookie's value must come
// back in the header on every write the cookie authenticates (double
// submit), which a cross-site form or fetch cannot do because it cannot
// read the cookie.
const (
	SessionCookie = "fraise_session"
	CSRFCookie    = "fraise_csrf"
	CSRFHeader    = "x-csrf-token"
)

// consoleCSP is the console's Content-Security-Policy
// (adapters/console.CSP; test/security checks every console answer,
// extauthz's refusals included, carries that one), and consoleHeaders the
// security headers extauthz's own console answers carry with it.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

func consoleHeaders() []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{
		header("content-security-policy", consoleCSP), header("x-content-type-options", "nosniff"),
		header("x-frame-options", "DENY"), header("referrer-policy", "no-referrer"), header("cache-control", "no-store"),
	}
}

// DefaultConsolePath is the path prefix the console is served under.
const DefaultConsolePath = "/console"

// consoleCodeCSRF is the code of a refused cross-site write, as the console
// contract names it.
const consoleCodeCSRF = "csrf"

// consoleInput is input.console: where in the console the request goes and
// how it was authenticated, so a policy can grant console screens and APIs
// by path.
type consoleInput struct {
	// path is the request's path under the console prefix ("/api/me", "/").
	path string
	// session is "cookie" when the session cookie authenticated the
	// request, "header" for an Authorization header, "" for none.
	session string
}

// isConsole reports whether path is the console's: its prefix itself or
// anything below it.
func (s *Server) isConsole(path string) bool {
	p := s.o.ConsolePath
	return path == p || strings.HasPrefix(path, p+"/")
}

// consolePublic reports whether the console path rel (below the prefix) is
// served without a session: the login page, the static assets (the login
// page's own scripts and styles; the application's code holds no data),
// and, when the development login is on, its two APIs.
func (s *Server) consolePublic(method, rel string) bool {
	switch {
	case rel == "/login" || rel == "/login.html":
		return method == http.MethodGet || method == http.MethodHead
	case strings.HasPrefix(rel, "/assets/"):
		return (method == http.MethodGet || method == http.MethodHead) && !strings.Contains(rel, "..")
	case s.o.ConsoleDevLogin && (rel == "/api/dev/users" || rel == "/api/dev/login"):
		return true
	}
	return false
}

// consolePage reports whether rel is a page a browser navigates to, which
// without a session is redirected to the login page rather than refused.
func consolePage(method, rel string) bool {
	return (method == http.MethodGet || method == http.MethodHead) &&
		(rel == "" || rel == "/" || rel == "/index.html")
}

// cookies returns the values of the cookies named in names that header
// (the request's Cookie header, several joined by "; " or ",") carries,
// each name's values in order. It is lenient about everything but the
// names, as browsers are.
func cookies(header string, names ...string) map[string][]string {
	out := make(map[string][]string, len(names))
	if header == "" {
		return out
	}
	for _, part := range strings.FieldsFunc(header, func(r rune) bool { return r == ';' || r == ',' }) {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		for _, n := range names {
			if k == n {
				out[n] = append(out[n], strings.Trim(strings.TrimSpace(v), `"`))
			}
		}
	}
	return out
}

// safeMethod reports whether a request of method changes nothing by the
// HTTP contract, so that it needs no CSRF token.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// csrfOK reports whether a request authenticated by the session cookie
// carries the CSRF cookie's value in the CSRF header. One cookie only: two
// (one planted by a sibling domain, "cookie tossing") are refused rather
// than guessed between.
func csrfOK(jar map[string][]string, headers map[string]string) bool {
	vals := jar[CSRFCookie]
	if len(vals) != 1 || len(vals[0]) < 16 {
		return false
	}
	got := headers[CSRFHeader]
	return subtle.ConstantTimeCompare([]byte(got), []byte(vals[0])) == 1
}

// consoleErrorBody is the console API's error shape, {"error":{"code",
// "message"}}: the console's web application reads it; GraphQL clients
// read the GraphQL shape on every other path.
func consoleErrorBody(code, msg string) string {
	b, _ := json.Marshal(map[string]map[string]string{"error": {"code": code, "message": msg}})
	return string(b)
}

// redirectToLogin answers a page load without a session with a redirect to
// the login page: a browser shows it, where a 401 would show a blank page.
func (s *Server) redirectToLogin(d *decision, reason string) *authv3.CheckResponse {
	resp := d.denyCode(core.CodeUnauthenticated, reason, "", core.CodeUnauthenticated)
	d.status = http.StatusFound
	dr := resp.GetDeniedResponse()
	dr.Status.Code = http.StatusFound
	dr.Body = ""
	dr.Headers = append(consoleHeaders(), header("location", s.o.ConsolePath+"/login"))
	return resp
}

// unauthenticated denies a request without a valid credential: a console
// page load is sent to the login page, anything else gets 401.
func (s *Server) unauthenticated(d *decision, con *consoleInput, reason string) *authv3.CheckResponse {
	if con != nil && consolePage(d.method, con.path) {
		return s.redirectToLogin(d, reason)
	}
	return d.deny(core.CodeUnauthenticated, reason, "")
}

// csrf denies a cookie-authenticated write without the CSRF token.
func (d *decision) csrf() *authv3.CheckResponse {
	const msg = "missing or wrong CSRF token: send the fraise_csrf cookie's value in the X-CSRF-Token header"
	resp := d.denyCode(core.CodeForbidden, "cookie-authenticated "+d.method+" without a matching CSRF token", msg, core.CodeForbidden)
	if d.console {
		resp.GetDeniedResponse().Body = consoleErrorBody(consoleCodeCSRF, msg)
	}
	return resp
}

// traceID is the trace id of a W3C traceparent header
// ("00-<32 hex>-<16 hex>-<flags>"), "" when tp is not one.
func traceID(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 || len(parts[1]) != 32 || strings.Trim(parts[1], "0123456789abcdef") != "" || parts[1] == strings.Repeat("0", 32) {
		return ""
	}
	return parts[1]
}
