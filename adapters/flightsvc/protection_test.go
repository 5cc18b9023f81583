package flightsvc_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/adapters/flightsvc"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// The demo's users and posts (deploy/demo/seed.sql).
const (
	aliceID = "a0000000-0000-4000-8000-00000000000a"
	bobID   = "b0000000-0000-4000-8000-00000000000b"
	post1   = "a1000000-0000-4000-8000-000000000001"
	post2   = "a1000000-0000-4000-8000-000000000002"
	post3   = "a1000000-0000-4000-8000-000000000003"
	post4   = "a1000000-0000-4000-8000-000000000004"
)

// flatUsersSQL is a view over users that no GraphQL type reads: Fraise
// cannot know where its columns come from, so the dataset over it declares
// their protection itself.
const flatUsersSQL = `
CREATE VIEW public.v_user_flat WITH (security_invoker = true) AS SELECT id, name, email, created_at FROM public.users;
GRANT SELECT ON public.v_user_flat TO fraise_app;`

var (
	// analyst holds no scope: GraphQL masks e-mail addresses for it and
	// refuses it Post.internalNote.
	analyst = core.Principal{Subject: "ann", Tenant: demo.TenantAcme, Roles: []string{"analyst"}}
	// reader holds every scope the demo schema and the flat dataset name.
	reader = core.Principal{Subject: "rita", Tenant: demo.TenantAcme, Roles: []string{"analyst"},
		Scopes: []string{"read:User.email", "read:Post.internalNote", "read:User.name", "read:User.createdAt"}}
)

// protectedDatasets are datasets over the demo's GraphQL types, whose
// columns carry their fields' @auth and @mask, and over a plain view,
// whose columns declare theirs.
func protectedDatasets(tb testing.TB) []flight.Dataset {
	tb.Helper()
	col := func(spec string) flight.Column {
		name, typ, _ := strings.Cut(spec, " ")
		t, err := flight.ParseType(typ)
		if err != nil {
			tb.Fatal(err)
		}
		return flight.Column{Name: name, Type: t}
	}
	with := func(c flight.Column, f func(*flight.Column)) flight.Column { f(&c); return c }
	return []flight.Dataset{
		{Name: "people.users", Type: "User", Columns: []flight.Column{
			col("id uuid"), col("name text"), col("email text"), col("created_at timestamptz")}},
		{Name: "blog.posts", Type: "Post", Columns: []flight.Column{
			col("id uuid"), col("title text"), col("tags text[]"), col("minutes int4"),
			with(col("author_email text"), func(c *flight.Column) { c.Field = "author.email" }),
			col("internal_note text")}},
		{Name: "people.flat", View: "public.v_user_flat", Columns: []flight.Column{
			col("id uuid"),
			with(col("name text"), func(c *flight.Column) {
				c.Protection = core.Protection{Mask: core.MaskPII, MaskScope: "read:User.name"}
			}),
			with(col("email text"), func(c *flight.Column) {
				c.Protection = core.Protection{Mask: core.MaskEmail, MaskScope: "read:User.email"}
			}),
			with(col("created_at timestamptz"), func(c *flight.Column) {
				c.Protection = core.Protection{Auth: []string{"read:User.createdAt"}}
			})}},
	}
}

// protectedFixture is the Flight service over the demo database, with the
// demo's GraphQL schema and engine beside it to compare with.
type protectedFixture struct {
	client aflight.Client
	sql    *flightsql.Client
	calls  callSigner
	schema *graphql.Schema
	engine *graphql.Engine
}

