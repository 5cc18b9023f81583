package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// settingIn returns setting as a transaction of d sees it, through InTenant
// (batch false) or QueryJSONBatch (batch true), after fn runs in it.
func settingIn(tb testing.TB, d *postgres.DB, batch bool, setting string, fn func(ctx context.Context, q core.Querier) error) string {
	tb.Helper()
	ctx := context.Background()
	const read = "select to_jsonb(current_setting($1, true))"
	if batch {
		vals, err := d.QueryJSONBatch(ctx, demo.TenantAcme, []core.Statement{{SQL: read, Args: []any{setting}}})
		if err != nil {
			tb.Fatal(err)
		}
		return string(vals[0])
	}
	var got string
	err := d.InTenant(ctx, demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
		if fn != nil {
			if err := fn(ctx, q); err != nil {
				return err
			}
		}
		b, err := q.QueryJSON(ctx, read, setting)
		got = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return got
}

// TestWithStatementTimeout: a DB of another timeout sets its own in both
// kinds of transaction, and leaves the one it came from as it was.
func TestWithStatementTimeout(t *testing.T) {
	f := mustDemo(t)
	base := mustOpen(t, f, postgres.Options{StatementTimeout: 5 * time.Second})
	gql := base.WithStatementTimeout(1234 * time.Millisecond)
	none := base.WithStatementTimeout(0)
	tests := []struct {
		name  string
		db    *postgres.DB
		batch bool
		want  string
	}{
		{"base, InTenant", base, false, `"5s"`},
		{"base, batch", base, true, `"5s"`},
		{"derived, InTenant", gql, false, `"1234ms"`},
		{"derived, batch", gql, true, `"1234ms"`},
		// No timeout of its own: the server's default (none).
		{"derived without timeout", none, false, `"0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := settingIn(t, tt.db, tt.batch, "statement_timeout", nil); got != tt.want {
				t.Fatalf("got statement_timeout %s, want %s", got, tt.want)
			}
		})
	}
}

// TestSetSubject: fraise.subject and the configured subject settings, for
// the rest of the transaction only.
func TestSetSubject(t *testing.T) {
	f := mustDemo(t)
	d := mustOpen(t, f, postgres.Options{SubjectSettings: []string{"app.user_id"}})
	set := func(ctx context.Context, q core.Querier) error { return d.SetSubject(ctx, q, "alice") }
	tests := []struct {
		name, setting string
		fn            func(context.Context, core.Querier) error
		want          string
	}{
		{"fraise.subject", "fraise.subject", set, `"alice"`},
		{"a subject setting", "app.user_id", set, `"alice"`},
		// Transaction-local: the next transaction on the pool sees none.
		{"not in the next transaction", "fraise.subject", nil, `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := settingIn(t, d, false, tt.setting, tt.fn)
			if got != tt.want && !(tt.want == `""` && got == "null") {
				t.Fatalf("got %s %s, want %s", tt.setting, got, tt.want)
			}
		})
	}
	if _, err := postgres.Open(context.Background(), f.pg.URL("fraise_app", f.db), postgres.Options{SubjectSettings: []string{"bad name"}}); err == nil {
		t.Fatal("Open with subject setting \"bad name\": got no error")
	}
}

// TestMutationsFailed: one audit row per mutation, in the tenant, as the
// core's role (which may write the log but not read it).
func TestMutationsFailed(t *testing.T) {
	f := mustDemo(t)
	d := mustOpen(t, f, postgres.Options{})
	ctx := context.Background()
	if err := d.MutationsFailed(ctx, demo.TenantAcme, "alice", []string{"createPost", "deletePost"}, "error:INVALID"); err != nil {
		t.Fatal(err)
	}
	if err := d.MutationsFailed(ctx, "not a uuid", "alice", []string{"createPost"}, "error:INVALID"); core.ErrorCode(err) != core.CodeInvalid {
		t.Fatalf("tenant not a UUID: got %v, want INVALID", err)
	}
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `select tenant_id::text || ' ' || subject || ' ' || operation from fraise.audit_log
		where outcome = 'error:INVALID' and resource_id is null order by operation`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{demo.TenantAcme + " alice createPost", demo.TenantAcme + " alice deletePost"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got audit rows %q, want %q", got, want)
	}
}
