package graphql_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func mustEngine(tb testing.TB) *graphql.Engine {
	tb.Helper()
	ctx := context.Background()
	pg, db := harness.NewDatabase(tb)
	if err := postgres.Migrate(ctx, pg.AdminURL(db), postgres.MigrateOptions{}); err != nil {
		tb.Fatal(err)
	}
	if err := demo.Apply(ctx, pg.AdminURL(db), "fraise_app"); err != nil {
		tb.Fatal(err)
	}
	d, err := postgres.Open(ctx, pg.URL("fraise_app", db), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	s, err := graphql.ParseSchema(demo.SDL)
	if err != nil {
		tb.Fatal(err)
	}
	return graphql.NewEngine(s, d, graphql.Options{})
}

func TestDemoQueries(t *testing.T) {
	e := mustEngine(t)
	as := func(tenant string) context.Context {
		return core.WithPrincipal(context.Background(), core.Principal{Subject: "x", Tenant: tenant})
	}
	tests := []struct {
		name, tenant, query, want string
	}{
		{"users of Acme", demo.TenantAcme, `{ users { name } }`, `{"users": [{"name": "Alice"}, {"name": "Bob"}]}`},
		{"users of Globex", demo.TenantGlobex, `{ users { name } }`, `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`},
		{"nested author, alias and typename", demo.TenantAcme, `{ p: posts(limit: 1) { title by: author { name __typename } } }`,
			`{"p": [{"title": "Hello from Acme", "by": {"name": "Alice", "__typename": "User"}}]}`},
		{"another tenant's user by id is null", demo.TenantAcme, `{ user(id: "c0000000-0000-4000-8000-00000000000c") { name } }`, `{"user": null}`},
		{"own user by id", demo.TenantGlobex, `{ user(id: "c0000000-0000-4000-8000-00000000000c") { name } }`, `{"user": {"name": "Carol"}}`},
		{"fragments and skip", demo.TenantAcme, `query { users(limit: 1) { ...F email @skip(if: true) } } fragment F on User { name }`, `{"users": [{"name": "Alice"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Execute(as(tt.tenant), graphql.Request{Query: tt.query})
			if len(r.Errors) > 0 {
				t.Fatalf("errors: %+v", r.Errors[0])
			}
			var got, want any
			if err := json.Unmarshal(r.Data, &got); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal([]byte(tt.want), &want)
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(want)
			if string(gb) != string(wb) {
				t.Fatalf("got %s, want %s", gb, wb)
			}
		})
	}
}
