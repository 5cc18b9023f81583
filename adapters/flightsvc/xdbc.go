package flightsvc

import (
	"context"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql/schema_ref"
	pb "github.com/apache/arrow-go/v18/arrow/flight/gen/flight"
)

// xdbcType is one row of GetXdbcTypeInfo: a PostgreSQL type a dataset
// column may have, as JDBC and ODBC describe types.
type xdbcType struct {
	name       string
	dataType   pb.XdbcDataType
	size       int32 // 0: none
	quoted     bool  // literals are written '...'
	params     []string
	searchable pb.Searchable
	exact      bool // fixed precision and scale
	maxScale   int32
	radix      int32 // 0: none
	subcode    pb.XdbcDatetimeSubcode
	datetime   bool
}

// xdbcTypes are the scalar types of docs/flight.md's type mapping, in
// XDBC's order (by data type). Arrays have no XDBC type.
var xdbcTypes = func() []xdbcType {
	ts := []xdbcType{
		{name: "bool", dataType: pb.XdbcDataType_XDBC_BIT, size: 1, searchable: pb.Searchable_SEARCHABLE_BASIC},
		{name: "int2", dataType: pb.XdbcDataType_XDBC_SMALLINT, size: 5, searchable: pb.Searchable_SEARCHABLE_BASIC, exact: true, radix: 10},
		{name: "int4", dataType: pb.XdbcDataType_XDBC_INTEGER, size: 10, searchable: pb.Searchable_SEARCHABLE_BASIC, exact: true, radix: 10},
		{name: "int8", dataType: pb.XdbcDataType_XDBC_BIGINT, size: 19, searchable: pb.Searchable_SEARCHABLE_BASIC, exact: true, radix: 10},
		{name: "float4", dataType: pb.XdbcDataType_XDBC_REAL, size: 24, searchable: pb.Searchable_SEARCHABLE_BASIC, radix: 2},
		{name: "float8", dataType: pb.XdbcDataType_XDBC_DOUBLE, size: 53, searchable: pb.Searchable_SEARCHABLE_BASIC, radix: 2},
		{name: "numeric", dataType: pb.XdbcDataType_XDBC_NUMERIC, size: 38, params: []string{"precision", "scale"},
			searchable: pb.Searchable_SEARCHABLE_BASIC, exact: true, maxScale: 38, radix: 10},
		{name: "text", dataType: pb.XdbcDataType_XDBC_VARCHAR, quoted: true, searchable: pb.Searchable_SEARCHABLE_FULL},
		{name: "varchar", dataType: pb.XdbcDataType_XDBC_VARCHAR, quoted: true, params: []string{"length"}, searchable: pb.Searchable_SEARCHABLE_FULL},
		{name: "jsonb", dataType: pb.XdbcDataType_XDBC_LONGVARCHAR, searchable: pb.Searchable_SEARCHABLE_NONE},
		{name: "uuid", dataType: pb.XdbcDataType_XDBC_BINARY, size: 16, quoted: true, searchable: pb.Searchable_SEARCHABLE_BASIC},
		{name: "bytea", dataType: pb.XdbcDataType_XDBC_VARBINARY, searchable: pb.Searchable_SEARCHABLE_NONE},
		{name: "date", dataType: pb.XdbcDataType_XDBC_DATE, size: 10, quoted: true, searchable: pb.Searchable_SEARCHABLE_BASIC,
			datetime: true, subcode: pb.XdbcDatetimeSubcode_XDBC_SUBCODE_DATE},
		{name: "timestamp", dataType: pb.XdbcDataType_XDBC_TIMESTAMP, size: 26, quoted: true, searchable: pb.Searchable_SEARCHABLE_BASIC,
			maxScale: 6, datetime: true, subcode: pb.XdbcDatetimeSubcode_XDBC_SUBCODE_TIMESTAMP},
		{name: "timestamptz", dataType: pb.XdbcDataType_XDBC_TIMESTAMP, size: 32, quoted: true, searchable: pb.Searchable_SEARCHABLE_BASIC,
			maxScale: 6, datetime: true, subcode: pb.XdbcDatetimeSubcode_XDBC_SUBCODE_TIMESTAMP_WITH_TIMEZONE},
	}
	slices.SortStableFunc(ts, func(a, b xdbcType) int { return int(a.dataType) - int(b.dataType) })
	return ts
}()

func (q *sqlServer) GetFlightInfoXdbcTypeInfo(_ context.Context, _ flightsql.GetXdbcTypeInfo, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.XdbcTypeInfo), nil
}

