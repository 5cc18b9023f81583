// Package postgrestest gives tests a PostgreSQL database with Fraise's
// migrations applied (and, for tests that query it, the demo schema), so the
// setup is written once rather than copied into each test file. It starts
// nothing itself: the servers are test/harness's. Tests only: core must not
// import it (core/architecture_test.go checks core's non-test imports).
package postgrestest

import (
	"context"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

// AppRole is the role the demo schema grants to, the one the core connects as.
const AppRole = "fraise_app"

// New creates a database on the shared test server, applies the migrations
// and returns the server and the database's name; the database is dropped
// when tb ends.
func New(tb testing.TB) (*harness.Postgres, string) {
	tb.Helper()
	pg, name := harness.NewDatabase(tb)
	Migrate(tb, pg, name)
	return pg, name
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
