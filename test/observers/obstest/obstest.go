// Package obstest is the observer pipeline's test fixture on real
// servers: a migrated PostgreSQL database with an observed table, a Redis
// and an SMTP server (Fixture), webhook receivers that record what they
// are sent (Receiver), and a runner for a pipeline under test (Run). Both
// test/observers, which runs observe.Pipeline on the adapters, and
// cmd/fraise/cli, which tests how `fraise serve` wires them from
// fraise.toml, build on it.
package obstest

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/adapters/smtp/smtptest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/test/harness"
)

// TenantA and TenantB are the tenants the tests' rules and rows belong to.
const (
	TenantA = "00000000-0000-0000-0000-0000000000aa"
	TenantB = "00000000-0000-0000-0000-0000000000bb"
)

// Fixture is what an observer pipeline runs on: a migrated database with
// an observed table public.orders (id, tenant_id, total, note, at) under
// row-level security per tenant, a pool on it as the core's role, an
// admin connection, a Redis that keeps its data across a restart, and an
// SMTP server. Everything is released when the test ends.
type Fixture struct {
	// DB is the pool as fraise_app, the core's role.
	DB *postgres.DB
	// Admin is a superuser connection to the same database.
	Admin *pgx.Conn
	Redis *harness.Redis
	SMTP  *smtptest.Server
}

// Start returns a Fixture on a new database of the tests' shared
// PostgreSQL server; it skips the test under -short.
func Start(tb testing.TB) *Fixture {
	tb.Helper()
	harness.SkipShort(tb)
	pg, name := harness.NewDatabase(tb)
	return StartOn(tb, pg, name)
}

// StartOn is Start on database name of server pg (one the test started,
// to restore it, say).
func StartOn(tb testing.TB, pg *harness.Postgres, name string) *Fixture {
	tb.Helper()
	ctx := context.Background()
	postgrestest.Migrate(tb, pg, name)
	admin, err := pgx.Connect(ctx, pg.AdminURL(name))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { admin.Close(context.Background()) })
	if _, err := admin.Exec(ctx, `CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id uuid NOT NULL, total numeric,
			note text, at timestamptz NOT NULL DEFAULT clock_timestamp());
		SELECT fraise.observe_table('public.orders');
		ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
		CREATE POLICY t ON public.orders USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO fraise_app`); err != nil {
		tb.Fatal(err)
	}
	db, err := postgres.Open(ctx, pg.URL("fraise_app", name), postgres.Options{MaxConns: 30})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(db.Close)
	return &Fixture{DB: db, Admin: admin, Redis: harness.StartPersistentRedis(tb), SMTP: smtptest.Start(tb)}
}

// Rule creates an observer rule of tenant as the API does (through
// fn_create_observer_rule) and returns its id; a refused rule fails the
// test.
func (f *Fixture) Rule(tb testing.TB, tenant string, rule map[string]any) string {
	tb.Helper()
	b, _ := json.Marshal(rule)
	var r struct {
		Status, Message, ID string
	}
	err := f.DB.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		out, err := q.QueryJSON(ctx, "select to_jsonb(r) from fn_create_observer_rule($1::jsonb) r", string(b))
		if err != nil {
			return err
		}
		return json.Unmarshal(out, &r)
	})
	if err != nil || r.Status != "ok" {
		tb.Fatalf("create rule: %+v %v", r, err)
	}
	return r.ID
}

// SQL runs an insert, update or delete (without its returning clause) as
// tenant, in one transaction, as a request of the core would; an error
// fails the test.
func (f *Fixture) SQL(tb testing.TB, tenant, sql string, args ...any) {
	tb.Helper()
	err := f.DB.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, "with x as ("+sql+" returning 1) select to_jsonb(count(*)) from x", args...)
		return err
	})
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// Logger is the pipeline's logger in tests: silent, unless FRAISE_TEST_LOG
// is set, then every line down to debug on stderr.
func Logger(tb testing.TB) *slog.Logger {
	if os.Getenv("FRAISE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// Run runs run (a pipeline's Run) in a goroutine until the returned stop
// is called or the test ends; stop cancels its context, waits for it to
// return, then calls release (to close what the pipeline ran on). Calling
// stop more than once does nothing more.
func Run(tb testing.TB, run func(context.Context) error, release func()) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			release()
		})
	}
	tb.Cleanup(stop)
	return stop
}
