package graphql_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// recordingDB is a core.TenantDB that runs nothing: it records the
// statements the engine sends, so tests can read the SQL itself.
type recordingDB struct {
	mu    sync.Mutex
	stmts []recorded
}

type recorded struct {
	tenant, sql string
	args        []any
}

func (r *recordingDB) InTenant(ctx context.Context, tenant string, fn func(context.Context, core.Querier) error) error {
	return fn(ctx, recordingQuerier{r, tenant})
}

type recordingQuerier struct {
	r      *recordingDB
	tenant string
}

func (q recordingQuerier) QueryJSON(_ context.Context, sql string, args ...any) ([]byte, error) {
	q.r.mu.Lock()
	defer q.r.mu.Unlock()
	q.r.stmts = append(q.r.stmts, recorded{q.tenant, sql, args})
	return nil, nil
}

func (r *recordingDB) take() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.stmts
	r.stmts = nil
	return out
}

func mustRecordingEngine(tb testing.TB, o graphql.Options) (*graphql.Engine, *recordingDB) {
	tb.Helper()
	db := &recordingDB{}
	return graphql.NewEngine(mustSchema(tb, demo.SDL), db, o), db
}

func TestParseSchemaErrors(t *testing.T) {
	tests := []struct {
		name, sdl, want string
	}{
		{"no query type", `type User { id: ID! }`, "no Query type"},
		{"root field of a scalar", `type Query { n: Int }`, "Query.n: returns Int, which is not an object type"},
		{"single object without id", `type U { id: ID! } type Query { u: U }`, "needs an argument id"},
		{"unsafe view name", `type U @view(name: "u; drop table x") { id: ID! } type Query { us: [U!]! }`, "not a plain lower-case SQL name"},
		{"abstract type at the root", `interface I { id: ID } type A implements I { id: ID } type Query { is: [I!]! }`, "not an object type read from a view"},
		{"arguments on a nested scalar", `type U { id: ID! n(x: Int): String } type Query { us: [U!]! }`, "only nested lists of objects take arguments"},
		{"unknown argument on a nested list", `type P { id: ID } type U { id: ID! ps(x: Int): [P] } type Query { us: [U!]! }`, "a nested list takes only limit"},
		{"unsafe path", `type U { id: ID! n: String @field(path: "a'b") } type Query { us: [U!]! }`, "@field path key"},
		{"unsafe function", `type U { id: ID! } type Query { us: [U!]! } type Mutation { m: U @function(name: "X()") }`, "function name"},
		{"mutation returning a list", `type U { id: ID! } type Query { us: [U!]! } type Mutation { m: [U] }`, "a mutation returns an object type or a union"},
		{"union without an error member", `type A { id: ID } type B { id: ID } union R = A | B type Query { as: [A!]! } type Mutation { m: R }`, "an ...Error type"},
		{"mask on an object", `type A { id: ID } type B { a: A @mask(kind: PII) } type Query { bs: [B!]! }`, "@mask applies to scalar fields only"},
		{"unknown argument on a list", `type U { id: ID! } type Query { us(x: Int): [U!]! }`, "argument x"},
		{"subscriptions", `type U { id: ID! } type Query { us: [U!]! } type Subscription { u: U }`, "subscriptions are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := graphql.ParseSchema(tt.sdl)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestRootFieldAuth(t *testing.T) {
	db := &recordingDB{}
	s := mustSchema(t, demo.SDL+`
		extend type Query { drafts: [Post!]! @auth(scope: "read:drafts") }
		extend type Mutation { publishPost(input: CreatePostInput!): CreatePostResult! @auth(scope: "write:Post") }
		extend type Mutation @auth(scope: "write") { deletePost(input: CreatePostInput!): CreatePostResult! }`)
	e := graphql.NewEngine(s, db, graphql.Options{})
	tests := []struct {
		name, query string
		scopes      []string
		code        string
	}{
		{"query field without its scope", `{ drafts { title } }`, nil, string(core.CodeForbidden)},
		{"query field with its scope", `{ drafts { title } }`, []string{"read:drafts"}, ""},
		{"mutation without its scope", `mutation { publishPost(input: {title: "x", authorId: "y"}) { __typename } }`, []string{"read:drafts"}, string(core.CodeForbidden)},
		{"mutation with its scope", `mutation { publishPost(input: {title: "x", authorId: "y"}) { __typename } }`, []string{"write:Post"}, ""},
		{"root type's @auth", `mutation { createPost(input: {title: "x", authorId: "y"}) { __typename } }`, nil, string(core.CodeForbidden)},
		{"root type's @auth with its scope", `mutation { createPost(input: {title: "x", authorId: "y"}) { __typename } }`, []string{"write"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Execute(as(demo.TenantAcme, tt.scopes...), graphql.Request{Query: tt.query})
			stmts := db.take()
			if tt.code == "" {
				if len(r.Errors) > 0 || len(stmts) == 0 {
					t.Fatalf("got %+v and %d statements, want it to run", r.Errors, len(stmts))
				}
				return
			}
			mustCode(t, r, tt.code)
			if len(stmts) != 0 {
				t.Fatalf("got %d statements, want none", len(stmts))
			}
		})
	}
}

func TestCompiledSQL(t *testing.T) {
	e, db := mustRecordingEngine(t, graphql.Options{})
	ctx := as(demo.TenantAcme, "read:User.email")
	t.Run("one statement per root field, values as parameters", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: `query($t: String) { a: posts(where: {title: {eq: $t}, author: {name: {in: ["Eve'; drop"]}}}, limit: 7) { title }
			b: users(orderBy: [{name: DESC}]) { email } c: post(id: "a1000000-0000-4000-8000-000000000001") { id } }`,
			Variables: map[string]any{"t": "x' or 1=1 --"}})
		if len(r.Errors) > 0 {
			t.Fatalf("%+v", *r.Errors[0])
		}
		stmts := db.take()
		if len(stmts) != 3 {
			t.Fatalf("got %d statements, want 3", len(stmts))
		}
		for _, s := range stmts {
			if s.tenant != demo.TenantAcme {
				t.Fatalf("got tenant %s, want Acme", s.tenant)
			}
			for _, bad := range []string{"drop", "1=1", "Eve", "a1000000", "'a'", "7"} {
				if strings.Contains(s.sql, bad) {
					t.Fatalf("value %q in SQL text: %s", bad, s.sql)
				}
			}
		}
		if !strings.Contains(stmts[0].sql, "from tv_post t") || !strings.Contains(stmts[1].sql, "from v_user t") {
			t.Fatalf("got %s / %s, want reads of tv_post and v_user", stmts[0].sql, stmts[1].sql)
		}
	})
	t.Run("only the requested paths are projected", func(t *testing.T) {
		e.Execute(ctx, graphql.Request{Query: `{ posts { title author { name } } }`})
		sql := db.take()[0].sql
		// Strings and IDs as text (->>), objects as jsonb (->).
		for _, want := range []string{"t.data->>'title'", "jsonb_typeof(t.data->'author') = 'object'", "t.data->'author'->>'name'"} {
			if !strings.Contains(sql, want) {
				t.Fatalf("got %s, want it to contain %s", sql, want)
			}
		}
		for _, not := range []string{"'body'", "'email'", "'stats'"} {
			if strings.Contains(sql, not) {
				t.Fatalf("got %s, want no %s", sql, not)
			}
		}
	})
	t.Run("read-only requests refuse mutations", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{ReadOnly: true, Query: `mutation { createPost(input: {title: "x", authorId: "y"}) { __typename } }`})
		mustCode(t, r, graphql.CodeMutationNotAllowed)
		if n := len(db.take()); n != 0 {
			t.Fatalf("got %d statements, want none", n)
		}
		mustData(t, e.Execute(ctx, graphql.Request{ReadOnly: true, Query: `{ __typename }`}), `{"__typename": "Query"}`)
	})
	t.Run("plans are cached per document and operation name", func(t *testing.T) {
		const doc = `query A { users { id } } query B { posts { id } }`
		for _, tt := range []struct{ op, view string }{{"A", "v_user"}, {"B", "tv_post"}, {"A", "v_user"}, {"B", "tv_post"}} {
			if r := e.Execute(ctx, graphql.Request{Query: doc, OperationName: tt.op}); len(r.Errors) > 0 {
				t.Fatalf("%+v", *r.Errors[0])
			}
			if sql := db.take()[0].sql; !strings.Contains(sql, "from "+tt.view+" t") {
				t.Fatalf("operation %s: got %s, want a read of %s", tt.op, sql, tt.view)
			}
		}
	})
	t.Run("no principal", func(t *testing.T) {
		mustCode(t, e.Execute(context.Background(), graphql.Request{Query: `{ users { id } }`}), string(core.CodeUnauthenticated))
	})
	t.Run("request errors", func(t *testing.T) {
		for _, tt := range []struct{ name, query, op, code string }{
			{"parse", `{ users {`, "", graphql.CodeParseFailed},
			{"validation", `{ users { nope } }`, "", graphql.CodeValidationFailed},
			{"missing query", ``, "", graphql.CodeBadRequest},
			{"several operations, no name", `query A { users { id } } query B { users { id } }`, "", graphql.CodeBadRequest},
			{"unknown operation name", `query A { users { id } }`, "B", graphql.CodeBadRequest},
			{"variable of the wrong type", `query($n: Int) { users(limit: $n) { id } }`, "", ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				req := graphql.Request{Query: tt.query, OperationName: tt.op}
				if tt.code == "" {
					req.Variables = map[string]any{"n": "many"}
					tt.code = graphql.CodeValidationFailed
				}
				mustCode(t, e.Execute(ctx, req), tt.code)
				if n := len(db.take()); n != 0 {
					t.Fatalf("got %d statements, want none", n)
				}
			})
		}
	})
}

