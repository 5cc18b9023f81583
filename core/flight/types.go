// Package flight is the core of Fraise's Arrow Flight exports: the datasets
// (views, or GraphQL types' fields, declared exportable, with typed columns
// carrying the field protection of GraphQL's @auth and @mask), the mapping
// of their PostgreSQL types to Arrow types, the query a client describes
// (columns, filters, order, limit) compiled to parameterized SQL that
// applies that protection for the caller, the conservative reader of
// Flight SQL statements, and the signed, tenant-bound, expiring tickets
// that carry a query from GetFlightInfo to DoGet. It knows nothing of gRPC
// or pgx: adapters/flightsvc serves it and adapters/postgres reads the
// rows.
package flight

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// Kind is the type an exportable column may have, named as the
// configuration and PostgreSQL name it; adapters/postgres maps each to the
// type OIDs its wire protocol carries.
type Kind int

// The exportable kinds.
const (
	KindInvalid Kind = iota
	KindInt2
	KindInt4
	KindInt8
	KindFloat4
	KindFloat8
	KindNumeric
	KindBool
	KindText
	KindUUID
	KindDate
	KindTimestamp
	KindTimestampTZ
	KindBytea
	KindJSONB
)

var kindNames = map[string]Kind{
	"int2": KindInt2, "smallint": KindInt2,
	"int4": KindInt4, "int": KindInt4, "integer": KindInt4,
	"int8": KindInt8, "bigint": KindInt8,
	"float4": KindFloat4, "real": KindFloat4,
	"float8": KindFloat8, "double precision": KindFloat8,
	"numeric": KindNumeric, "decimal": KindNumeric,
	"bool": KindBool, "boolean": KindBool,
	"text": KindText, "varchar": KindText,
	"uuid":      KindUUID,
	"date":      KindDate,
	"timestamp": KindTimestamp, "timestamp without time zone": KindTimestamp,
	"timestamptz": KindTimestampTZ, "timestamp with time zone": KindTimestampTZ,
	"bytea": KindBytea,
	"jsonb": KindJSONB,
}

// canonical names, as PostgreSQL's format_type spells the base type.
var kindSQL = map[Kind]string{
	KindInt2: "int2", KindInt4: "int4", KindInt8: "int8", KindFloat4: "float4", KindFloat8: "float8",
	KindNumeric: "numeric", KindBool: "bool", KindText: "text", KindUUID: "uuid", KindDate: "date",
	KindTimestamp: "timestamp", KindTimestampTZ: "timestamptz", KindBytea: "bytea", KindJSONB: "jsonb",
}

// MaxDecimalPrecision is the widest numeric an Arrow decimal128 holds.
const MaxDecimalPrecision = 38

// Type is the PostgreSQL type of an exportable column.
type Type struct {
	Kind Kind
	// Precision and Scale of a numeric, which must declare both (up to 38
	// digits): Arrow's decimal128 has a fixed precision and scale.
	Precision, Scale int32
	// Array is a one-dimensional array of Kind.
	Array bool
}

// ParseType reads a column type as written in the configuration: "int8",
// "numeric(12,2)", "timestamptz", "text[]".
func ParseType(s string) (Type, error) {
	var t Type
	s = strings.ToLower(strings.TrimSpace(s))
	if base, ok := strings.CutSuffix(s, "[]"); ok {
		t.Array = true
		s = strings.TrimSpace(base)
	}
	if base, args, ok := strings.Cut(s, "("); ok {
		args, ok = strings.CutSuffix(strings.TrimSpace(args), ")")
		if !ok {
			return t, fmt.Errorf("type %q: unbalanced parenthesis", s)
		}
		p, sc, _ := strings.Cut(args, ",")
		prec, err1 := strconv.Atoi(strings.TrimSpace(p))
		scale, err2 := strconv.Atoi(strings.TrimSpace(sc))
		if err1 != nil || err2 != nil {
			return t, fmt.Errorf("type %q: want numeric(precision, scale)", s)
		}
		t.Precision, t.Scale = int32(prec), int32(scale)
		s = strings.TrimSpace(base)
	}
	k, ok := kindNames[s]
	if !ok {
		return t, fmt.Errorf("type %q cannot be exported (see docs/flight.md for the mapped types)", s)
	}
	t.Kind = k
	if k == KindNumeric {
		if t.Precision < 1 || t.Precision > MaxDecimalPrecision || t.Scale < 0 || t.Scale > t.Precision {
			return t, fmt.Errorf("type %q: numeric needs a precision of 1 to 38 and a scale of 0 to the precision, e.g. numeric(12,2)", s)
		}
	} else if t.Precision != 0 || t.Scale != 0 {
		return t, fmt.Errorf("type %q: only numeric takes a precision", s)
	}
	return t, nil
}

// String returns the type as PostgreSQL writes it.
func (t Type) String() string {
	s := kindSQL[t.Kind]
	if t.Kind == KindNumeric {
		s = fmt.Sprintf("numeric(%d,%d)", t.Precision, t.Scale)
	}
	if t.Array {
		s += "[]"
	}
	return s
}

// Scalar returns the element type of an array type.
func (t Type) Scalar() Type { t.Array = false; return t }

// ArrowType returns the Arrow type the column is exported as: see the table
// in docs/flight.md.
func (t Type) ArrowType() arrow.DataType {
	var dt arrow.DataType
	switch t.Kind {
	case KindInt2:
		dt = arrow.PrimitiveTypes.Int16
	case KindInt4:
		dt = arrow.PrimitiveTypes.Int32
	case KindInt8:
		dt = arrow.PrimitiveTypes.Int64
	case KindFloat4:
		dt = arrow.PrimitiveTypes.Float32
	case KindFloat8:
		dt = arrow.PrimitiveTypes.Float64
	case KindNumeric:
		dt = &arrow.Decimal128Type{Precision: t.Precision, Scale: t.Scale}
	case KindBool:
		dt = arrow.FixedWidthTypes.Boolean
	case KindText, KindJSONB:
		dt = arrow.BinaryTypes.String
	case KindUUID:
		dt = &arrow.FixedSizeBinaryType{ByteWidth: 16}
	case KindDate:
		dt = arrow.FixedWidthTypes.Date32
	case KindTimestamp:
		dt = &arrow.TimestampType{Unit: arrow.Microsecond}
	case KindTimestampTZ:
		dt = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	case KindBytea:
		dt = arrow.BinaryTypes.Binary
	default:
		return arrow.Null
	}
	if t.Array {
		return arrow.ListOf(dt)
	}
	return dt
}

// comparable reports whether filters may order-compare values of the type.
func (t Type) comparable() bool {
	return !t.Array && t.Kind != KindBytea && t.Kind != KindJSONB
}
