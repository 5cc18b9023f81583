package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-adbc/go/adbc"
	adbcflightsql "github.com/apache/arrow-adbc/go/adbc/driver/flightsql"
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// flightTypesSQL creates a tenant table with one column of every mapped
// type, its security_invoker view, a view nobody declared exportable, and
// rows holding each type's extremes, nulls and time zones.
const flightTypesSQL = `
CREATE TABLE public.flight_types (
    tenant_id uuid NOT NULL, id int8 PRIMARY KEY,
    c_int2 int2, c_int4 int4, c_int8 int8, c_float4 float4, c_float8 float8,
    c_num numeric(38,6), c_money numeric(12,2), c_bool bool, c_text text, c_uuid uuid,
    c_date date, c_ts timestamp, c_tstz timestamptz, c_bytea bytea, c_jsonb jsonb,
    c_int8s int8[], c_texts text[]
);
ALTER TABLE public.flight_types ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.flight_types FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.flight_types
    USING (tenant_id = nullif(current_setting('fraise.tenant', true), '')::uuid);
CREATE VIEW public.v_flight_types WITH (security_invoker = true) AS
    SELECT id, c_int2, c_int4, c_int8, c_float4, c_float8, c_num, c_money, c_bool, c_text, c_uuid,
           c_date, c_ts, c_tstz, c_bytea, c_jsonb, c_int8s, c_texts FROM public.flight_types;
CREATE VIEW public.v_secret WITH (security_invoker = true) AS SELECT id, c_text FROM public.flight_types;
GRANT SELECT ON public.flight_types, public.v_flight_types, public.v_secret TO fraise_app;
INSERT INTO public.flight_types VALUES
 ('11111111-1111-4111-8111-111111111111', 1, -32768, -2147483648, -9223372036854775808, '-3.4028235e38', '-1.7976931348623157e308',
  '-99999999999999999999999999999999.999999', '-0.01', false, '', '00000000-0000-0000-0000-000000000000',
  '0001-01-01', '0001-01-01 00:00:00', '2026-03-29 01:30:00.123456+02', '\x', '[]', '{}', '{}'),
 ('11111111-1111-4111-8111-111111111111', 2, 32767, 2147483647, 9223372036854775807, 'NaN', 'Infinity',
  '99999999999999999999999999999999.999999', '9999999999.99', true, E'h\u00e9llo, "w\u00f6rld"\n\t\U0001F353', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '9999-12-31', '9999-12-31 23:59:59.999999', '1969-12-31 23:59:59.999999-08', '\x00ff10',
  '{"a": [1, 2.5, null, "x"], "b": {"c": true}}', '{1,NULL,-9223372036854775808}', '{"a",NULL,"","b,c"}'),
 ('11111111-1111-4111-8111-111111111111', 3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 ('11111111-1111-4111-8111-111111111111', 5, NULL, NULL, 7, '1.4e-45', '5e-324', '0.000001', '12.30', NULL, 'five', NULL,
  '1970-01-01', NULL, '2000-01-01 00:00:00+00', NULL, 'null', NULL, NULL),
 ('22222222-2222-4222-8222-222222222222', 4, NULL, 42, NULL, NULL, NULL, NULL, NULL, NULL, 'globex', NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL);
`

const flightTypesTOML = `
[flight]
ticket_ttl = "4s"
[[flight.datasets]]
name = "types.all"
view = "public.v_flight_types"
columns = [
  { name = "id", type = "int8" }, { name = "c_int2", type = "int2" }, { name = "c_int4", type = "int4" },
  { name = "c_int8", type = "int8" }, { name = "c_float4", type = "float4" }, { name = "c_float8", type = "float8" },
  { name = "c_num", type = "numeric(38,6)" }, { name = "c_money", type = "numeric(12,2)" }, { name = "c_bool", type = "bool" },
  { name = "c_text", type = "text" }, { name = "c_uuid", type = "uuid" }, { name = "c_date", type = "date" },
  { name = "c_ts", type = "timestamp" }, { name = "c_tstz", type = "timestamptz" }, { name = "c_bytea", type = "bytea" },
  { name = "c_jsonb", type = "jsonb" }, { name = "c_int8s", type = "int8[]" }, { name = "c_texts", type = "text[]" },
]
[[flight.datasets]]
name = "types.admins"
view = "public.v_flight_types"
roles = ["admin"]
columns = [{ name = "id", type = "int8" }]
# The demo's GraphQL type User: its fields, with their @auth and @mask.
[[flight.datasets]]
name = "people.users"
graphql_type = "User"
columns = [{ name = "id", type = "uuid" }, { name = "name", type = "text" }, { name = "email", type = "text" }]
`

