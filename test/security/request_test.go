package security_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
)

// The attacks of this class send a viewer's body that extauthz and the
// core could read differently (security #13, defect 1): a mutation the
// policy would refuse hidden behind a query the policy allows.
var requestAttacks = []attack{
	{
		name: "apq-hash-case-twins", class: classRequest,
		does: "registers a query and a mutation (as an admin), then as a viewer sends persistedQuery with sha256Hash of the mutation and Sha256Hash of the query, in both orders",
		want: "400 INVALID by extauthz for both (one strict decoder refuses case twins), and no post written",
		run: func(t *testing.T, e *env) string {
			mutation, query := e.registerAPQ(t)
			var got string
			for _, pair := range [][2]string{{"sha256Hash", "Sha256Hash"}, {"Sha256Hash", "sha256Hash"}} {
				body := fmt.Sprintf(`{"variables":%s,"extensions":{"persistedQuery":{"version":1,"%s":%q,"%s":%q}}}`,
					jsonBody(createPostVars("case twin")), pair[0], mutation, pair[1], query)
				got = e.viewerBodyRefused(t, body, http.StatusBadRequest, "INVALID", byAuthz)
			}
			return got + " (both orders)"
		},
	},
	{
		name: "duplicate-query-key", class: classRequest,
		does: "sends a body with query twice: a users query, then a createPost mutation",
		want: "400 INVALID by extauthz, and no post written",
		run: func(t *testing.T, e *env) string {
			body := fmt.Sprintf(`{"query":%q,"query":%q,"variables":%s}`, usersQuery, createPost, jsonBody(createPostVars("duplicate")))
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "INVALID", byAuthz)
		},
	},
	{
		name: "case-twin-query-key", class: classRequest,
		does: "sends query (a users query) and Query (a createPost mutation)",
		want: "400 INVALID by extauthz, and no post written",
		run: func(t *testing.T, e *env) string {
			body := fmt.Sprintf(`{"query":%q,"Query":%q,"variables":%s}`, usersQuery, createPost, jsonBody(createPostVars("case twin")))
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "INVALID", byAuthz)
		},
	},
	{
		name: "escaped-twin-query-key", class: classRequest,
		does: `sends query and "\u0071uery" (the same name, escaped), the second a mutation`,
		want: "400 INVALID by extauthz, and no post written",
		run: func(t *testing.T, e *env) string {
			body := fmt.Sprintf(`{"query":%q,"\u0071uery":%q,"variables":%s}`, usersQuery, createPost, jsonBody(createPostVars("escaped")))
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "INVALID", byAuthz)
		},
	},
	{
		name: "duplicate-operation-name", class: classRequest,
		does: "sends a document of a query Q and a mutation M with operationName Q, then operationName M",
		want: "400 INVALID by extauthz, and no post written",
		run: func(t *testing.T, e *env) string {
			doc := "query Q { users { id } } " + strings.Replace(createPost, "mutation(", "mutation M(", 1)
			body := fmt.Sprintf(`{"query":%q,"operationName":"Q","operationName":"M","variables":%s}`, doc, jsonBody(createPostVars("two names")))
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "INVALID", byAuthz)
		},
	},
	{
		name: "case-twin-operation-name", class: classRequest,
		does: "sends operationName Q and OperationName M for a document holding both",
		want: "400 INVALID by extauthz, and no post written",
		run: func(t *testing.T, e *env) string {
			doc := "query Q { users { id } } " + strings.Replace(createPost, "mutation(", "mutation M(", 1)
			body := fmt.Sprintf(`{"query":%q,"operationName":"Q","OperationName":"M","variables":%s}`, doc, jsonBody(createPostVars("two names")))
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "INVALID", byAuthz)
		},
	},
	{
		name: "operation-name-selects-mutation", class: classRequest,
		does: "sends a document of a query Q and a mutation M, selecting M",
		want: "403 FORBIDDEN by extauthz: the policy decides on the operation the name selects; no post written",
		run: func(t *testing.T, e *env) string {
			doc := "query Q { users { id } } " + strings.Replace(createPost, "mutation(", "mutation M(", 1)
			body := jsonBody(map[string]any{"query": doc, "operationName": "M", "variables": createPostVars("selected")})
			return e.viewerBodyRefused(t, body, http.StatusForbidden, "FORBIDDEN", byAuthz)
		},
	},
	{
		name: "several-operations-without-name", class: classRequest,
		does: "sends a document of a query and a mutation without operationName",
		want: "400 by extauthz (no operation to decide on), and no post written",
		run: func(t *testing.T, e *env) string {
			doc := "query Q { users { id } } " + strings.Replace(createPost, "mutation(", "mutation M(", 1)
			body := jsonBody(map[string]any{"query": doc, "variables": createPostVars("unnamed")})
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "", byAuthz)
		},
	},
	{
		name: "batch-hides-mutation", class: classRequest,
		does: "sends a JSON array: a users query, then a createPost mutation",
		want: "400 by extauthz (batches are refused at the ingress), and no post written",
		run: func(t *testing.T, e *env) string {
			body := "[" + jsonBody(map[string]any{"query": usersQuery}) + "," +
				jsonBody(map[string]any{"query": createPost, "variables": createPostVars("batched")}) + "]"
			return e.viewerBodyRefused(t, body, http.StatusBadRequest, "", byAuthz)
		},
	},
	{
		name: "apq-query-text-with-mutation-hash", class: classRequest,
		does: "sends the text of a users query with the persisted hash of a registered createPost mutation",
		want: "403 FORBIDDEN by the server, and no post written: extauthz decided on the text, the server would run the hash's document, and the assertion names the operation decided on",
		run: func(t *testing.T, e *env) string {
			mutation, _ := e.registerAPQ(t)
			body := jsonBody(map[string]any{"query": usersQuery, "variables": createPostVars("hash swap"),
				"extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": mutation}}})
			return e.viewerBodyRefused(t, body, http.StatusForbidden, "FORBIDDEN", byCore)
		},
	},
	{
		name: "apq-mutation-hash-alone", class: classRequest,
		does: "a viewer sends only the persisted hash of a registered createPost mutation",
		want: "403 FORBIDDEN by extauthz, which decides on the stored document; no post written",
		run: func(t *testing.T, e *env) string {
			mutation, _ := e.registerAPQ(t)
			body := jsonBody(map[string]any{"variables": createPostVars("by hash"),
				"extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": mutation}}})
			return e.viewerBodyRefused(t, body, http.StatusForbidden, "FORBIDDEN", byAuthz)
		},
	},
	{
		name: "mutation-over-get", class: classRequest,
		does: "an admin sends createPost as GET /graphql?query=... (a link a victim's browser could follow)",
		want: "405 METHOD_NOT_ALLOWED, and no post written",
		run: func(t *testing.T, e *env) string {
			q := url.Values{"query": {createPost}, "variables": {jsonBody(createPostVars("over GET"))}}
			req, _ := http.NewRequest(http.MethodGet, "https://"+e.s.Addrs.Gateway+"/graphql?"+q.Encode(), nil)
			req.Header.Set("Authorization", "Bearer "+e.token(t, acme, "alice", "admin"))
			posts, before := e.posts(t, acme), e.counts(t)
			status, g := doJSON(t, e.s.Client, req)
			got := e.refused(t, before, status, g, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "")
			if n := e.posts(t, acme); n != posts {
				t.Errorf("Acme has %d posts, had %d: the mutation ran", n, posts)
			}
			return got + "; no post written"
		},
	},
	{
		name: "mutation-as-form-post", class: classRequest,
		does: "an admin's createPost sent as a form POST (Content-Type application/x-www-form-urlencoded, what a cross-site form can send)",
		want: "refused (415 or 400), and no post written",
		run: func(t *testing.T, e *env) string {
			body := jsonBody(map[string]any{"query": createPost, "variables": createPostVars("form")})
			req, _ := http.NewRequest(http.MethodPost, "https://"+e.s.Addrs.Gateway+"/graphql", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Bearer "+e.token(t, acme, "alice", "admin"))
			posts, before := e.posts(t, acme), e.counts(t)
			status, g := doJSON(t, e.s.Client, req)
			by := e.by(t, before)
			if status != http.StatusUnsupportedMediaType && status != http.StatusBadRequest || g.HasData() {
				t.Errorf("got %d %+v, want 415 or 400 and no data", status, g.Errors)
			}
			if n := e.posts(t, acme); n != posts {
				t.Errorf("Acme has %d posts, had %d: the mutation ran", n, posts)
			}
			return fmt.Sprintf("refused %d %s by %s; no post written", status, g.Code(), by)
		},
	},
}

