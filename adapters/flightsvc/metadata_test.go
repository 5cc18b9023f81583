package flightsvc_test

import (
	"context"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/flight/flightsql"
	pb "github.com/apache/arrow-go/v18/arrow/flight/gen/flight"
)

// readInfo reads the one endpoint of a metadata command's FlightInfo.
func readInfo(t *testing.T, f *fixture, info *aflight.FlightInfo, err error) arrow.RecordBatch {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	stream, err := f.client.DoGet(f.as(t, context.Background(), alice), info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	rdr, err := aflight.NewRecordReader(stream)
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	var recs []arrow.RecordBatch
	for rdr.Next() {
		rec := rdr.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
	}
	if err := rdr.Err(); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("got %d record batches, want 1", len(recs))
	}
	t.Cleanup(recs[0].Release)
	return recs[0]
}

// TestSqlInfoAnswersEveryID: a JDBC or ODBC driver asks for every SqlInfo
// id of the protocol on connect; one missing id failed the whole call
// (NOT_FOUND: no information for sql info number 6).
func TestSqlInfoAnswersEveryID(t *testing.T) {
	f := mustServer(t)
	c := &flightsql.Client{Client: f.client}
	var ids []flightsql.SqlInfo
	for id := range pb.SqlInfo_name {
		ids = append(ids, flightsql.SqlInfo(id))
	}
	slices.Sort(ids)
	info, err := c.GetSqlInfo(f.as(t, context.Background(), alice), ids)
	rec := readInfo(t, f, info, err)
	got := rec.Column(0).(*array.Uint32).Uint32Values()
	if len(got) != len(ids) {
		t.Fatalf("got %d ids, want %d", len(got), len(ids))
	}
	for i, id := range ids {
		if got[i] != uint32(id) {
			t.Errorf("row %d: got id %d, want %d", i, got[i], id)
		}
	}
	// The identifier cases are the enum's: unquoted names fold to lower case.
	values := rec.Column(1).(*array.DenseUnion)
	for i, id := range got {
		if id != uint32(pb.SqlInfo_SQL_IDENTIFIER_CASE) {
			continue
		}
		v := values.Field(values.ChildID(i)).(*array.Int32).Value(int(values.ValueOffset(i)))
		if v != int32(pb.SqlSupportedCaseSensitivity_SQL_CASE_SENSITIVITY_LOWERCASE) {
			t.Errorf("SQL_IDENTIFIER_CASE: got %d, want LOWERCASE (3)", v)
		}
	}
}

// TestBIToolMetadata: what BI tools ask besides SqlInfo: the types of
// columns (XDBC), and keys, which views do not have (empty, not refused).
func TestBIToolMetadata(t *testing.T) {
	f := mustServer(t)
	c := &flightsql.Client{Client: f.client}
	ctx := f.as(t, context.Background(), alice)

	info, err := c.GetXdbcTypeInfo(ctx, nil)
	rec := readInfo(t, f, info, err)
	names := rec.Column(0).(*array.String)
	var all []string
	for i := range names.Len() {
		all = append(all, names.Value(i))
	}
	for _, want := range []string{"bool", "int2", "int4", "int8", "float4", "float8", "numeric", "text", "uuid", "date", "timestamp", "timestamptz", "bytea", "jsonb"} {
		if !slices.Contains(all, want) {
			t.Errorf("GetXdbcTypeInfo: got %v, lacking %s", all, want)
		}
	}
	types := rec.Column(1).(*array.Int32).Int32Values()
	if !slices.IsSorted(types) {
		t.Errorf("GetXdbcTypeInfo: got data types %v, want them sorted", types)
	}
	bigint := int32(pb.XdbcDataType_XDBC_BIGINT)
	info, err = c.GetXdbcTypeInfo(ctx, &bigint)
	rec = readInfo(t, f, info, err)
	if rec.NumRows() != 1 || rec.Column(0).(*array.String).Value(0) != "int8" {
		t.Errorf("GetXdbcTypeInfo(BIGINT): got %v, want int8 alone", rec)
	}

	info, err = c.GetPrimaryKeys(ctx, flightsql.TableRef{Table: "ids"})
	rec = readInfo(t, f, info, err)
	var cols []string
	for _, fl := range rec.Schema().Fields() {
		cols = append(cols, fl.Name)
	}
	if want := []string{"catalog_name", "db_schema_name", "table_name", "column_name", "key_name", "key_sequence"}; !slices.Equal(cols, want) {
		t.Errorf("GetPrimaryKeys: got columns %v, want FlightSql.proto's %v", cols, want)
	}

	table := flightsql.TableRef{Table: "ids"}
	for _, tt := range []struct {
		name string
		call func() (*aflight.FlightInfo, error)
	}{
		{"primary keys", func() (*aflight.FlightInfo, error) { return c.GetPrimaryKeys(ctx, table) }},
		{"exported keys", func() (*aflight.FlightInfo, error) { return c.GetExportedKeys(ctx, table) }},
		{"imported keys", func() (*aflight.FlightInfo, error) { return c.GetImportedKeys(ctx, table) }},
		{"cross reference", func() (*aflight.FlightInfo, error) {
			return c.GetCrossReference(ctx, table, table)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := tt.call()
			if rec := readInfo(t, f, info, err); rec.NumRows() != 0 {
				t.Errorf("got %d rows, want none", rec.NumRows())
			}
		})
	}
}
