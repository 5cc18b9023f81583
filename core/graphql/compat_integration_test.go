package graphql_test

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/test/harness"
)

const (
	compatTenantA = "11111111-1111-4111-8111-111111111111"
	compatTenantB = "22222222-2222-4222-8222-222222222222"
)

// sqlRecorder is the real database, recording the SQL it is sent, so a
// test can say which columns a statement compares.
type sqlRecorder struct {
	*postgres.DB
	mu  sync.Mutex
	sql []string
	// subjects are the subjects mutations were sent with.
	subjects []string
}

func (r *sqlRecorder) record(sql string) {
	r.mu.Lock()
	r.sql = append(r.sql, sql)
	r.mu.Unlock()
}

func (r *sqlRecorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sql) == 0 {
		return ""
	}
	return r.sql[len(r.sql)-1]
}

func (r *sqlRecorder) QueryJSONBatch(ctx context.Context, tenant string, stmts []core.Statement) ([][]byte, error) {
	for _, s := range stmts {
		r.record(s.SQL)
	}
	return r.DB.QueryJSONBatch(ctx, tenant, stmts)
}

func (r *sqlRecorder) ExecJSONBatch(ctx context.Context, tenant, subject string, stmts []core.Statement, accept func([][]byte) error) error {
	for _, s := range stmts {
		r.record(s.SQL)
	}
	r.mu.Lock()
	r.subjects = append(r.subjects, subject)
	r.mu.Unlock()
	return r.DB.ExecJSONBatch(ctx, tenant, subject, stmts, accept)
}

func (r *sqlRecorder) InTenant(ctx context.Context, tenant string, fn func(context.Context, core.Querier) error) error {
	return r.DB.InTenant(ctx, tenant, func(ctx context.Context, q core.Querier) error {
		return fn(ctx, sqlRecorderQuerier{q, r})
	})
}

type sqlRecorderQuerier struct {
	core.Querier
	r *sqlRecorder
}

func (q sqlRecorderQuerier) QueryJSON(ctx context.Context, sql string, args ...any) ([]byte, error) {
	q.r.record(sql)
	return q.Querier.QueryJSON(ctx, sql, args...)
}

// mustSQLDB migrates a fresh database, runs the SQL files as its owner and
// opens it as the core's role with the given options.
func mustSQLDB(tb testing.TB, o postgres.Options, files ...string) (*sqlRecorder, string) {
	tb.Helper()
	harness.SkipShort(tb)
	ctx := context.Background()
	pg, name := harness.NewDatabase(tb)
	if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
		tb.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.AdminURL(name))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(b)); err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
	}
	d, err := postgres.Open(ctx, pg.URL("fraise_app", name), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return &sqlRecorder{DB: d}, pg.AdminURL(name)
}

