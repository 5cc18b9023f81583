package postgres_test

import (
	"context"
	"fmt"
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
	"github.com/fraise-dev/fraise/internal/await"
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
-- Ten NULL int8 columns and sixteen empty texts: nearly nothing on the
-- wire, 80 and 64 bytes a row in Arrow.
CREATE VIEW public.v_sparse AS SELECT g::int8 AS id, NULL::int8 AS n1, NULL::int8 AS n2, NULL::int8 AS n3,
    NULL::int8 AS n4, NULL::int8 AS n5, NULL::int8 AS n6, NULL::int8 AS n7, NULL::int8 AS n8, NULL::int8 AS n9,
    NULL::int8 AS n10, '' AS t1, '' AS t2, '' AS t3, '' AS t4, '' AS t5, '' AS t6, '' AS t7, '' AS t8,
    '' AS t9, '' AS t10, '' AS t11, '' AS t12, '' AS t13, '' AS t14, '' AS t15, '' AS t16
    FROM generate_series(1, 200000) g;
-- A value Arrow cannot hold in the first of twenty million rows (20 GB),
-- streamed: a set-returning function in the select list, unlike one in
-- FROM, is not materialized before the first row is sent.
CREATE VIEW public.v_slow AS SELECT (CASE WHEN g = 1 THEN 'NaN'::numeric ELSE g END)::numeric(12,2) AS n,
    repeat('x', 1000) AS pad FROM (SELECT generate_series(1, 20000000) AS g) s;
CREATE TABLE public.t_chars (id int8 PRIMARY KEY, name varchar(20), tags varchar(20)[], code char(4));
INSERT INTO public.t_chars VALUES (1, 'Zoë', '{a,NULL,"b c"}', 'ab'), (2, '', '{}', NULL), (3, NULL, NULL, 'abcd');
CREATE VIEW public.v_chars AS SELECT id, name, tags, code, name::text AS name_text, tags::text[] AS tags_text,
    'pg_class'::name AS rel, ARRAY['a'::name] AS rels FROM public.t_chars;
GRANT SELECT ON public.v_nums, public.v_bad, public.v_rows, public.v_sparse, public.v_slow, public.v_chars TO fraise_app;
`

func mustExporter(tb testing.TB) (*postgres.Exporter, fixture) {
	tb.Helper()
	return mustExporterWith(tb, postgres.ExportOptions{})
}

// mustExporterWith is mustExporter with export options o.
func mustExporterWith(tb testing.TB, o postgres.ExportOptions) (*postgres.Exporter, fixture) {
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
	e := postgres.NewExporter(mustOpen(tb, f, postgres.Options{}), o)
	// Before the pool closes (cleanups run last first): held snapshots
	// hold connections.
	tb.Cleanup(e.Close)
	return e, f
}

// discard is an export's client that reads every batch and keeps none.
func discard(arrow.RecordBatch) error { return nil }

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
	cat, err := flight.NewCatalog([]flight.Dataset{d}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ds, err := cat.Lookup(core.Principal{}, "d")
	if err != nil {
		tb.Fatal(err)
	}
	st, err := flight.Compile(ds, flight.Query{Dataset: "d"}, core.Principal{})
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
			err := e.Export(context.Background(), demo.TenantAcme, st, wide, discard)
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
		// 8 bytes of int8 and 4 of offset plus 100 of text a row, in
		// Arrow, and a byte a column for validity and padding.
		{"by bytes", flight.BatchLimits{Rows: 1 << 20, Bytes: 114 * 1200}, []int64{1200, 1200, 100}},
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
	t.Run("bytes are Arrow's, NULLs and offsets included", func(t *testing.T) {
		cols := []string{"id int8"}
		for i := 1; i <= 10; i++ {
			cols = append(cols, fmt.Sprintf("n%d int8", i))
		}
		for i := 1; i <= 16; i++ {
			cols = append(cols, fmt.Sprintf("t%d text", i))
		}
		sparse := mustStatement(t, "public.v_sparse", cols...)
		lim := flight.BatchLimits{Rows: 65536, Bytes: 3 << 20}
		var rows int64
		err := e.Export(context.Background(), demo.TenantAcme, sparse, lim, func(rec arrow.RecordBatch) error {
			rows += rec.NumRows()
			// The values' buffers, without the builders' spare capacity.
			var size int
			for _, col := range rec.Columns() {
				for _, b := range col.Data().Buffers() {
					if b != nil {
						size += b.Len()
					}
				}
			}
			if size > lim.Bytes {
				t.Errorf("a batch of %d rows holds %d Arrow bytes, over the %d limit", rec.NumRows(), size, lim.Bytes)
			}
			return nil
		})
		if err != nil || rows != 200000 {
			t.Fatalf("exported %d rows, %v; want 200000", rows, err)
		}
	})
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

// TestFlightExportOfTextAlikes exports varchar and name columns, whose
// binary format is text's, declared as varchar or as text.
func TestFlightExportOfTextAlikes(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e, _ := mustExporter(t)
	st := mustStatement(t, "public.v_chars", "id int8", "name varchar", "tags varchar[]",
		"name_text varchar", "tags_text varchar[]", "rel text", "rels text[]")
	st.SQL += " order by id"
	var got []string
	err := e.Export(context.Background(), demo.TenantAcme, st, wide, func(rec arrow.RecordBatch) error {
		for r := 0; r < int(rec.NumRows()); r++ {
			row := make([]string, 0, rec.NumCols())
			for c := 1; c < int(rec.NumCols()); c++ {
				row = append(row, rec.Column(c).ValueStr(r))
			}
			got = append(got, strings.Join(row, "|"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`Zoë|["a",null,"b c"]|Zoë|["a",null,"b c"]|pg_class|["a"]`,
		`|[]||[]|pg_class|["a"]`,
		`(null)|(null)|(null)|(null)|pg_class|["a"]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// char(n) sends its blank padding, which its cast to text, and so
	// every filter, drops: it does not pass for text.
	st = mustStatement(t, "public.v_chars", "code text")
	err = e.Export(context.Background(), demo.TenantAcme, st, wide, discard)
	if core.ErrorCode(err) != core.CodeInternal || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("char(4) declared text: got %v, want INTERNAL, does not match", err)
	}
}