func mustProtected(tb testing.TB) *protectedFixture {
	tb.Helper()
	harness.SkipShort(tb)
	ctx := context.Background()
	pg, db := postgrestest.NewDemo(tb)
	admin, err := pgx.Connect(ctx, pg.AdminURL(db))
	if err != nil {
		tb.Fatal(err)
	}
	_, err = admin.Exec(ctx, flatUsersSQL)
	admin.Close(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	pdb, err := postgres.Open(ctx, pg.URL("fraise_app", db), postgres.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pdb.Close)
	schema, err := graphql.ParseSchema(demo.SDL)
	if err != nil {
		tb.Fatal(err)
	}
	cat, err := flight.NewCatalog(protectedDatasets(tb), schema)
	if err != nil {
		tb.Fatal(err)
	}
	tickets, err := flight.NewTickets(make([]byte, 32), time.Minute, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	signer, keys := assertiontest.New(tb, nil)
	exp := postgres.NewExporter(pdb, postgres.ExportOptions{})
	svc := flightsvc.New(flightsvc.Options{Verifier: assertion.NewVerifier(keys, nil),
		Service: flight.NewService(flight.ServiceOptions{Catalog: cat, Tickets: tickets, Source: exp, Partitioner: exp})})
	g := grpc.NewServer(svc.ServerOptions()...)
	svc.Register(g)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	calls := callSigner{signer}
	c, err := aflight.NewClientWithMiddleware(ln.Addr().String(), nil, nil,
		append(calls.dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &protectedFixture{client: c, sql: &flightsql.Client{Client: c}, calls: calls, schema: schema,
		engine: graphql.NewEngine(schema, pdb, graphql.Options{Batcher: pdb, Writer: pdb})}
}

// as returns a context whose calls each carry the assertion extauthz issues
// p for that call (an assertion is single use and bound to its call).
func (f *protectedFixture) as(tb testing.TB, p core.Principal) context.Context {
	tb.Helper()
	return f.calls.as(tb, context.Background(), p)
}

// export is one export read whole: the schema DoGet sent and its rows,
// keyed by their id, each a column name to value map.
type export struct {
	schema *arrow.Schema
	rows   map[string]map[string]any
}

// doGet redeems ticket as p.
func (f *protectedFixture) doGet(tb testing.TB, p core.Principal, ticket *aflight.Ticket) (export, error) {
	tb.Helper()
	stream, err := f.client.DoGet(f.as(tb, p), ticket)
	if err != nil {
		return export{}, err
	}
	rdr, err := aflight.NewRecordReader(stream)
	if err != nil {
		return export{}, err
	}
	defer rdr.Release()
	out := export{schema: rdr.Schema(), rows: map[string]map[string]any{}}
	for rdr.Next() {
		rec := rdr.RecordBatch()
		for r := 0; r < int(rec.NumRows()); r++ {
			row := map[string]any{}
			for i, fld := range rec.Schema().Fields() {
				row[fld.Name] = value(rec.Column(i), r)
			}
			id, _ := row["id"].(string)
			out.rows[id] = row
		}
	}
	return out, rdr.Err()
}

// get exports desc as p: GetFlightInfo, then DoGet of its ticket.
func (f *protectedFixture) get(tb testing.TB, p core.Principal, desc *aflight.FlightDescriptor) (export, error) {
	tb.Helper()
	info, err := f.client.GetFlightInfo(f.as(tb, p), desc)
	if err != nil {
		return export{}, err
	}
	return f.doGet(tb, p, info.Endpoint[0].Ticket)
}

// value is a cell as the tests compare it: uuids and timestamps as text,
// lists as []any, NULL as nil.
func value(col arrow.Array, r int) any {
	if col.IsNull(r) {
		return nil
	}
	switch c := col.(type) {
	case *array.String:
		return c.Value(r)
	case *array.Int32:
		return c.Value(r)
	case *array.FixedSizeBinary:
		b := c.Value(r)
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	case *array.Timestamp:
		return c.Value(r).ToTime(arrow.Microsecond).UTC().Format(time.RFC3339)
	case *array.List:
		start, end := c.ValueOffsets(r)
		out := []any{}
		for i := int(start); i < int(end); i++ {
			out = append(out, value(c.ListValues(), i))
		}
		return out
	}
	return "unsupported " + col.DataType().String()
}

func path(p ...string) *aflight.FlightDescriptor {
	return &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: p}
}

func command(cmd string) *aflight.FlightDescriptor {
	return &aflight.FlightDescriptor{Type: aflight.DescriptorCMD, Cmd: []byte(cmd)}
}

// column returns one column of an export, by row id.
func (e export) column(name string) map[string]any {
	out := map[string]any{}
	for id, row := range e.rows {
		out[id] = row[name]
	}
	return out
}

func equalColumn(got, want map[string]any) bool {
	if len(got) != len(want) {
		return false
	}
	for id, w := range want {
		g, ok := got[id]
		if !ok || fmt.Sprint(g) != fmt.Sprint(w) {
			return false
		}
	}
	return true
}

// TestFlightAppliesFieldProtection: a dataset's columns carry the @auth and
// @mask of the GraphQL fields they read (or their own, declared with the
// dataset), applied in the SQL the export runs: an analyst without
// read:User.email exporting the users dataset gets a***@acme.test, as from
// GraphQL, never the clear address (security #13, defect 9).
func TestFlightAppliesFieldProtection(t *testing.T) {
	f := mustProtected(t)
	tests := []struct {
		name    string
		as      core.Principal
		dataset []string
		column  string
		want    map[string]any
	}{
		{"masked for a caller without the scope", analyst, []string{"people", "users"}, "email",
			map[string]any{aliceID: "a***@acme.test", bobID: "b***@acme.test"}},
		{"clear for a caller with the scope", reader, []string{"people", "users"}, "email",
			map[string]any{aliceID: "alice@acme.test", bobID: "bob@acme.test"}},
		{"an unprotected field is clear", analyst, []string{"people", "users"}, "name",
			map[string]any{aliceID: "Alice", bobID: "Bob"}},
		{"a field of another type is cast to the column's type", analyst, []string{"people", "users"}, "created_at",
			map[string]any{aliceID: "2026-01-01T10:00:00Z", bobID: "2026-01-02T10:00:00Z"}},
		{"@auth column is NULL for a caller without the scope", analyst, []string{"blog", "posts"}, "internal_note",
			map[string]any{post1: nil, post2: nil, post3: nil, post4: nil}},
		{"@auth column for a caller with the scope", reader, []string{"blog", "posts"}, "internal_note",
			map[string]any{post1: "launch", post2: nil, post3: nil, post4: "embargo"}},
		{"a nested field keeps its mask", analyst, []string{"blog", "posts"}, "author_email",
			map[string]any{post1: "a***@acme.test", post2: "b***@acme.test", post3: "a***@acme.test", post4: "b***@acme.test"}},
		{"a list field", analyst, []string{"blog", "posts"}, "tags",
			map[string]any{post1: []any{"news"}, post2: []any{"review", "anvils"}, post3: []any{"howto"}, post4: []any{"anvils"}}},
		{"a declared mask on a plain view", analyst, []string{"people", "flat"}, "email",
			map[string]any{aliceID: "a***@acme.test", bobID: "b***@acme.test"}},
		{"a declared PII mask", analyst, []string{"people", "flat"}, "name",
			map[string]any{aliceID: "A***", bobID: "B***"}},
		{"a declared @auth on a timestamp is a NULL of its type", analyst, []string{"people", "flat"}, "created_at",
			map[string]any{aliceID: nil, bobID: nil}},
		{"declared protection lifted by the scopes", reader, []string{"people", "flat"}, "email",
			map[string]any{aliceID: "alice@acme.test", bobID: "bob@acme.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := f.get(t, tt.as, path(tt.dataset...))
			if err != nil {
				t.Fatal(err)
			}
			if got := e.column(tt.column); !equalColumn(got, tt.want) {
				t.Errorf("column %s: got %v, want %v", tt.column, got, tt.want)
			}
		})
	}

	t.Run("the view's raw data is not exportable", func(t *testing.T) {
		// The declaration that exported every address in the clear: the
		// data column of User's view, past the schema's protection.
		_, err := flight.NewCatalog([]flight.Dataset{{Name: "people.raw", View: "public.v_user", Columns: []flight.Column{
			{Name: "id", Type: flight.Type{Kind: flight.KindUUID}}, {Name: "data", Type: flight.Type{Kind: flight.KindJSONB}}}}}, f.schema)
		if err == nil || !strings.Contains(err.Error(), "view of GraphQL type User") {
			t.Errorf("got %v, want the dataset refused as reading User's view", err)
		}
	})
}

// TestFlightMasksAsGraphQLDoes compares, for callers with and without the
// scope, the addresses Flight exports with those GraphQL answers.
func TestFlightMasksAsGraphQLDoes(t *testing.T) {
	f := mustProtected(t)
	for _, p := range []core.Principal{analyst, reader} {
		t.Run(p.Subject, func(t *testing.T) {
			resp := f.engine.Execute(core.WithPrincipal(context.Background(), p),
				graphql.Request{Query: "{ users { id email } posts { id author { email } } }"})
			if len(resp.Errors) > 0 {
				t.Fatalf("GraphQL: %v", resp.Errors[0].Message)
			}
			var data struct {
				Users []struct{ ID, Email string }
				Posts []struct {
					ID     string
					Author struct{ Email string }
				}
			}
			if err := json.Unmarshal(resp.Data, &data); err != nil {
				t.Fatal(err)
			}
			users, err := f.get(t, p, path("people", "users"))
			if err != nil {
				t.Fatal(err)
			}
			posts, err := f.get(t, p, path("blog", "posts"))
			if err != nil {
				t.Fatal(err)
			}
			if len(data.Users) != len(users.rows) || len(data.Posts) != len(posts.rows) {
				t.Fatalf("got %d users and %d posts from Flight, want GraphQL's %d and %d", len(users.rows), len(posts.rows), len(data.Users), len(data.Posts))
			}
			for _, u := range data.Users {
				if got := users.rows[u.ID]["email"]; got != u.Email {
					t.Errorf("user %s: got %v from Flight, want GraphQL's %q", u.ID, got, u.Email)
				}
			}
			for _, p := range data.Posts {
				if got := posts.rows[p.ID]["author_email"]; got != p.Author.Email {
					t.Errorf("post %s: got author %v from Flight, want GraphQL's %q", p.ID, got, p.Author.Email)
				}
			}
		})
	}
}

// TestFlightRefusesFilteringByProtectedColumns: a filter or an order on a
// value the caller sees masked or not at all would reveal it one guess at
// a time, so it needs the scope, as in GraphQL.
func TestFlightRefusesFilteringByProtectedColumns(t *testing.T) {
	f := mustProtected(t)
	tests := []struct {
		name string
		as   core.Principal
		cmd  string
		want codes.Code
		ids  []string
	}{
		{"filter by a masked field", analyst, `{"dataset":"people.users","where":{"email":{"eq":"alice@acme.test"}}}`, codes.PermissionDenied, nil},
		{"like on a masked field", analyst, `{"dataset":"people.users","columns":["id"],"where":{"email":{"like":"a%"}}}`, codes.PermissionDenied, nil},
		{"order by an @auth field", analyst, `{"dataset":"blog.posts","columns":["id"],"order":[{"column":"internal_note"}]}`, codes.PermissionDenied, nil},
		{"isNull on an @auth field", analyst, `{"dataset":"blog.posts","columns":["id"],"where":{"internal_note":{"isNull":false}}}`, codes.PermissionDenied, nil},
		{"filter by a declared mask", analyst, `{"dataset":"people.flat","where":{"email":{"eq":"alice@acme.test"}}}`, codes.PermissionDenied, nil},
		{"filter by an unprotected field", analyst, `{"dataset":"people.users","where":{"name":{"eq":"Alice"}}}`, codes.OK, []string{aliceID}},
		{"filter by a masked field with the scope", reader, `{"dataset":"people.users","where":{"email":{"eq":"alice@acme.test"}}}`, codes.OK, []string{aliceID}},
		{"filter by an @auth field with the scope", reader, `{"dataset":"blog.posts","where":{"internal_note":{"isNull":false}},"order":[{"column":"internal_note"}]}`, codes.OK, []string{post4, post1}},
		{"filter by a nested field with the scope", reader, `{"dataset":"blog.posts","where":{"author_email":{"eq":"bob@acme.test"}},"order":[{"column":"title"}]}`, codes.OK, []string{post2, post4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := f.get(t, tt.as, command(tt.cmd))
			if got := status.Code(err); got != tt.want {
				t.Fatalf("got %v (%v), want %v", got, err, tt.want)
			}
			if err != nil {
				return
			}
			var ids []string
			for id := range e.rows {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			want := slices.Clone(tt.ids)
			slices.Sort(want)
			if !slices.Equal(ids, want) {
				t.Errorf("got rows %v, want %v", ids, want)
			}
		})
	}
}

// TestFlightSchemaIsTheSameForEveryCaller: GetSchema, GetFlightInfo and the
// stream DoGet sends describe the same schema, whatever the caller's
// scopes: a masked column stays text, an unreadable one keeps its type.
func TestFlightSchemaIsTheSameForEveryCaller(t *testing.T) {
	f := mustProtected(t)
	mem := memory.NewGoAllocator()
	for _, ds := range [][]string{{"people", "users"}, {"blog", "posts"}, {"people", "flat"}} {
		t.Run(strings.Join(ds, "."), func(t *testing.T) {
			var first *arrow.Schema
			for _, p := range []core.Principal{analyst, reader} {
				res, err := f.client.GetSchema(f.as(t, p), path(ds...))
				if err != nil {
					t.Fatal(err)
				}
				fromGetSchema, err := aflight.DeserializeSchema(res.GetSchema(), mem)
				if err != nil {
					t.Fatal(err)
				}
				info, err := f.client.GetFlightInfo(f.as(t, p), path(ds...))
				if err != nil {
					t.Fatal(err)
				}
				fromInfo, err := aflight.DeserializeSchema(info.GetSchema(), mem)
				if err != nil {
					t.Fatal(err)
				}
				e, err := f.doGet(t, p, info.Endpoint[0].Ticket)
				if err != nil {
					t.Fatal(err)
				}
				if first == nil {
					first = e.schema
				}
				for name, got := range map[string]*arrow.Schema{"GetSchema": fromGetSchema, "GetFlightInfo": fromInfo, "another caller's DoGet": first} {
					if !got.Equal(e.schema) || !got.Metadata().Equal(e.schema.Metadata()) {
						t.Errorf("%s: %s got %s, want DoGet's %s", p.Subject, name, got, e.schema)
					}
				}
			}
		})
	}
}

// TestFlightSQLAppliesFieldProtection: Flight SQL's statements read the
// same datasets through the same compiler, so they cannot read the views
// around it, nor filter by what the caller may not see.
func TestFlightSQLAppliesFieldProtection(t *testing.T) {
	f := mustProtected(t)
	execute := func(t *testing.T, p core.Principal, sql string) (export, error) {
		t.Helper()
		info, err := f.sql.Execute(f.as(t, p), sql)
		if err != nil {
			return export{}, err
		}
		return f.doGet(t, p, info.Endpoint[0].Ticket)
	}
	prepared := func(t *testing.T, p core.Principal, sql string) (export, error) {
		t.Helper()
		ctx := f.as(t, p)
		st, err := f.sql.Prepare(ctx, sql)
		if err != nil {
			return export{}, err
		}
		info, err := st.Execute(f.as(t, p))
		if err != nil {
			return export{}, err
		}
		return f.doGet(t, p, info.Endpoint[0].Ticket)
	}
	tests := []struct {
		name   string
		run    func(*testing.T, core.Principal, string) (export, error)
		as     core.Principal
		sql    string
		want   codes.Code
		column string
		values map[string]any
	}{
		{"statement: masked without the scope", execute, analyst, "SELECT id, email FROM people.users", codes.OK, "email",
			map[string]any{aliceID: "a***@acme.test", bobID: "b***@acme.test"}},
		{"statement: clear with the scope", execute, reader, "SELECT id, email FROM fraise.people.users", codes.OK, "email",
			map[string]any{aliceID: "alice@acme.test", bobID: "bob@acme.test"}},
		{"statement: * has @auth columns NULL", execute, analyst, "SELECT * FROM blog.posts", codes.OK, "internal_note",
			map[string]any{post1: nil, post2: nil, post3: nil, post4: nil}},
		{"prepared statement: masked without the scope", prepared, analyst, "SELECT id, email FROM people.users", codes.OK, "email",
			map[string]any{aliceID: "a***@acme.test", bobID: "b***@acme.test"}},
		{"filter by a masked column", execute, analyst, "SELECT id FROM people.users WHERE email = 'alice@acme.test'", codes.PermissionDenied, "", nil},
		{"prepared filter by a masked column", prepared, analyst, "SELECT id FROM people.users WHERE email LIKE 'a%'", codes.PermissionDenied, "", nil},
		{"order by an @auth column", execute, analyst, "SELECT id FROM blog.posts ORDER BY internal_note", codes.PermissionDenied, "", nil},
		{"filter by a masked column with the scope", execute, reader, "SELECT id, email FROM people.users WHERE email = 'alice@acme.test'", codes.OK, "email",
			map[string]any{aliceID: "alice@acme.test"}},
		{"the view itself", execute, analyst, "SELECT data FROM public.v_user", codes.InvalidArgument, "", nil},
		{"an undeclared relation", execute, analyst, "SELECT id FROM public.v_secret", codes.InvalidArgument, "", nil},
		{"prepared: an undeclared relation", prepared, analyst, "SELECT id FROM public.v_secret", codes.InvalidArgument, "", nil},
		{"the view's data column", execute, analyst, "SELECT data FROM people.users", codes.InvalidArgument, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.run(t, tt.as, tt.sql)
			if got := status.Code(err); got != tt.want {
				t.Fatalf("got %v (%v), want %v", got, err, tt.want)
			}
			if err != nil {
				return
			}
			if got := e.column(tt.column); !equalColumn(got, tt.values) {
				t.Errorf("column %s: got %v, want %v", tt.column, got, tt.values)
			}
		})
	}

	t.Run("statement schema agrees with DoGet", func(t *testing.T) {
		const q = "SELECT id, email, created_at FROM people.flat"
		for _, p := range []core.Principal{analyst, reader} {
			sc, err := f.sql.GetExecuteSchema(f.as(t, p), q)
			if err != nil {
				t.Fatal(err)
			}
			want, err := aflight.DeserializeSchema(sc.GetSchema(), memory.NewGoAllocator())
			if err != nil {
				t.Fatal(err)
			}
			e, err := execute(t, p, q)
			if err != nil {
				t.Fatal(err)
			}
			if !e.schema.Equal(want) {
				t.Errorf("%s: got DoGet schema %s, want GetSchema's %s", p.Subject, e.schema, want)
			}
		}
	})
}
