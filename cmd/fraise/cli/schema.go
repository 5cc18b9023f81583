package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe/ruleapi"
)

// runSchema is `fraise schema generate`: the schema the database's catalog
// says, as the server's role sees it (docs/schema.md, "Generating the
// schema"), checked against the database as serve would.
func runSchema(ctx context.Context, env Env, args []string) error {
	if len(args) == 0 || args[0] != "generate" {
		fmt.Fprintln(env.Stderr, "usage: fraise schema generate [--config fraise.toml] [--schemas public,...] [--out schema.graphql]")
		return errors.New("schema: want the subcommand generate")
	}
	fs, cfgPath := flags("schema generate", env)
	out := fs.String("out", "", "write the schema to this file (default: standard output)")
	schemas := fs.String("schemas", "", "comma-separated database schemas to read (default: server.schema_schemas)")
	check := fs.String("check", "", "compare with this schema file instead of writing: fail, listing the differences, unless they serve the same")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, _, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	if *schemas != "" {
		cfg.Server.SchemaSchemas = strings.Split(*schemas, ",")
	}
	db, err := openSchemaReader(ctx, cfg, env)
	if err != nil {
		return err
	}
	defer db.Close()
	sdl, err := generateSchema(ctx, db, cfg.Server.SchemaSchemas)
	if err != nil {
		return err
	}
	s, err := graphql.ParseSchema(sdl)
	if err != nil {
		return fmt.Errorf("schema generate: the generated schema does not parse (a bug; please report it): %w", err)
	}
	if err := s.Check(ctx, db); err != nil {
		return fmt.Errorf("schema generate: %w", err)
	}
	if *check != "" {
		b, err := os.ReadFile(*check)
		if err != nil {
			return fmt.Errorf("schema generate --check: %w", err)
		}
		want, err := graphql.ParseSchema(string(b))
		if err != nil {
			return fmt.Errorf("schema generate --check: %s: %w", *check, err)
		}
		if diff := graphql.Diff(want, s); len(diff) > 0 {
			return fmt.Errorf("schema generate --check: the database's schema differs from %s (- the file, + the database):\n%s", *check, strings.Join(diff, "\n"))
		}
		fmt.Fprintf(env.Stdout, "the database's schema is %s\n", *check)
		return nil
	}
	if *out == "" {
		_, err := fmt.Fprint(env.Stdout, sdl)
		return err
	}
	return os.WriteFile(*out, []byte(sdl), 0o644)
}

// openSchemaReader connects as the server does, so the catalog read is the
// one the server's role sees.
func openSchemaReader(ctx context.Context, cfg config.Config, env Env) (*postgres.DB, error) {
	url, err := config.Resolve(cfg.Database.URL, env.Getenv)
	if err != nil {
		return nil, fmt.Errorf("database.url: %w", err)
	}
	db, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 2, TenantSettings: cfg.Database.TenantSettings})
	if err != nil {
		return nil, fmt.Errorf("database.url: %w", err)
	}
	return db, nil
}

// generateSchema reads the catalog of schemas and writes its SDL; the
// first schema's objects are named unqualified.
func generateSchema(ctx context.Context, r core.CatalogReader, schemas []string) (string, error) {
	if len(schemas) == 0 {
		schemas = []string{"public"}
	}
	info, err := r.ReadCatalog(ctx, schemas)
	if err != nil {
		return "", fmt.Errorf("schema generate: %w", err)
	}
	sdl, err := graphql.GenerateSDL(info, graphql.GenerateOptions{DefaultSchema: schemas[0]})
	if err != nil {
		return "", fmt.Errorf("schema generate: %w", err)
	}
	return sdl, nil
}

// schemaReloader serves a schema generated anew from the database, for
// server.schema = "auto": on SIGHUP, and on every tick of the development
// watch, it generates the schema again and, when it changed and checks
// against the database, gives it to the engine. A schema that fails keeps
// the one served and is logged.
type schemaReloader struct {
	db        *postgres.DB
	schemas   []string
	observers bool // add the observer rules' schema
	engine    *graphql.Engine
	log       *slog.Logger
	last      string // the generated SDL served
}

// reload generates the schema and serves it if it changed; it reports
// whether it did.
func (r *schemaReloader) reload(ctx context.Context) (bool, error) {
	sdl, err := generateSchema(ctx, r.db, r.schemas)
	if err != nil {
		return false, err
	}
	if sdl == r.last {
		return false, nil
	}
	full := sdl
	if r.observers {
		full = ruleapi.Merge(full)
	}
	s, err := graphql.ParseSchema(full)
	if err != nil {
		return false, fmt.Errorf("server.schema: %w", err)
	}
	if err := s.Check(ctx, r.db); err != nil {
		return false, fmt.Errorf("server.schema: %w", err)
	}
	r.engine.SetSchema(s)
	r.last = sdl
	return true, nil
}

// run reloads on every signal from hup and every tick until ctx ends.
func (r *schemaReloader) run(ctx context.Context, hup <-chan os.Signal, tick <-chan time.Time, done func(changed bool, err error)) {
	for {
		var why string
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "SIGHUP"
		case <-tick:
			why = "watch"
		}
		changed, err := r.reload(ctx)
		switch {
		case err != nil:
			r.log.Error("schema reload failed; serving the previous schema", "err", err, "trigger", why)
		case changed:
			r.log.Info("schema reloaded from the database", "trigger", why)
		}
		if done != nil {
			done(changed, err)
		}
	}
}
