package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/graphql/request"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
)

const tenant = "11111111-1111-4111-8111-111111111111"

// echoEngine answers with what the handler passed it (the principal's tenant
// and the request), so the tests see it; words in the query pick the
// engine's failure modes, and "fail CODE" a request error with that code. The engine itself is tested against PostgreSQL.
type echoEngine struct{}

func (echoEngine) Execute(ctx context.Context, req graphql.Request) *graphql.Response {
	fail := func(code string) *graphql.Response {
		return &graphql.Response{Errors: []*graphql.Error{{Message: "refused", Extensions: map[string]any{"code": code}}}}
	}
	switch {
	case strings.HasPrefix(req.Query, "fail "):
		return fail(strings.TrimPrefix(req.Query, "fail "))
	case strings.Contains(req.Query, "syntax error"):
		return fail(graphql.CodeParseFailed)
	case strings.Contains(req.Query, "unknownField"):
		return fail(graphql.CodeValidationFailed)
	case strings.Contains(req.Query, "overBudget"):
		return fail(string(core.CodeRateLimited))
	case strings.Contains(req.Query, "persistedMutation"):
		return fail("MUTATION_NOT_ALLOWED")
	case strings.Contains(req.Query, "asBuilt"):
		return &graphql.Response{Data: json.RawMessage(`{"a": [1, 2], "tenant": "` + tenant + `"}`)}
	case strings.Contains(req.Query, "databaseDown"):
		return &graphql.Response{Data: json.RawMessage("null"), Errors: []*graphql.Error{{Message: "service unavailable",
			Extensions: map[string]any{"code": string(core.CodeUnavailable)}}}}
	}
	p, _ := core.PrincipalFrom(ctx)
	b, _ := json.Marshal(map[string]any{"tenant": p.Tenant, "query": req.Query, "operationName": req.OperationName,
		"variables": req.Variables, "extensions": req.Extensions})
	return &graphql.Response{Data: b}
}

// mustHandler returns a handler verifying assertions with a fresh key, and
// the signer of that key: serve signs each request's assertion with it, as
// extauthz does, bound to that request.
func mustHandler(tb testing.TB, maxBatch int) (http.Handler, *assertion.Signer) {
	tb.Helper()
	return mustHandlerMetrics(tb, maxBatch, httpapi.NewMetrics())
}

// mustHandlerMetrics is mustHandler recording into m.
func mustHandlerMetrics(tb testing.TB, maxBatch int, m *httpapi.Metrics) (http.Handler, *assertion.Signer) {
	tb.Helper()
	signer, keys := assertiontest.New(tb, nil)
	h := httpapi.NewHandler(httpapi.Options{
		Verifier: assertion.NewVerifier(keys, nil),
		Engine:   echoEngine{}, MaxBodyBytes: 1024, MaxBatch: maxBatch, Metrics: m,
	})
	return h, signer
}

var alice = core.Principal{Subject: "alice", Tenant: tenant}

// assertionFor is the assertion extauthz issues for tt's request.
func assertionFor(s *assertion.Signer, tt httpCase) string {
	target := tt.target
	if target == "" {
		target = "/graphql"
	}
	tok, err := s.Sign(alice, assertiontest.RequestID(), assertiontest.GraphQL(tt.method, target, []byte(tt.body)))
	if err != nil {
		panic(err)
	}
	return tok
}

type httpCase struct {
	name   string
	method string
	target string // default /graphql
	body   string
	// headers replace the defaults (Content-Type: application/json and the
	// assertion); an empty value removes the header.
	headers    map[string]string
	wantStatus int
	wantType   string // Content-Type media type, checked when set
	wantCode   string // errors[0].extensions.code, checked when set
	wantAllow  string
	wantData   string // a substring of data, checked when set
}

// Two well-formed persisted-query hashes.
var (
	hashA = core.DocumentHash("{ a }")
	hashB = core.DocumentHash("{ b }")
)

const (
	gr   = httpapi.MediaGraphQLResponse
	js   = httpapi.MediaJSON
	okQ  = `{"query":"{ users { id } }"}`
	grAc = "application/graphql-response+json"
)

func get(params ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		v.Set(params[i], params[i+1])
	}
	return "/graphql?" + v.Encode()
}