// slowMachineEnv gives extauthz time on a machine shared with others: the
// gateway's 250 ms deadline fails closed, and a refusal that only says
// the machine was busy would make these tests flaky, not stricter.
var slowMachineEnv = map[string]string{"FRAISE_GATEWAY_AUTHZ_TIMEOUT": "5s"}

// mustFlightStack starts the stack with the types datasets declared.
func mustFlightStack(tb testing.TB) *stack.Stack {
	tb.Helper()
	return stack.StartWith(tb, stack.Options{TOML: flightTypesTOML, SetupSQL: flightTypesSQL, PerTenant: 10000, Env: slowMachineEnv})
}

// readTicket runs DoGet and returns its batches (retained; released at
// cleanup).
func readTicket(ctx context.Context, tb testing.TB, c flight.Client, t *flight.Ticket) ([]arrow.RecordBatch, error) {
	stream, err := c.DoGet(ctx, t)
	if err != nil {
		return nil, err
	}
	rdr, err := flight.NewRecordReader(stream)
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	var out []arrow.RecordBatch
	for rdr.Next() {
		rec := rdr.RecordBatch()
		rec.Retain()
		tb.Cleanup(rec.Release)
		out = append(out, rec)
	}
	return out, rdr.Err()
}

func codeOf(err error) codes.Code { return status.Code(err) }

// typeRows indexes exported rows by id: column name to value.
func typeRows(tb testing.TB, recs []arrow.RecordBatch) map[int64]map[string]any {
	tb.Helper()
	rows := map[int64]map[string]any{}
	for _, rec := range recs {
		ids := rec.Column(rec.Schema().FieldIndices("id")[0]).(*array.Int64)
		for r := 0; r < int(rec.NumRows()); r++ {
			row := map[string]any{}
			for i, f := range rec.Schema().Fields() {
				col := rec.Column(i)
				if col.IsNull(r) {
					row[f.Name] = nil
					continue
				}
				row[f.Name] = valueAt(col, r)
			}
			rows[ids.Value(r)] = row
		}
	}
	return rows
}

func valueAt(col arrow.Array, r int) any {
	switch c := col.(type) {
	case *array.Int16:
		return c.Value(r)
	case *array.Int32:
		return c.Value(r)
	case *array.Int64:
		return c.Value(r)
	case *array.Float32:
		return c.Value(r)
	case *array.Float64:
		return c.Value(r)
	case *array.Decimal128:
		return c.Value(r)
	case *array.Boolean:
		return c.Value(r)
	case *array.String:
		return c.Value(r)
	case *array.FixedSizeBinary:
		return string(c.Value(r))
	case *array.Binary:
		return string(c.Value(r))
	case *array.Date32:
		return c.Value(r)
	case *array.Timestamp:
		return c.Value(r)
	case *array.List:
		start, end := c.ValueOffsets(r)
		var out []any
		for i := int(start); i < int(end); i++ {
			if c.ListValues().IsNull(i) {
				out = append(out, nil)
				continue
			}
			out = append(out, valueAt(c.ListValues(), i))
		}
		return out
	}
	return "unsupported " + col.DataType().String()
}

