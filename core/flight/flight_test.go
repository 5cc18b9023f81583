package flight_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

func mustType(tb testing.TB, s string) flight.Type {
	tb.Helper()
	t, err := flight.ParseType(s)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

func mustCatalog(tb testing.TB) *flight.Catalog {
	tb.Helper()
	cols := func(specs ...string) []flight.Column {
		var out []flight.Column
		for _, s := range specs {
			name, typ, _ := strings.Cut(s, " ")
			out = append(out, flight.Column{Name: name, Type: mustType(tb, typ)})
		}
		return out
	}
	c, err := flight.NewCatalog([]flight.Dataset{
		{Name: "sales.orders", View: "public.v_orders", Columns: cols("id int8", "amount numeric(12,2)", "region text",
			"placed_at timestamptz", "tags text[]", "doc jsonb", "ok bool")},
		{Name: "hr.salaries", View: "v_salaries", Roles: []string{"admin"}, Columns: cols("id int8", "salary numeric(10,0)")},
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

var analyst = core.Principal{Subject: "alice", Tenant: "11111111-1111-4111-8111-111111111111", Roles: []string{"analyst"}}

func TestParseType(t *testing.T) {
	tests := []struct {
		name, in, want, arrow string
	}{
		{"int2", "smallint", "int2", "int16"},
		{"numeric", "NUMERIC(12, 2)", "numeric(12,2)", "decimal(12, 2)"},
		{"timestamptz", "timestamp with time zone", "timestamptz", "timestamp[us, tz=UTC]"},
		{"timestamp", "timestamp", "timestamp", "timestamp[us]"},
		{"array", "text[]", "text[]", "list<item: utf8, nullable>"},
		{"uuid", "uuid", "uuid", "fixed_size_binary[16]"},
		{"jsonb", "jsonb", "jsonb", "utf8"},
		{"date", "date", "date", "date32"},
		{"numeric array", "numeric(5,1)[]", "numeric(5,1)[]", "list<item: decimal(5, 1), nullable>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := mustType(t, tt.in)
			if typ.String() != tt.want || typ.ArrowType().String() != tt.arrow {
				t.Errorf("got %s %s, want %s %s", typ, typ.ArrowType(), tt.want, tt.arrow)
			}
		})
	}
	for _, bad := range []string{"numeric", "numeric(39,2)", "numeric(5,6)", "money", "int4(3)", "text(", "hstore[]"} {
		if _, err := flight.ParseType(bad); err == nil {
			t.Errorf("ParseType(%q): got no error", bad)
		}
	}
}

func TestCatalogRefusesBadDeclarations(t *testing.T) {
	tests := []struct {
		name string
		ds   flight.Dataset
	}{
		{"view with a quote", flight.Dataset{Name: "a", View: `v"; drop table x; --`, Columns: []flight.Column{{Name: "id", Type: flight.Type{Kind: flight.KindInt8}}}}},
		{"column with a space", flight.Dataset{Name: "a", View: "v", Columns: []flight.Column{{Name: "a b", Type: flight.Type{Kind: flight.KindInt8}}}}},
		{"no columns", flight.Dataset{Name: "a", View: "v"}},
		{"bad name", flight.Dataset{Name: "a..b", View: "v", Columns: []flight.Column{{Name: "id", Type: flight.Type{Kind: flight.KindInt8}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := flight.NewCatalog([]flight.Dataset{tt.ds}, nil); err == nil {
				t.Error("got no error")
			}
		})
	}
}

func TestLookupHidesWhatIsNotExportable(t *testing.T) {
	c := mustCatalog(t)
	for _, name := range []string{"public.v_secret", "hr.salaries"} {
		_, err := c.Lookup(analyst, name)
		if core.ErrorCode(err) != core.CodeNotFound || !errors.Is(err, flight.ErrNotExportable) {
			t.Errorf("%s: got %v, want not exportable", name, err)
		}
	}
	if got := c.List(analyst); len(got) != 1 || got[0].Name != "sales.orders" {
		t.Errorf("List: got %v, want only sales.orders", got)
	}
	admin := analyst
	admin.Roles = []string{"admin"}
	if got := c.List(admin); len(got) != 2 {
		t.Errorf("List as admin: got %d datasets, want 2", len(got))
	}
}

func TestCompileCommand(t *testing.T) {
	c := mustCatalog(t)
	d, _ := c.Lookup(analyst, "sales.orders")
	tests := []struct {
		name     string
		cmd      string
		wantSQL  string
		wantArgs string
	}{
		{"all columns", `{"dataset":"sales.orders"}`,
			`select "id", "amount", "region", "placed_at", "tags", "doc", "ok" from "public"."v_orders"`, "[]"},
		{"operators", `{"dataset":"sales.orders","columns":["id"],"where":{"amount":{"gte":10.5,"lt":"20"},"region":{"in":["EU","US"]},"or":[{"id":{"eq":1}},{"not":{"region":{"ilike":"x%"}}}],"doc":{"isNull":false}},"order":[{"column":"amount","desc":true}],"limit":5}`,
			`select "id" from "public"."v_orders" where ("amount" >= $1::text::numeric and "amount" < $2::text::numeric and "doc" is not null and ("id" = $3::text::int8 or (not "region" ilike $4::text)) and "region" = any($5::text[]::text[])) order by "amount" desc limit $6`,
			"[10.5 20 1 x% [EU US] 5]"},
		{"nin and neq on timestamps", `{"dataset":"sales.orders","columns":["id"],"where":{"placed_at":{"neq":"2026-01-01T00:00:00Z"},"id":{"nin":[]}}}`,
			`select "id" from "public"."v_orders" where ("id" <> all($1::text[]::int8[]) and "placed_at" <> $2::text::timestamptz)`,
			"[[] 2026-01-01T00:00:00Z]"},
		{"injection stays a value", `{"dataset":"sales.orders","columns":["id"],"where":{"region":{"eq":"'; drop table x; --"}}}`,
			`select "id" from "public"."v_orders" where "region" = $1::text::text`, "['; drop table x; --]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := flight.ParseCommand([]byte(tt.cmd))
			if err != nil {
				t.Fatal(err)
			}
			st, err := flight.Compile(d, q, analyst)
			if err != nil {
				t.Fatal(err)
			}
			if st.SQL != tt.wantSQL {
				t.Errorf("got SQL\n%s\nwant\n%s", st.SQL, tt.wantSQL)
			}
			if got := fmtArgs(st.Args); got != tt.wantArgs {
				t.Errorf("got args %s, want %s", got, tt.wantArgs)
			}
		})
	}
}

func fmtArgs(args []any) string {
	var b strings.Builder
	b.WriteString("[")
	for i, a := range args {
		if i > 0 {
			b.WriteString(" ")
		}
		switch v := a.(type) {
		case []string:
			b.WriteString("[" + strings.Join(v, " ") + "]")
		case int64:
			b.WriteString(strings.TrimSpace(strings.Repeat(" ", 0)) + itoa(v))
		default:
			b.WriteString(v.(string))
		}
	}
	b.WriteString("]")
	return b.String()
}

func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{byte('0' + v%10)}, b...)
		v /= 10
	}
	return string(b)
}

func TestCompileRefusals(t *testing.T) {
	c := mustCatalog(t)
	d, _ := c.Lookup(analyst, "sales.orders")
	tests := []struct{ name, cmd string }{
		{"unknown column", `{"dataset":"sales.orders","columns":["tenant_id"]}`},
		{"unknown filter column", `{"dataset":"sales.orders","where":{"tenant_id":{"eq":"x"}}}`},
		{"unknown operator", `{"dataset":"sales.orders","where":{"id":{"regex":"."}}}`},
		{"like on a number", `{"dataset":"sales.orders","where":{"id":{"like":"1%"}}}`},
		{"compare jsonb", `{"dataset":"sales.orders","where":{"doc":{"eq":"{}"}}}`},
		{"order by array", `{"dataset":"sales.orders","order":[{"column":"tags"}]}`},
		{"negative limit", `{"dataset":"sales.orders","limit":-1}`},
		{"null value", `{"dataset":"sales.orders","where":{"id":{"eq":null}}}`},
		{"object value", `{"dataset":"sales.orders","where":{"id":{"eq":{"a":1}}}}`},
		{"unknown key", `{"dataset":"sales.orders","select":"*"}`},
		{"no dataset", `{}`},
		{"trailing data", `{"dataset":"sales.orders"} {}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := flight.ParseCommand([]byte(tt.cmd))
			if err == nil {
				_, err = flight.Compile(d, q, analyst)
			}
			if code := core.ErrorCode(err); code != core.CodeInvalid {
				t.Errorf("got %v (%s), want INVALID", err, code)
			}
		})
	}
	deep := strings.Repeat(`{"not":`, 40) + `{"id":{"eq":1}}` + strings.Repeat("}", 40)
	if _, err := flight.ParseCommand([]byte(`{"dataset":"sales.orders","where":` + deep + `}`)); core.ErrorCode(err) != core.CodeInvalid {
		t.Errorf("deep nesting: got %v, want INVALID", err)
	}
}

func TestParseSQL(t *testing.T) {
	c := mustCatalog(t)
	d, _ := c.Lookup(analyst, "sales.orders")
	tests := []struct{ name, sql, cmd string }{
		{"star", `select * from sales.orders`, `{"dataset":"sales.orders"}`},
		{"full", `SELECT id, "amount" FROM "sales".orders WHERE amount >= 10.5 AND (region IN ('EU', 'U''S') OR NOT region ILIKE 'x%') AND doc IS NOT NULL AND id <> -3 ORDER BY amount DESC, id LIMIT 5;`,
			`{"dataset":"sales.orders","columns":["id","amount"],"where":{"and":[{"amount":{"gte":10.5}},{"or":[{"region":{"in":["EU","U'S"]}},{"not":{"region":{"ilike":"x%"}}}]},{"doc":{"isNull":false}},{"id":{"neq":-3}}]},"order":[{"column":"amount","desc":true},{"column":"id"}],"limit":5}`},
		{"not in and not like", `select id from sales.orders where id not in (1, 2) and region not like 'a%' or ok = true`,
			`{"dataset":"sales.orders","columns":["id"],"where":{"or":[{"and":[{"id":{"nin":[1,2]}},{"not":{"region":{"like":"a%"}}}]},{"ok":{"eq":true}}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := flight.ParseSQL(tt.sql)
			if err != nil {
				t.Fatal(err)
			}
			want, err := flight.ParseCommand([]byte(tt.cmd))
			if err != nil {
				t.Fatal(err)
			}
			g, err1 := flight.Compile(d, got, analyst)
			w, err2 := flight.Compile(d, want, analyst)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if g.SQL != w.SQL || fmtArgs(g.Args) != fmtArgs(w.Args) {
				t.Errorf("got\n%s %s\nwant\n%s %s", g.SQL, fmtArgs(g.Args), w.SQL, fmtArgs(w.Args))
			}
		})
	}
}

func TestParseSQLRefusals(t *testing.T) {
	tests := []struct {
		sql  string
		code core.Code
	}{
		{"DELETE FROM sales.orders", core.CodeForbidden},
		{"insert into sales.orders values (1)", core.CodeForbidden},
		{"select * from sales.orders; drop table sales.orders", core.CodeForbidden},
		{"update sales.orders set id = 1", core.CodeForbidden},
		{"select count(*) from sales.orders", core.CodeInvalid},
		{"select id from sales.orders a join sales.orders b on a.id = b.id", core.CodeInvalid},
		{"select id from sales.orders union select id from hr.salaries", core.CodeInvalid},
		{"with x as (select 1) select * from x", core.CodeInvalid},
		{"select id from sales.orders where id = (select 1)", core.CodeInvalid},
		{"select id from sales.orders -- comment", core.CodeInvalid},
		{"select id from sales.orders where id = null", core.CodeInvalid},
		{"select id from sales.orders where id = $1", core.CodeInvalid},
		{"select id from sales.orders where lower(region) = 'a'", core.CodeInvalid},
		{"select id from sales.orders limit 'x'", core.CodeInvalid},
		{"select id from sales.orders where region = 'unterminated", core.CodeInvalid},
		{"", core.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			_, err := flight.ParseSQL(tt.sql)
			if got := core.ErrorCode(err); got != tt.code {
				t.Errorf("got %v (%s), want %s", err, got, tt.code)
			}
		})
	}
}

func mustTickets(tb testing.TB, key string, now func() time.Time) *flight.Tickets {
	tb.Helper()
	tk, err := flight.NewTickets([]byte(key), time.Minute, now, bytes.NewReader(make([]byte, 1<<10)))
	if err != nil {
		tb.Fatal(err)
	}
	return tk
}

func TestTickets(t *testing.T) {
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	key := strings.Repeat("k", 32)
	tk := mustTickets(t, key, clock)
	limit := int64(10)
	q := flight.Query{Dataset: "sales.orders", Columns: []string{"id"}, Limit: &limit}
	ticket, exp, err := tk.Issue(analyst, flight.KindTicket, q, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(time.Minute)) {
		t.Errorf("expiry: got %v, want %v", exp, now.Add(time.Minute))
	}
	got, err := tk.Verify(analyst, flight.KindTicket, ticket)
	if err != nil || got.Dataset != q.Dataset || *got.Limit != 10 {
		t.Fatalf("Verify: got %+v, %v", got, err)
	}

	other := analyst
	other.Tenant = "22222222-2222-4222-8222-222222222222"
	otherSubject := analyst
	otherSubject.Subject = "bob"
	tests := []struct {
		name   string
		p      core.Principal
		kind   string
		ticket []byte
		tk     *flight.Tickets
		code   core.Code
	}{
		{"another tenant", other, flight.KindTicket, ticket, tk, core.CodeForbidden},
		{"another subject", otherSubject, flight.KindTicket, ticket, tk, core.CodeForbidden},
		{"another kind", analyst, flight.KindPrepared, ticket, tk, core.CodeUnauthenticated},
		{"another key", analyst, flight.KindTicket, ticket, mustTickets(t, strings.Repeat("j", 32), clock), core.CodeUnauthenticated},
		{"expired", analyst, flight.KindTicket, ticket, mustTickets(t, key, func() time.Time { return now.Add(time.Minute) }), core.CodeUnauthenticated},
		{"truncated", analyst, flight.KindTicket, ticket[:len(ticket)-3], tk, core.CodeUnauthenticated},
		{"not a ticket", analyst, flight.KindTicket, []byte("hello"), tk, core.CodeUnauthenticated},
		// base64 decoders skip CR and LF, so without a check of the
		// alphabet the same signature would verify in many spellings.
		{"newline in the signature", analyst, flight.KindTicket, append(bytes.Clone(ticket), '\n'), tk, core.CodeUnauthenticated},
		{"carriage return in the signature", analyst, flight.KindTicket, slices.Insert(bytes.Clone(ticket), len(ticket)-2, '\r'), tk, core.CodeUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.tk.Verify(tt.p, tt.kind, tt.ticket)
			if got := core.ErrorCode(err); got != tt.code || !errors.Is(err, flight.ErrTicket) {
				t.Errorf("got %v (%s), want %s", err, got, tt.code)
			}
		})
	}
	t.Run("every altered byte", func(t *testing.T) {
		for i := range ticket {
			alt := bytes.Clone(ticket)
			alt[i] ^= 0x01
			if _, err := tk.Verify(analyst, flight.KindTicket, alt); core.ErrorCode(err) != core.CodeUnauthenticated {
				t.Fatalf("byte %d altered: got %v, want UNAUTHENTICATED", i, err)
			}
		}
	})
	if _, err := flight.NewTickets([]byte("short"), time.Minute, nil, nil); err == nil {
		t.Error("NewTickets with a short key: got no error")
	}
}

// TestTicketKeyRotation rotates the signing key: tickets signed before
// still verify, new ones are signed with the new key, and a second
// rotation retires the first key.
func TestTicketKeyRotation(t *testing.T) {
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	first, second, third := strings.Repeat("1", 32), strings.Repeat("2", 32), strings.Repeat("3", 32)
	tk := mustTickets(t, first, clock)
	q := flight.Query{Dataset: "sales.orders", Columns: []string{"id"}}
	issue := func() []byte {
		t.Helper()
		b, _, err := tk.Issue(analyst, flight.KindTicket, q, 0)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := issue()
	if err := tk.Rotate([]byte(second)); err != nil {
		t.Fatal(err)
	}
	after := issue()
	for _, tc := range []struct {
		name   string
		ticket []byte
		tk     *flight.Tickets
		ok     bool
	}{
		{"signed before the rotation", before, tk, true},
		{"signed after the rotation", after, tk, true},
		{"signed after, checked with the new key alone", after, mustTickets(t, second, clock), true},
		{"signed after, checked with the old key alone", after, mustTickets(t, first, clock), false},
	} {
		_, err := tc.tk.Verify(analyst, flight.KindTicket, tc.ticket)
		if (err == nil) != tc.ok {
			t.Errorf("%s: got %v, want accepted %v", tc.name, err, tc.ok)
		}
	}
	if err := tk.Rotate([]byte(second)); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Verify(analyst, flight.KindTicket, before); err != nil {
		t.Errorf("rotating to the current key again: got %v for a ticket of the previous key, want it kept", err)
	}
	if err := tk.Rotate([]byte(third)); err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Verify(analyst, flight.KindTicket, before); core.ErrorCode(err) != core.CodeUnauthenticated {
		t.Errorf("a ticket of the key two rotations back: got %v, want UNAUTHENTICATED", err)
	}
	if _, err := tk.Verify(analyst, flight.KindTicket, after); err != nil {
		t.Errorf("a ticket of the previous key: got %v, want accepted", err)
	}
	if err := tk.Rotate([]byte("short")); err == nil {
		t.Error("Rotate to a short key: got no error")
	}
}