// TestConcurrentRequests shares one engine between goroutines, so the race
// detector (make test) sees the plan and APQ caches under load.
func TestConcurrentRequests(t *testing.T) {
	e, db := mustRecordingEngine(t, graphql.Options{APQ: true, APQCacheSize: 4})
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				q := `{ users(limit: ` + strconv.Itoa(i%7) + `) { name } }`
				r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Extensions: persisted(hashOf(q))})
				if len(r.Errors) > 0 {
					t.Errorf("goroutine %d: %+v", g, *r.Errors[0])
					return
				}
				db.take()
			}
		}(g)
	}
	wg.Wait()
}

func TestParseTrustedDocuments(t *testing.T) {
	const q = `{ users { name } }`
	upper := strings.ToUpper(hashOf(q))
	docs, err := graphql.ParseTrustedDocuments([]byte(`{"` + upper + `": "{ users { name } }"}`))
	if err != nil || docs[hashOf(q)] != q {
		t.Fatalf("got %v, %v, want the document under its lower-case hash", docs, err)
	}
	for _, bad := range []string{`{"` + hashOf("other") + `": "{ users { name } }"}`, `["{ users { name } }"]`, `{`} {
		if _, err := graphql.ParseTrustedDocuments([]byte(bad)); err == nil {
			t.Fatalf("got no error for %s", bad)
		}
	}
}