func mustDecimal(tb testing.TB, s string, prec, scale int32) decimal128.Num {
	tb.Helper()
	n, err := decimal128.FromString(s, prec, scale)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func micros(y int, mo time.Month, d, h, mi, s, us int) arrow.Timestamp {
	return arrow.Timestamp(time.Date(y, mo, d, h, mi, s, us*1000, time.UTC).UnixMicro())
}

func days(y int, mo time.Month, d int) arrow.Date32 {
	return arrow.Date32(time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// checkTypes asserts that the Acme rows of flight_types arrived exactly.
func checkTypes(t *testing.T, recs []arrow.RecordBatch) {
	t.Helper()
	if len(recs) == 0 {
		t.Fatal("no record batches")
	}
	sc := recs[0].Schema()
	wantTypes := map[string]string{
		"c_int2": "int16", "c_num": "decimal(38, 6)", "c_money": "decimal(12, 2)", "c_uuid": "fixed_size_binary[16]",
		"c_date": "date32", "c_ts": "timestamp[us]", "c_tstz": "timestamp[us, tz=UTC]", "c_bytea": "binary",
		"c_jsonb": "utf8", "c_int8s": "list<item: int64, nullable>", "c_texts": "list<item: utf8, nullable>",
	}
	for name, want := range wantTypes {
		f, ok := sc.FieldsByName(name)
		if !ok || f[0].Type.String() != want {
			t.Errorf("column %s: got type %v, want %s", name, f, want)
		}
	}
	rows := typeRows(t, recs)
	if _, ok := rows[4]; ok {
		t.Errorf("Globex's row 4 reached Acme")
	}
	if len(rows) != 4 {
		t.Fatalf("got %d rows, want 4 (ids 1, 2, 3, 5)", len(rows))
	}
	want := map[int64]map[string]any{
		1: {
			"c_int2": int16(math.MinInt16), "c_int4": int32(math.MinInt32), "c_int8": int64(math.MinInt64),
			"c_float4": float32(-3.4028235e38), "c_float8": -math.MaxFloat64,
			"c_num":   mustDecimal(t, "-99999999999999999999999999999999.999999", 38, 6),
			"c_money": mustDecimal(t, "-0.01", 12, 2), "c_bool": false, "c_text": "",
			"c_uuid": string(make([]byte, 16)), "c_date": days(1, 1, 1), "c_ts": micros(1, 1, 1, 0, 0, 0, 0),
			"c_tstz":  micros(2026, 3, 28, 23, 30, 0, 123456),
			"c_bytea": "", "c_jsonb": "[]", "c_int8s": []any(nil), "c_texts": []any(nil),
		},
		2: {
			"c_int2": int16(math.MaxInt16), "c_int4": int32(math.MaxInt32), "c_int8": int64(math.MaxInt64),
			"c_float8": math.Inf(1),
			"c_num":    mustDecimal(t, "99999999999999999999999999999999.999999", 38, 6),
			"c_money":  mustDecimal(t, "9999999999.99", 12, 2), "c_bool": true, "c_text": "h\u00e9llo, \"w\u00f6rld\"\n\t\U0001F353",
			"c_uuid": strings.Repeat("\xff", 16), "c_date": days(9999, 12, 31), "c_ts": micros(9999, 12, 31, 23, 59, 59, 999999),
			"c_tstz":  micros(1970, 1, 1, 7, 59, 59, 999999),
			"c_bytea": "\x00\xff\x10", "c_jsonb": `{"a": [1, 2.5, null, "x"], "b": {"c": true}}`,
			"c_int8s": []any{int64(1), nil, int64(math.MinInt64)}, "c_texts": []any{"a", nil, "", "b,c"},
		},
		3: {},
		5: {
			"c_int8": int64(7), "c_float4": float32(1.4e-45), "c_float8": 5e-324,
			"c_num": mustDecimal(t, "0.000001", 38, 6), "c_money": mustDecimal(t, "12.30", 12, 2), "c_text": "five",
			"c_date": arrow.Date32(0), "c_tstz": micros(2000, 1, 1, 0, 0, 0, 0), "c_jsonb": "null",
		},
	}
	for id, cols := range want {
		got := rows[id]
		for _, f := range sc.Fields() {
			if f.Name == "id" {
				continue
			}
			g, w := got[f.Name], cols[f.Name]
			if f.Name == "c_float4" && id == 2 {
				if v, ok := g.(float32); !ok || !math.IsNaN(float64(v)) {
					t.Errorf("row %d %s: got %v, want NaN", id, f.Name, g)
				}
				continue
			}
			if gl, ok := g.([]any); ok && len(gl) == 0 {
				g = []any(nil)
			}
			if !equalValue(g, w) {
				t.Errorf("row %d %s: got %#v, want %#v", id, f.Name, g, w)
			}
		}
	}
}

func equalValue(a, b any) bool {
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok || bok {
		return aok && bok && slices.Equal(al, bl) || len(al) == 0 && len(bl) == 0 && (aok || a == nil) && (bok || b == nil)
	}
	return a == b
}

func TestFlightThroughGateway(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	s := mustFlightStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := s.FlightClient(t, s.Addrs.Gateway)
	acme := stack.Bearer(ctx, s.Token(t, demo.TenantAcme, "alice", "analyst"))
	globex := stack.Bearer(ctx, s.Token(t, demo.TenantGlobex, "carol", "analyst"))
	acmeAdmin := stack.Bearer(ctx, s.Token(t, demo.TenantAcme, "root", "admin"))
	typesDesc := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"types", "all"}}

	t.Run("every mapped type round-trips", func(t *testing.T) {
		info, err := c.GetFlightInfo(acme, typesDesc)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := readTicket(acme, t, c, info.Endpoint[0].Ticket)
		if err != nil {
			t.Fatal(err)
		}
		checkTypes(t, recs)
	})

	t.Run("list flights shows what the role may export", func(t *testing.T) {
		names := func(ctx context.Context) []string {
			st, err := c.ListFlights(ctx, &flight.Criteria{})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for {
				info, err := st.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, strings.Join(info.FlightDescriptor.Path, "."))
			}
			return out
		}
		if got := names(acme); !slices.Equal(got, []string{"people.users", "types.all"}) {
			t.Errorf("analyst: got %v, want [people.users types.all]", got)
		}
		if got := names(acmeAdmin); !slices.Equal(got, []string{"people.users", "types.admins", "types.all"}) {
			t.Errorf("admin: got %v, want [people.users types.admins types.all]", got)
		}
	})

	t.Run("schema", func(t *testing.T) {
		res, err := c.GetSchema(acme, typesDesc)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := flight.DeserializeSchema(res.GetSchema(), memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		if sc.NumFields() != 18 || sc.Field(6).Type.String() != "decimal(38, 6)" {
			t.Errorf("got schema %v", sc)
		}
	})

	t.Run("filters, order and limit", func(t *testing.T) {
		tests := []struct {
			name string
			cmd  string
			want []int64
		}{
			{"eq", `{"dataset":"types.all","columns":["id"],"where":{"c_text":{"eq":"five"}}}`, []int64{5}},
			{"gt and order desc", `{"dataset":"types.all","columns":["id"],"where":{"c_int8":{"gt":-1}},"order":[{"column":"id","desc":true}]}`, []int64{5, 2}},
			{"in", `{"dataset":"types.all","columns":["id"],"where":{"id":{"in":[1,3,4]}},"order":[{"column":"id"}]}`, []int64{1, 3}},
			{"nin", `{"dataset":"types.all","columns":["id"],"where":{"id":{"nin":[1,3]}},"order":[{"column":"id"}]}`, []int64{2, 5}},
			{"isNull and not", `{"dataset":"types.all","columns":["id"],"where":{"c_bool":{"isNull":true},"not":{"id":{"eq":3}}}}`, []int64{5}},
			{"or with like and ilike", `{"dataset":"types.all","columns":["id"],"where":{"or":[{"c_text":{"like":"f%"}},{"c_text":{"ilike":"H%"}}]},"order":[{"column":"id"}]}`, []int64{2, 5}},
			{"numeric and timestamptz compare exactly", `{"dataset":"types.all","columns":["id"],"where":{"c_money":{"gte":"12.30"},"c_tstz":{"lt":"2000-01-01T00:00:00.000001Z"}},"order":[{"column":"id"}]}`, []int64{2, 5}},
			{"numeric bound excludes by a cent", `{"dataset":"types.all","columns":["id"],"where":{"c_money":{"gt":"12.30","lt":"12.31"}}}`, nil},
			{"timestamptz bound excludes by a microsecond", `{"dataset":"types.all","columns":["id"],"where":{"c_tstz":{"gt":"2000-01-01T00:00:00Z","lt":"2026-03-28T23:30:00.123456Z"}}}`, nil},
			{"neq, lte and limit", `{"dataset":"types.all","columns":["id"],"where":{"id":{"neq":2,"lte":5}},"order":[{"column":"id"}],"limit":2}`, []int64{1, 3}},
			{"values are never SQL", `{"dataset":"types.all","columns":["id"],"where":{"c_text":{"eq":"' or 1=1 --"}}}`, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				info, err := c.GetFlightInfo(acme, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(tt.cmd)})
				if err != nil {
					t.Fatal(err)
				}
				recs, err := readTicket(acme, t, c, info.Endpoint[0].Ticket)
				if err != nil {
					t.Fatal(err)
				}
				var got []int64
				for _, r := range recs {
					got = append(got, r.Column(0).(*array.Int64).Int64Values()...)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("got ids %v, want %v", got, tt.want)
				}
			})
		}
	})

	t.Run("refusals", func(t *testing.T) {
		info, err := c.GetFlightInfo(acme, typesDesc)
		if err != nil {
			t.Fatal(err)
		}
		ticket := info.Endpoint[0].Ticket
		altered := append([]byte(nil), ticket.Ticket...)
		altered[len(altered)/2] ^= 0x01
		tests := []struct {
			name string
			call func() error
			want codes.Code
		}{
			{"ticket of tenant A refused for tenant B", func() error {
				_, err := readTicket(globex, t, c, ticket)
				return err
			}, codes.PermissionDenied},
			{"altered ticket", func() error {
				_, err := readTicket(acme, t, c, &flight.Ticket{Ticket: altered})
				return err
			}, codes.Unauthenticated},
			{"non-exportable view by path", func() error {
				_, err := c.GetFlightInfo(acme, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"public", "v_secret"}})
				return err
			}, codes.NotFound},
			{"dataset of another role", func() error {
				_, err := c.GetFlightInfo(acme, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"types", "admins"}})
				return err
			}, codes.NotFound},
			{"unknown column", func() error {
				_, err := c.GetFlightInfo(acme, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"types.all","columns":["tenant_id"]}`)})
				return err
			}, codes.InvalidArgument},
			{"bad operator", func() error {
				_, err := c.GetFlightInfo(acme, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"types.all","where":{"id":{"regex":"."}}}`)})
				return err
			}, codes.InvalidArgument},
			{"no token: refused at the gateway", func() error {
				_, err := c.GetFlightInfo(ctx, typesDesc)
				return err
			}, codes.Unauthenticated},
			{"viewer may not use Flight", func() error {
				_, err := c.GetFlightInfo(stack.Bearer(ctx, s.Token(t, demo.TenantAcme, "vic", "viewer")), typesDesc)
				return err
			}, codes.PermissionDenied},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.call(); codeOf(err) != tt.want {
					t.Errorf("got %v (%v), want %v", codeOf(err), err, tt.want)
				}
			})
		}
	})

	t.Run("core's Flight port refuses calls without the assertion", func(t *testing.T) {
		direct := s.FlightClient(t, s.Addrs.CoreFlight)
		_, err := direct.GetFlightInfo(acme, typesDesc)
		if got := codeOf(err); got != codes.Unauthenticated {
			t.Errorf("got %v (%v), want Unauthenticated", got, err)
		}
	})

	t.Run("expired ticket", func(t *testing.T) {
		info, err := c.GetFlightInfo(acme, typesDesc)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(4500 * time.Millisecond) // flight.ticket_ttl is 4s in this stack, whose processes have no clock to move
		_, err = readTicket(acme, t, c, info.Endpoint[0].Ticket)
		if got := codeOf(err); got != codes.Unauthenticated || !strings.Contains(err.Error(), "expired") {
			t.Errorf("got %v (%v), want Unauthenticated: ticket expired", got, err)
		}
	})

	t.Run("ADBC Flight SQL driver", func(t *testing.T) {
		testADBC(t, s)
	})

	t.Run("field protection as GraphQL's", func(t *testing.T) {
		for _, scopes := range []string{"", "read:User.email"} {
			t.Run("scopes "+scopes, func(t *testing.T) {
				tok := s.TokenWithScopes(t, demo.TenantAcme, "ann", "analyst", scopes)
				_, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id email } }", map[string]string{"Authorization": "Bearer " + tok})
				var data struct{ Users []struct{ ID, Email string } }
				if err := json.Unmarshal(g.Data, &data); err != nil || len(data.Users) != 2 {
					t.Fatalf("GraphQL: got %s %v, want Acme's two users", g.Data, g.Errors)
				}
				ctx := stack.Bearer(ctx, tok)
				info, err := c.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"people", "users"}})
				if err != nil {
					t.Fatal(err)
				}
				recs, err := readTicket(ctx, t, c, info.Endpoint[0].Ticket)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]string{}
				for _, rec := range recs {
					ids, emails := rec.Column(0).(*array.FixedSizeBinary), rec.Column(2).(*array.String)
					for r := 0; r < int(rec.NumRows()); r++ {
						b := ids.Value(r)
						got[fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])] = emails.Value(r)
					}
				}
				if len(got) != len(data.Users) {
					t.Fatalf("got %d users from Flight, want GraphQL's %d", len(got), len(data.Users))
				}
				for _, u := range data.Users {
					if masked := strings.Contains(u.Email, "***"); masked != (scopes == "") {
						t.Errorf("user %s: GraphQL gave %q, want it masked only without read:User.email", u.ID, u.Email)
					}
					if got[u.ID] != u.Email {
						t.Errorf("user %s: got %q from Flight, want GraphQL's %q", u.ID, got[u.ID], u.Email)
					}
				}
			})
		}
	})
}

