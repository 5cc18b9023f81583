package operation_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/graphql/request"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/extauthz/operation"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
)

// The documents the agreement tests register: a viewer may run the query,
// not the mutation.
const (
	agreeQuery    = `{ users { id } }`
	agreeMutation = `mutation { createPost(input: {title: "t", authorId: "a0000000-0000-4000-8000-00000000000a"}) { __typename } }`
)

// recordingDB is a core.TenantDB that runs nothing and records the SQL the
// engine sends it: what the core executes.
type recordingDB struct {
	mu    sync.Mutex
	stmts []string
}

func (r *recordingDB) InTenant(ctx context.Context, _ string, fn func(context.Context, core.Querier) error) error {
	return fn(ctx, r)
}

func (r *recordingDB) QueryJSON(_ context.Context, sql string, _ ...any) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stmts = append(r.stmts, sql)
	return nil, nil
}

func (r *recordingDB) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.stmts, ";\n")
	r.stmts = nil
	return out
}

// coreUnderTest is the core's HTTP edge in front of the real engine, with
// automatic persisted queries in memory and a database that records.
type coreUnderTest struct {
	h      http.Handler
	db     *recordingDB
	signer *assertion.Signer
	docs   map[string]string // what extauthz's persisted store resolves
}

func mustCoreUnderTest(tb testing.TB) *coreUnderTest {
	tb.Helper()
	schema, err := graphql.ParseSchema(demo.SDL)
	if err != nil {
		tb.Fatal(err)
	}
	db := &recordingDB{}
	engine := graphql.NewEngine(schema, db, graphql.Options{APQ: true})
	signer, keys := assertiontest.New(tb, nil)
	c := &coreUnderTest{
		h:      httpapi.NewHandler(httpapi.Options{Verifier: assertion.NewVerifier(keys, nil), Engine: engine, MaxBodyBytes: 1 << 20}),
		db:     db,
		signer: signer,
		docs:   map[string]string{},
	}
	// An operator registers both documents, as automatic persisted
	// queries do: the hash with the document.
	for _, doc := range []string{agreeQuery, agreeMutation} {
		h := core.DocumentHash(doc)
		if st := c.post(tb, `{"query":`+quote(doc)+`,"extensions":{"persistedQuery":{"version":1,"sha256Hash":"`+h+`"}}}`, request.OperationHash(h, "")); st != http.StatusOK {
			tb.Fatalf("registering %s: got status %d, want 200", doc, st)
		}
		c.docs[h] = doc
	}
	c.db.take()
	return c
}

// post sends body to the core with an assertion bound to the operation
// named by operationHash, as extauthz would pass it, and returns the
// status.
func (c *coreUnderTest) post(tb testing.TB, body, operationHash string) int {
	tb.Helper()
	tok := assertiontest.Sign(tb, c.signer, corePrincipal,
		assertion.Binding{Audience: assertion.AudienceGraphQL, Method: http.MethodPost, Path: "/graphql", Operation: operationHash})
	req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(assertion.Header, tok)
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return rec.Code
}

// decide is extauthz's reading of body: the document and operation name
// it decides on (the persisted hash resolved as its store would), or ok
// false when it refuses the request.
func (c *coreUnderTest) decide(body string) (doc, name string, ok bool) {
	r, err := operation.ParseRequest(http.MethodPost, "", []byte(body))
	if err != nil {
		return "", "", false
	}
	doc = r.Query
	if doc == "" {
		if doc, ok = c.docs[r.PersistedHash]; !ok {
			return "", "", false
		}
	}
	if _, err := operation.Parse(doc, r.OperationName); err != nil {
		return "", "", false
	}
	return doc, r.OperationName, true
}

func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

