package graphql_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// demoDB is a fresh database with the migrations and the demo applied.
type demoDB struct {
	db       *postgres.DB
	adminURL string
}

func mustDemoDB(tb testing.TB) demoDB {
	tb.Helper()
	harness.SkipShort(tb)
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
	return demoDB{db: d, adminURL: pg.AdminURL(db)}
}

// admin runs sql as the database owner, for fixtures and for reading what
// the core's role may not (the audit log).
func (d demoDB) admin(tb testing.TB, sql string, args ...any) [][]any {
	tb.Helper()
	return postgrestest.Query(tb, d.adminURL, sql, args...)
}

func mustSchema(tb testing.TB, sdl string) *graphql.Schema {
	tb.Helper()
	s, err := graphql.ParseSchema(sdl)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func mustEngine(tb testing.TB, d demoDB, o graphql.Options) *graphql.Engine {
	tb.Helper()
	s := mustSchema(tb, demo.SDL)
	if err := s.Check(context.Background(), d.db); err != nil {
		tb.Fatal(err)
	}
	if o.Session == nil {
		o.Session = d.db
	}
	if o.Audit == nil {
		o.Audit = d.db
	}
	// As the server is wired: reads and writes in one round trip each.
	if o.Batcher == nil {
		o.Batcher = d.db
	}
	if o.Writer == nil {
		o.Writer = d.db
	}
	return graphql.NewEngine(s, d.db, o)
}

func as(tenant string, scopes ...string) context.Context {
	return core.WithPrincipal(context.Background(), core.Principal{Subject: "tester", Tenant: tenant, Scopes: scopes})
}

// sameJSON compares JSON values, ignoring object key order and spacing.
func sameJSON(tb testing.TB, got []byte, want string) {
	tb.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		tb.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		tb.Fatalf("bad want %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		tb.Fatalf("got %s, want %s", gb, wb)
	}
}

func mustData(tb testing.TB, r *graphql.Response, want string) {
	tb.Helper()
	if len(r.Errors) > 0 {
		tb.Fatalf("errors: %+v", *r.Errors[0])
	}
	sameJSON(tb, r.Data, want)
}

func mustCode(tb testing.TB, r *graphql.Response, code string) {
	tb.Helper()
	if len(r.Errors) == 0 {
		tb.Fatalf("got data %s and no error, want %s", r.Data, code)
	}
	if got := r.Errors[0].Extensions["code"]; got != code {
		tb.Fatalf("got code %v (%s), want %s", got, r.Errors[0].Message, code)
	}
}

func TestQueries(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{})
	tests := []struct {
		name, tenant, query string
		vars                map[string]any
		scopes              []string
		want                string
	}{
		{name: "users of Acme", tenant: demo.TenantAcme, query: `{ users { name } }`,
			want: `{"users": [{"name": "Alice"}, {"name": "Bob"}]}`},
		{name: "users of Globex", tenant: demo.TenantGlobex, query: `{ users { name } }`,
			want: `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`},
		{name: "nested object, alias and typename", tenant: demo.TenantAcme, query: `{ p: posts(limit: 1) { title by: author { name __typename } } }`,
			want: `{"p": [{"title": "Hello from Acme", "by": {"name": "Alice", "__typename": "Author"}}]}`},
		{name: "nested list of objects and scalars", tenant: demo.TenantAcme, query: `{ users(limit: 1) { posts { title } } posts(limit: 1, offset: 1) { tags } }`,
			want: `{"users": [{"posts": [{"title": "Hello from Acme"}, {"title": "Rockets for beginners"}]}], "posts": [{"tags": ["review", "anvils"]}]}`},
		{name: "nested list sliced", tenant: demo.TenantAcme, query: `{ users(limit: 1) { a: posts(limit: 1, offset: 1) { title } b: posts(offset: 1) { title } c: posts(limit: 0) { title } } }`,
			want: `{"users": [{"a": [{"title": "Rockets for beginners"}], "b": [{"title": "Rockets for beginners"}], "c": []}]}`},
		{name: "own user by id", tenant: demo.TenantGlobex, query: `{ user(id: "c0000000-0000-4000-8000-00000000000c") { name } }`,
			want: `{"user": {"name": "Carol"}}`},
		{name: "malformed id is null", tenant: demo.TenantGlobex, query: `{ user(id: "nope") { name } }`, want: `{"user": null}`},
		{name: "named and inline fragments, skip", tenant: demo.TenantAcme,
			query: `query { users(limit: 1) { ...F ... on User { createdAt } email @skip(if: true) } } fragment F on User { name }`,
			want:  `{"users": [{"name": "Alice", "createdAt": "2026-01-01T10:00:00+00:00"}]}`},
		{name: "include and skip by variables", tenant: demo.TenantAcme,
			query: `query Q($with: Boolean!, $without: Boolean = false) { users(limit: 1) { name @include(if: $with) id @skip(if: $without) } }`,
			vars:  map[string]any{"with": false},
			want:  `{"users": [{"id": "a0000000-0000-4000-8000-00000000000a"}]}`},
		{name: "variables coerced: Int from a JSON number, input object", tenant: demo.TenantAcme,
			query: `query($n: Int, $w: PostWhere) { posts(limit: $n, where: $w) { title } }`,
			vars:  map[string]any{"n": float64(1), "w": map[string]any{"minutes": map[string]any{"gte": float64(7)}}},
			want:  `{"posts": [{"title": "Anvils, a review"}]}`},
		{name: "root __typename", tenant: demo.TenantAcme, query: `{ __typename }`, want: `{"__typename": "Query"}`},
		{name: "email masked", tenant: demo.TenantAcme, query: `{ users { email } }`,
			want: `{"users": [{"email": "a***@acme.test"}, {"email": "b***@acme.test"}]}`},
		{name: "email clear with the scope", tenant: demo.TenantAcme, scopes: []string{"read:User.email"}, query: `{ users { email } }`,
			want: `{"users": [{"email": "alice@acme.test"}, {"email": "bob@acme.test"}]}`},
		{name: "internal note with its scope", tenant: demo.TenantAcme, scopes: []string{"read:Post.internalNote"}, query: `{ posts(limit: 1) { internalNote } }`,
			want: `{"posts": [{"internalNote": "launch"}]}`},
	}
	// e runs reads in one round trip (Options.Batcher); the same table
	// also runs through InTenant alone, an engine's path without one.
	plain := graphql.NewEngine(mustSchema(t, demo.SDL), d.db, graphql.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Execute(as(tt.tenant, tt.scopes...), graphql.Request{Query: tt.query, Variables: tt.vars})
			mustData(t, r, tt.want)
			r = plain.Execute(as(tt.tenant, tt.scopes...), graphql.Request{Query: tt.query, Variables: tt.vars})
			mustData(t, r, tt.want)
		})
	}
	t.Run("response keys follow the selection", func(t *testing.T) {
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: `{ users(limit: 1) { name id } }`})
		var compact strings.Builder
		for _, c := range string(r.Data) {
			if c != ' ' {
				compact.WriteRune(c)
			}
		}
		if want := `{"users":[{"name":"Alice","id":"a0000000-0000-4000-8000-00000000000a"}]}`; compact.String() != want {
			t.Fatalf("got %s, want %s", compact.String(), want)
		}
	})
}

