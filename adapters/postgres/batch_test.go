package postgres_test

import (
	"context"
	"testing"
	"time"

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

// TestQueryJSONBatchSettings shows each read's settings in force for its
// statements and gone after it, with and without the options that add
// them.
func TestQueryJSONBatchSettings(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	show := core.Statement{SQL: "select jsonb_build_array(current_setting('statement_timeout'), current_setting('plan_cache_mode'))"}
	tests := []struct {
		name  string
		opts  postgres.Options
		in    string // the settings during the read
		after string // and in the next transaction on the same connection
	}{
		{name: "defaults", opts: postgres.Options{MaxConns: 1}, in: `["0", "auto"]`, after: `["0", "auto"]`},
		{name: "timeout and generic plans", opts: postgres.Options{MaxConns: 1, StatementTimeout: 1500 * time.Millisecond, GenericPlans: true},
			in: `["1500ms", "force_generic_plan"]`, after: `["1500ms", "auto"]`},
		{name: "generic plans alone", opts: postgres.Options{MaxConns: 1, GenericPlans: true}, in: `["0", "force_generic_plan"]`, after: `["0", "auto"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustOpen(t, f, tt.opts)
			got, err := d.QueryJSONBatch(ctx, demo.TenantAcme, []core.Statement{show})
			if err != nil {
				t.Fatal(err)
			}
			if string(got[0]) != tt.in {
				t.Errorf("during the read: got %s, want %s", got[0], tt.in)
			}
			var after []byte
			// InTenant sets the statement timeout too, but never the plan
			// cache mode: a leak from the batch would show.
			err = d.InTenant(ctx, demo.TenantAcme, func(ctx context.Context, q core.Querier) error {
				after, err = q.QueryJSON(ctx, show.SQL)
				return err
			})
			if err != nil || string(after) != tt.after {
				t.Errorf("after the read: got %s, %v, want %s", after, err, tt.after)
			}
		})
	}
}
