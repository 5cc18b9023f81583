package flight

import (
	"math"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/fraise-dev/fraise/core"
)

// Bind returns q with its parameters given vals, in order (vals[0] is
// parameter 1), as text PostgreSQL casts to each column's type, as it
// casts a literal. Values never become SQL text. A query bound before is
// bound anew. A count other than its parameters' is CodeInvalid. q itself
// is not changed.
func Bind(q Query, vals []string) (Query, error) {
	n := q.Params + q.Bound
	if len(vals) != n {
		return Query{}, core.Errorf(core.CodeInvalid, "the statement has %d parameters, got %d values", n, len(vals))
	}
	q.Params, q.Bound = 0, n
	q.Where = bindExpr(q.Where, vals)
	return q, nil
}

func bindExpr(e *Expr, vals []string) *Expr {
	if e == nil {
		return nil
	}
	out := *e
	if e.And != nil {
		out.And = make([]*Expr, len(e.And))
		for i, s := range e.And {
			out.And[i] = bindExpr(s, vals)
		}
	}
	if e.Or != nil {
		out.Or = make([]*Expr, len(e.Or))
		for i, s := range e.Or {
			out.Or[i] = bindExpr(s, vals)
		}
	}
	out.Not = bindExpr(e.Not, vals)
	if e.Slots != nil {
		out.Values = append([]string(nil), e.Values...)
		for i, n := range e.Slots {
			if n > 0 && n <= len(vals) && i < len(out.Values) {
				out.Values[i] = vals[n-1]
			}
		}
		out.Slots = append([]int(nil), e.Slots...)
	}
	return &out
}

// ParamColumns returns the column each of q's parameters compares with,
// in order, or "" where the query names none: the types a client should
// send.
func ParamColumns(q Query) []string {
	cols := make([]string, q.Params+q.Bound)
	var walk func(*Expr)
	walk = func(e *Expr) {
		if e == nil {
			return
		}
		for _, s := range e.And {
			walk(s)
		}
		for _, s := range e.Or {
			walk(s)
		}
		walk(e.Not)
		for _, n := range e.Slots {
			if n > 0 && n <= len(cols) {
				cols[n-1] = e.Column
			}
		}
	}
	walk(q.Where)
	return cols
}

// ParamText returns row i of a bound parameter's column as the text Bind
// takes: integers and decimals exactly, floating point in the shortest
// form that reads back the same (NaN, Infinity, -Infinity by
// PostgreSQL's names), dates as YYYY-MM-DD, timestamps in RFC 3339 with
// their microseconds (with Z when the column has a time zone, Arrow's
// being UTC). A NULL, or a type a filter cannot compare (binary, nested),
// is CodeInvalid naming the parameter (n, from 1).
func ParamText(col arrow.Array, i, n int) (string, error) {
	if col.IsNull(i) {
		return "", core.Errorf(core.CodeInvalid, "parameter %d is NULL: compare with NULL using IS NULL", n)
	}
	switch c := col.(type) {
	case *array.Int8:
		return strconv.FormatInt(int64(c.Value(i)), 10), nil
	case *array.Int16:
		return strconv.FormatInt(int64(c.Value(i)), 10), nil
	case *array.Int32:
		return strconv.FormatInt(int64(c.Value(i)), 10), nil
	case *array.Int64:
		return strconv.FormatInt(c.Value(i), 10), nil
	case *array.Uint8:
		return strconv.FormatUint(uint64(c.Value(i)), 10), nil
	case *array.Uint16:
		return strconv.FormatUint(uint64(c.Value(i)), 10), nil
	case *array.Uint32:
		return strconv.FormatUint(uint64(c.Value(i)), 10), nil
	case *array.Uint64:
		return strconv.FormatUint(c.Value(i), 10), nil
	case *array.Float32:
		return floatText(float64(c.Value(i)), 32), nil
	case *array.Float64:
		return floatText(c.Value(i), 64), nil
	case *array.Boolean:
		return strconv.FormatBool(c.Value(i)), nil
	case *array.String:
		return c.Value(i), nil
	case *array.LargeString:
		return c.Value(i), nil
	case *array.StringView:
		return c.Value(i), nil
	case *array.Decimal128:
		return c.Value(i).ToString(c.DataType().(*arrow.Decimal128Type).Scale), nil
	case *array.Decimal256:
		return c.Value(i).ToString(c.DataType().(*arrow.Decimal256Type).Scale), nil
	case *array.Date32:
		return c.Value(i).ToTime().Format(time.DateOnly), nil
	case *array.Date64:
		return c.Value(i).ToTime().Format(time.DateOnly), nil
	case *array.Timestamp:
		tt := c.DataType().(*arrow.TimestampType)
		t := c.Value(i).ToTime(tt.Unit).UTC()
		if tt.TimeZone != "" {
			return t.Format("2006-01-02T15:04:05.999999999Z07:00"), nil
		}
		return t.Format("2006-01-02T15:04:05.999999999"), nil
	}
	return "", core.Errorf(core.CodeInvalid, "parameter %d has type %s, which a filter cannot compare", n, col.DataType())
}

func floatText(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}