// mustADBC opens an ADBC Flight SQL connection through the gateway.
func mustADBC(tb testing.TB, s *stack.Stack, tenant, subject, roles string) adbc.Connection {
	tb.Helper()
	files := s.Certs
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		return string(b)
	}
	drv := adbcflightsql.NewDriver(memory.DefaultAllocator)
	db, err := drv.NewDatabase(map[string]string{
		adbc.OptionKeyURI:                       "grpc+tls://" + s.Addrs.Gateway,
		adbcflightsql.OptionSSLRootCerts:        read(files.CACert),
		adbcflightsql.OptionMTLSCertChain:       read(files.ClientCert),
		adbcflightsql.OptionMTLSPrivateKey:      read(files.ClientKey),
		adbcflightsql.OptionSSLOverrideHostname: "localhost",
		adbcflightsql.OptionAuthorizationHeader: "Bearer " + s.Token(tb, tenant, subject, roles),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	cn, err := db.Open(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cn.Close() })
	return cn
}

func adbcQuery(ctx context.Context, tb testing.TB, cn adbc.Connection, sql string, prepare bool) ([]arrow.RecordBatch, error) {
	st, err := cn.NewStatement()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.SetSqlQuery(sql); err != nil {
		return nil, err
	}
	if prepare {
		if err := st.Prepare(ctx); err != nil {
			return nil, err
		}
	}
	rdr, _, err := st.ExecuteQuery(ctx)
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	var out []arrow.RecordBatch
	for rdr.Next() {
		rec := rdr.RecordBatch()
		rec.Retain()
		tb.Cleanup(rec.Release)
		out = append(out, rec)
	}
	return out, rdr.Err()
}

