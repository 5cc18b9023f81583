package flight_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
)

// uuidIn returns a command filtering region on n distinct UUIDs.
func uuidIn(n int) string {
	vals := make([]string, n)
	for i := range vals {
		vals[i] = fmt.Sprintf(`"%08x-0000-4000-8000-%012x"`, i, i)
	}
	return `{"dataset":"sales.orders","where":{"region":{"in":[` + strings.Join(vals, ",") + `]}}}`
}

// TestEveryIssuedTicketVerifies: a query the parser accepts but whose
// ticket Verify would refuse must be refused when the ticket is issued,
// not answered with a ticket DoGet can never redeem.
func TestEveryIssuedTicketVerifies(t *testing.T) {
	now := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	tk, err := flight.NewTickets([]byte(strings.Repeat("k", 32)), time.Minute, func() time.Time { return now }, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		n           int
		wantRefused bool
	}{
		{"10 values", 10, false},
		{"1,000 values", 1000, false},
		{"2,000 values", 2000, true},
		{"10,000 values (the most an in list may have)", 10000, true},
	}
	for _, tt := range tests {
		for _, kind := range []string{flight.KindTicket, flight.KindPrepared} {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				q, err := flight.ParseCommand([]byte(uuidIn(tt.n)))
				if err != nil {
					t.Fatal(err)
				}
				ticket, _, err := tk.Issue(analyst, kind, q, 0)
				if tt.wantRefused {
					if core.ErrorCode(err) != core.CodeInvalid || !strings.Contains(core.ErrorMessage(err), "too large for a ticket") {
						t.Fatalf("Issue: got %v (ticket of %d bytes), want INVALID saying the query is too large for a ticket", err, len(ticket))
					}
					return
				}
				if err != nil {
					t.Fatalf("Issue: %v", err)
				}
				got, err := tk.Verify(analyst, kind, ticket)
				if err != nil {
					t.Fatalf("Verify of a ticket of %d bytes: %v", len(ticket), err)
				}
				if !reflect.DeepEqual(got, q) {
					t.Errorf("Verify: got %+v, want %+v", got, q)
				}
			})
		}
	}
}

func TestParseCommandRefusesEmptyFilters(t *testing.T) {
	tests := []struct{ name, where, msg string }{
		{"empty or", `{"or":[]}`, "where.or: empty list"},
		{"empty and", `{"and":[]}`, "where.and: empty list"},
		{"empty where", `{}`, "where: empty object"},
		{"empty not", `{"not":{}}`, "where: empty object"},
		{"empty object in a list", `{"or":[{"id":{"eq":1}},{}]}`, "where: empty object"},
		{"nested empty or", `{"and":[{"id":{"eq":1}},{"or":[]}]}`, "where.or: empty list"},
		{"empty and beside a column", `{"id":{"eq":1},"and":[]}`, "where.and: empty list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := flight.ParseCommand([]byte(`{"dataset":"sales.orders","where":` + tt.where + `}`))
			if core.ErrorCode(err) != core.CodeInvalid || !strings.Contains(core.ErrorMessage(err), tt.msg) {
				t.Errorf("got %v, want INVALID saying %q", err, tt.msg)
			}
		})
	}
}