// TestCoreRunsWhatExtauthzDecided sends bodies that JSON readers disagree
// on through extauthz's reading and through the core (HTTP edge and
// engine), and fails when the core executes an operation other than the
// one extauthz decided on (security #13, defect 1: a viewer's body naming a
// mutation's hash as sha256Hash and a query's as Sha256Hash was decided as
// the query and ran the mutation).
func TestCoreRunsWhatExtauthzDecided(t *testing.T) {
	c := mustCoreUnderTest(t)
	hq, hm := core.DocumentHash(agreeQuery), core.DocumentHash(agreeMutation)
	pq := func(members string) string { return `{"extensions":{"persistedQuery":{` + members + `}}}` }
	tests := []struct {
		name string
		body string
	}{
		{name: "sha256Hash and its case twin", body: pq(`"version":1,"sha256Hash":"` + hm + `","Sha256Hash":"` + hq + `"`)},
		{name: "the case twin first", body: pq(`"version":1,"Sha256Hash":"` + hq + `","sha256Hash":"` + hm + `"`)},
		{name: "sha256Hash twice", body: pq(`"version":1,"sha256Hash":"` + hm + `","sha256Hash":"` + hq + `"`)},
		{name: "persistedQuery and its case twin", body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hm +
			`"},"PersistedQuery":{"version":1,"sha256Hash":"` + hq + `"}}}`},
		{name: "extensions and its case twin", body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hm +
			`"}},"Extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hq + `"}}}`},
		{name: "query and its case twin", body: `{"query":` + quote(agreeMutation) + `,"Query":` + quote(agreeQuery) + `}`},
		{name: "query twice", body: `{"query":` + quote(agreeMutation) + `,"query":` + quote(agreeQuery) + `}`},
		{name: "query nulled by its case twin", body: `{"query":` + quote(agreeMutation) + `,"QUERY":null,"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hq + `"}}}`},
		{name: "operationName and its case twin", body: `{"query":"query A { users { id } } mutation B { createPost(input: {title: \"t\", authorId: \"a0000000-0000-4000-8000-00000000000a\"}) { __typename } }","operationName":"B","OperationName":"A"}`},
		{name: "the plain query by hash", body: pq(`"version":1,"sha256Hash":"` + hq + `"`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, name, decided := c.decide(tt.body)
			var want, decision string
			if decided {
				// What the core runs for the operation extauthz decided on,
				// sent as plain text.
				decision = request.OperationHash(core.DocumentHash(doc), name)
				body := `{"query":` + quote(doc) + `,"operationName":` + quote(name) + `}`
				if st := c.post(t, body, decision); st != http.StatusOK {
					t.Fatalf("the decided operation alone: got status %d, want 200", st)
				}
				want = c.db.take()
			}
			// The request itself, with the assertion extauthz issues for its
			// decision.
			st := c.post(t, tt.body, decision)
			got := c.db.take()
			if got != "" && got != want {
				if !decided {
					t.Fatalf("extauthz refuses the request, but the core (status %d) ran:\n%s", st, got)
				}
				t.Fatalf("extauthz decided on %q (operation %q), but the core (status %d) ran:\n%s\nwant:\n%s", doc, name, st, got, want)
			}
			if !decided && st < 400 {
				t.Fatalf("extauthz refuses the request; got core status %d, want a refusal", st)
			}
		})
	}
}

// recordingExecutor is the core's engine seen from its HTTP edge: it
// records the request the edge hands it.
type recordingExecutor struct {
	mu   sync.Mutex
	last *graphql.Request
}

func (e *recordingExecutor) Execute(_ context.Context, req graphql.Request) *graphql.Response {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.last = &req
	return &graphql.Response{Data: []byte(`{}`)}
}

func (e *recordingExecutor) take() *graphql.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.last
	e.last = nil
	return r
}

// view is what one side makes of a request: the document it names (text or
// persisted hash) and the operation name.
type view struct {
	query, hash, operationName string
}

// FuzzRequestViews decodes random GraphQL-over-HTTP requests through both
// sides' views: extauthz's (ParseRequest: the document, persisted hash and
// operation name the policy decides on) and the core's (its HTTP edge, and
// the persisted hash its engine reads from the request it is handed). It
// fails when the core runs a request extauthz refuses, refuses one at the
// decoding extauthz accepts, or runs another document or operation than
// extauthz's. Seeds are in testdata/fuzz/FuzzRequestViews.
func FuzzRequestViews(f *testing.F) {
	h := core.DocumentHash("{ a }")
	f.Add(true, "", []byte(`{"query":"{ a }","operationName":"A","variables":{"n":1}}`))
	f.Add(true, "", []byte(`{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"`+h+`","Sha256Hash":"`+h+`"}}}`))
	f.Add(false, "query=%7B+a+%7D&operationName=A", []byte(nil))
	signer, keys := assertiontest.New(f, nil)
	exec := &recordingExecutor{}
	edge := httpapi.NewHandler(httpapi.Options{Verifier: assertion.NewVerifier(keys, nil), Engine: exec, MaxBodyBytes: 1 << 20})
	f.Fuzz(func(t *testing.T, post bool, rawQuery string, body []byte) {
		method, target := http.MethodGet, "/graphql?"+rawQuery
		if post {
			method, target = http.MethodPost, "/graphql"
		}
		if strings.ContainsFunc(rawQuery, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }) {
			return // not a request target an HTTP server receives
		}
		// extauthz's view.
		var ext *view
		if r, err := operation.ParseRequest(method, rawQuery, body); err == nil {
			ext = &view{query: r.Query, hash: r.PersistedHash, operationName: r.OperationName}
		}
		// The core's view, of the request sent with the assertion extauthz
		// issues for its decision (bound to no operation when it refuses:
		// the core must then refuse while decoding, before it compares).
		b := assertion.Binding{Audience: assertion.AudienceGraphQL, Method: method, Path: "/graphql"}
		if ext != nil {
			doc := ext.hash
			if doc == "" {
				doc = core.DocumentHash(ext.query)
			}
			b.Operation = request.OperationHash(doc, ext.operationName)
		}
		tok := assertiontest.Sign(t, signer, corePrincipal, b)
		req := httptest.NewRequest(method, target, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(assertion.Header, tok)
		rec := httptest.NewRecorder()
		edge.ServeHTTP(rec, req)
		var got *view
		if r := exec.take(); r != nil {
			hash, err := request.PersistedHash(r.Extensions)
			if err != nil {
				t.Fatalf("the core ran a request whose persisted hash its engine cannot read: %v", err)
			}
			got = &view{query: r.Query, hash: hash, operationName: r.OperationName}
		}
		switch {
		case ext == nil && got != nil:
			t.Fatalf("extauthz refuses the request; the core ran %+v", *got)
		case ext == nil && rec.Code != http.StatusBadRequest:
			t.Fatalf("extauthz refuses the request as unreadable; got core status %d, want 400: %s", rec.Code, rec.Body)
		case ext != nil && got == nil && !(method == http.MethodGet && rec.Code == http.StatusMethodNotAllowed):
			t.Fatalf("extauthz decides on %+v; the core refused it with %d: %s", *ext, rec.Code, rec.Body)
		case ext != nil && got != nil && *got != *ext:
			t.Fatalf("extauthz decides on %+v; the core ran %+v", *ext, *got)
		}
	})
}

var corePrincipal = core.Principal{Subject: "bob", Tenant: demo.TenantAcme, Roles: []string{"viewer"}}
