// Package postgrestest gives tests a PostgreSQL database with Fraise's
// migrations applied (and, for tests that query it, the demo schema), so the
// setup is written once rather than copied into each test file. It starts
// nothing itself: the servers are test/harness's. Tests only: core must not
// import it (core/architecture_test.go checks core's non-test imports).
package postgrestest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

// AppRole is the role the demo schema grants to, the one the core connects as.
const AppRole = "fraise_app"

// New creates a database on the shared test server, with the migrations
// applied, and returns the server and the database's name; the database is
// dropped when tb ends. The migrations run once per test process, into a
// template database each New copies: copying takes a tenth of the time
// migrating does, and a package's tests create dozens of databases.
func New(tb testing.TB) (*harness.Postgres, string) {
	tb.Helper()
	pg := harness.SharedPostgres(tb)
	tmpl := migratedTemplate(tb, pg)
	name := fmt.Sprintf("m%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl); err != nil {
		tb.Fatalf("create database from the migrated template: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return pg, name
}

var (
	dbSeq     atomic.Int64
	tmplOnce  sync.Once
	tmplName  string
	tmplError error
)

// migratedTemplate returns the name of the shared server's migrated
// template database, creating it on first use. It lives as long as the
// server, which harness.Main stops when the test binary ends.
func migratedTemplate(tb testing.TB, pg *harness.Postgres) string {
	tb.Helper()
	tmplOnce.Do(func() {
		name := fmt.Sprintf("migrated%d", os.Getpid())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
		if err != nil {
			tmplError = err
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			tmplError = err
			return
		}
		if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
			tmplError = fmt.Errorf("migrate: %w", err)
			return
		}
		// Marked a template, it refuses connections by mistake no more
		// than any database, but says what it is in pg_database.
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+name+" IS_TEMPLATE true"); err != nil {
			tmplError = err
			return
		}
		tmplName = name
	})
	if tmplError != nil {
		tb.Fatalf("postgrestest: migrated template: %v", tmplError)
	}
	return tmplName
}

// NewDemo is New with the demo schema and data (deploy/demo) applied and
// granted to AppRole.
func NewDemo(tb testing.TB) (*harness.Postgres, string) {
	tb.Helper()
	pg, name := New(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := demo.Apply(ctx, pg.AdminURL(name), AppRole); err != nil {
		tb.Fatalf("demo schema: %v", err)
	}
	return pg, name
}

// Migrate applies the migrations to the database name on pg, for a test that
// runs its own server (with TLS, say) or uses its postgres database.
func Migrate(tb testing.TB, pg *harness.Postgres, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
		tb.Fatalf("migrate %s: %v", name, err)
	}
}

// Query runs sql on a connection of its own to url (the owner's, for
// fixtures and for reading what the application's role may not) and
// returns every row's values.
func Query(tb testing.TB, url, sql string, args ...any) [][]any {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out [][]any
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
