package postgres_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/deploy/demo"
)

const exportViews = `
CREATE VIEW public.v_nums AS
SELECT i, n, n::text AS t FROM (
    SELECT i, round(((random() - 0.5) * 10 ^ (i % 33))::numeric, i % 7)::numeric(38,6) AS n
    FROM generate_series(1, 20000) i
    UNION ALL SELECT -v.i, v.n::numeric(38,6) FROM (VALUES (1, '0'), (2, '0.000001'), (3, '-0.000001'), (4, '1'),
        (5, '10000'), (6, '9999.9999'), (7, '100000000'), (8, '-12345678901234567890123456789012.123456'),
        (9, '99999999999999999999999999999999.999999'), (10, '0.1'), (11, '100000000.000001')) v(i, n)
) s;
CREATE VIEW public.v_bad AS SELECT 'NaN'::numeric AS n, 'infinity'::date AS d, '{{1,2},{3,4}}'::int4[] AS a,
    1.234::numeric AS unscaled, 1::int8 AS wide;
CREATE VIEW public.v_rows AS SELECT g::int8 AS id, repeat('x', 100) AS pad FROM generate_series(1, 2500) g;
GRANT SELECT ON public.v_nums, public.v_bad, public.v_rows TO fraise_app;
`

func mustExporter(tb testing.TB) (*postgres.Exporter, fixture) {
	tb.Helper()
	f := mustDemo(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, exportViews); err != nil {
		tb.Fatal(err)
	}
	return postgres.NewExporter(mustOpen(tb, f, postgres.Options{}), postgres.ExportOptions{}), f
}

func mustStatement(tb testing.TB, view string, cols ...string) flight.Statement {
	tb.Helper()
	d := flight.Dataset{Name: "d", View: view}
	for _, c := range cols {
		name, typ, _ := strings.Cut(c, " ")
		t, err := flight.ParseType(typ)
		if err != nil {
			tb.Fatal(err)
		}
		d.Columns = append(d.Columns, flight.Column{Name: name, Type: t})
	}
	cat, err := flight.NewCatalog([]flight.Dataset{d})
	if err != nil {
		tb.Fatal(err)
	}
	ds, err := cat.Lookup(core.Principal{}, "d")
	if err != nil {
		tb.Fatal(err)
	}
	st, err := flight.Compile(ds, flight.Query{Dataset: "d"})
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

var wide = flight.BatchLimits{Rows: 1 << 20, Bytes: 1 << 30}

// TestExportNumericIsExact compares every exported decimal with
// PostgreSQL's own text of the same value, over random values of every
// magnitude and scale and the edge cases.
func TestExportNumericIsExact(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e, _ := mustExporter(t)
	st := mustStatement(t, "public.v_nums", "i int4", "n numeric(38,6)", "t text")
	n := 0
	err := e.Export(context.Background(), demo.TenantAcme, st, wide, func(rec arrow.RecordBatch) error {
		nums, texts := rec.Column(1).(*array.Decimal128), rec.Column(2).(*array.String)
		for r := 0; r < int(rec.NumRows()); r++ {
			n++
			if got, want := nums.Value(r).ToString(6), texts.Value(r); got != want {
				t.Errorf("row %d: got %s, want %s", rec.Column(0).(*array.Int32).Value(r), got, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 20011 {
		t.Errorf("got %d rows, want 20011", n)
	}
}

func TestExportRefusesWhatArrowCannotHold(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e, _ := mustExporter(t)
	tests := []struct {
		name string
		col  string
		code core.Code
		msg  string
	}{
		{"NaN", "n numeric(10,2)", core.CodeInvalid, "NaN"},
		{"infinite date", "d date", core.CodeInvalid, "infinite"},
		{"two dimensions", "a int4[]", core.CodeInvalid, "one-dimensional"},
		{"more scale than declared", "unscaled numeric(10,2)", core.CodeInvalid, "scale"},
		{"declared type differs from the view's", "wide int4", core.CodeInternal, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := mustStatement(t, "public.v_bad", tt.col)
			err := e.Export(context.Background(), demo.TenantAcme, st, wide, func(arrow.RecordBatch) error { return nil })
			if core.ErrorCode(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %s mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
}

func TestExportBatchLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e, _ := mustExporter(t)
	st := mustStatement(t, "public.v_rows", "id int8", "pad text")
	tests := []struct {
		name string
		lim  flight.BatchLimits
		want []int64
	}{
		{"by rows", flight.BatchLimits{Rows: 1000, Bytes: 1 << 30}, []int64{1000, 1000, 500}},
		{"by bytes", flight.BatchLimits{Rows: 1 << 20, Bytes: 108 * 1200}, []int64{1200, 1200, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int64
			err := e.Export(context.Background(), demo.TenantAcme, st, tt.lim, func(rec arrow.RecordBatch) error {
				got = append(got, rec.NumRows())
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) || got[0] != tt.want[0] || got[len(got)-1] != tt.want[len(tt.want)-1] {
				t.Errorf("got batches %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("emit's error stops the export", func(t *testing.T) {
		calls := 0
		stop := core.Errorf(core.CodeUnavailable, "client gone")
		err := e.Export(context.Background(), demo.TenantAcme, st, flight.BatchLimits{Rows: 10, Bytes: 1 << 30}, func(arrow.RecordBatch) error {
			calls++
			return stop
		})
		if err != stop || calls != 1 {
			t.Errorf("got %v after %d calls, want the emit error after 1", err, calls)
		}
	})
}

// TestExportsWaitForASlot holds the one export slot and shows a second
// export waiting for it rather than taking another connection.
func TestExportsWaitForASlot(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	f := mustDemo(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, exportViews); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	e := postgres.NewExporter(mustOpen(t, f, postgres.Options{}), postgres.ExportOptions{MaxConcurrent: 1})
	st := mustStatement(t, "public.v_rows", "id int8", "pad text")
	lim := flight.BatchLimits{Rows: 10, Bytes: 1 << 20}
	holding, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		once := false
		first <- e.Export(ctx, demo.TenantAcme, st, lim, func(arrow.RecordBatch) error {
			if !once {
				once = true
				close(holding)
				<-release
			}
			return nil
		})
	}()
	<-holding
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	err = e.Export(wctx, demo.TenantAcme, st, lim, func(arrow.RecordBatch) error { return nil })
	if core.ErrorCode(err) != core.CodeTimeout {
		t.Errorf("second export while the slot is held: got %v, want TIMEOUT", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := e.Export(ctx, demo.TenantAcme, st, lim, func(arrow.RecordBatch) error { return nil }); err != nil {
		t.Errorf("export after the slot freed: %v", err)
	}
}
