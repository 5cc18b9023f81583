package security_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

var pathAttacks = []attack{
	{
		name: "path-dot-segments", class: classPaths,
		does: "asks, with an admin's token, for /graphql/../readyz, /graphql/./../metrics and /x/../../readyz",
		want: "404 from Envoy's catch-all for each: paths are normalised before routing, and no admin path is routed",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodGet, []string{"/graphql/../readyz", "/graphql/./../metrics", "/x/../../readyz"}, true, http.StatusNotFound)
		},
	},
	{
		name: "path-escaped-slash", class: classPaths,
		does: "asks for /graphql%2F..%2Freadyz and /graphql%2f",
		want: "400 from Envoy: escaped slashes are refused, not guessed at",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodPost, []string{"/graphql%2F..%2Freadyz", "/graphql%2f"}, true, http.StatusBadRequest)
		},
	},
	{
		name: "path-escaped-backslash", class: classPaths,
		does: `asks for /graphql%5C..%5Creadyz and /graphql%5c`,
		want: "400 from Envoy",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodPost, []string{"/graphql%5C..%5Creadyz", "/graphql%5c"}, true, http.StatusBadRequest)
		},
	},
	{
		name: "path-encoded-dot-segments", class: classPaths,
		does: "asks for /graphql/%2e%2e/readyz and /%2E%2E/metrics",
		want: "404 or 400 from Envoy: never an admin path",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodGet, []string{"/graphql/%2e%2e/readyz", "/%2E%2E/metrics"}, true, http.StatusNotFound, http.StatusBadRequest)
		},
	},
	{
		name: "path-double-slash-without-token", class: classPaths,
		does: "sends a query without a token to //graphql, /./graphql and /graphql/ (hoping a route without authorization matches)",
		want: "401 for the spellings that normalise to /graphql, 404 for the others: never served",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodPost, []string{"//graphql", "/./graphql", "/graphql/"}, false, http.StatusUnauthorized, http.StatusNotFound)
		},
	},
	{
		name: "path-spelling-variants", class: classPaths,
		does: "sends a query without a token to /GRAPHQL, /GraphQL, /graphql;x=1, /graphql.json and /graphql%00",
		want: "404 or 400: only /graphql is routed to the server",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodPost, []string{"/GRAPHQL", "/GraphQL", "/graphql;x=1", "/graphql.json", "/graphql%00"}, false, http.StatusNotFound, http.StatusBadRequest)
		},
	},
	{
		name: "path-core-admin", class: classPaths,
		does: "asks the ingress, with an admin's token, for the server's admin paths /healthz, /readyz, /metrics",
		want: "404 for each: the admin port is never routed",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodGet, []string{"/healthz", "/readyz", "/metrics"}, true, http.StatusNotFound)
		},
	},
	{
		name: "path-envoy-admin", class: classPaths,
		does: "asks the ingress, with an admin's token, for Envoy's admin paths (/config_dump, /stats, /clusters, /certs) and POSTs /quitquitquit and /logging?level=trace",
		want: "404 for each, and the ingress still serving",
		run: func(t *testing.T, e *env) string {
			got := e.pathsRefused(t, http.MethodGet, []string{"/config_dump", "/stats", "/clusters", "/certs", "/ready"}, true, http.StatusNotFound)
			e.pathsRefused(t, http.MethodPost, []string{"/quitquitquit", "/logging?level=trace", "/healthcheck/fail"}, true, http.StatusNotFound)
			if status, g := e.query(t, e.token(t, acme, "victor", "viewer"), usersQuery); status != http.StatusOK {
				t.Fatalf("after the attack: got %d %+v, want the ingress serving", status, g.Errors)
			}
			return got + " (8 paths); still serving"
		},
	},
	{
		name: "path-pprof", class: classPaths,
		does: "asks the ingress, with an admin's token, for /debug/pprof/ and /debug/pprof/goroutine?debug=2",
		want: "404 for each",
		run: func(t *testing.T, e *env) string {
			return e.pathsRefused(t, http.MethodGet, []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=2"}, true, http.StatusNotFound)
		},
	},
	{
		name: "request-smuggling-cl-te", class: classPaths,
		does: "sends a POST with both Content-Length and Transfer-Encoding: chunked, whose chunked body smuggles a second request for /readyz",
		want: "refused 400 by Envoy, or the smuggled request answered 404: never reaching the server unauthenticated",
		run: func(t *testing.T, e *env) string {
			smuggled := "GET /readyz HTTP/1.1\r\nHost: localhost\r\n\r\n"
			req := "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
				fmt.Sprintf("Content-Length: %d\r\n", len("0\r\n\r\n")) + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
			before := e.counts(t)
			resp, body := e.raw(t, req)
			by := e.by(t, before)
			if by == byCore {
				t.Fatalf("the server saw a request (%v %q)", resp, body)
			}
			if resp == nil {
				return "refused by Envoy: connection closed"
			}
			if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("got %d %q, want 400 or the POST's 401", resp.StatusCode, body)
			}
			return fmt.Sprintf("refused %d by %s; the server saw nothing", resp.StatusCode, by)
		},
	},
}

// pathsRefused sends method to each of paths over raw HTTP/1.1 (the path
// as written, no client normalising it), with an admin's token when
// withToken, and checks each answer is one of statuses, with no data, and
// that the server saw none of them.
func (e *env) pathsRefused(t *testing.T, method string, paths []string, withToken bool, statuses ...int) string {
	t.Helper()
	var headers []string
	if withToken {
		headers = []string{"Authorization: Bearer " + e.token(t, acme, "alice", "admin")}
	}
	body := ""
	if method == http.MethodPost {
		body = jsonBody(map[string]any{"query": usersQuery})
	}
	seen := map[int]int{}
	before := e.counts(t)
	for _, p := range paths {
		resp, b := e.raw(t, e.rawRequest(method, p, headers, body))
		if resp == nil {
			t.Errorf("%s %s: no answer (%s)", method, p, b)
			continue
		}
		ok := false
		for _, s := range statuses {
			ok = ok || resp.StatusCode == s
		}
		if !ok || strings.Contains(b, `"data"`) || strings.Contains(b, "Alice") || strings.Contains(b, "fraise_") {
			t.Errorf("%s %s: got %d %q, want one of %v and nothing served", method, p, resp.StatusCode, b, statuses)
		}
		seen[resp.StatusCode]++
	}
	by := e.by(t, before)
	if by == byCore {
		t.Errorf("the server saw a request")
	}
	var parts []string
	for _, s := range statuses {
		if seen[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d × %d", seen[s], s))
		}
	}
	return fmt.Sprintf("refused %s by %s", strings.Join(parts, ", "), by)
}
