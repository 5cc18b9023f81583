package flightsvc_test

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFlightSQLBindsParameters: a prepared statement's ? take the values a
// client binds (DoPut), as Flight SQL clients send them (the Python
// DB-API's cursor.execute(sql, parameters) does), executed again with
// other values, with field protection applied as to literals.
func TestFlightSQLBindsParameters(t *testing.T) {
	f := mustProtected(t)
	mem := memory.NewGoAllocator()
	param := func(v string) arrow.RecordBatch {
		b := array.NewRecordBuilder(mem, arrow.NewSchema([]arrow.Field{{Name: "email", Type: arrow.BinaryTypes.String, Nullable: true}}, nil))
		defer b.Release()
		b.Field(0).(*array.StringBuilder).Append(v)
		return b.NewRecordBatch()
	}
	ctx := f.as(t, reader)
	st, err := f.sql.Prepare(ctx, "SELECT id, email FROM people.users WHERE email = ?")
	if err != nil {
		t.Fatal(err)
	}
	if ps := st.ParameterSchema(); ps == nil || ps.NumFields() != 1 || ps.Field(0).Type.ID() != arrow.STRING || ps.Field(0).Name != "email" {
		t.Errorf("got parameter schema %v, want one utf8 field email", ps)
	}
	for _, tt := range []struct {
		value string
		want  string
	}{{"alice@acme.test", aliceID}, {"bob@acme.test", bobID}, {"' or 1=1 --", ""}} {
		rec := param(tt.value)
		st.SetParameters(rec)
		info, err := st.Execute(ctx)
		rec.Release()
		if err != nil {
			t.Fatalf("%s: %v", tt.value, err)
		}
		e, err := f.doGet(t, reader, info.Endpoint[0].Ticket)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for id := range e.rows {
			got = append(got, id)
		}
		if want := []string{tt.want}; tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || got[0] != want[0]) {
			t.Errorf("email = %q: got ids %v, want %q", tt.value, got, tt.want)
		}
	}

	t.Run("executed without values", func(t *testing.T) {
		st, err := f.sql.Prepare(f.as(t, reader), "SELECT id FROM people.users WHERE email = ?")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Execute(f.as(t, reader)); status.Code(err) != codes.InvalidArgument {
			t.Errorf("got %v, want InvalidArgument", err)
		}
	})
	t.Run("a masked column is no filter, bound or not", func(t *testing.T) {
		if _, err := f.sql.Prepare(f.as(t, analyst), "SELECT id FROM people.users WHERE email = ?"); status.Code(err) != codes.PermissionDenied {
			t.Errorf("got %v, want PermissionDenied", err)
		}
	})
}
