package flight_test

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

// checkCompiled asserts what must hold of any statement Compile accepts:
// it reads the declared view and no value reached the SQL text.
func checkCompiled(t *testing.T, st flight.Statement, input string) {
	t.Helper()
	if !strings.HasPrefix(st.SQL, "select ") || !strings.Contains(st.SQL, ` from "public"."v_orders"`) {
		t.Fatalf("unexpected statement %q for %q", st.SQL, input)
	}
	for _, bad := range []string{";", "--", "/*", "'"} {
		if strings.Contains(st.SQL, bad) {
			t.Fatalf("statement %q for %q contains %q", st.SQL, input, bad)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	f.Add(`{"dataset":"sales.orders","columns":["id"],"where":{"amount":{"gte":1},"or":[{"region":{"in":["a"]}}]},"limit":3}`)
	f.Add(`{"dataset":"sales.orders","where":{"not":{"doc":{"isNull":true}}},"order":[{"column":"id","desc":true}]}`)
	c := mustCatalog(f)
	d, _ := c.Lookup(analyst, "sales.orders")
	tk, err := flight.NewTickets([]byte(strings.Repeat("k", 32)), time.Minute, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		q, err := flight.ParseCommand([]byte(cmd))
		if err != nil {
			if core.ErrorCode(err) == core.CodeInternal {
				t.Fatalf("internal error for %q: %v", cmd, err)
			}
			return
		}
		st, err := flight.Compile(d, q, analyst)
		if err != nil {
			return
		}
		checkCompiled(t, st, cmd)
		// DoGet compiles the ticket's copy of the query: it must be the same.
		ticket, _, err := tk.Issue(analyst, flight.KindTicket, q, 0)
		if err != nil {
			if core.ErrorCode(err) != core.CodeInvalid {
				t.Fatalf("Issue for %q: %v", cmd, err)
			}
			return
		}
		back, err := tk.Verify(analyst, flight.KindTicket, ticket)
		if err != nil {
			t.Fatalf("Verify of an issued ticket for %q: %v", cmd, err)
		}
		got, err := flight.Compile(d, back, analyst)
		if err != nil || got.SQL != st.SQL || !reflect.DeepEqual(got.Args, st.Args) {
			t.Fatalf("%q through its ticket: got %q %v (%v), want %q %v", cmd, got.SQL, got.Args, err, st.SQL, st.Args)
		}
	})
}

func FuzzParseSQL(f *testing.F) {
	f.Add(`SELECT id, amount FROM sales.orders WHERE amount >= 1.5 AND (region IN ('a','b') OR NOT region LIKE 'x%') ORDER BY id DESC LIMIT 3`)
	f.Add(`select * from "sales"."orders" where doc is not null and id <> -1;`)
	f.Add(`delete from sales.orders`)
	c := mustCatalog(f)
	d, _ := c.Lookup(analyst, "sales.orders")
	f.Fuzz(func(t *testing.T, sql string) {
		q, err := flight.ParseSQL(sql)
		if err != nil {
			if code := core.ErrorCode(err); code != core.CodeInvalid && code != core.CodeForbidden && code != core.CodeTooLarge {
				t.Fatalf("code %s for %q: %v", code, sql, err)
			}
			return
		}
		if q.Params > 0 {
			// Parameters compile once bound, to any values.
			vals := make([]string, q.Params)
			for i := range vals {
				vals[i] = "1"
			}
			if q, err = flight.Bind(q, vals); err != nil {
				t.Fatalf("bind %q: %v", sql, err)
			}
		}
		if st, err := flight.Compile(d, q, analyst); err == nil {
			checkCompiled(t, st, sql)
		}
	})
}

func FuzzVerifyTicket(f *testing.F) {
	key := strings.Repeat("k", 32)
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	tk := mustTickets(f, key, func() time.Time { return now })
	good, _, err := tk.Issue(analyst, flight.KindTicket, flight.Query{Dataset: "sales.orders"}, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("fr1.e30.AAAA"))
	f.Add(append(bytes.Clone(good), '\n'))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := tk.Verify(analyst, flight.KindTicket, b)
		if err == nil && string(b) != string(good) {
			t.Fatalf("accepted a ticket that was not issued: %q (%+v)", b, q)
		}
	})
}
