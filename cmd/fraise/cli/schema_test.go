package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/fraiseql"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestSchemaGenerate runs `fraise schema generate` on the demo database:
// the schema it generates, from the views, the function and their smart
// comments, is the one the demo serves (deploy/demo/schema.graphql), and
// --check says so, or lists what differs.
func TestSchemaGenerate(t *testing.T) {
	ctx := context.Background()
	pg, name := harness.NewDatabase(t)
	if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := demo.Apply(ctx, pg.AdminURL(name), "fraise_app"); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "FRAISE_DATABASE_URL" {
			return pg.URL("fraise_app", name)
		}
		return ""
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := cli.Run(ctx, append([]string{"schema"}, args...), getenv, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	dir := t.TempDir()
	served := filepath.Join("..", "..", "..", "deploy", "demo", "schema.graphql")

	t.Run("the demo database reproduces the served schema", func(t *testing.T) {
		out := filepath.Join(dir, "generated.graphql")
		if msg, err := run("generate", "--out", out); err != nil {
			t.Fatalf("%v: %s", err, msg)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		got, err := graphql.ParseSchema(string(b))
		if err != nil {
			t.Fatal(err)
		}
		want, err := graphql.ParseSchema(demo.SDL)
		if err != nil {
			t.Fatal(err)
		}
		if diff := graphql.Diff(want, got); len(diff) > 0 {
			t.Fatalf("got a schema that differs from deploy/demo/schema.graphql (- served, + generated):\n%s", strings.Join(diff, "\n"))
		}
	})
	t.Run("--check passes on the served schema", func(t *testing.T) {
		if msg, err := run("generate", "--check", served); err != nil {
			t.Fatalf("got %v: %s, want the schema to match", err, msg)
		}
	})
	t.Run("--check lists what differs", func(t *testing.T) {
		changed := filepath.Join(dir, "changed.graphql")
		sdl := strings.Replace(demo.SDL, `internalNote: String @auth(scope: "read:Post.internalNote")`, `internalNote: String`, 1)
		if err := os.WriteFile(changed, []byte(sdl), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := run("generate", "--check", changed)
		if err == nil || !strings.Contains(err.Error(), `+ Post.internalNote: String @auth(scope: "read:Post.internalNote")`) {
			t.Fatalf("got %v, want the @auth the file lacks listed", err)
		}
	})
	t.Run("usage", func(t *testing.T) {
		if _, err := run("frobnicate"); err == nil {
			t.Fatal("got no error for an unknown subcommand")
		}
	})
}

// TestSchemaGenerateFraiseQL runs `fraise schema generate` on the FraiseQL
// example database: what it writes is test/fraiseql/testdata/schema.graphql,
// the schema the conformance suite passes on.
func TestSchemaGenerateFraiseQL(t *testing.T) {
	ctx := context.Background()
	pg, name := harness.NewDatabase(t)
	if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := fraiseql.Apply(ctx, pg.AdminURL(name), "fraise_app"); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		switch k {
		case "FRAISE_DATABASE_URL":
			return pg.URL("fraise_app", name)
		case "FRAISE_DATABASE_TENANT_SETTINGS":
			return fraiseql.TenantSetting
		}
		return ""
	}
	conformance := filepath.Join("..", "..", "..", "test", "fraiseql", "testdata", "schema.graphql")
	var out, errOut bytes.Buffer
	if err := cli.Run(ctx, []string{"schema", "generate", "--check", conformance}, getenv, &out, &errOut); err != nil {
		t.Fatalf("got %v: %s, want the conformance suite's schema", err, errOut.String())
	}
	out.Reset()
	if err := cli.Run(ctx, []string{"schema", "generate"}, getenv, &out, &errOut); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	want, err := os.ReadFile(conformance)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Fatalf("got a schema that is not byte for byte %s:\n%s", conformance, out.String())
	}
}
