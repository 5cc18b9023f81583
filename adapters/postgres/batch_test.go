package postgres_test

import (
	"context"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
)

func TestQueryJSONBatch(t *testing.T) {
	f := mustDemo(t)
	// One connection: every call reuses it, so a setting or a failed
	// transaction left behind would show in the next call.
	d := mustOpen(t, f, postgres.Options{MaxConns: 1})
	ctx := context.Background()
	count := core.Statement{SQL: "select to_jsonb(count(*)) from users"}
	setting := core.Statement{SQL: "select to_jsonb(current_setting('fraise.tenant', true))"}
	t.Run("tenant scoped, in order, NULL as nil", func(t *testing.T) {
		got, err := d.QueryJSONBatch(ctx, demo.TenantAcme, []core.Statement{count, {SQL: "select null::jsonb"}, setting})
		if err != nil {
			t.Fatal(err)
		}
		if string(got[0]) != "2" || got[1] != nil || string(got[2]) != `"`+demo.TenantAcme+`"` {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("read only", func(t *testing.T) {
		_, err := d.QueryJSONBatch(ctx, demo.TenantAcme, []core.Statement{
			{SQL: "insert into users (tenant_id, name, email) values ($1, 'Eve', 'e@acme.test') returning to_jsonb(id)", Args: []any{demo.TenantAcme}}})
		if err == nil {
			t.Fatal("got no error, want the read-only transaction to refuse an insert")
		}
	})
	t.Run("a failure leaves nothing behind", func(t *testing.T) {
		if _, err := d.QueryJSONBatch(ctx, demo.TenantAcme, []core.Statement{count, {SQL: "select to_jsonb(1/0)"}, count}); core.ErrorCode(err) != core.CodeInvalid {
			t.Fatalf("got %v, want %s", err, core.CodeInvalid)
		}
		got, err := d.QueryJSONBatch(ctx, demo.TenantGlobex, []core.Statement{count, setting})
		if err != nil {
			t.Fatal(err)
		}
		if string(got[0]) != "2" || string(got[1]) != `"`+demo.TenantGlobex+`"` {
			t.Fatalf("got %q, want Globex's 2 users and its tenant setting", got)
		}
	})
	t.Run("the setting does not outlive the batch", func(t *testing.T) {
		var got []byte
		err := d.InTenant(ctx, demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
			var err error
			got, err = q.QueryJSON(ctx, "select to_jsonb(current_setting('transaction_read_only'))")
			return err
		})
		if err != nil || string(got) != `"off"` {
			t.Fatalf("got %s, %v, want a read-write transaction after a batch", got, err)
		}
	})
	t.Run("tenant must be a UUID", func(t *testing.T) {
		if _, err := d.QueryJSONBatch(ctx, "acme", []core.Statement{count}); core.ErrorCode(err) != core.CodeInvalid {
			t.Fatalf("got %v, want %s", err, core.CodeInvalid)
		}
	})
}