func TestFilterOrderPaginate(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{})
	titles := func(t *testing.T, where, order string, extra string) []string {
		t.Helper()
		q := `{ posts(` + extra
		if where != "" {
			q += ` where: ` + where
		}
		if order != "" {
			q += ` orderBy: ` + order
		}
		q += `) { title } }`
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: strings.Replace(q, "posts()", "posts", 1)})
		if len(r.Errors) > 0 {
			t.Fatalf("%s: %+v", q, *r.Errors[0])
		}
		var got struct{ Posts []struct{ Title string } }
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, p := range got.Posts {
			out = append(out, p.Title)
		}
		return out
	}
	const (
		hello   = "Hello from Acme"
		anvils  = "Anvils, a review"
		rockets = "Rockets for beginners"
		unpub   = "Unpublished anvil"
	)
	tests := []struct {
		name, where, order, extra string
		want                      []string
	}{
		{name: "eq on a nested path", where: `{author: {name: {eq: "Bob"}}}`, want: []string{anvils, unpub}},
		{name: "neq", where: `{author: {name: {neq: "Bob"}}}`, want: []string{hello, rockets}},
		{name: "gt on a nested number", where: `{stats: {readingMinutes: {gt: 1}}}`, want: []string{anvils, rockets}},
		{name: "gte lte via @field path", where: `{minutes: {gte: 7, lte: 12}}`, want: []string{anvils, rockets}},
		{name: "lt", where: `{minutes: {lt: 7}}`, want: []string{hello}},
		{name: "in", where: `{title: {in: ["Draft", "Rockets for beginners"]}}`, want: []string{rockets}},
		{name: "nin", where: `{title: {nin: ["Hello from Acme"]}}`, want: []string{anvils, rockets, unpub}},
		{name: "like", where: `{title: {like: "%anvil%"}}`, want: []string{unpub}},
		{name: "ilike", where: `{title: {ilike: "%ANVIL%"}}`, want: []string{anvils, unpub}},
		{name: "contains is literal", where: `{title: {contains: "%"}}`, want: []string{}},
		{name: "contains", where: `{body: {contains: "fuse"}}`, want: []string{rockets}},
		{name: "isNull true", where: `{publishedAt: {isNull: true}}`, want: []string{unpub}},
		{name: "isNull false on a nested path", where: `{stats: {readingMinutes: {isNull: false}}}`, want: []string{hello, anvils, rockets}},
		{name: "and", where: `{and: [{author: {name: {eq: "Alice"}}}, {minutes: {gt: 5}}]}`, want: []string{rockets}},
		{name: "or", where: `{or: [{title: {eq: "Hello from Acme"}}, {minutes: {eq: 7}}]}`, want: []string{hello, anvils}},
		{name: "not", where: `{not: {author: {name: {eq: "Alice"}}}}`, want: []string{anvils, unpub}},
		{name: "list contains", where: `{tags: {contains: "anvils"}}`, want: []string{anvils, unpub}},
		{name: "list containsAll", where: `{tags: {containsAll: ["anvils", "review"]}}`, want: []string{anvils}},
		{name: "list isEmpty", where: `{tags: {isEmpty: true}}`, want: []string{}},
		{name: "list not empty", where: `{tags: {isEmpty: false}, minutes: {isNull: false}}`, want: []string{hello, anvils, rockets}},
		{name: "id eq uses the id column", where: `{id: {eq: "a1000000-0000-4000-8000-000000000003"}}`, want: []string{rockets}},
		{name: "id in skips non-UUIDs", where: `{id: {in: ["a1000000-0000-4000-8000-000000000003", "nope", "a1000000-0000-4000-8000-000000000001"]}}`, want: []string{hello, rockets}},
		{name: "id nin", where: `{id: {nin: ["a1000000-0000-4000-8000-000000000003", "nope"]}}`, want: []string{hello, anvils, unpub}},
		{name: "id neq", where: `{id: {neq: "a1000000-0000-4000-8000-000000000003"}}`, want: []string{hello, anvils, unpub}},
		{name: "id eq not a UUID", where: `{id: {eq: "nope"}}`, want: []string{}},
		{name: "id isNull", where: `{id: {isNull: false}}`, want: []string{hello, anvils, rockets, unpub}},
		{name: "nested author id is a path", where: `{author: {id: {eq: "a0000000-0000-4000-8000-00000000000a"}}}`, want: []string{hello, rockets}},
		{name: "empty or matches nothing", where: `{or: []}`, want: []string{}},
		{name: "order by a nested path desc, nulls last", order: `[{stats: {readingMinutes: DESC_NULLS_LAST}}]`, want: []string{rockets, anvils, hello, unpub}},
		{name: "order nulls first", order: `[{minutes: ASC_NULLS_FIRST}]`, want: []string{unpub, hello, anvils, rockets}},
		{name: "several keys", order: `[{author: {name: DESC}}, {title: ASC}]`, want: []string{anvils, unpub, hello, rockets}},
		{name: "limit and offset", order: `[{title: ASC}]`, extra: "limit: 2, offset: 1", want: []string{hello, rockets}},
		{name: "filter, order and page together", where: `{author: {name: {eq: "Alice"}}}`, order: `[{minutes: DESC}]`, extra: "limit: 1", want: []string{rockets}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := titles(t, tt.where, tt.order, tt.extra)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("connection pages with cursors", func(t *testing.T) {
		const q = `query($after: String) { postsConnection(first: 2, after: $after, orderBy: [{minutes: DESC_NULLS_LAST}], where: {publishedAt: {isNull: false}}) {
			totalCount edges { cursor node { title } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`
		type page struct {
			PostsConnection struct {
				TotalCount int
				Edges      []struct {
					Cursor string
					Node   struct{ Title string }
				}
				PageInfo struct {
					HasNextPage, HasPreviousPage bool
					StartCursor, EndCursor       *string
				}
			}
		}
		get := func(after any) page {
			r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Variables: map[string]any{"after": after}})
			if len(r.Errors) > 0 {
				t.Fatalf("%+v", *r.Errors[0])
			}
			var p page
			if err := json.Unmarshal(r.Data, &p); err != nil {
				t.Fatal(err)
			}
			return p
		}
		p1 := get(nil).PostsConnection
		if p1.TotalCount != 3 || len(p1.Edges) != 2 || p1.Edges[0].Node.Title != rockets || p1.Edges[1].Node.Title != anvils ||
			!p1.PageInfo.HasNextPage || p1.PageInfo.HasPreviousPage || *p1.PageInfo.EndCursor != p1.Edges[1].Cursor {
			t.Fatalf("page 1: got %+v", p1)
		}
		p2 := get(*p1.PageInfo.EndCursor).PostsConnection
		if len(p2.Edges) != 1 || p2.Edges[0].Node.Title != hello || p2.PageInfo.HasNextPage || !p2.PageInfo.HasPreviousPage {
			t.Fatalf("page 2: got %+v", p2)
		}
		p3 := get(*p2.PageInfo.EndCursor).PostsConnection
		if len(p3.Edges) != 0 || p3.PageInfo.EndCursor != nil || p3.PageInfo.HasNextPage {
			t.Fatalf("page 3: got %+v", p3)
		}
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Variables: map[string]any{"after": "not a cursor"}})
		mustCode(t, r, string(core.CodeInvalid))
	})
	t.Run("orderBy item with two fields is refused", func(t *testing.T) {
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: `{ posts(orderBy: [{title: ASC, body: ASC}]) { id } }`})
		mustCode(t, r, string(core.CodeInvalid))
		if r.Errors[0].Path[0] != "posts" {
			t.Fatalf("got path %v, want [posts]", r.Errors[0].Path)
		}
	})
}

