package postgres_test

import (
	"context"
	"slices"
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

// TestExecJSONBatch: a mutation's statements in one pipeline commit
// together with the tenant, the subject (in every configured setting) and
// the statement timeout set, and leave nothing behind when a statement
// fails, when accept refuses the values, or when the subject is absent.
func TestExecJSONBatch(t *testing.T) {
	f := mustDemo(t)
	// One connection: a setting, a transaction or a lock left behind would
	// show in the next call.
	d := mustOpen(t, f, postgres.Options{MaxConns: 1, SubjectSettings: []string{"app.user_id"}, StatementTimeout: 3 * time.Second})
	ctx := context.Background()
	accept := func([][]byte) error { return nil }
	// Alice, of the demo's Acme tenant, writes a post through the demo's
	// mutation function, as the application's role writes.
	const alice = "a0000000-0000-4000-8000-00000000000a"
	insert := func(title string) core.Statement {
		return core.Statement{SQL: "select to_jsonb((public.fn_create_post(jsonb_build_object('title', $1::text, 'authorId', $2::text))).succeeded)",
			Args: []any{title, alice}}
	}
	count := func(t *testing.T, title string) string {
		t.Helper()
		got, err := d.QueryJSONBatch(ctx, demo.TenantAcme, []core.Statement{{SQL: "select to_jsonb(count(*)) from posts where title = $1", Args: []any{title}}})
		if err != nil {
			t.Fatal(err)
		}
		return string(got[0])
	}
	// A setting once set on a connection reads "" after its transaction,
	// not null: both count as unset.
	settings := core.Statement{SQL: `select jsonb_build_array(current_setting('fraise.tenant', true), nullif(current_setting('fraise.subject', true), ''),
		nullif(current_setting('app.user_id', true), ''), current_setting('statement_timeout'), current_setting('transaction_read_only'))`}
	tests := []struct {
		name    string
		subject string
		stmts   []core.Statement
		accept  func([][]byte) error
		wantErr core.Code
		want    []string // the values accept sees
		written string   // how many posts titled Zed afterwards
	}{
		{"written and committed, settings in place", "zed-writer", []core.Statement{insert("Zed"), settings}, accept, "",
			[]string{`true`, `["` + demo.TenantAcme + `", "zed-writer", "zed-writer", "3s", "off"]`}, "1"},
		{"no subject: none set", "", []core.Statement{settings}, accept, "",
			[]string{`["` + demo.TenantAcme + `", null, null, "3s", "off"]`}, "1"},
		{"a failing statement rolls the first back", "zed-writer", []core.Statement{insert("Zed"), {SQL: "select to_jsonb(1/0)"}}, accept, core.CodeInvalid, nil, "1"},
		{"a refusal by accept rolls back", "zed-writer", []core.Statement{insert("Zed")},
			func([][]byte) error { return &core.Error{Code: core.CodeTooLarge, Message: "too large"} }, core.CodeTooLarge, nil, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []string
			err := d.ExecJSONBatch(ctx, demo.TenantAcme, tt.subject, tt.stmts, func(vals [][]byte) error {
				for _, v := range vals {
					seen = append(seen, string(v))
				}
				return tt.accept(vals)
			})
			if core.ErrorCode(err) != tt.wantErr || (tt.wantErr == "" && err != nil) {
				t.Fatalf("got %v, want code %q", err, tt.wantErr)
			}
			if tt.want != nil && !slices.Equal(seen, tt.want) {
				t.Errorf("accept saw %q, want %q", seen, tt.want)
			}
			if got := count(t, "Zed"); got != tt.written {
				t.Errorf("%s posts titled Zed, want %s", got, tt.written)
			}
		})
	}
	t.Run("nothing outlives the transaction", func(t *testing.T) {
		got, err := d.QueryJSONBatch(ctx, demo.TenantGlobex, []core.Statement{{SQL: "select to_jsonb(coalesce(current_setting('fraise.subject', true), ''))"}})
		if err != nil || string(got[0]) != `""` {
			t.Fatalf("got %s, %v, want no subject left on the connection", got, err)
		}
	})
	t.Run("tenant must be a UUID", func(t *testing.T) {
		if err := d.ExecJSONBatch(ctx, "acme", "", []core.Statement{settings}, accept); core.ErrorCode(err) != core.CodeInvalid {
			t.Fatalf("got %v, want %s", err, core.CodeInvalid)
		}
	})
}
