package flight_test

import (
	"math"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

// TestBindParameters: a statement's ? become parameters that Bind gives
// values, compiled exactly as the same statement with literals, and bound
// again for another execution.
func TestBindParameters(t *testing.T) {
	c := mustCatalog(t)
	d, _ := c.Lookup(analyst, "sales.orders")
	tests := []struct {
		name    string
		sql     string
		vals    []string
		literal string
	}{
		{"comparisons", `SELECT id FROM sales.orders WHERE amount >= ? AND region = ?`, []string{"10.5", "EU"},
			`SELECT id FROM sales.orders WHERE amount >= 10.5 AND region = 'EU'`},
		{"in list mixing literals and parameters", `SELECT id FROM sales.orders WHERE id IN (1, ?, 3, ?) OR region NOT LIKE ?`, []string{"2", "4", "a%"},
			`SELECT id FROM sales.orders WHERE id IN (1, 2, 3, 4) OR region NOT LIKE 'a%'`},
		{"a value that looks like SQL stays a value", `SELECT id FROM sales.orders WHERE region = ?`, []string{"' or 1=1 --"},
			`SELECT id FROM sales.orders WHERE region = ''' or 1=1 --'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := flight.ParseSQL(tt.sql)
			if err != nil {
				t.Fatal(err)
			}
			if q.Params != len(tt.vals) {
				t.Fatalf("got %d parameters, want %d", q.Params, len(tt.vals))
			}
			if _, err := flight.Compile(d, q, analyst); core.ErrorCode(err) != core.CodeInvalid {
				t.Errorf("compile unbound: got %v, want INVALID", err)
			}
			bound, err := flight.Bind(q, tt.vals)
			if err != nil {
				t.Fatal(err)
			}
			want, err := flight.ParseSQL(tt.literal)
			if err != nil {
				t.Fatal(err)
			}
			g, err1 := flight.Compile(d, bound, analyst)
			w, err2 := flight.Compile(d, want, analyst)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if g.SQL != w.SQL || fmtArgs(g.Args) != fmtArgs(w.Args) {
				t.Errorf("got\n%s %s\nwant\n%s %s", g.SQL, fmtArgs(g.Args), w.SQL, fmtArgs(w.Args))
			}
			// Bound again, with other values: the same statement.
			again, err := flight.Bind(bound, tt.vals)
			if err != nil {
				t.Fatal(err)
			}
			if a, _ := flight.Compile(d, again, analyst); a.SQL != g.SQL || fmtArgs(a.Args) != fmtArgs(g.Args) {
				t.Errorf("bound again: got %s %s, want %s %s", a.SQL, fmtArgs(a.Args), g.SQL, fmtArgs(g.Args))
			}
			if _, err := flight.Bind(q, tt.vals[1:]); core.ErrorCode(err) != core.CodeInvalid {
				t.Errorf("too few values: got %v, want INVALID", err)
			}
		})
	}
	t.Run("parameter columns", func(t *testing.T) {
		q, _ := flight.ParseSQL(`SELECT id FROM sales.orders WHERE amount >= ? AND (region IN (?, 'x') OR id = ?)`)
		got := flight.ParamColumns(q)
		if want := []string{"amount", "region", "id"}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}

// TestParamText: each Arrow type a client binds becomes the text
// PostgreSQL casts, exactly; NULL and types a filter cannot compare are
// refused.
func TestParamText(t *testing.T) {
	mem := memory.NewGoAllocator()
	build := func(dt arrow.DataType, add func(array.Builder)) arrow.Array {
		b := array.NewBuilder(mem, dt)
		defer b.Release()
		add(b)
		return b.NewArray()
	}
	dec, _ := decimal128.FromString("-12.30", 10, 2)
	ts := time.Date(2026, 3, 28, 23, 30, 0, 123456000, time.UTC)
	tests := []struct {
		name string
		arr  arrow.Array
		want string
		code core.Code
	}{
		{"int64", build(arrow.PrimitiveTypes.Int64, func(b array.Builder) { b.(*array.Int64Builder).Append(math.MinInt64) }), "-9223372036854775808", ""},
		{"uint64", build(arrow.PrimitiveTypes.Uint64, func(b array.Builder) { b.(*array.Uint64Builder).Append(math.MaxUint64) }), "18446744073709551615", ""},
		{"float64 shortest", build(arrow.PrimitiveTypes.Float64, func(b array.Builder) { b.(*array.Float64Builder).Append(0.1) }), "0.1", ""},
		{"float32 shortest", build(arrow.PrimitiveTypes.Float32, func(b array.Builder) { b.(*array.Float32Builder).Append(0.1) }), "0.1", ""},
		{"float64 infinity", build(arrow.PrimitiveTypes.Float64, func(b array.Builder) { b.(*array.Float64Builder).Append(math.Inf(-1)) }), "-Infinity", ""},
		{"bool", build(arrow.FixedWidthTypes.Boolean, func(b array.Builder) { b.(*array.BooleanBuilder).Append(true) }), "true", ""},
		{"string", build(arrow.BinaryTypes.String, func(b array.Builder) { b.(*array.StringBuilder).Append("it's") }), "it's", ""},
		{"decimal", build(&arrow.Decimal128Type{Precision: 10, Scale: 2}, func(b array.Builder) { b.(*array.Decimal128Builder).Append(dec) }), "-12.30", ""},
		{"date", build(arrow.FixedWidthTypes.Date32, func(b array.Builder) { b.(*array.Date32Builder).Append(arrow.Date32FromTime(ts)) }), "2026-03-28", ""},
		{"timestamp with a time zone", build(&arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, func(b array.Builder) {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMicro()))
		}), "2026-03-28T23:30:00.123456Z", ""},
		{"timestamp without", build(&arrow.TimestampType{Unit: arrow.Nanosecond}, func(b array.Builder) {
			b.(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixNano()))
		}), "2026-03-28T23:30:00.123456", ""},
		{"null", build(arrow.PrimitiveTypes.Int64, func(b array.Builder) { b.AppendNull() }), "", core.CodeInvalid},
		{"binary", build(arrow.BinaryTypes.Binary, func(b array.Builder) { b.(*array.BinaryBuilder).Append([]byte{1}) }), "", core.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.arr.Release()
			got, err := flight.ParamText(tt.arr, 0, 1)
			if code := core.ErrorCode(err); code != tt.code {
				t.Fatalf("got error %v, want code %q", err, tt.code)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