func TestConnectionCursors(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{})
	ctx := as(demo.TenantAcme)
	type conn struct {
		Edges []struct {
			Cursor string
			Node   struct{ Title string }
		}
		PageInfo struct{ HasNextPage bool }
	}
	page := func(t *testing.T, order string, first int, after any) conn {
		t.Helper()
		r := e.Execute(ctx, graphql.Request{Query: `query($after: String, $first: Int) { postsConnection(first: $first, after: $after, orderBy: ` + order + `) {
			edges { cursor node { title } } pageInfo { hasNextPage } } }`, Variables: map[string]any{"after": after, "first": first}})
		if len(r.Errors) > 0 {
			t.Fatalf("%+v", *r.Errors[0])
		}
		var got struct{ PostsConnection conn }
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		return got.PostsConnection
	}
	walk := func(t *testing.T, order string) []string {
		t.Helper()
		var titles []string
		var after any
		for i := 0; i < 10; i++ {
			p := page(t, order, 1, after)
			for _, e := range p.Edges {
				titles = append(titles, e.Node.Title)
				after = e.Cursor
			}
			if !p.PageInfo.HasNextPage {
				return titles
			}
		}
		t.Fatalf("did not reach the last page: %q", titles)
		return nil
	}
	list := func(t *testing.T, order string) []string {
		t.Helper()
		r := e.Execute(ctx, graphql.Request{Query: `{ posts(orderBy: ` + order + `) { title } }`})
		var got struct{ Posts []struct{ Title string } }
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range got.Posts {
			out = append(out, p.Title)
		}
		return out
	}
	for _, order := range []string{
		`[{title: ASC}]`, `[{minutes: ASC_NULLS_FIRST}]`, `[{minutes: ASC}]`, `[{minutes: DESC}]`, `[{minutes: DESC_NULLS_LAST}]`,
		`[{author: {name: DESC}}, {publishedAt: ASC_NULLS_FIRST}]`, `[{publishedAt: DESC}]`, `[]`,
	} {
		t.Run("one by one in the order of "+order, func(t *testing.T) {
			got, want := walk(t, order), list(t, order)
			if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != 4 {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
	back := func(t *testing.T, order string) []string {
		t.Helper()
		var titles []string
		var before any
		for i := 0; i < 10; i++ {
			r := e.Execute(ctx, graphql.Request{Query: `query($before: String) { postsConnection(last: 1, before: $before, orderBy: ` + order + `) {
				edges { cursor node { title } } pageInfo { hasPreviousPage startCursor } } }`, Variables: map[string]any{"before": before}})
			if len(r.Errors) > 0 {
				t.Fatalf("%+v", *r.Errors[0])
			}
			var got struct {
				PostsConnection struct {
					Edges    []struct{ Node struct{ Title string } }
					PageInfo struct {
						HasPreviousPage bool
						StartCursor     string
					}
				}
			}
			if err := json.Unmarshal(r.Data, &got); err != nil {
				t.Fatal(err)
			}
			for _, e := range got.PostsConnection.Edges {
				titles = append([]string{e.Node.Title}, titles...)
			}
			if !got.PostsConnection.PageInfo.HasPreviousPage {
				return titles
			}
			before = got.PostsConnection.PageInfo.StartCursor
		}
		t.Fatalf("did not reach the first page: %q", titles)
		return nil
	}
	for _, order := range []string{`[{minutes: ASC_NULLS_FIRST}]`, `[{minutes: DESC}]`, `[{author: {name: DESC}}, {publishedAt: ASC_NULLS_FIRST}]`} {
		t.Run("backwards one by one in the order of "+order, func(t *testing.T) {
			got, want := back(t, order), list(t, order)
			if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != 4 {
				t.Fatalf("got %q, want %q", got, want)
			}
		})
	}
	t.Run("last two, in forward order", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: `{ postsConnection(last: 2, orderBy: [{title: ASC}]) { edges { node { title } } pageInfo { hasPreviousPage hasNextPage } } }`})
		mustData(t, r, `{"postsConnection": {"edges": [{"node": {"title": "Rockets for beginners"}}, {"node": {"title": "Unpublished anvil"}}],
			"pageInfo": {"hasPreviousPage": true, "hasNextPage": false}}}`)
		mustCode(t, e.Execute(ctx, graphql.Request{Query: `{ postsConnection(first: 1, last: 1) { totalCount } }`}), string(core.CodeInvalid))
	})
	t.Run("a cursor of another order is refused", func(t *testing.T) {
		p := page(t, `[{title: ASC}]`, 1, nil)
		r := e.Execute(ctx, graphql.Request{Query: `query($a: String) { postsConnection(after: $a, orderBy: [{title: DESC}]) { totalCount } }`,
			Variables: map[string]any{"a": p.Edges[0].Cursor}})
		mustCode(t, r, string(core.CodeInvalid))
	})
	t.Run("pages stay exact when rows are inserted before the cursor", func(t *testing.T) {
		p1 := page(t, `[{title: ASC}]`, 2, nil)
		d.admin(t, `insert into public.posts (tenant_id, author_id, title, body) values ($1, 'a0000000-0000-4000-8000-00000000000a', 'Aardvarks', 'x')`, demo.TenantAcme)
		p2 := page(t, `[{title: ASC}]`, 2, p1.Edges[1].Cursor)
		var got []string
		for _, e := range append(p1.Edges, p2.Edges...) {
			got = append(got, e.Node.Title)
		}
		if want := "Anvils, a review|Hello from Acme|Rockets for beginners|Unpublished anvil"; strings.Join(got, "|") != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func TestAuthorization(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{})
	tests := []struct {
		name, query string
		scopes      []string
	}{
		{name: "selecting an @auth field", query: `{ posts { title internalNote } }`},
		{name: "through a fragment", query: `{ post(id: "a1000000-0000-4000-8000-000000000001") { ... on Post { internalNote } } }`},
		{name: "filtering on an @auth field", query: `{ posts(where: {internalNote: {eq: "launch"}}) { title } }`},
		{name: "ordering by an @auth field", query: `{ posts(orderBy: [{internalNote: ASC}]) { title } }`},
		{name: "filtering on a masked field would reveal it", query: `{ users(where: {email: {like: "alice%"}}) { name } }`},
		{name: "a scope for another field does not help", query: `{ posts { internalNote } }`, scopes: []string{"read:User.email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Execute(as(demo.TenantAcme, tt.scopes...), graphql.Request{Query: tt.query})
			mustCode(t, r, string(core.CodeForbidden))
			if r.Data != nil {
				t.Fatalf("got data %s, want none", r.Data)
			}
		})
	}
	t.Run("filtering on a masked field with its scope", func(t *testing.T) {
		r := e.Execute(as(demo.TenantAcme, "read:User.email"), graphql.Request{Query: `{ users(where: {email: {like: "alice%"}}) { name } }`})
		mustData(t, r, `{"users": [{"name": "Alice"}]}`)
	})
}

func TestMaskKindsAndTypeAuth(t *testing.T) {
	d := mustDemoDB(t)
	s := mustSchema(t, `type Person @view(name: "v_user") @auth(scope: "people") {
		name: String @mask(kind: PII)
		email: String @mask(kind: SECRET)
		createdAt: String @mask(kind: EMAIL)
	}
	type Query { people: [Person!]! }`)
	if err := s.Check(context.Background(), d.db); err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, d.db, graphql.Options{Batcher: d.db, Writer: d.db})
	const q = `{ people(limit: 1) { name email createdAt } }`
	mustCode(t, e.Execute(as(demo.TenantAcme), graphql.Request{Query: q}), string(core.CodeForbidden))
	mustData(t, e.Execute(as(demo.TenantAcme, "people"), graphql.Request{Query: q}),
		`{"people": [{"name": "A***", "email": "***", "createdAt": "2***"}]}`)
	mustData(t, e.Execute(as(demo.TenantAcme, "people", "unmask:Person.name", "unmask:Person.email"), graphql.Request{Query: q}),
		`{"people": [{"name": "Alice", "email": "alice@acme.test", "createdAt": "2***"}]}`)
}

func TestAbstractTypesInData(t *testing.T) {
	d := mustDemoDB(t)
	d.admin(t, `create view public.v_feed with (security_invoker = true) as
		select u.id, u.tenant_id, jsonb_build_object('owner', u.name,
			'items', jsonb_build_array(jsonb_build_object('__typename', 'Note', 'text', 'hi ' || u.name),
				jsonb_build_object('__typename', 'Link', 'url', 'https://x.test/' || u.name, 'title', 'x'),
				jsonb_build_object('__typename', 'Bogus')),
			'pinned', jsonb_build_object('__typename', 'Link', 'url', 'https://pin.test', 'title', 'p')) as data
		from public.users u`)
	d.admin(t, `grant select on public.v_feed to fraise_app`)
	s := mustSchema(t, `interface Titled { title: String }
		type Note { text: String! }
		type Link implements Titled { url: String! title: String }
		union Item = Note | Link
		type Feed { owner: String! items: [Item]! pinned: Titled }
		type Query { feeds: [Feed!]! }`)
	if err := s.Check(context.Background(), d.db); err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, d.db, graphql.Options{Batcher: d.db, Writer: d.db})
	r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: `{ feeds(limit: 1) {
		owner items { __typename ... on Note { text } ... on Link { url } } pinned { __typename title ... on Link { url } } } }`})
	mustData(t, r, `{"feeds": [{"owner": "Alice",
		"items": [{"__typename": "Note", "text": "hi Alice"}, {"__typename": "Link", "url": "https://x.test/Alice"}, null],
		"pinned": {"__typename": "Link", "title": "p", "url": "https://pin.test"}}]}`)
}