// TestResponseBody shows the whole response the engine assembles in one
// piece for a transport to write: data alone, the data a slice of it; no
// body when there are errors.
func TestResponseBody(t *testing.T) {
	e, _ := mustRecordingEngine(t, graphql.Options{})
	ctx := as(demo.TenantAcme)
	tests := []struct {
		name     string
		query    string
		wantBody string // "" for none
		wantData string
	}{
		{name: "data", query: `{ a: __typename b: __typename }`, wantBody: `{"data":{"a":"Query","b":"Query"}}`, wantData: `{"a":"Query","b":"Query"}`},
		{name: "request error", query: `{ nosuchfield }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Execute(ctx, graphql.Request{Query: tt.query})
			body, ok := r.Body()
			if ok != (tt.wantBody != "") || string(body) != tt.wantBody {
				t.Fatalf("got body %q, %v, want %q", body, ok, tt.wantBody)
			}
			if string(r.Data) != tt.wantData {
				t.Fatalf("got data %q, want %q", r.Data, tt.wantData)
			}
			if ok && cap(r.Data) != len(r.Data) {
				t.Fatalf("data has capacity %d past its length %d: an append to it would overwrite the body", cap(r.Data), len(r.Data))
			}
		})
	}
}

// batchingDB is a recordingDB that also implements core.TenantBatcher and
// core.TenantWriter, counting the batches it is sent.
type batchingDB struct {
	*recordingDB
	reads, writes int
}

func (b *batchingDB) QueryJSONBatch(_ context.Context, _ string, stmts []core.Statement) ([][]byte, error) {
	b.reads++
	return make([][]byte, len(stmts)), nil
}

func (b *batchingDB) ExecJSONBatch(_ context.Context, _, _ string, stmts []core.Statement, accept func([][]byte) error) error {
	b.writes++
	return accept(make([][]byte, len(stmts)))
}

// TestBatcherAndWriterAreExplicit checks that the engine runs a request in
// one round trip only through the ports its options give it: a TenantDB
// that happens to batch is used as a TenantDB, so what a server does is
// read from its wiring, not from the dynamic type of its database.
func TestBatcherAndWriterAreExplicit(t *testing.T) {
	const (
		query    = `{ posts { title } }`
		mutation = `mutation { createPost(input: {title: "x", authorId: "y"}) { __typename } }`
	)
	tests := []struct {
		name, query             string
		ports                   bool
		reads, writes, inTenant int // inTenant: statements sent through InTenant
	}{
		{"query with a Batcher", query, true, 1, 0, 0},
		{"mutation with a Writer", mutation, true, 0, 1, 0},
		{"query without one", query, false, 0, 0, 1},
		{"mutation without one", mutation, false, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := &batchingDB{recordingDB: &recordingDB{}}
			var o graphql.Options
			if tt.ports {
				o.Batcher, o.Writer = db, db
			}
			e := graphql.NewEngine(mustSchema(t, demo.SDL), db, o)
			e.Execute(as(demo.TenantAcme, "write"), graphql.Request{Query: tt.query})
			if got := len(db.take()); db.reads != tt.reads || db.writes != tt.writes || got != tt.inTenant {
				t.Fatalf("got %d batched reads, %d batched writes, %d statements through InTenant; want %d, %d, %d",
					db.reads, db.writes, got, tt.reads, tt.writes, tt.inTenant)
			}
		})
	}
}