func mustFile(tb testing.TB, name string) string {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// TestFraiseQLCompat runs the engine on a database in FraiseQL's
// conventions, unchanged: views with and without tenant_id, the tenant in
// app.tenant_id, snake_case keys read by camelCase fields, native columns
// in filters, positional function arguments, both mutation response
// shapes, errors as data in declared types, and cascade.
func TestFraiseQLCompat(t *testing.T) {
	db, _ := mustSQLDB(t, postgres.Options{TenantSettings: []string{"app.tenant_id"}, SubjectSettings: []string{"app.user_id"}}, "testdata/compat/schema.sql")
	s := mustSchema(t, mustFile(t, "testdata/compat/schema.graphql"))
	if err := s.Check(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db, Session: db})
	tests := []struct {
		name, tenant, query string
		want                string
		sqlHas, sqlLacks    []string
	}{
		{name: "a view without tenant_id, isolated by row-level security on app.tenant_id", tenant: compatTenantA,
			query: `{ authors(orderBy: [{name: ASC}]) { name createdAt } }`,
			want:  `{"authors": [{"name": "Ada", "createdAt": "2024-01-01T00:00:00+00:00"}, {"name": "Grace", "createdAt": "2024-01-01T00:00:00+00:00"}]}`},
		{name: "the other tenant", tenant: compatTenantB,
			query: `{ authors { identifier } }`, want: `{"authors": [{"identifier": "hedy"}]}`},
		{name: "a native column in a filter and a sort", tenant: compatTenantA,
			query:  `{ notes(where: {rating: {gte: 4}}, orderBy: [{rating: DESC}]) { title rating author { name } } }`,
			want:   `{"notes": [{"title": "Engines", "rating": 5, "author": {"name": "Ada"}}]}`,
			sqlHas: []string{`t."rating" >= $`, `t."rating" desc`}, sqlLacks: []string{`->>'rating'`}},
		{name: "a JSON key in snake_case in a filter", tenant: compatTenantA,
			query:  `{ notes(where: {createdAt: {isNull: false}, author: {name: {eq: "Grace"}}}) { title } }`,
			want:   `{"notes": [{"title": "Compilers"}]}`,
			sqlHas: []string{`t.data->'created_at'`, `t.data->'author'->>'name'`}},
		{name: "by id", tenant: compatTenantA,
			query: `{ note(id: "b0000000-0000-4000-8000-000000000002") { title author { identifier } } }`,
			want:  `{"note": {"title": "Compilers", "author": {"identifier": "grace"}}}`},
		{name: "a connection sorted by a native column", tenant: compatTenantA,
			query: `{ notesConnection(first: 1, orderBy: [{rating: ASC}]) { edges { node { title } } pageInfo { hasNextPage } } }`,
			want:  `{"notesConnection": {"edges": [{"node": {"title": "Compilers"}}], "pageInfo": {"hasNextPage": true}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Execute(as(tt.tenant), graphql.Request{Query: tt.query})
			mustData(t, r, tt.want)
			sql := db.last()
			for _, w := range tt.sqlHas {
				if !strings.Contains(sql, w) {
					t.Fatalf("got SQL %s, want it to contain %s", sql, w)
				}
			}
			for _, w := range tt.sqlLacks {
				if strings.Contains(sql, w) {
					t.Fatalf("got SQL %s, want it without %s", sql, w)
				}
			}
		})
	}

	mutations := []struct {
		name, query, want string
	}{
		{name: "13 columns: success with the entity, updated fields and cascade",
			query: `mutation { createNote(input: {title: "Looms", rating: 2, authorId: "a0000000-0000-4000-8000-000000000001"}) {
				__typename ... on CreateNoteSuccess { message updatedFields note { title rating author { name } } cascade } } }`,
			want: `{"createNote": {"__typename": "CreateNoteSuccess", "message": "created", "updatedFields": ["title", "rating"],
				"note": {"title": "Looms", "rating": 2, "author": {"name": "Ada"}},
				"cascade": {"updated": [{"__typename": "Author", "id": "a0000000-0000-4000-8000-000000000001", "operation": "UPDATED"}]}}}`},
		{name: "13 columns: a validation error as data, its fields from error_detail",
			query: `mutation { createNote(input: {title: " ", authorId: "a0000000-0000-4000-8000-000000000001"}) {
				__typename ... on ValidationError { errorClass message httpStatus field constraint } ... on NotFoundError { resource } } }`,
			want: `{"createNote": {"__typename": "ValidationError", "errorClass": "validation", "message": "title is required", "httpStatus": 422, "field": "title", "constraint": "required"}}`},
		{name: "13 columns: the error type the function names in entity_type",
			query: `mutation { createNote(input: {title: "x", authorId: "a0000000-0000-4000-8000-000000000003"}) {
				__typename ... on ValidationError { field } ... on NotFoundError { errorClass message resource } } }`,
			want: `{"createNote": {"__typename": "NotFoundError", "errorClass": "not_found", "message": "no such author", "resource": "Author"}}`},
		{name: "8 columns: success by status",
			query: `mutation { renameAuthor(input: {id: "a0000000-0000-4000-8000-000000000002", name: "Grace H."}) {
				__typename ... on RenameAuthorSuccess { status message updatedFields author { name identifier } } } }`,
			want: `{"renameAuthor": {"__typename": "RenameAuthorSuccess", "status": "updated", "message": "renamed", "updatedFields": ["name"], "author": {"name": "Grace H.", "identifier": "grace"}}}`},
		{name: "8 columns: a failure by status, its class from the prefix, its fields from metadata",
			query: `mutation { renameAuthor(input: {id: "a0000000-0000-4000-8000-000000000009", name: "x"}) {
				__typename ... on RenameAuthorError { status errorClass message resource } } }`,
			want: `{"renameAuthor": {"__typename": "RenameAuthorError", "status": "not_found:author", "errorClass": "not_found", "message": "no such author", "resource": "Author"}}`},
		{name: "the entity type as the result",
			query: `mutation { renameAuthorPlain(input: {id: "a0000000-0000-4000-8000-000000000001", name: "Ada L."}) { name } }`,
			want:  `{"renameAuthorPlain": {"name": "Ada L."}}`},
		{name: "the entity type as the result: null on failure",
			query: `mutation { renameAuthorPlain(input: {id: "a0000000-0000-4000-8000-000000000009", name: "x"}) { name } }`,
			want:  `{"renameAuthorPlain": null}`},
	}
	for _, tt := range mutations {
		t.Run(tt.name, func(t *testing.T) {
			mustData(t, e.Execute(as(compatTenantA), graphql.Request{Query: tt.query}), tt.want)
		})
	}

	t.Run("the tenant argument is the request's tenant, whatever the input says", func(t *testing.T) {
		r := e.Execute(as(compatTenantA), graphql.Request{Query: `mutation { createNote(input: {title: "Spoof", authorId: "a0000000-0000-4000-8000-000000000001", tenantId: "22222222-2222-4222-8222-222222222222"}) { __typename } }`})
		mustData(t, r, `{"createNote": {"__typename": "CreateNoteSuccess"}}`)
		mustData(t, e.Execute(as(compatTenantA), graphql.Request{Query: `{ notes(where: {title: {eq: "Spoof"}}) { title } }`}), `{"notes": [{"title": "Spoof"}]}`)
		mustData(t, e.Execute(as(compatTenantB), graphql.Request{Query: `{ notes(where: {title: {eq: "Spoof"}}) { title } }`}), `{"notes": []}`)
	})
	t.Run("mutations are sent with their subject", func(t *testing.T) {
		// The adapter sets it in the configured settings
		// (adapters/postgres TestExecJSONBatch).
		db.mu.Lock()
		defer db.mu.Unlock()
		if len(db.subjects) == 0 || !slices.Contains(db.subjects, "tester") || slices.Contains(db.subjects, "") {
			t.Fatalf("mutations sent with subjects %q, want each with the request's subject %q", db.subjects, "tester")
		}
	})
}

// TestSnakeKeysInput shows that a schema whose keys are SNAKE hands a
// jsonb function its input with snake_case keys.
func TestSnakeKeysInput(t *testing.T) {
	db, admin := mustSQLDB(t, postgres.Options{TenantSettings: []string{"app.tenant_id"}}, "testdata/compat/schema.sql")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `create function fn_echo(input jsonb) returns app.mutation_response language sql as
		$$ select row(true, false, null, null, 200, null, null, null, input, null, null, null, null)::app.mutation_response $$;
		grant execute on function fn_echo(jsonb) to fraise_app`); err != nil {
		t.Fatal(err)
	}
	s := mustSchema(t, mustFile(t, "testdata/compat/schema.graphql")+`
		input EchoInput { someValue: Int nestedThing: EchoInner }
		input EchoInner { innerKey: String }
		type Echo { someValue: Int nestedThing: JSON }
		type EchoResult { entity: JSON }
		extend type Mutation { echo(input: EchoInput!): EchoResult! }`)
	if err := s.Check(ctx, db); err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db})
	r := e.Execute(as(compatTenantA), graphql.Request{Query: `mutation { echo(input: {someValue: 1, nestedThing: {innerKey: "x"}}) { entity } }`})
	mustData(t, r, `{"echo": {"entity": {"some_value": 1, "nested_thing": {"inner_key": "x"}}}}`)
	_ = json.Valid
}