func TestParseCommandRefusesDuplicateKeys(t *testing.T) {
	tests := []struct{ name, cmd, msg string }{
		{"column twice", `{"dataset":"sales.orders","where":{"amount":{"gte":"100"},"amount":{"lte":"200"}}}`,
			`where: key "amount" appears twice`},
		{"operator twice", `{"dataset":"sales.orders","where":{"amount":{"gte":"100","gte":"200"}}}`,
			`where.amount: key "gte" appears twice`},
		{"in a list", `{"dataset":"sales.orders","where":{"or":[{"id":{"eq":1}},{"region":{"eq":"a"},"region":{"eq":"b"}}]}}`,
			`where.or[1]: key "region" appears twice`},
		{"or twice", `{"dataset":"sales.orders","where":{"or":[{"id":{"eq":1}}],"or":[{"id":{"eq":2}}]}}`,
			`where: key "or" appears twice`},
		{"not twice", `{"dataset":"sales.orders","where":{"not":{"id":{"eq":1}},"not":{"id":{"eq":2}}}}`,
			`where: key "not" appears twice`},
		{"under not", `{"dataset":"sales.orders","where":{"not":{"id":{"eq":1},"id":{"eq":2}}}}`,
			`where.not: key "id" appears twice`},
		{"dataset twice", `{"dataset":"hr.salaries","dataset":"sales.orders"}`,
			`command: key "dataset" appears twice`},
		{"dataset twice in another case", `{"dataset":"sales.orders","Dataset":"hr.salaries"}`,
			`command: key "Dataset" appears twice`},
		{"where twice", `{"dataset":"sales.orders","where":{"id":{"eq":1}},"where":{"id":{"eq":2}}}`,
			`command: key "where" appears twice`},
		{"limit twice", `{"dataset":"sales.orders","limit":1,"limit":1000000}`,
			`command: key "limit" appears twice`},
		{"in an order term", `{"dataset":"sales.orders","order":[{"column":"id"},{"column":"id","desc":true,"DESC":false}]}`,
			`order[1]: key "DESC" appears twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := flight.ParseCommand([]byte(tt.cmd))
			if core.ErrorCode(err) != core.CodeInvalid || !strings.Contains(core.ErrorMessage(err), tt.msg) {
				t.Errorf("got %v, want INVALID saying %q", err, tt.msg)
			}
		})
	}
	// Keys under where name columns, which may differ only in case, and
	// the same key may appear in different objects.
	for _, cmd := range []string{
		`{"dataset":"sales.orders","where":{"region":{"eq":"a"},"Region":{"eq":"b"}}}`,
		`{"dataset":"sales.orders","where":{"or":[{"id":{"eq":1}},{"id":{"eq":2}}],"and":[{"id":{"eq":1}},{"not":{"id":{"eq":2}}}]}}`,
	} {
		if _, err := flight.ParseCommand([]byte(cmd)); err != nil {
			t.Errorf("%s: got %v, want no error", cmd, err)
		}
	}
}

// TestCommandSurvivesItsTicket: DoGet compiles the query a ticket carries,
// so it must compile to what GetFlightInfo compiled.
func TestCommandSurvivesItsTicket(t *testing.T) {
	c := mustCatalog(t)
	d, _ := c.Lookup(analyst, "sales.orders")
	tk := mustTickets(t, strings.Repeat("k", 32), time.Now)
	for _, cmd := range []string{
		`{"dataset":"sales.orders"}`,
		`{"dataset":"sales.orders","columns":["id"],"where":{"amount":{"gte":10.5,"lt":"20"},"region":{"in":["EU","US"]},"or":[{"id":{"eq":1}},{"not":{"region":{"ilike":"x%"}}}],"doc":{"isNull":false}},"order":[{"column":"amount","desc":true}],"limit":5}`,
		`{"dataset":"sales.orders","where":{"id":{"nin":[]},"region":{"eq":""},"ok":{"eq":false}},"limit":0}`,
		`{"dataset":"sales.orders","where":{"and":[{"id":{"eq":1}}],"or":[{"doc":{"isNull":true}}]},"order":[{"column":"id","desc":false}]}`,
		`{"dataset":"sales.orders","where":{"not":{"and":[{"id":{"gt":1}},{"or":[{"id":{"lt":0}},{"region":{"like":"%"}}]}]}}}`,
		`{"dataset":"sales.orders","where":null,"columns":[]}`,
	} {
		t.Run(cmd, func(t *testing.T) {
			q, err := flight.ParseCommand([]byte(cmd))
			if err != nil {
				t.Fatal(err)
			}
			want, err := flight.Compile(d, q, analyst)
			if err != nil {
				t.Fatal(err)
			}
			ticket, _, err := tk.Issue(analyst, flight.KindTicket, q, 0)
			if err != nil {
				t.Fatal(err)
			}
			back, err := tk.Verify(analyst, flight.KindTicket, ticket)
			if err != nil {
				t.Fatal(err)
			}
			got, err := flight.Compile(d, back, analyst)
			if err != nil {
				t.Fatalf("the ticket's query does not compile: %v", err)
			}
			if got.SQL != want.SQL || !reflect.DeepEqual(got.Args, want.Args) {
				t.Errorf("through the ticket:\n%s %v\nwant\n%s %v", got.SQL, got.Args, want.SQL, want.Args)
			}
		})
	}
}
