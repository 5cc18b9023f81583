package postgres_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

type fixture struct {
	pg *harness.Postgres
	db string
}

func mustDemo(tb testing.TB) fixture {
	tb.Helper()
	ctx := context.Background()
	pg, db := postgrestest.NewDemo(tb)
	// The migrations and the demo are idempotent: applied again, they
	// change nothing and do not fail.
	if err := postgres.Migrate(ctx, pg.AdminURL(db), postgres.MigrateOptions{}); err != nil {
		tb.Fatalf("migrate again: %v", err)
	}
	if err := demo.Apply(ctx, pg.AdminURL(db), postgrestest.AppRole); err != nil {
		tb.Fatalf("demo again: %v", err)
	}
	return fixture{pg, db}
}

func mustOpen(tb testing.TB, f fixture, o postgres.Options) *postgres.DB {
	tb.Helper()
	d, err := postgres.Open(context.Background(), f.pg.URL("fraise_app", f.db), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	return d
}

func count(tb testing.TB, d *postgres.DB, tenant string) string {
	tb.Helper()
	var got string
	err := d.InTenant(context.Background(), tenant, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, "select to_jsonb(count(*)) from users")
		got = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

func TestAppRoleCannotBypassRLS(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var super, bypass bool
	if err := conn.QueryRow(ctx, "select rolsuper, rolbypassrls from pg_roles where rolname = 'fraise_app'").Scan(&super, &bypass); err != nil {
		t.Fatal(err)
	}
	if super || bypass {
		t.Fatalf("got superuser=%v bypassrls=%v, want both false", super, bypass)
	}
}

func TestTenantIsolation(t *testing.T) {
	f := mustDemo(t)
	d := mustOpen(t, f, postgres.Options{})
	if got := count(t, d, demo.TenantAcme); got != "2" {
		t.Errorf("Acme sees %s users, want 2", got)
	}
	if got := count(t, d, demo.TenantGlobex); got != "2" {
		t.Errorf("Globex sees %s users, want 2", got)
	}
	if got := count(t, d, "33333333-3333-4333-8333-333333333333"); got != "0" {
		t.Errorf("an unknown tenant sees %s users, want 0", got)
	}
	// Without InTenant the setting is unset: the app role sees nothing.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.URL("fraise_app", f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select count(*) from users").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("with no tenant set the app role sees %d users, want 0", n)
	}
}

func TestTenantSettingDoesNotLeakAcrossRequests(t *testing.T) {
	f := mustDemo(t)
	d := mustOpen(t, f, postgres.Options{MaxConns: 1}) // one connection: every request reuses it
	_ = count(t, d, demo.TenantAcme)
	err := d.InTenant(context.Background(), demo.TenantGlobex, func(ctx context.Context, q core.Querier) error {
		b, err := q.QueryJSON(ctx, "select to_jsonb(current_setting('fraise.tenant'))")
		if err == nil && string(b) != `"`+demo.TenantGlobex+`"` {
			t.Errorf("got tenant %s, want Globex", b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// grantInsert lets the app role write users directly: the demo only grants
// reads (writes go through functions), but these tests need a plain write.
func grantInsert(tb testing.TB, f fixture) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "grant insert on users to fraise_app"); err != nil {
		tb.Fatal(err)
	}
}

func TestRollbackOnError(t *testing.T) {
	f := mustDemo(t)
	grantInsert(t, f)
	d := mustOpen(t, f, postgres.Options{})
	boom := errors.New("boom")
	err := d.InTenant(context.Background(), demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
		if _, err := q.QueryJSON(ctx, "insert into users (tenant_id, name, email) values ($1, 'Eve', 'eve@acme.test') returning to_jsonb(id)", demo.TenantAcme); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if got := count(t, d, demo.TenantAcme); got != "2" {
		t.Fatalf("got %s users after a failed request, want 2 (no partial write)", got)
	}
}

func TestRLSRefusesWritesIntoAnotherTenant(t *testing.T) {
	f := mustDemo(t)
	grantInsert(t, f)
	d := mustOpen(t, f, postgres.Options{})
	err := d.InTenant(context.Background(), demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, "insert into users (tenant_id, name, email) values ($1, 'Mallory', 'm@globex.test') returning to_jsonb(id)", demo.TenantGlobex)
		return err
	})
	if core.ErrorCode(err) != core.CodeForbidden {
		t.Fatalf("got %v (%s), want FORBIDDEN", err, core.ErrorCode(err))
	}
}

func TestErrors(t *testing.T) {
	f := mustDemo(t)
	d := mustOpen(t, f, postgres.Options{StatementTimeout: 100 * time.Millisecond})
	tests := []struct {
		name   string
		tenant string
		sql    string
		want   core.Code
	}{
		{"tenant not a UUID", "acme' or 1=1 --", "select '1'::jsonb", core.CodeInvalid},
		{"statement timeout", demo.TenantAcme, "select to_jsonb(pg_sleep(2))", core.CodeTimeout},
		{"bad input value", demo.TenantAcme, "select to_jsonb('nope'::int)", core.CodeInvalid},
		{"unknown relation is internal", demo.TenantAcme, "select to_jsonb(count(*)) from no_such_table", core.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.InTenant(context.Background(), tt.tenant, func(ctx context.Context, q core.Querier) error {
				_, err := q.QueryJSON(ctx, tt.sql)
				return err
			})
			if got := core.ErrorCode(err); got != tt.want {
				t.Fatalf("got %s (%v), want %s", got, err, tt.want)
			}
			if tt.want == core.CodeInternal && core.ErrorMessage(err) != "internal error" {
				t.Fatalf("internal error leaks %q", core.ErrorMessage(err))
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	pg := harness.StartPostgres(t)
	d, err := postgres.Open(context.Background(), pg.URL("postgres", "postgres"), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pg.Stop()
	err = d.InTenant(context.Background(), demo.TenantAcme, func(ctx context.Context, q core.Querier) error { return nil })
	if got := core.ErrorCode(err); got != core.CodeUnavailable {
		t.Fatalf("got %s (%v), want UNAVAILABLE", got, err)
	}
}