const createPost = `mutation($in: CreatePostInput!) { createPost(input: $in) {
	__typename
	... on CreatePostSuccess { status post { title tags minutes author { name } } }
	... on CreatePostError { status errorClass message } } }`

func TestMutations(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{})
	ctx := core.WithPrincipal(context.Background(), core.Principal{Subject: "alice", Tenant: demo.TenantAcme})
	t.Run("success returns the typed success and writes an audit row", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: createPost, Variables: map[string]any{"in": map[string]any{
			"title": "New", "body": "Fresh words", "authorId": "b0000000-0000-4000-8000-00000000000b", "tags": []any{"x"}, "readingMinutes": 3,
		}}})
		mustData(t, r, `{"createPost": {"__typename": "CreatePostSuccess", "status": "created", "post": {"title": "New", "tags": ["x"], "minutes": 3, "author": {"name": "Bob"}}}}`)
		rows := d.admin(t, `select a.tenant_id::text, a.subject, a.operation, a.outcome, a.resource_id = p.id::text
			from fraise.audit_log a join public.posts p on p.title = 'New' where a.operation = 'createPost' and a.outcome = 'created'`)
		if len(rows) != 1 || rows[0][0] != demo.TenantAcme || rows[0][1] != "alice" || rows[0][4] != true {
			t.Fatalf("got audit rows %v, want one naming Acme, alice and the new post", rows)
		}
		r = e.Execute(ctx, graphql.Request{Query: `{ posts(where: {title: {eq: "New"}}) { author { name } } }`})
		mustData(t, r, `{"posts": [{"author": {"name": "Bob"}}]}`)
	})
	t.Run("a business error returns the typed error and is audited", func(t *testing.T) {
		r := e.Execute(ctx, graphql.Request{Query: createPost, Variables: map[string]any{"in": map[string]any{
			"title": " ", "authorId": "b0000000-0000-4000-8000-00000000000b",
		}}})
		mustData(t, r, `{"createPost": {"__typename": "CreatePostError", "status": "invalid", "errorClass": "validation", "message": "title is required"}}`)
		if rows := d.admin(t, `select 1 from fraise.audit_log where outcome = 'validation' and resource_id is null`); len(rows) != 1 {
			t.Fatalf("got %d audit rows for the failed mutation, want 1", len(rows))
		}
	})
	t.Run("a database error rolls back and is audited", func(t *testing.T) {
		d.admin(t, `create or replace function public.fn_fail_post(input jsonb) returns fraise.mutation_result language plpgsql as $$ begin raise exception 'boom' using errcode = '22012'; end $$`)
		d.admin(t, `grant execute on function public.fn_fail_post(jsonb) to fraise_app`)
		s := mustSchema(t, demo.SDL+"\nextend type Mutation { failPost(input: CreatePostInput!): CreatePostResult! }")
		if err := s.Check(context.Background(), d.db); err != nil {
			t.Fatal(err)
		}
		e2 := graphql.NewEngine(s, d.db, graphql.Options{Batcher: d.db, Writer: d.db, Audit: d.db})
		n := d.admin(t, `select count(*) from public.posts`)[0][0]
		r := e2.Execute(ctx, graphql.Request{Query: `mutation { createPost(input: {title: "kept?", authorId: "b0000000-0000-4000-8000-00000000000b"}) { __typename }
			failPost(input: {title: "x", authorId: "b0000000-0000-4000-8000-00000000000b"}) { __typename } }`})
		mustCode(t, r, string(core.CodeInvalid))
		if string(r.Data) != "null" {
			t.Fatalf("got data %s, want null", r.Data)
		}
		if got := d.admin(t, `select count(*) from public.posts`)[0][0]; got != n {
			t.Fatalf("got %v posts, want %v: the first mutation must roll back with the second", got, n)
		}
		if rows := d.admin(t, `select operation from fraise.audit_log where outcome = 'error:INVALID' order by operation`); len(rows) != 2 {
			t.Fatalf("got audit rows %v, want createPost and failPost with error:INVALID", rows)
		}
	})
}

