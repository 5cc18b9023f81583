package graphql_test

import (
	"context"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core/graphql"
)

var updateGolden = flag.Bool("update", false, "write generated schemas into testdata")

// TestGeneratePlain generates a schema from a plain PostgreSQL schema, no
// data column anywhere: each table with an id is a type of its columns,
// and the schema serves.
func TestGeneratePlain(t *testing.T) {
	db, _ := mustSQLDB(t, postgres.Options{}, "testdata/plain/schema.sql")
	ctx := context.Background()
	info, err := db.ReadCatalog(ctx, []string{"public"})
	if err != nil {
		t.Fatal(err)
	}
	sdl, err := graphql.GenerateSDL(info, graphql.GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := mustFile(t, "testdata/plain/schema.graphql")
	if *updateGolden {
		if err := os.WriteFile("testdata/plain/schema.graphql", []byte(sdl), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if sdl != want {
		t.Fatalf("got schema\n%s\nwant testdata/plain/schema.graphql:\n%s", sdl, want)
	}
	s := mustSchema(t, sdl)
	if err := s.Check(ctx, db); err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db})
	tests := []struct{ name, query, want string }{
		{name: "columns as fields, a filter on a column",
			query: `{ authors(where: {bornOn: {lt: "1900-01-01"}}, orderBy: [{name: ASC}]) { name bornOn } }`,
			want:  `{"authors": [{"name": "Ada Lovelace", "bornOn": "1815-12-10"}]}`},
		{name: "an array column and its operators",
			query: `{ books(where: {genres: {array_overlaps: ["math"]}}) { title pageCount genres } }`,
			want:  `{"books": [{"title": "Notes", "pageCount": 66, "genres": ["math", "computing"]}]}`},
		{name: "by id", query: `{ book(id: "b2000000-0000-4000-8000-000000000002") { title } }`, want: `{"book": {"title": "Hidden Figures"}}`},
		{name: "the omitted table is not served", query: `{ __type(name: "Secret") { name } }`, want: `{"__type": null}`},
	}
	e = graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db, Introspection: true})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustData(t, e.Execute(as(compatTenantA), graphql.Request{Query: tt.query}), tt.want)
		})
	}
	if !strings.Contains(sdl, `"A book of the library."`) {
		t.Fatalf("got no description from COMMENT ON in\n%s", sdl)
	}
}
