package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
)

func TestCatalog(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `create function public.fn_twice(a int) returns int language sql as $$ select a $$;
		create function public.fn_twice(a text) returns text language sql as $$ select a $$`); err != nil {
		t.Fatal(err)
	}
	d := mustOpen(t, f, postgres.Options{})

	t.Run("relations", func(t *testing.T) {
		cols, err := d.RelationColumns(ctx, "v_post")
		if err != nil {
			t.Fatal(err)
		}
		if cols["id"] != "uuid" || cols["tenant_id"] != "uuid" || cols["data"] != "jsonb" {
			t.Fatalf("got columns %v, want id uuid, tenant_id uuid, data jsonb", cols)
		}
		if cols, err := d.RelationColumns(ctx, "public.tv_post"); err != nil || cols["data"] != "jsonb" {
			t.Fatalf("got %v, %v for the qualified table tv_post", cols, err)
		}
		if cols, err := d.RelationColumns(ctx, "v_missing"); err != nil || cols != nil {
			t.Fatalf("got %v, %v for a missing view, want nil, nil", cols, err)
		}
	})
	t.Run("functions", func(t *testing.T) {
		fn, err := d.Function(ctx, "fn_create_post")
		if err != nil || fn == nil {
			t.Fatalf("got %v, %v", fn, err)
		}
		if len(fn.Args) != 1 || fn.Args[0] != "jsonb" || len(fn.ArgNames) != 1 || fn.ArgNames[0] != "input" {
			t.Fatalf("got args %v named %v, want [jsonb] named [input]", fn.Args, fn.ArgNames)
		}
		for _, c := range []string{"succeeded", "status", "error_class", "message", "entity_id", "entity"} {
			if _, ok := fn.Result[c]; !ok {
				t.Fatalf("got result columns %v, want %s", fn.Result, c)
			}
		}
		for _, name := range []string{"fn_missing", "fn_twice"} {
			if fn, err := d.Function(ctx, name); err != nil || fn != nil {
				t.Fatalf("got %+v, %v for %s, want nil, nil", fn, err, name)
			}
		}
	})
}

func TestValidSettingName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "FraiseQL's", in: "app.tenant_id", want: true},
		{name: "nested", in: "app.claims.org_id", want: true},
		{name: "no prefix", in: "tenant_id"},
		{name: "a quote", in: "app.x'); drop table t; --"},
		{name: "upper case", in: "App.Tenant"},
		{name: "empty part", in: "app."},
		{name: "leading digit", in: "1app.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := postgres.ValidSettingName(tt.in); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := postgres.Open(context.Background(), "postgres://x@127.0.0.1:1/x", postgres.Options{TenantSettings: []string{"bad name"}}); err == nil {
		t.Fatal("got no error for a bad tenant setting, want one")
	}
}

func TestReadCatalog(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	d := mustOpen(t, f, postgres.Options{})
	info, err := d.ReadCatalog(ctx, []string{"public"})
	if err != nil {
		t.Fatal(err)
	}
	rels := map[string]core.RelationInfo{}
	for _, r := range info.Relations {
		rels[r.Name] = r
	}
	v, ok := rels["v_post"]
	if !ok || v.Kind != "view" || !strings.Contains(v.Definition, "jsonb_build_object(") {
		t.Fatalf("got v_post %+v, want a view with its definition", v)
	}
	posts := rels["posts"]
	if posts.Kind != "table" || !posts.RowSecurity || len(posts.ForeignKeys) == 0 {
		t.Fatalf("got posts %+v, want a table with row security and foreign keys", posts)
	}
	var title core.ColumnInfo
	for _, c := range posts.Columns {
		if c.Name == "title" {
			title = c
		}
	}
	if title.Type != "text" || !title.NotNull {
		t.Fatalf("got posts.title %+v, want text not null", title)
	}
	var fn *core.FunctionDef
	for i := range info.Functions {
		if info.Functions[i].Name == "fn_create_post" {
			fn = &info.Functions[i]
		}
	}
	if fn == nil || len(fn.Args) != 1 || fn.ArgNames[0] != "input" || len(fn.Result) != 6 || !strings.Contains(fn.Source, "input->>'title'") {
		t.Fatalf("got fn_create_post %+v, want (input jsonb) returning the 6 columns of fraise.mutation_result, with its source", fn)
	}
}
