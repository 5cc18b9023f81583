package fraiseql_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/test/fraiseql"
	"github.com/fraise-dev/fraise/test/harness"
)

var update = flag.Bool("update", false, "write the generated schema and the answers into testdata")

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// mustExample returns the example database, opened as the core's role
// with FraiseQL's tenant setting.
func mustExample(tb testing.TB) *postgres.DB {
	tb.Helper()
	harness.SkipShort(tb)
	ctx := context.Background()
	pg, name := postgrestest.New(tb)
	if err := fraiseql.Apply(ctx, pg.AdminURL(name), "fraise_app"); err != nil {
		tb.Fatal(err)
	}
	d, err := postgres.Open(ctx, pg.URL("fraise_app", name), postgres.Options{TenantSettings: []string{fraiseql.TenantSetting}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return d
}

// TestConformance generates the schema from the example database (it must
// be testdata/schema.graphql, the schema reviewed), then runs each
// operation of testdata/conformance in order on it, comparing the response
// field by field with the answer beside it ("<any>" matches any value but
// null, for ids and times the database makes).
func TestConformance(t *testing.T) {
	ctx := context.Background()
	db := mustExample(t)
	info, err := db.ReadCatalog(ctx, []string{"public"})
	if err != nil {
		t.Fatal(err)
	}
	sdl, err := graphql.GenerateSDL(info, graphql.GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/schema.graphql", []byte(sdl), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	if sdl != string(want) {
		t.Fatalf("the generated schema differs from testdata/schema.graphql (go test -update writes it):\n%s", lineDiff(string(want), sdl))
	}
	s, err := graphql.ParseSchema(sdl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, db); err != nil {
		t.Fatal(err)
	}
	e := graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db})
	files, err := filepath.Glob("testdata/conformance/*.graphql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	tenants := map[string]string{"acme": fraiseql.TenantAcme, "globex": fraiseql.TenantGlobex}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".graphql")
		// Not parallel, and not skipped: the operations run in order,
		// the mutations changing what later ones read.
		ok := t.Run(name, func(t *testing.T) {
			q, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			tenant := ""
			for _, line := range strings.Split(string(q), "\n") {
				if v, ok := strings.CutPrefix(line, "# tenant: "); ok {
					tenant = tenants[strings.TrimSpace(v)]
				}
			}
			if tenant == "" {
				t.Fatal("the operation names no tenant (# tenant: acme or globex)")
			}
			ctx := core.WithPrincipal(ctx, core.Principal{Subject: "conformance", Tenant: tenant})
			r := e.Execute(ctx, graphql.Request{Query: string(q)})
			got, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			answer := strings.TrimSuffix(f, ".graphql") + ".json"
			if *update {
				var buf bytes.Buffer
				if err := json.Indent(&buf, got, "", "  "); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(answer, append(buf.Bytes(), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w, err := os.ReadFile(answer)
			if err != nil {
				t.Fatal(err)
			}
			var gv, wv any
			if err := json.Unmarshal(got, &gv); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(w, &wv); err != nil {
				t.Fatalf("%s: %v", answer, err)
			}
			if diffs := compare("", gv, wv); len(diffs) > 0 {
				t.Fatalf("%s:\n%s", answer, strings.Join(diffs, "\n"))
			}
		})
		if !ok {
			break
		}
	}
}

// compare lists the differences of got from want, field by field, each
// naming its path.
func compare(path string, got, want any) []string {
	if s, ok := want.(string); ok && s == "<any>" {
		if got == nil {
			return []string{fmt.Sprintf("%s: got null, want a value", path)}
		}
		return nil
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %s, want an object", path, short(got))}
		}
		var out []string
		keys := make([]string, 0, len(w)+len(g))
		for k := range w {
			keys = append(keys, k)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				out = append(out, fmt.Sprintf("%s.%s: missing, want %s", path, k, short(wv)))
			case !wok:
				out = append(out, fmt.Sprintf("%s.%s: got %s, want no such field", path, k, short(gv)))
			default:
				out = append(out, compare(path+"."+k, gv, wv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %s, want %s", path, short(got), short(want))}
		}
		var out []string
		for i := range w {
			out = append(out, compare(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		return []string{fmt.Sprintf("%s: got %s, want %s", path, gb, wb)}
	}
	return nil
}

func short(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// lineDiff shows the lines of got that want lacks and the reverse.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, fmt.Sprintf("line %d: want %q, got %q", i+1, a, b))
		}
		if len(out) > 20 {
			break
		}
	}
	return strings.Join(out, "\n")
}