// DoGetXdbcTypeInfo describes the types of dataset columns, all of them
// or those of one XDBC data type.
func (q *sqlServer) DoGetXdbcTypeInfo(_ context.Context, cmd flightsql.GetXdbcTypeInfo) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	b := array.NewRecordBuilder(q.s.mem, schema_ref.XdbcTypeInfo)
	defer b.Release()
	str := func(i int, v string, ok bool) {
		if ok {
			b.Field(i).(*array.StringBuilder).Append(v)
		} else {
			b.Field(i).AppendNull()
		}
	}
	i32 := func(i int, v int32, ok bool) {
		if ok {
			b.Field(i).(*array.Int32Builder).Append(v)
		} else {
			b.Field(i).AppendNull()
		}
	}
	for _, t := range xdbcTypes {
		if dt := cmd.GetDataType(); dt != nil && *dt != int32(t.dataType) {
			continue
		}
		str(0, t.name, true)
		i32(1, int32(t.dataType), true)
		i32(2, t.size, t.size > 0)
		str(3, "'", t.quoted)
		str(4, "'", t.quoted)
		if t.params == nil {
			b.Field(5).AppendNull()
		} else {
			lb := b.Field(5).(*array.ListBuilder)
			lb.Append(true)
			for _, p := range t.params {
				lb.ValueBuilder().(*array.StringBuilder).Append(p)
			}
		}
		i32(6, int32(pb.Nullable_NULLABILITY_NULLABLE), true)
		b.Field(7).(*array.BooleanBuilder).Append(t.quoted && !t.datetime && t.dataType != pb.XdbcDataType_XDBC_BINARY)
		i32(8, int32(t.searchable), true)
		if t.radix == 10 {
			b.Field(9).(*array.BooleanBuilder).Append(false)
		} else {
			b.Field(9).AppendNull()
		}
		b.Field(10).(*array.BooleanBuilder).Append(t.exact && t.maxScale == 0 && t.dataType != pb.XdbcDataType_XDBC_NUMERIC)
		b.Field(11).(*array.BooleanBuilder).Append(false)
		str(12, t.name, true)
		i32(13, 0, t.maxScale > 0)
		i32(14, t.maxScale, t.maxScale > 0)
		if t.datetime {
			i32(15, int32(pb.XdbcDataType_XDBC_DATETIME), true)
			i32(16, int32(t.subcode), true)
		} else {
			i32(15, int32(t.dataType), true)
			i32(16, 0, false)
		}
		i32(17, t.radix, t.radix > 0)
		i32(18, 0, false)
	}
	return schema_ref.XdbcTypeInfo, one(b.NewRecordBatch()), nil
}

// Datasets are views: they have no primary or foreign keys, and a BI tool
// asking for them gets empty answers, not errors.

// primaryKeys is GetPrimaryKeys' schema as FlightSql.proto gives it:
// arrow-go's schema_ref.PrimaryKeys has key_sequence and key_name the
// other way round, and a client that reads columns by position (JDBC's
// getPrimaryKeys) would read one as the other.
var primaryKeys = arrow.NewSchema([]arrow.Field{
	{Name: "catalog_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "db_schema_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "table_name", Type: arrow.BinaryTypes.String},
	{Name: "column_name", Type: arrow.BinaryTypes.String},
	{Name: "key_name", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "key_sequence", Type: arrow.PrimitiveTypes.Int32},
}, nil)

func (q *sqlServer) GetFlightInfoPrimaryKeys(_ context.Context, _ flightsql.TableRef, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, primaryKeys), nil
}

func (q *sqlServer) DoGetPrimaryKeys(context.Context, flightsql.TableRef) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	return primaryKeys, q.empty(primaryKeys), nil
}

func (q *sqlServer) GetFlightInfoExportedKeys(_ context.Context, _ flightsql.TableRef, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.ExportedKeys), nil
}

func (q *sqlServer) DoGetExportedKeys(context.Context, flightsql.TableRef) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	return schema_ref.ExportedKeys, q.empty(schema_ref.ExportedKeys), nil
}

func (q *sqlServer) GetFlightInfoImportedKeys(_ context.Context, _ flightsql.TableRef, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.ImportedKeys), nil
}

func (q *sqlServer) DoGetImportedKeys(context.Context, flightsql.TableRef) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	return schema_ref.ImportedKeys, q.empty(schema_ref.ImportedKeys), nil
}

func (q *sqlServer) GetFlightInfoCrossReference(_ context.Context, _ flightsql.CrossTableRef, desc *aflight.FlightDescriptor) (*aflight.FlightInfo, error) {
	return q.cmdInfo(desc, schema_ref.CrossReference), nil
}

func (q *sqlServer) DoGetCrossReference(context.Context, flightsql.CrossTableRef) (*arrow.Schema, <-chan aflight.StreamChunk, error) {
	return schema_ref.CrossReference, q.empty(schema_ref.CrossReference), nil
}

func (q *sqlServer) empty(sc *arrow.Schema) <-chan aflight.StreamChunk {
	b := array.NewRecordBuilder(q.s.mem, sc)
	defer b.Release()
	return one(b.NewRecordBatch())
}