func TestSchemaCheck(t *testing.T) {
	d := mustDemoDB(t)
	d.admin(t, `create view public.v_thin as select id, tenant_id from public.users`)
	d.admin(t, `create view public.v_noid as select tenant_id, to_jsonb(u) as data from public.users u`)
	d.admin(t, `create view public.v_textdata as select id, name as data from public.users`)
	d.admin(t, `create function public.fn_wrong(a int) returns int language sql as $$ select 1 $$`)
	d.admin(t, `create function public.fn_unnamed(int) returns fraise.mutation_result language sql as $$ select null::fraise.mutation_result $$`)
	tests := []struct {
		name, sdl string
		want      []string
	}{
		{name: "demo passes", sdl: demo.SDL},
		{name: "missing view", sdl: `type Ghost { id: ID! } type Query { ghosts: [Ghost!]! }`, want: []string{"view v_ghost does not exist"}},
		{name: "missing named view", sdl: `type Ghost @view(name: "v_missing") { id: ID! } type Query { ghost(id: ID!): Ghost }`, want: []string{"type Ghost: view v_missing does not exist"}},
		{name: "a view without data is read as its columns", sdl: `type Thin @view(name: "v_thin") { id: ID! } type Query { thins: [Thin!]! }`},
		{name: "missing id", sdl: `type Noid @view(name: "v_noid") { id: ID! } type Query { noids: [Noid!]! }`, want: []string{"view v_noid has no column id"}},
		{name: "data not jsonb", sdl: `type Textdata @view(name: "v_textdata") { id: ID! } type Query { textdatas: [Textdata!]! }`, want: []string{"column v_textdata.data is text, not jsonb"}},
		{name: "missing function", sdl: demo.SDL + `extend type Mutation { deletePost(id: ID!): CreatePostResult! }`, want: []string{"mutation deletePost: function fn_delete_post does not exist"}},
		{name: "unnamed arguments", sdl: demo.SDL + `extend type Mutation { unnamed(id: ID!): CreatePostResult! }`, want: []string{"function fn_unnamed takes (integer): arguments other than one jsonb need names"}},
		{name: "missing audit function", sdl: demo.SDL, want: []string{"mutations need function fraise.audit"}},
		{name: "wrong function", sdl: demo.SDL + `extend type Mutation { wrong(id: ID!): CreatePostResult! }`, want: []string{"fn_wrong returns no column succeeded or status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "missing audit function" {
				d.admin(t, `alter function fraise.audit(text, text, text, text) rename to audit_renamed`)
				defer d.admin(t, `alter function fraise.audit_renamed(text, text, text, text) rename to audit`)
			}
			err := mustSchema(t, tt.sdl).Check(context.Background(), d.db)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestLimits(t *testing.T) {
	d := mustDemoDB(t)
	d.admin(t, `create view public.v_slow with (security_invoker = true) as select id, tenant_id, data from public.v_user where pg_sleep(0.3) is not null`)
	d.admin(t, `grant select on public.v_slow to fraise_app`)
	s := mustSchema(t, demo.SDL+"\ntype Slow { name: String } extend type Query { slows: [Slow!]! }")
	if err := s.Check(context.Background(), d.db); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		o     graphql.Options
		query string
		code  string
		// timeout is the statement timeout of the engine's transactions,
		// which the adapter sets (0: none).
		timeout time.Duration
	}{
		{"depth", graphql.Options{MaxDepth: 2}, `{ posts { author { name } } }`, graphql.CodeDepthLimit, 0},
		{"depth within", graphql.Options{MaxDepth: 2}, `{ posts { title } }`, "", 0},
		{"aliases", graphql.Options{MaxAliases: 1}, `{ a: users { x: name } }`, graphql.CodeAliasLimit, 0},
		{"root fields", graphql.Options{MaxRootFields: 2}, `{ users { id } posts { id } u2: users { id } }`, graphql.CodeRootFieldLimit, 0},
		{"cost multiplies by list sizes", graphql.Options{MaxCost: 500}, `{ users(limit: 100) { posts { id title } } }`, graphql.CodeCostLimit, 0},
		{"cost within", graphql.Options{MaxCost: 500}, `{ users(limit: 10) { posts { id title } } }`, "", 0},
		{"result size", graphql.Options{MaxResultBytes: 100}, `{ posts { title body author { name email } } }`, graphql.CodeResultTooLarge, 0},
		{"statement timeout", graphql.Options{}, `{ slows { name } }`, graphql.CodeStatementTimeout, 50 * time.Millisecond},
		{"statement timeout of the second statement", graphql.Options{}, `{ users { id } slows { name } }`, graphql.CodeStatementTimeout, 50 * time.Millisecond},
		{"introspection off", graphql.Options{}, `{ __schema { queryType { name } } }`, graphql.CodeIntrospection, 0},
		{"introspection off for __type", graphql.Options{}, `{ __type(name: "Post") { name } }`, graphql.CodeIntrospection, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := d.db
			if tt.timeout > 0 {
				db = d.db.WithStatementTimeout(tt.timeout)
			}
			o := tt.o
			o.Batcher, o.Writer = db, db
			e := graphql.NewEngine(s, db, o)
			r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: tt.query})
			if tt.code == "" {
				if len(r.Errors) > 0 {
					t.Fatalf("got %+v, want no error", *r.Errors[0])
				}
				return
			}
			mustCode(t, r, tt.code)
		})
	}
}