func createPostVars(title string) map[string]any {
	return map[string]any{"in": map[string]any{"title": title, "authorId": aliceID}}
}

// registerAPQ registers, as Acme's admin, the createPost mutation and the
// users query as persisted operations, and returns their hashes. The
// registration writes a post.
func (e *env) registerAPQ(t *testing.T) (mutation, query string) {
	t.Helper()
	admin := e.token(t, acme, "alice", "admin")
	mutation, query = core.DocumentHash(createPost), core.DocumentHash(usersQuery)
	for _, r := range []map[string]any{
		{"query": createPost, "variables": createPostVars("registered"), "extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": mutation}}},
		{"query": usersQuery, "extensions": map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": query}}},
	} {
		if status, g := e.s.GraphQL(t, admin, r); status != http.StatusOK || len(g.Errors) > 0 {
			t.Fatalf("registering: got %d %+v", status, g.Errors)
		}
	}
	return mutation, query
}

// viewerBodyRefused sends body as Acme's viewer and checks it is refused
// with status and code ("" for any) by layer, and that Acme's posts are as
// they were.
func (e *env) viewerBodyRefused(t *testing.T, body string, status int, code, layer string) string {
	t.Helper()
	posts, before := e.posts(t, acme), e.counts(t)
	got, _, g := e.post(t, e.s.Client, e.token(t, acme, "victor", "viewer"), body, nil)
	if code == "" {
		code = g.Code()
	}
	report := e.refused(t, before, got, g, status, code, layer)
	if n := e.posts(t, acme); n != posts {
		t.Errorf("Acme has %d posts, had %d: the mutation ran", n, posts)
	}
	return report + "; no post written"
}
