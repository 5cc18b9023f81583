package graphql_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// hooksSDL adds a root field computed in Go to the demo schema.
var hooksSDL = demo.SDL + `
type Echo { said: String! tenant: String! count: Int! }
extend type Query { echo(say: String!): Echo! @resolver echoes(say: String!): [Echo!]! @resolver }
`

func TestHooks(t *testing.T) {
	d := mustDemoDB(t)
	s := mustSchema(t, hooksSDL)
	if err := s.Check(context.Background(), d.db); err != nil {
		t.Fatal(err)
	}
	var sawCount int
	hooks := graphql.Hooks{
		// echo reads the database through the transaction's Querier: the
		// tenant's users, so RLS applies to what a hook sees.
		"echo": {Resolve: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) (json.RawMessage, error) {
			n, err := q.QueryJSON(ctx, `select to_jsonb(count(*)) from public.v_user`)
			if err != nil {
				return nil, err
			}
			return json.Marshal(map[string]any{"said": args["say"], "tenant": p.Tenant, "count": json.RawMessage(n)})
		}},
		"echoes": {Resolve: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) (json.RawMessage, error) {
			return json.Marshal([]map[string]any{{"said": args["say"], "tenant": "a", "count": 1}, {"said": args["say"], "tenant": "b", "count": 2}})
		}},
		"createPost": {Check: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error {
			in, _ := args["input"].(map[string]any)
			if strings.Contains(in["title"].(string), "forbidden") {
				return core.Errorf(core.CodeInvalid, "the title may not say forbidden")
			}
			return nil
		}},
		"posts": {Check: func(ctx context.Context, q core.Querier, p core.Principal, args map[string]any) error {
			sawCount++
			return nil
		}},
	}
	e := graphql.NewEngine(s, d.db, graphql.Options{Batcher: d.db, Writer: d.db, Hooks: hooks, Audit: d.db})
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "alice", Tenant: demo.TenantAcme})
	users := d.admin(t, `select count(*) from public.users where tenant_id = $1`, demo.TenantAcme)[0][0]

	t.Run("a resolver's value is projected through the selection", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: `{ echo(say: "hi") { said n: count } posts(limit: 1) { __typename } }`})
		want, _ := json.Marshal(map[string]any{"echo": map[string]any{"said": "hi", "n": users}, "posts": []any{map[string]any{"__typename": "Post"}}})
		mustData(t, r, string(want))
		if sawCount != 1 {
			t.Fatalf("the posts check ran %d times, want 1", sawCount)
		}
	})
	t.Run("a list resolver", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: `{ echoes(say: "yo") { tenant } }`})
		mustData(t, r, `{"echoes": [{"tenant": "a"}, {"tenant": "b"}]}`)
	})
	t.Run("a check refuses a mutation: nothing written, audited", func(t *testing.T) {
		n := d.admin(t, `select count(*) from public.posts`)[0][0]
		r := e.Execute(ctx, graphql.Request{Query: createPost, Variables: map[string]any{"in": map[string]any{
			"title": "a forbidden title", "authorId": "b0000000-0000-4000-8000-00000000000b",
		}}})
		mustCode(t, r, string(core.CodeInvalid))
		if r.Errors[0].Message != "the title may not say forbidden" {
			t.Fatalf("message %q", r.Errors[0].Message)
		}
		if got := d.admin(t, `select count(*) from public.posts`)[0][0]; got != n {
			t.Fatalf("posts %v, want %v", got, n)
		}
		if rows := d.admin(t, `select subject from fraise.audit_log where operation = 'createPost' and outcome = 'error:INVALID'`); len(rows) != 1 || rows[0][0] != "alice" {
			t.Fatalf("audit rows %v", rows)
		}
	})
	t.Run("a check passes a mutation", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: createPost, Variables: map[string]any{"in": map[string]any{
			"title": "Fine", "authorId": "b0000000-0000-4000-8000-00000000000b",
		}}})
		if len(r.Errors) > 0 || !strings.Contains(string(r.Data), "CreatePostSuccess") {
			t.Fatalf("got %s %+v", r.Data, r.Errors)
		}
	})
	t.Run("introspection hides @resolver", func(t *testing.T) {
		ie := graphql.NewEngine(s, d.db, graphql.Options{Batcher: d.db, Writer: d.db, Hooks: hooks, Introspection: true})
		r := ie.Execute(ctx, graphql.Request{Query: `{ __schema { directives { name } } }`})
		if len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"skip"`) || strings.Contains(string(r.Data), "resolver") {
			t.Fatalf("got %s %+v", r.Data, r.Errors)
		}
	})
	t.Run("a resolver field without a registered resolver", func(t *testing.T) {
		bare := graphql.NewEngine(s, d.db, graphql.Options{Batcher: d.db, Writer: d.db})
		r := bare.Execute(ctx, graphql.Request{Query: `{ echo(say: "hi") { said } }`})
		mustCode(t, r, string(core.CodeInternal))
	})
}

func TestResolverDirectiveOnMutationRefused(t *testing.T) {
	_, err := graphql.ParseSchema(`type T { id: ID! } type Query { ts: [T!]! } type R { succeeded: Boolean! } type Mutation { doIt(id: ID!): R! @resolver }`)
	if err == nil || !strings.Contains(err.Error(), "@resolver") {
		t.Fatalf("got %v, want an error about @resolver on a mutation", err)
	}
}
