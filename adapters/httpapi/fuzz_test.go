package httpapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/internal/assertion"
)

// FuzzHandler throws arbitrary methods, query strings, bodies, Accept and
// Content-Type headers at the handler: it must never panic, and must always
// answer a known status with a JSON body in a GraphQL media type that holds
// data or an error with extensions.code.
func FuzzHandler(f *testing.F) {
	seeds := []struct{ method, query, body, accept, ctype string }{
		{"POST", "", `{"query":"{ a }"}`, "", "application/json"},
		{"POST", "", `[{"query":"{ a }"},{"query":"{ b }"}]`, "application/graphql-response+json", "application/json; charset=utf-8"},
		{"GET", "query=%7B+a+%7D&variables=%7B%7D", "", "*/*;q=0.5, application/json", ""},
		{"GET", "query=mutation+%7B+a+%7D", "", "application/graphql-response+json;q=1.0", ""},
		{"POST", "", `{"query":0,"variables":"x"}`, "text/html", "text/plain"},
		{"PUT", "", `{`, "application/*;q=abc", "application/json;charset=utf-16"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.query, s.body, s.accept, s.ctype)
	}
	h, tok := mustHandler(f, 2)
	allowed := map[int]bool{200: true, 400: true, 401: true, 403: true, 405: true, 406: true, 413: true, 415: true, 429: true, 503: true}
	f.Fuzz(func(t *testing.T, method, query, body, accept, ctype string) {
		if method != "GET" && method != "POST" {
			method = "PUT" // NewRequest refuses invalid method tokens; any other is one case
		}
		req := httptest.NewRequest(method, "/graphql", strings.NewReader(body))
		req.URL.RawQuery = query
		// The assertion extauthz would issue for this request; the
		// handler's own reading must match it.
		req.Header.Set(assertion.Header, assertionFor(tok, httpCase{method: method, target: "/graphql?" + query, body: body}))
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("got status %d, want one of the documented ones", rec.Code)
		}
		ct := rec.Header().Get("Content-Type")
		if ct != "application/json; charset=utf-8" && ct != "application/graphql-response+json; charset=utf-8" {
			t.Fatalf("got Content-Type %q", ct)
		}
		raw := rec.Body.Bytes()
		if strings.HasPrefix(rec.Body.String(), "[") {
			var batch []json.RawMessage
			if err := json.Unmarshal(raw, &batch); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("got batch answer %d %q", rec.Code, raw)
			}
			return
		}
		var out struct {
			Data   json.RawMessage `json:"data"`
			Errors []struct {
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("body is not JSON: %q", raw)
		}
		if out.Data == nil && (len(out.Errors) == 0 || out.Errors[0].Extensions["code"] == nil) {
			t.Fatalf("got neither data nor an error code: %q", raw)
		}
		if rec.Code != http.StatusOK && out.Data != nil {
			t.Fatalf("got data in a %d answer: %q", rec.Code, raw)
		}
	})
}