func hashOf(q string) string {
	sum := sha256.Sum256([]byte(q))
	return hex.EncodeToString(sum[:])
}

func persisted(hash string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": float64(1), "sha256Hash": hash}}
}

func TestPersistedQueries(t *testing.T) {
	d := mustDemoDB(t)
	const q = `{ users { name } }`
	t.Run("APQ miss, register, hit", func(t *testing.T) {
		e := mustEngine(t, d, graphql.Options{APQ: true})
		mustCode(t, e.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(q))}), graphql.CodePersistedNotFound)
		mustData(t, e.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Alice"}, {"name": "Bob"}]}`)
		mustData(t, e.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Alice"}, {"name": "Bob"}]}`)
	})
	t.Run("APQ hash mismatch", func(t *testing.T) {
		e := mustEngine(t, d, graphql.Options{APQ: true})
		mustCode(t, e.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Extensions: persisted(hashOf("{ posts { id } }"))}), graphql.CodePersistedHash)
	})
	t.Run("APQ off", func(t *testing.T) {
		e := mustEngine(t, d, graphql.Options{})
		mustCode(t, e.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(q))}), graphql.CodePersistedUnsupported)
	})
	t.Run("trusted documents", func(t *testing.T) {
		e := mustEngine(t, d, graphql.Options{Trusted: map[string]string{hashOf(q): q}})
		mustData(t, e.Execute(as(demo.TenantGlobex), graphql.Request{Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`)
		mustData(t, e.Execute(as(demo.TenantGlobex), graphql.Request{Query: q}), `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`)
		mustCode(t, e.Execute(as(demo.TenantGlobex), graphql.Request{Query: `{ posts { title } }`}), graphql.CodeNotTrusted)
		other := `{ posts { title } }`
		mustCode(t, e.Execute(as(demo.TenantGlobex), graphql.Request{Query: other, Extensions: persisted(hashOf(other))}), graphql.CodeNotTrusted)
	})
}

func TestTenantIsolation(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{APQ: true})
	acme := as(demo.TenantAcme, "read:User.email", "read:Post.internalNote")
	tests := []struct {
		name, query, want string
	}{
		{"filter on another tenant's value", `{ users(where: {name: {in: ["Carol", "Dave"]}}) { id } }`, `{"users": []}`},
		{"or matching every row", `{ posts(where: {or: [{title: {isNull: false}}, {title: {isNull: true}}]}) { author { name } } }`,
			`{"posts": [{"author": {"name": "Alice"}}, {"author": {"name": "Bob"}}, {"author": {"name": "Alice"}}, {"author": {"name": "Bob"}}]}`},
		{"another tenant's id", `{ post(id: "c1000000-0000-4000-8000-000000000001") { title } }`, `{"post": null}`},
		{"another tenant's id in a filter", `{ posts(where: {id: {eq: "c1000000-0000-4000-8000-000000000001"}}) { title } }`, `{"posts": []}`},
		{"nested path", `{ posts(where: {author: {email: {like: "%globex%"}}}) { title } }`, `{"posts": []}`},
		{"secret of another tenant", `{ posts(where: {internalNote: {eq: "secret plan"}}) { title } }`, `{"posts": []}`},
		{"connection counts own rows only", `{ postsConnection(first: 0) { totalCount } }`, `{"postsConnection": {"totalCount": 4}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustData(t, e.Execute(acme, graphql.Request{Query: tt.query}), tt.want)
		})
	}
	t.Run("mutation naming another tenant's author", func(t *testing.T) {
		r := e.Execute(acme, graphql.Request{Query: createPost, Variables: map[string]any{"in": map[string]any{
			"title": "Hijack", "authorId": "c0000000-0000-4000-8000-00000000000c",
		}}})
		mustData(t, r, `{"createPost": {"__typename": "CreatePostError", "status": "not_found", "errorClass": "not_found", "message": "no such author"}}`)
		if rows := d.admin(t, `select 1 from public.posts where title = 'Hijack'`); len(rows) != 0 {
			t.Fatalf("got %d hijack posts, want none", len(rows))
		}
		if rows := d.admin(t, `select tenant_id::text from fraise.audit_log where outcome = 'not_found'`); len(rows) != 1 || rows[0][0] != demo.TenantAcme {
			t.Fatalf("got audit rows %v, want one for Acme", rows)
		}
	})
	t.Run("another tenant's cursor pages through own rows only", func(t *testing.T) {
		const q = `query($a: String) { postsConnection(first: 10, after: $a, orderBy: [{title: ASC}]) { edges { cursor node { author { name } } } } }`
		r := e.Execute(as(demo.TenantGlobex), graphql.Request{Query: q})
		var got struct {
			PostsConnection struct {
				Edges []struct {
					Cursor string
					Node   struct{ Author struct{ Name string } }
				}
			}
		}
		if err := json.Unmarshal(r.Data, &got); err != nil || len(got.PostsConnection.Edges) != 2 {
			t.Fatalf("got %s, %v", r.Data, err)
		}
		r = e.Execute(acme, graphql.Request{Query: q, Variables: map[string]any{"a": got.PostsConnection.Edges[0].Cursor}})
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.PostsConnection.Edges) != 3 { // Acme's titles after Globex's "Draft"
			t.Fatalf("got %s, want Acme's three posts titled after Draft", r.Data)
		}
		for _, e := range got.PostsConnection.Edges {
			if n := e.Node.Author.Name; n != "Alice" && n != "Bob" {
				t.Fatalf("got a post by %s", n)
			}
		}
	})
	t.Run("the core's role cannot read the audit log", func(t *testing.T) {
		err := d.db.InTenant(context.Background(), demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
			_, err := q.QueryJSON(ctx, "select to_jsonb(count(*)) from fraise.audit_log")
			return err
		})
		if core.ErrorCode(err) != core.CodeForbidden {
			t.Fatalf("got %v, want %s", err, core.CodeForbidden)
		}
	})
	t.Run("persisted query registered by another tenant", func(t *testing.T) {
		const q = `{ users { name } }`
		mustData(t, e.Execute(as(demo.TenantGlobex), graphql.Request{Query: q, Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`)
		mustData(t, e.Execute(acme, graphql.Request{Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Alice"}, {"name": "Bob"}]}`)
	})
}

func TestIntrospection(t *testing.T) {
	d := mustDemoDB(t)
	e := mustEngine(t, d, graphql.Options{Introspection: true})
	t.Run("type with generated filter input", func(t *testing.T) {
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: `{ __type(name: "PostOrderBy") { kind name inputFields { name type { kind name } } } }`})
		if len(r.Errors) > 0 {
			t.Fatalf("%+v", *r.Errors[0])
		}
		var got struct {
			Type struct {
				Kind        string
				InputFields []struct{ Name string } `json:"inputFields"`
			} `json:"__type"`
		}
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range got.Type.InputFields {
			names = append(names, f.Name)
		}
		if got.Type.Kind != "INPUT_OBJECT" || !strings.Contains(strings.Join(names, ","), "stats,minutes,author") {
			t.Fatalf("got %s", r.Data)
		}
	})
	t.Run("full introspection query hides Fraise's directives", func(t *testing.T) {
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Query: introspectionQuery})
		if len(r.Errors) > 0 {
			t.Fatalf("%+v", *r.Errors[0])
		}
		var got struct {
			Schema struct {
				QueryType    struct{ Name string }
				MutationType struct{ Name string }
				Types        []struct {
					Name   string
					Fields []struct {
						Name string
						Type struct {
							Kind   string
							OfType struct{ Kind, Name string }
						}
					}
				}
				Directives []struct{ Name string }
			} `json:"__schema"`
		}
		if err := json.Unmarshal(r.Data, &got); err != nil {
			t.Fatal(err)
		}
		if got.Schema.QueryType.Name != "Query" || got.Schema.MutationType.Name != "Mutation" {
			t.Fatalf("got root types %+v", got.Schema)
		}
		for _, dir := range got.Schema.Directives {
			if dir.Name == "view" || dir.Name == "auth" || dir.Name == "mask" {
				t.Fatalf("introspection shows @%s", dir.Name)
			}
		}
		found := false
		for _, ty := range got.Schema.Types {
			if ty.Name == "MaskKind" {
				t.Fatal("introspection shows MaskKind")
			}
			if ty.Name == "Post" {
				for _, f := range ty.Fields {
					if f.Name == "title" && f.Type.Kind == "NON_NULL" && f.Type.OfType.Name == "String" {
						found = true
					}
				}
			}
		}
		if !found {
			t.Fatal("Post.title: String! not in the introspection result")
		}
	})
}

// introspectionQuery is the query GraphiQL and graphql-js send.
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }`
