package httpapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/assertion"
	"github.com/fraise-dev/fraise/core/graphql"
)

// echoEngine answers with the principal it was given, so the tests see what
// the handler passed on; the engine itself is tested against PostgreSQL.
type echoEngine struct{}

func (echoEngine) Execute(ctx context.Context, req graphql.Request) *graphql.Response {
	if strings.Contains(req.Query, "syntax error") {
		return &graphql.Response{Errors: []*graphql.Error{{Message: "bad", Extensions: map[string]any{"code": graphql.CodeParseFailed}}}}
	}
	p, _ := core.PrincipalFrom(ctx)
	b, _ := json.Marshal(map[string]string{"tenant": p.Tenant, "query": req.Query})
	return &graphql.Response{Data: b}
}

func mustHandler(tb testing.TB) (http.Handler, string) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	kid := assertion.KeyID(pub)
	signer, err := assertion.NewSigner(priv, kid, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := signer.Sign(core.Principal{Subject: "alice", Tenant: "11111111-1111-4111-8111-111111111111"}, "r1")
	if err != nil {
		tb.Fatal(err)
	}
	h := httpapi.NewHandler(httpapi.Options{
		Verifier: assertion.NewVerifier(map[string]ed25519.PublicKey{kid: pub}, nil),
		Engine:   echoEngine{}, MaxBodyBytes: 1024, Metrics: httpapi.NewMetrics(),
	})
	return h, tok
}

func TestGraphQLOverHTTP(t *testing.T) {
	h, tok := mustHandler(t)
	tests := []struct {
		name        string
		method      string
		target      string
		body        string
		headers     map[string]string
		noAssertion bool
		wantStatus  int
		wantType    string
		wantCode    string
	}{
		{name: "POST json", method: "POST", body: `{"query":"{ users { id } }"}`, wantStatus: 200, wantType: "application/json"},
		{name: "GET query", method: "GET", target: "/graphql?query=%7B+users+%7B+id+%7D+%7D", wantStatus: 200, wantType: "application/json"},
		{name: "graphql-response+json preferred", method: "POST", body: `{"query":"{ users { id } }"}`,
			headers: map[string]string{"Accept": "application/graphql-response+json, application/json"}, wantStatus: 200, wantType: "application/graphql-response+json"},
		{name: "request error is 400 with graphql-response+json", method: "POST", body: `{"query":"syntax error"}`,
			headers: map[string]string{"Accept": "application/graphql-response+json"}, wantStatus: 400, wantCode: graphql.CodeParseFailed},
		{name: "request error is 200 with application/json", method: "POST", body: `{"query":"syntax error"}`, wantStatus: 200, wantCode: graphql.CodeParseFailed},
		{name: "no assertion", method: "POST", body: `{"query":"{ users { id } }"}`, noAssertion: true, wantStatus: 401, wantCode: "UNAUTHENTICATED"},
		{name: "forged assertion", method: "POST", body: `{"query":"{ users { id } }"}`, noAssertion: true,
			headers: map[string]string{assertion.Header: "eyJhbGciOiJFZERTQSJ9.e30.AAAA"}, wantStatus: 401, wantCode: "UNAUTHENTICATED"},
		{name: "wrong content type", method: "POST", body: `{"query":"{ users { id } }"}`, headers: map[string]string{"Content-Type": "text/plain"}, wantStatus: 415, wantCode: "INVALID"},
		{name: "body not JSON", method: "POST", body: `{"query":`, wantStatus: 400, wantCode: "INVALID"},
		{name: "body too large", method: "POST", body: `{"query":"` + strings.Repeat("x", 2000) + `"}`, wantStatus: 413, wantCode: "TOO_LARGE"},
		{name: "missing query", method: "POST", body: `{}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "bad variables on GET", method: "GET", target: "/graphql?query=x&variables=%5B", wantStatus: 400, wantCode: "INVALID"},
		{name: "other methods", method: "PUT", body: `{}`, wantStatus: 405, wantCode: "INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.target
			if target == "" {
				target = "/graphql"
			}
			req := httptest.NewRequest(tt.method, target, strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if !tt.noAssertion {
				req.Header.Set(assertion.Header, tok)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("got status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantType != "" && !strings.HasPrefix(rec.Header().Get("Content-Type"), tt.wantType) {
				t.Errorf("got Content-Type %q, want %s", rec.Header().Get("Content-Type"), tt.wantType)
			}
			var body struct {
				Data   json.RawMessage `json:"data"`
				Errors []struct {
					Extensions map[string]any `json:"extensions"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %q", rec.Body)
			}
			if tt.wantCode != "" {
				if len(body.Errors) == 0 || body.Errors[0].Extensions["code"] != tt.wantCode {
					t.Fatalf("got errors %+v, want code %s", body.Errors, tt.wantCode)
				}
				return
			}
			if !strings.Contains(string(body.Data), "11111111-1111-4111-8111-111111111111") {
				t.Fatalf("got data %s, want the asserted tenant passed to the engine", body.Data)
			}
		})
	}
}

func TestAdmin(t *testing.T) {
	health := &httpapi.Health{}
	m := httpapi.NewMetrics()
	h := httpapi.NewAdminHandler(health, m.Handler())
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if got := get("/readyz"); got != 200 {
		t.Fatalf("readyz: got %d, want 200", got)
	}
	health.Drain()
	if got := get("/readyz"); got != 503 {
		t.Fatalf("readyz while draining: got %d, want 503", got)
	}
	if got := get("/healthz"); got != 200 {
		t.Fatalf("healthz while draining: got %d, want 200 (alive)", got)
	}
	if got := get("/metrics"); got != 200 {
		t.Fatalf("metrics: got %d, want 200", got)
	}
}