func TestGraphQLOverHTTP(t *testing.T) {
	tests := []httpCase{
		// Methods and parameters.
		{name: "POST json", method: "POST", body: okQ, wantStatus: 200, wantType: js, wantData: tenant},
		{name: "GET query", method: "GET", target: get("query", "{ users { id } }"), wantStatus: 200, wantType: js, wantData: "users"},
		{name: "GET variables operationName extensions", method: "GET",
			target:     get("query", "query Q($n: Int) { users(limit: $n) { id } }", "operationName", "Q", "variables", `{"n":2}`, "extensions", `{"k":"v"}`),
			wantStatus: 200, wantData: `"variables":{"n":2}`},
		{name: "GET missing query", method: "GET", target: get("operationName", "Q"), wantStatus: 400, wantCode: "INVALID"},
		{name: "GET variables not JSON", method: "GET", target: get("query", "{ a }", "variables", "["), wantStatus: 400, wantCode: "INVALID"},
		{name: "GET variables an array", method: "GET", target: get("query", "{ a }", "variables", "[1]"), wantStatus: 400, wantCode: "INVALID"},
		{name: "GET extensions not an object", method: "GET", target: get("query", "{ a }", "extensions", `"x"`), wantStatus: 400, wantCode: "INVALID"},
		{name: "GET bad URL encoding", method: "GET", target: "/graphql?query=%zz", wantStatus: 400, wantCode: "INVALID"},
		{name: "GET mutation is 405", method: "GET", target: get("query", "mutation { createPost { id } }"),
			wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED", wantAllow: "POST"},
		{name: "GET mutation picked by operationName is 405", method: "GET",
			target:     get("query", "query Q { a } mutation M { b }", "operationName", "M"),
			wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED", wantAllow: "POST"},
		{name: "GET query picked beside a mutation runs", method: "GET",
			target: get("query", "query Q { a } mutation M { b }", "operationName", "Q"), wantStatus: 200, wantData: "query Q"},
		{name: "GET mutation under graphql-response+json is 405", method: "GET", target: get("query", "mutation { b }"),
			headers: map[string]string{"Accept": grAc}, wantStatus: 405, wantType: gr, wantCode: "METHOD_NOT_ALLOWED", wantAllow: "POST"},
		{name: "GET of a mutation only the engine recognizes is 405", method: "GET", target: get("query", "{ persistedMutation }"),
			headers: map[string]string{"Accept": grAc}, wantStatus: 405, wantType: gr, wantCode: "METHOD_NOT_ALLOWED", wantAllow: "POST"},
		{name: "PUT is 405", method: "PUT", body: okQ, wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED", wantAllow: "GET, POST"},
		{name: "DELETE is 405", method: "DELETE", wantStatus: 405, wantCode: "METHOD_NOT_ALLOWED", wantAllow: "GET, POST"},
		{name: "null optional parameters", method: "POST", body: `{"query":"{ a }","operationName":null,"variables":null,"extensions":null}`,
			wantStatus: 200, wantData: `"query":"{ a }"`},
		{name: "variables passed on", method: "POST", body: `{"query":"query($n: Int) { a }","variables":{"n":3}}`,
			wantStatus: 200, wantData: `"variables":{"n":3}`},
		{name: "unknown keys ignored", method: "POST", body: `{"query":"{ a }","foo":1}`, wantStatus: 200},
		{name: "persisted query hash without a document", method: "POST",
			body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hashA + `"}}}`, wantStatus: 200, wantData: "sha256Hash"},
		{name: "persisted query hash not hex", method: "POST",
			body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"abc"}}}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "persisted query version 2", method: "POST",
			body: `{"extensions":{"persistedQuery":{"version":2,"sha256Hash":"` + hashA + `"}}}`, wantStatus: 400, wantCode: "INVALID"},

		// Keys read one way by one JSON reader and another way by another
		// are refused (security #13, defect 1).
		{name: "sha256Hash and its case twin", method: "POST",
			body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hashA + `","Sha256Hash":"` + hashB + `"}}}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "sha256Hash twice", method: "POST",
			body: `{"extensions":{"persistedQuery":{"sha256Hash":"` + hashA + `","sha256Hash":"` + hashB + `"}}}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "persistedQuery's case twin", method: "POST",
			body: `{"query":"{ a }","extensions":{"PersistedQuery":{"sha256Hash":"` + hashA + `"}}}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "query's case twin", method: "POST", body: `{"query":"{ a }","Query":"{ b }"}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "a case twin alone", method: "POST", body: `{"QUERY":"{ a }"}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "query twice", method: "POST", body: `{"query":"{ a }","query":"{ b }"}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "a variable twice", method: "POST", body: `{"query":"{ a }","variables":{"n":1,"n":2}}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "a key twice deep in an unknown key", method: "POST", body: `{"query":"{ a }","x":[{"y":{"z":1,"z":1}}]}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "variables differing in case are two variables", method: "POST", body: `{"query":"{ a }","variables":{"n":1,"N":2}}`,
			wantStatus: 200, wantData: `"N":2`},
		{name: "GET parameter twice", method: "GET", target: "/graphql?query=%7B+a+%7D&query=%7B+b+%7D", wantStatus: 400, wantCode: "INVALID"},
		{name: "GET parameter's case twin", method: "GET", target: "/graphql?query=%7B+a+%7D&Query=%7B+b+%7D", wantStatus: 400, wantCode: "INVALID"},
		{name: "GET extensions with a key twice", method: "GET", target: get("query", "{ a }", "extensions", `{"k":1,"k":2}`), wantStatus: 400, wantCode: "INVALID"},
		{name: "missing query", method: "POST", body: `{}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "misspelt query", method: "POST", body: `{"qeury":"{ a }"}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "query an object", method: "POST", body: `{"query":{"obj":"ect"}}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "query a number", method: "POST", body: `{"query":0}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "operationName an array", method: "POST", body: `{"query":"{ a }","operationName":["x"]}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "variables a string", method: "POST", body: `{"query":"{ a }","variables":"x"}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "extensions false", method: "POST", body: `{"query":"{ a }","extensions":false}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "body a JSON string", method: "POST", body: `"{ a }"`, wantStatus: 400, wantCode: "INVALID"},
		{name: "body not JSON", method: "POST", body: `{ "not a JSON`, wantStatus: 400, wantCode: "INVALID"},
		{name: "body not JSON under graphql-response+json", method: "POST", body: `{ "not a JSON`,
			headers: map[string]string{"Accept": grAc}, wantStatus: 400, wantType: gr, wantCode: "INVALID"},
		{name: "trailing data after the object", method: "POST", body: `{"query":"{ a }"} {}`, wantStatus: 400, wantCode: "INVALID"},
		{name: "empty body", method: "POST", wantStatus: 400, wantCode: "INVALID"},
		{name: "body too large", method: "POST", body: `{"query":"` + strings.Repeat("x", 2000) + `"}`, wantStatus: 413, wantCode: "TOO_LARGE"},
		{name: "batch refused when off", method: "POST", body: `[` + okQ + `]`, wantStatus: 400, wantCode: "BATCH_DISABLED"},

		// Content-Type of the request.
		{name: "charset utf-8 accepted", method: "POST", body: okQ, headers: map[string]string{"Content-Type": "application/json; charset=UTF-8"}, wantStatus: 200},
		{name: "text/plain is 415", method: "POST", body: okQ, headers: map[string]string{"Content-Type": "text/plain"}, wantStatus: 415, wantCode: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "no Content-Type is 415", method: "POST", body: okQ, headers: map[string]string{"Content-Type": ""}, wantStatus: 415, wantCode: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "form encoding is 415", method: "POST", body: "query=x", headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, wantStatus: 415, wantCode: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "charset utf-16 is 415", method: "POST", body: okQ, headers: map[string]string{"Content-Type": "application/json; charset=utf-16"}, wantStatus: 415, wantCode: "UNSUPPORTED_MEDIA_TYPE"},

		// Accept negotiation.
		{name: "no Accept is application/json", method: "POST", body: okQ, wantStatus: 200, wantType: js},
		{name: "graphql-response+json preferred when both listed", method: "POST", body: okQ,
			headers: map[string]string{"Accept": "application/graphql-response+json, application/json"}, wantStatus: 200, wantType: gr},
		{name: "graphql-response+json alone", method: "POST", body: okQ, headers: map[string]string{"Accept": grAc}, wantStatus: 200, wantType: gr},
		{name: "*/* is application/json", method: "POST", body: okQ, headers: map[string]string{"Accept": "*/*"}, wantStatus: 200, wantType: js},
		{name: "application/* is application/json", method: "POST", body: okQ, headers: map[string]string{"Accept": "application/*"}, wantStatus: 200, wantType: js},
		{name: "q decides", method: "POST", body: okQ,
			headers: map[string]string{"Accept": "application/graphql-response+json;q=0.5, application/json"}, wantStatus: 200, wantType: js},
		{name: "q decides the other way", method: "POST", body: okQ,
			headers: map[string]string{"Accept": "application/json;q=0.2, application/graphql-response+json;q=0.9"}, wantStatus: 200, wantType: gr},
		{name: "explicit beats a wildcard at equal q", method: "POST", body: okQ,
			headers: map[string]string{"Accept": "*/*, application/graphql-response+json"}, wantStatus: 200, wantType: gr},
		{name: "text/html is 406", method: "POST", body: okQ, headers: map[string]string{"Accept": "text/html"}, wantStatus: 406, wantType: js, wantCode: "NOT_ACCEPTABLE"},
		{name: "q=0 is 406", method: "POST", body: okQ, headers: map[string]string{"Accept": "application/json;q=0"}, wantStatus: 406, wantCode: "NOT_ACCEPTABLE"},
		{name: "*/* excluded by q=0 is 406", method: "GET", target: get("query", "{ a }"), headers: map[string]string{"Accept": "*/*;q=0"}, wantStatus: 406, wantCode: "NOT_ACCEPTABLE"},

		// Status codes of executed requests.
		{name: "parse error is 400 with graphql-response+json", method: "POST", body: `{"query":"syntax error"}`,
			headers: map[string]string{"Accept": grAc}, wantStatus: 400, wantType: gr, wantCode: graphql.CodeParseFailed},
		{name: "parse error is 200 with application/json", method: "POST", body: `{"query":"syntax error"}`,
			headers: map[string]string{"Accept": js}, wantStatus: 200, wantType: js, wantCode: graphql.CodeParseFailed},
		{name: "validation error is 400 with graphql-response+json", method: "POST", body: `{"query":"{ unknownField }"}`,
			headers: map[string]string{"Accept": grAc}, wantStatus: 400, wantCode: graphql.CodeValidationFailed},
		{name: "validation error is 200 with application/json", method: "POST", body: `{"query":"{ unknownField }"}`,
			wantStatus: 200, wantCode: graphql.CodeValidationFailed},
		{name: "a request error with a core code takes its status", method: "POST", body: `{"query":"{ overBudget }"}`,
			headers: map[string]string{"Accept": grAc}, wantStatus: 429, wantCode: string(core.CodeRateLimited)},
		{name: "data null is 200 with graphql-response+json", method: "POST", body: `{"query":"{ databaseDown }"}`,
			headers: map[string]string{"Accept": grAc}, wantStatus: 200, wantType: gr, wantCode: string(core.CodeUnavailable)},
		{name: "GET parse error is 400 with graphql-response+json", method: "GET", target: get("query", "syntax error"),
			headers: map[string]string{"Accept": grAc}, wantStatus: 400, wantCode: graphql.CodeParseFailed},

		// Identity.
		{name: "no assertion is 401", method: "POST", body: okQ, headers: map[string]string{assertion.Header: ""},
			wantStatus: 401, wantType: js, wantCode: "UNAUTHENTICATED"},
		{name: "forged assertion is 401", method: "POST", body: okQ, headers: map[string]string{assertion.Header: "eyJhbGciOiJFZERTQSJ9.e30.AAAA"},
			wantStatus: 401, wantCode: "UNAUTHENTICATED"},
		{name: "401 comes before any other refusal", method: "PUT", headers: map[string]string{assertion.Header: "", "Accept": "text/html"},
			wantStatus: 401, wantCode: "UNAUTHENTICATED"},
	}
	h, tok := mustHandler(t, 0)
	runHTTPCases(t, h, tok, tests)
}

// TestRequestErrorStatus shows the status and Retry-After of a response
// without data under application/graphql-response+json: the server's
// failures (a persisted-document lookup that timed out or found the
// database unavailable) are 5xx, not the client's 400, and a 503 or 429
// says when to retry, as every other of the project's does.
func TestRequestErrorStatus(t *testing.T) {
	h, tok := mustHandler(t, 0)
	tests := []struct {
		code       string
		accept     string
		wantStatus int
		wantRetry  string
	}{
		{code: graphql.CodeStatementTimeout, accept: grAc, wantStatus: 504},
		{code: string(core.CodeTimeout), accept: grAc, wantStatus: 504},
		{code: string(core.CodeUnavailable), accept: grAc, wantStatus: 503, wantRetry: "1"},
		{code: string(core.CodeRateLimited), accept: grAc, wantStatus: 429, wantRetry: "1"},
		{code: string(core.CodeInternal), accept: grAc, wantStatus: 500},
		{code: graphql.CodePersistedNotFound, accept: grAc, wantStatus: 400},
		{code: graphql.CodeStatementTimeout, accept: js, wantStatus: 200},
		{code: string(core.CodeUnavailable), accept: js, wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.code+" "+tt.accept, func(t *testing.T) {
			rec := serve(h, tok, httpCase{method: "POST", body: `{"query":"fail ` + tt.code + `"}`,
				headers: map[string]string{"Accept": tt.accept}})
			if rec.Code != tt.wantStatus {
				t.Fatalf("got status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("got Retry-After %q, want %q", got, tt.wantRetry)
			}
			if !strings.Contains(rec.Body.String(), `"code":"`+tt.code+`"`) {
				t.Errorf("got body %s, want the engine's error with code %s", rec.Body, tt.code)
			}
		})
	}
}

func TestBatch(t *testing.T) {
	tests := []httpCase{
		// The assertion names one operation: a batch runs when every
		// entry is that operation (extauthz refuses batches, so only a
		// core spoken to directly sees one).
		{name: "batch within the limit", method: "POST", body: `[{"query":"{ a }"},{"query":"{ a }","variables":{"x":1}}]`, wantStatus: 200},
		{name: "batch of two operations", method: "POST", body: `[{"query":"{ a }"},{"query":"{ b }"}]`, wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "batch over the limit", method: "POST", body: `[{"query":"{ a }"},{"query":"{ b }"},{"query":"{ c }"}]`,
			wantStatus: 400, wantCode: "BATCH_LIMIT_EXCEEDED"},
		{name: "empty batch", method: "POST", body: `[]`, wantStatus: 400, wantCode: "INVALID"},
		{name: "batch entry without a query", method: "POST", body: `[{"query":"{ a }"},{}]`, wantStatus: 400, wantCode: "INVALID"},
		{name: "batch entry not an object", method: "POST", body: `[1]`, wantStatus: 400, wantCode: "INVALID"},
		{name: "batch not JSON", method: "POST", body: `[{"query":`, wantStatus: 400, wantCode: "INVALID"},
	}
	h, tok := mustHandler(t, 2)
	runHTTPCases(t, h, tok, tests)

	rec := serve(h, tok, httpCase{method: "POST", body: `[{"query":"{ a }"},{"query":"{ a }","variables":{"x":1}}]`, headers: map[string]string{"Accept": grAc}})
	var out []struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("batch response is not a JSON array: %s", rec.Body)
	}
	if rec.Code != 200 || len(out) != 2 {
		t.Fatalf("got status %d and %d responses, want 200 and 2: %s", rec.Code, len(out), rec.Body)
	}
	if !strings.Contains(string(out[0].Data), `"variables":null`) || len(out[0].Errors) != 0 {
		t.Errorf("got first response %s %v, want the first request's data", out[0].Data, out[0].Errors)
	}
	if !strings.Contains(string(out[1].Data), `"variables":{"x":1}`) || len(out[1].Errors) != 0 {
		t.Errorf("got second response %s %v, want the second request's data", out[1].Data, out[1].Errors)
	}
}

// serve sends tt's request to h with the assertion s signs for it (unless
// tt's headers set another).
func serve(h http.Handler, s *assertion.Signer, tt httpCase) *httptest.ResponseRecorder {
	target := tt.target
	if target == "" {
		target = "/graphql"
	}
	req := httptest.NewRequest(tt.method, target, strings.NewReader(tt.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(assertion.Header, assertionFor(s, tt))
	for k, v := range tt.headers {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func runHTTPCases(t *testing.T, h http.Handler, tok *assertion.Signer, tests []httpCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(h, tok, tt)
			if rec.Code != tt.wantStatus {
				t.Fatalf("got status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			ct := rec.Header().Get("Content-Type")
			if tt.wantType != "" && ct != tt.wantType+"; charset=utf-8" {
				t.Errorf("got Content-Type %q, want %s; charset=utf-8", ct, tt.wantType)
			}
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("got Allow %q, want %q", got, tt.wantAllow)
			}
			if tt.wantStatus == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("got no WWW-Authenticate on a 401")
			}
			if strings.HasPrefix(rec.Body.String(), "[") {
				return // a batch; TestBatch reads it
			}
			var body struct {
				Data   json.RawMessage `json:"data"`
				Errors []struct {
					Message    string         `json:"message"`
					Extensions map[string]any `json:"extensions"`
				} `json:"errors"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body is not JSON: %q", rec.Body)
			}
			if tt.wantCode != "" {
				if len(body.Errors) == 0 || body.Errors[0].Extensions["code"] != tt.wantCode || body.Errors[0].Message == "" {
					t.Fatalf("got errors %+v, want a message and code %s", body.Errors, tt.wantCode)
				}
				if tt.wantStatus >= 400 && tt.wantStatus != 429 && body.Data != nil {
					t.Errorf("got data %s in a %d response, want none", body.Data, tt.wantStatus)
				}
				return
			}
			if len(body.Errors) != 0 {
				t.Fatalf("got errors %+v, want none", body.Errors)
			}
			if !strings.Contains(string(body.Data), tenant) {
				t.Fatalf("got data %s, want the asserted tenant passed to the engine", body.Data)
			}
			if tt.wantData != "" && !strings.Contains(string(body.Data), tt.wantData) {
				t.Fatalf("got data %s, want it to contain %s", body.Data, tt.wantData)
			}
		})
	}
}

// TestDataAsBuilt shows data written as the engine built it (in
// PostgreSQL), not re-encoded, under either media type.
func TestDataAsBuilt(t *testing.T) {
	h, tok := mustHandler(t, 0)
	for _, accept := range []string{js, gr} {
		rec := serve(h, tok, httpCase{method: "POST", body: `{"query":"{ asBuilt }"}`, headers: map[string]string{"Accept": accept}})
		want := `{"data":{"a": [1, 2], "tenant": "` + tenant + `"}}`
		if rec.Code != 200 || rec.Body.String() != want {
			t.Fatalf("Accept %s: got %d %s, want 200 %s", accept, rec.Code, rec.Body, want)
		}
		if got := rec.Header().Get("Content-Length"); got != strconv.Itoa(len(want)) {
			t.Errorf("got Content-Length %s, want %d", got, len(want))
		}
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

// TestMethodLabelIsBounded shows the request metrics keeping a handful of
// series however many methods clients invent: each distinct label value
// would otherwise be a series kept for the life of the process.
func TestMethodLabelIsBounded(t *testing.T) {
	m := httpapi.NewMetrics()
	h, tok := mustHandlerMetrics(t, 0, m)
	methods := []string{"GET", "POST", "HEAD", "OPTIONS", "PUT"}
	for i := range 100 {
		methods = append(methods, "M"+strconv.Itoa(i))
	}
	for _, method := range methods {
		serve(h, tok, httpCase{method: method, target: get("query", "{ a }"), body: okQ})
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]map[string]bool{} // metric name -> method label values
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "fraise_http_request") {
			continue
		}
		seen[f.GetName()] = map[string]bool{}
		for _, metric := range f.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == "method" {
					seen[f.GetName()][l.GetValue()] = true
				}
			}
		}
	}
	want := map[string]bool{"GET": true, "POST": true, "other": true}
	for _, name := range []string{"fraise_http_requests_total", "fraise_http_request_duration_seconds"} {
		got := seen[name]
		if len(got) != len(want) {
			t.Errorf("%s: got method labels %v, want exactly %v", name, got, want)
			continue
		}
		for v := range want {
			if !got[v] {
				t.Errorf("%s: got method labels %v, want exactly %v", name, got, want)
			}
		}
	}
}

// TestVerifyAssertionOnce shows a request behind VerifyAssertion verified
// once although admission and the handler both need its identity, and
// a request whose assertion is bad, or swapped after the outer layer
// verified it, still refused.
func TestVerifyAssertionOnce(t *testing.T) {
	signer, keys := assertiontest.New(t, nil)
	// Each subtest presents a fresh assertion: a spent one is refused.
	var tok string
	fresh := func() string {
		tok = assertionFor(signer, httpCase{method: "POST", body: okQ})
		return tok
	}
	// Verify reads the clock once per token whose signature holds: the
	// count of successful verifications. A swapped token is refused, so it
	// was verified anew rather than taken from the outer layer. The replay
	// cache keeps a clock of its own, out of the count.
	var verifications atomic.Int64
	v := assertion.NewVerifier(keys, func() time.Time {
		verifications.Add(1)
		return time.Now()
	})
	v.SetReplayCache(assertion.NewReplayCache(100, nil))
	api := httpapi.NewHandler(httpapi.Options{Verifier: v, Engine: echoEngine{}})
	var tenants []string
	ctrl := admission.New(admission.Options{MaxConcurrent: 4, MaxPerTenant: 4})
	admitTenant := httpapi.TenantFromAssertion(v)
	swap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Swap") != "" {
				r.Header.Set(assertion.Header, tok[:len(tok)-4]+"AAAA")
			}
			next.ServeHTTP(w, r)
		})
	}
	h := httpapi.VerifyAssertion(swap(httpapi.Admit(api, httpapi.AdmissionOptions{Controller: ctrl,
		Tenant: func(r *http.Request) string { t := admitTenant(r); tenants = append(tenants, t); return t }})), v)
	tests := []struct {
		name       string
		token      func() string
		swap       bool
		wantStatus int
		wantTenant string
		wantVerify int64
	}{
		{name: "valid", token: fresh, wantStatus: 200, wantTenant: tenant, wantVerify: 1},
		{name: "bad signature", token: func() string { t := fresh(); return t[:len(t)-4] + "AAAA" }, wantStatus: 401, wantTenant: "", wantVerify: 0},
		// Verification waits for the first layer that asks, by which
		// time the token was swapped: only the bad one is verified.
		{name: "swapped inside", token: fresh, swap: true, wantStatus: 401, wantTenant: "", wantVerify: 0},
		{name: "missing", token: func() string { return "" }, wantStatus: 401, wantTenant: "", wantVerify: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifications.Store(0)
			tenants = nil
			req := httptest.NewRequest("POST", "/graphql", strings.NewReader(okQ))
			req.Header.Set("Content-Type", "application/json")
			if tok := tt.token(); tok != "" {
				req.Header.Set(assertion.Header, tok)
			}
			if tt.swap {
				req.Header.Set("X-Swap", "1")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			if len(tenants) != 1 || tenants[0] != tt.wantTenant {
				t.Errorf("admission counted tenants %q, want [%q]", tenants, tt.wantTenant)
			}
			if got := verifications.Load(); got != tt.wantVerify {
				t.Errorf("got %d verifications, want %d", got, tt.wantVerify)
			}
		})
	}

	// A core running all it may, with no queue, refuses before anything
	// asks for the identity: the signature is never checked.
	t.Run("refused by a full core", func(t *testing.T) {
		full := admission.New(admission.Options{MaxConcurrent: 1})
		release, err := full.Admit(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		asked := false
		h := httpapi.VerifyAssertion(httpapi.Admit(api, httpapi.AdmissionOptions{Controller: full,
			Tenant: func(r *http.Request) string { asked = true; return admitTenant(r) }}), v)
		verifications.Store(0)
		req := httptest.NewRequest("POST", "/graphql", strings.NewReader(okQ))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(assertion.Header, tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("got %d %v, want 503 with Retry-After", rec.Code, rec.Header())
		}
		if asked || verifications.Load() != 0 {
			t.Errorf("tenant asked: %v, verifications: %d; want neither for a refusal by a full core", asked, verifications.Load())
		}
	})
}

// TestAssertionBindsTheRequest shows the core running a request only with
// the assertion extauthz issued for it, once (security #13, defect 4).
func TestAssertionBindsTheRequest(t *testing.T) {
	signer, keys := assertiontest.New(t, nil)
	v := assertion.NewVerifier(keys, nil)
	h := httpapi.NewHandler(httpapi.Options{Verifier: v, Engine: echoEngine{}})
	const (
		query    = `{ users { id } }`
		mutation = `mutation { deletePost(id: 1) { id } }`
	)
	queryBody := `{"query":"` + query + `"}`
	send := func(method, target, body, tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(assertion.Header, tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// decided is the assertion extauthz issues a viewer for the query,
	// after resolving its document.
	decided := func(method, path string, doc string) string {
		return assertiontest.Sign(t, signer, alice, assertion.Binding{Audience: assertion.AudienceGraphQL, Method: method, Path: path,
			Operation: request.OperationHash(core.DocumentHash(doc), "")})
	}
	byHash := func(doc string) string {
		return `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + core.DocumentHash(doc) + `"}}}`
	}
	tests := []struct {
		name       string
		method     string
		target     string
		body       string
		tok        string
		wantStatus int
		wantCode   string
	}{
		{name: "the request it was issued for", method: "POST", target: "/graphql", body: queryBody, tok: decided("POST", "/graphql", query), wantStatus: 200},
		{name: "the query by its hash, decided on its document", method: "POST", target: "/graphql", body: byHash(query), tok: decided("POST", "/graphql", query), wantStatus: 200},
		{name: "GET", method: "GET", target: "/graphql?query=" + url.QueryEscape(query), tok: decided("GET", "/graphql", query), wantStatus: 200},
		{name: "a query's assertion with a mutation body", method: "POST", target: "/graphql", body: `{"query":"` + mutation + `"}`,
			tok: decided("POST", "/graphql", query), wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "a query's assertion with a mutation's hash", method: "POST", target: "/graphql", body: byHash(mutation),
			tok: decided("POST", "/graphql", query), wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "a query's assertion with another operation name", method: "POST", target: "/graphql", body: `{"query":"` + query + `","operationName":"Q"}`,
			tok: decided("POST", "/graphql", query), wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "another method", method: "POST", target: "/graphql", body: queryBody, tok: decided("GET", "/graphql", query), wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "another path", method: "POST", target: "/graphql", body: queryBody, tok: decided("POST", "/graphql/x", query), wantStatus: 403, wantCode: "FORBIDDEN"},
		{name: "an assertion for the Flight listener", method: "POST", target: "/graphql", body: queryBody,
			tok: assertiontest.Sign(t, signer, alice, assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST", Path: "/graphql",
				Operation: request.OperationHash(core.DocumentHash(query), "")}), wantStatus: 401, wantCode: "UNAUTHENTICATED"},
		{name: "an assertion binding a body, not an operation", method: "POST", target: "/graphql", body: queryBody,
			tok: assertiontest.Sign(t, signer, alice, assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql",
				Body: core.DocumentHash(queryBody)}), wantStatus: 403, wantCode: "FORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := send(tt.method, tt.target, tt.body, tt.tok)
			if rec.Code != tt.wantStatus {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			if tt.wantCode != "" && !strings.Contains(rec.Body.String(), `"code":"`+tt.wantCode+`"`) {
				t.Fatalf("got body %s, want extensions.code %s", rec.Body, tt.wantCode)
			}
		})
	}

	t.Run("the same assertion twice", func(t *testing.T) {
		tok := decided("POST", "/graphql", query)
		if rec := send("POST", "/graphql", queryBody, tok); rec.Code != 200 {
			t.Fatalf("first: got %d %s, want 200", rec.Code, rec.Body)
		}
		rec := send("POST", "/graphql", queryBody, tok)
		if rec.Code != 401 || !strings.Contains(rec.Body.String(), `"UNAUTHENTICATED"`) {
			t.Fatalf("replayed: got %d %s, want 401 UNAUTHENTICATED", rec.Code, rec.Body)
		}
	})
	t.Run("an assertion refused for its body is spent", func(t *testing.T) {
		tok := decided("POST", "/graphql", query)
		if rec := send("POST", "/graphql", `{"query":"`+mutation+`"}`, tok); rec.Code != 403 {
			t.Fatalf("mismatch: got %d %s, want 403", rec.Code, rec.Body)
		}
		if rec := send("POST", "/graphql", queryBody, tok); rec.Code != 401 {
			t.Fatalf("then with its own body: got %d %s, want 401", rec.Code, rec.Body)
		}
	})
	t.Run("a full replay cache refuses with 503", func(t *testing.T) {
		v.SetReplayCache(assertion.NewReplayCache(1, nil))
		if rec := send("POST", "/graphql", queryBody, decided("POST", "/graphql", query)); rec.Code != 200 {
			t.Fatalf("first: got %d %s, want 200", rec.Code, rec.Body)
		}
		rec := send("POST", "/graphql", queryBody, decided("POST", "/graphql", query))
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), `"UNAVAILABLE"`) {
			t.Fatalf("got %d %v %s, want 503 UNAVAILABLE with Retry-After", rec.Code, rec.Header(), rec.Body)
		}
	})
}
