package graphql

import (
	"context"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// nopDB answers every statement with null.
type nopDB struct{}

func (nopDB) InTenant(ctx context.Context, _ string, fn func(context.Context, core.Querier) error) error {
	return fn(ctx, nopQuerier{})
}

type nopQuerier struct{}

func (nopQuerier) QueryJSON(context.Context, string, ...any) ([]byte, error) { return nil, nil }

// TestPlanCacheKey shows that the documents validation passed are known by
// their tokens (security #13, defect 8): a comment or a change of
// formatting is a new text, parsed again for its positions, but not a new
// document to validate; a change of a token is.
func TestPlanCacheKey(t *testing.T) {
	s, err := ParseSchema(demo.SDL)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s, nopDB{}, Options{})
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "tester", Tenant: demo.TenantAcme})
	tests := []struct {
		name, query       string
		wantPlans, wantOK int
	}{
		{name: "first", query: `query Q($n: Int) { users(limit: $n) { id name } }`, wantPlans: 1, wantOK: 1},
		{name: "the same text", query: `query Q($n: Int) { users(limit: $n) { id name } }`, wantPlans: 1, wantOK: 1},
		{name: "a comment", query: "# mine\nquery Q($n: Int) { users(limit: $n) { id name } }", wantPlans: 2, wantOK: 1},
		{name: "whitespace and commas", query: "query Q($n:Int){users(limit:$n){id,name}}", wantPlans: 3, wantOK: 1},
		{name: "another field", query: `query Q($n: Int) { users(limit: $n) { id email } }`, wantPlans: 4, wantOK: 2},
		{name: "another string", query: `{ user(id: "a") { id } }`, wantPlans: 5, wantOK: 3},
		{name: "the same value as a block string", query: `{ user(id: """a""") { id } }`, wantPlans: 6, wantOK: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := e.Execute(ctx, Request{Query: tt.query}); len(r.Errors) > 0 {
				t.Fatalf("got %+v, want data", *r.Errors[0])
			}
			e.mu.Lock()
			plans, ok := len(e.plans), len(e.valid)
			e.mu.Unlock()
			if plans != tt.wantPlans || ok != tt.wantOK {
				t.Fatalf("got %d plans and %d validated documents, want %d and %d", plans, ok, tt.wantPlans, tt.wantOK)
			}
		})
	}
	t.Run("positions are the request's", func(t *testing.T) {
		for _, tt := range []struct {
			query string
			want  Location
		}{
			{`{ __schema { queryType { name } } }`, Location{1, 3}},
			{"\n# a comment\n   { __schema { queryType { name } } }", Location{3, 6}},
		} {
			r := e.Execute(ctx, Request{Query: tt.query})
			if len(r.Errors) != 1 || len(r.Errors[0].Locations) != 1 || r.Errors[0].Locations[0] != tt.want {
				t.Fatalf("got %+v, want one error at %v", r.Errors, tt.want)
			}
		}
	})
}

// TestSetSchema replaces the schema while requests run: each request runs
// against one schema, and a plan of the previous schema is not reused.
func TestSetSchema(t *testing.T) {
	s1, err := ParseSchema(demo.SDL)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := ParseSchema(demo.SDL + "\ntype Note { text: String } extend type Query { notes: [Note!]! }")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(s1, nopDB{}, Options{})
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "tester", Tenant: demo.TenantAcme})
	if r := e.Execute(ctx, Request{Query: `{ notes { text } }`}); len(r.Errors) == 0 {
		t.Fatal("got no error for a field of the next schema")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			e.SetSchema([]*Schema{s1, s2}[i%2])
		}
	}()
	for i := 0; i < 200; i++ {
		if r := e.Execute(ctx, Request{Query: `{ users { id } }`}); len(r.Errors) > 0 {
			t.Fatalf("got %+v, want data", *r.Errors[0])
		}
	}
	<-done
	e.SetSchema(s2)
	if r := e.Execute(ctx, Request{Query: `{ notes { text } }`}); len(r.Errors) > 0 {
		t.Fatalf("got %+v after SetSchema, want data", *r.Errors[0])
	}
}