// TestFlightExportErrorAbandonsTheQuery: an export failing on its first
// row must end there, not after reading and discarding the rest of the
// result; the query must be gone from the server and the pool must hand
// out only working connections afterwards.
func TestFlightExportErrorAbandonsTheQuery(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	e, f := mustExporter(t)
	ctx := context.Background()
	st := mustStatement(t, "public.v_slow", "n numeric(12,2)", "pad text")
	// Reading all of it takes far longer than the bound below; the
	// timeout only keeps a regression from stalling the suite.
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	start := time.Now()
	err := e.Export(tctx, demo.TenantAcme, st, wide, discard)
	took := time.Since(start)
	if core.ErrorCode(err) != core.CodeInvalid || !strings.Contains(err.Error(), "NaN") {
		t.Fatalf("got %v, want INVALID mentioning NaN", err)
	}
	if took > 5*time.Second {
		t.Errorf("the failed export took %v: it read the rest of the result", took)
	}
	admin, err := pgx.Connect(ctx, f.pg.AdminURL(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// pgx cancels the abandoned query from another goroutine: allow it a
	// moment, far less than the query would run.
	if !await.Within(5*time.Second, func() bool {
		var running int
		if err := admin.QueryRow(ctx, `select count(*) from pg_stat_activity
			where datname = current_database() and pid <> pg_backend_pid() and state = 'active' and query like '%v_slow%'`).Scan(&running); err != nil {
			t.Fatal(err)
		}
		return running == 0
	}) {
		t.Fatalf("the query still runs %v after the export returned", time.Since(start)-took)
	}
	rows := mustStatement(t, "public.v_rows", "id int8", "pad text")
	for i := range 8 { // more than the pool's connections
		n := int64(0)
		err := e.Export(ctx, demo.TenantAcme, rows, wide, func(rec arrow.RecordBatch) error {
			n += rec.NumRows()
			return nil
		})
		if err != nil || n != 2500 {
			t.Fatalf("export %d after the failed one: got %d rows, %v", i+1, n, err)
		}
	}
}