func testADBC(t *testing.T, s *stack.Stack) {
	ctx := context.Background()
	cn := mustADBC(t, s, demo.TenantAcme, "root", "admin")
	for _, prepare := range []bool{false, true} {
		name := "ad hoc"
		if prepare {
			name = "prepared"
		}
		t.Run(name+": every mapped type round-trips", func(t *testing.T) {
			recs, err := adbcQuery(ctx, t, cn, "SELECT * FROM types.all ORDER BY id", prepare)
			if err != nil {
				t.Fatal(err)
			}
			checkTypes(t, recs)
		})
		t.Run(name+": where, order and limit", func(t *testing.T) {
			recs, err := adbcQuery(ctx, t, cn, `SELECT id, c_text FROM "types".all WHERE (c_int8 >= -1 OR c_text = 'five') AND c_tstz IS NOT NULL AND id NOT IN (3) ORDER BY id DESC LIMIT 5`, prepare)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, r := range recs {
				got = append(got, r.Column(0).(*array.Int64).Int64Values()...)
			}
			if want := []int64{5, 2}; !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
	t.Run("refusals", func(t *testing.T) {
		tests := []struct {
			sql    string
			status adbc.Status
			msg    string
		}{
			{"SELECT * FROM v_secret", adbc.StatusInvalidArgument, "only an exportable dataset"},
			{"SELECT * FROM public.v_secret", adbc.StatusInvalidArgument, "only an exportable dataset"},
			{"DELETE FROM types.all", adbc.StatusUnauthorized, "read-only"},
			{"SELECT * FROM types.all; DROP TABLE flight_types", adbc.StatusUnauthorized, "read-only"},
			{"SELECT count(*) FROM types.all", adbc.StatusInvalidArgument, "only SELECT of columns"},
			{"SELECT a.id FROM types.all a JOIN types.all b ON a.id = b.id", adbc.StatusInvalidArgument, "only SELECT of columns"},
		}
		for _, tt := range tests {
			t.Run(tt.sql, func(t *testing.T) {
				_, err := adbcQuery(ctx, t, cn, tt.sql, false)
				var ae adbc.Error
				if !errors.As(err, &ae) || ae.Code != tt.status || !strings.Contains(ae.Msg, tt.msg) {
					t.Errorf("got %v, want status %v with %q", err, tt.status, tt.msg)
				}
			})
		}
		st, err := cn.NewStatement()
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_ = st.SetSqlQuery("INSERT INTO types.all (id) VALUES (9)")
		if _, err := st.ExecuteUpdate(ctx); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("ExecuteUpdate: got %v, want a read-only refusal", err)
		}
	})
	t.Run("SqlInfo names the server", func(t *testing.T) {
		rdr, err := cn.GetInfo(ctx, []adbc.InfoCode{adbc.InfoVendorName})
		if err != nil {
			t.Fatal(err)
		}
		defer rdr.Release()
		var dump strings.Builder
		for rdr.Next() {
			b, _ := rdr.RecordBatch().MarshalJSON()
			dump.Write(b)
		}
		if !strings.Contains(dump.String(), "Fraise") {
			t.Errorf("GetInfo: got %s, want the vendor Fraise", dump.String())
		}
	})
	t.Run("browse catalogs, schemas and tables", func(t *testing.T) {
		rdr, err := cn.GetObjects(ctx, adbc.ObjectDepthTables, nil, nil, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rdr.Release()
		var dump strings.Builder
		for rdr.Next() {
			b, _ := rdr.RecordBatch().MarshalJSON()
			dump.Write(b)
		}
		for _, want := range []string{`"fraise"`, `"types"`, `"all"`, `"admins"`} {
			if !strings.Contains(dump.String(), want) {
				t.Errorf("GetObjects lacks %s: %s", want, dump.String())
			}
		}
		rdr2, err := cn.GetObjects(ctx, adbc.ObjectDepthTables, nil, ptr("typ_s"), ptr("al%"), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rdr2.Release()
		var filtered strings.Builder
		for rdr2.Next() {
			b, _ := rdr2.RecordBatch().MarshalJSON()
			filtered.Write(b)
		}
		if !strings.Contains(filtered.String(), `"all"`) || strings.Contains(filtered.String(), `"admins"`) {
			t.Errorf("GetObjects with patterns typ_s and al%%: got %s, want all but not admins", filtered.String())
		}
		tbl, err := cn.GetTableSchema(ctx, nil, ptr("types"), "all")
		if err != nil {
			t.Fatal(err)
		}
		if tbl.NumFields() != 18 {
			t.Errorf("GetTableSchema: got %d fields, want 18", tbl.NumFields())
		}
	})
	t.Run("an analyst queries ad hoc and prepared (DoAction)", func(t *testing.T) {
		analyst := mustADBC(t, s, demo.TenantAcme, "alice", "analyst")
		for _, prepare := range []bool{false, true} {
			recs, err := adbcQuery(ctx, t, analyst, "SELECT id FROM types.all WHERE id = 5", prepare)
			if err != nil || len(recs) != 1 || recs[0].NumRows() != 1 {
				t.Errorf("prepare %v: got %v, %v, want one row", prepare, recs, err)
			}
		}
	})
	t.Run("tenant isolation", func(t *testing.T) {
		globex := mustADBC(t, s, demo.TenantGlobex, "carol", "admin")
		recs, err := adbcQuery(ctx, t, globex, "SELECT id, c_int4 FROM types.all", false)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || recs[0].NumRows() != 1 || recs[0].Column(1).(*array.Int32).Value(0) != 42 {
			t.Errorf("Globex sees %v, want only row 4", recs)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestFlightIsRateLimited spends a tenant's budget on Flight calls: the
// gateway answers RESOURCE_EXHAUSTED, as it answers 429 to GraphQL.
func TestFlightIsRateLimited(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	const budget = 3
	s := stack.StartWith(t, stack.Options{TOML: flightTypesTOML, SetupSQL: flightTypesSQL, PerTenant: budget, Env: slowMachineEnv})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.FlightClient(t, s.Addrs.Gateway)
	desc := &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"types", "all"}}
	want := []codes.Code{codes.OK, codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}
	// The limiter counts in windows aligned to the wall clock's minutes:
	// calls that straddle a minute's end are counted in two windows and
	// prove nothing. That happens at most once in a few seconds of calls,
	// so the second tenant, whose budget is untouched, is then used.
	for _, tenant := range []struct{ id, sub string }{{demo.TenantAcme, "alice"}, {demo.TenantGlobex, "carol"}} {
		bearer := stack.Bearer(ctx, s.Token(t, tenant.id, tenant.sub, "analyst"))
		start := time.Now()
		var got []codes.Code
		for range budget + 2 {
			_, err := c.GetFlightInfo(bearer, desc)
			got = append(got, codeOf(err))
		}
		if !start.Truncate(time.Minute).Equal(time.Now().Truncate(time.Minute)) {
			t.Logf("calls of tenant %s straddled a minute's end (got %v): counting again with another tenant", tenant.id, got)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
		return
	}
	t.Fatal("both tenants' calls straddled a minute's end")
}

// TestFlightDatasetRoleThroughGateway: a role the policy restricts to named
// datasets exports them through the gateway (extauthz is shown the
// GetFlightInfo descriptor, and DoGet redeems the ticket it led to), and
// reaches no other dataset, named or hidden in a command.
func TestFlightDatasetRoleThroughGateway(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	dir := mustPolicyWithRole(t, "reporter", map[string]any{
		"description":    "Flight exports of types.all only.",
		"graphql":        map[string]any{"operations": []string{}},
		"flight":         map[string]any{"methods": []string{"GetFlightInfo", "GetSchema", "DoGet"}, "datasets": []string{"types.all"}},
		"other_requests": false,
	})
	env := map[string]string{"FRAISE_AUTHZ_POLICY_DIR": dir}
	for k, v := range slowMachineEnv {
		env[k] = v
	}
	s := stack.StartWith(t, stack.Options{TOML: flightTypesTOML, SetupSQL: flightTypesSQL, PerTenant: 10000, Env: env})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := s.FlightClient(t, s.Addrs.Gateway)
	rep := stack.Bearer(ctx, s.Token(t, demo.TenantAcme, "rita", "reporter"))
	path := func(p ...string) *flight.FlightDescriptor {
		return &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: p}
	}

	info, err := c.GetFlightInfo(rep, path("types", "all"))
	if err != nil {
		t.Fatalf("GetFlightInfo of a dataset the role names: %v", err)
	}
	recs, err := readTicket(rep, t, c, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatalf("DoGet of its ticket: %v", err)
	}
	var rows int64
	for _, r := range recs {
		rows += r.NumRows()
	}
	if rows == 0 {
		t.Error("the export has no rows")
	}
	if _, err := c.GetSchema(rep, path("types", "all")); err != nil {
		t.Errorf("GetSchema of a dataset the role names: %v", err)
	}

	for _, tt := range []struct {
		name string
		call func() error
	}{
		{"another dataset", func() error { _, err := c.GetFlightInfo(rep, path("types", "admins")); return err }},
		{"a dataset hidden in a command", func() error {
			_, err := c.GetFlightInfo(rep, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"types.all"}`)})
			return err
		}},
		{"a method the role lacks", func() error {
			st, err := c.ListFlights(rep, &flight.Criteria{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); status.Code(err) != codes.PermissionDenied {
				t.Errorf("got %v, want PermissionDenied", err)
			}
		})
	}
}

// mustPolicyWithRole writes the built-in policies with one role added to
// their roles data, and returns the directory (authz.policy_dir).
func mustPolicyWithRole(tb testing.TB, name string, role map[string]any) string {
	tb.Helper()
	src := filepath.Join("..", "..", "policies")
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{"authz.rego", "authz_test.rego"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(src, "data", "roles.json"))
	if err != nil {
		tb.Fatal(err)
	}
	roles := map[string]any{}
	if err := json.Unmarshal(b, &roles); err != nil {
		tb.Fatal(err)
	}
	roles[name] = role
	if b, err = json.Marshal(roles); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "roles.json"), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return dir
}
