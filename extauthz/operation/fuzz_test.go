package operation_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/fraise-dev/fraise/extauthz/operation"
)

// FuzzGraphQL feeds untrusted request bodies and query strings through the
// whole extraction extauthz runs: ParseRequest, then Parse. Seeds are in
// testdata/fuzz/FuzzGraphQL.
func FuzzGraphQL(f *testing.F) {
	f.Add(true, "", []byte(`{"query":"mutation M { ...F } fragment F on Mutation { deleteRule(id: 1) { id } }","operationName":"M"}`))
	f.Add(false, "query=%7B+users+%7B+id+%7D+%7D", []byte(nil))
	f.Fuzz(func(t *testing.T, post bool, rawQuery string, body []byte) {
		method := "GET"
		if post {
			method = "POST"
		}
		r, err := operation.ParseRequest(method, rawQuery, body)
		if err != nil {
			if !errors.Is(err, operation.ErrInvalid) {
				t.Fatalf("ParseRequest: got error %v, want one wrapping ErrInvalid", err)
			}
			return
		}
		if r.Query == "" && r.PersistedHash == "" {
			t.Fatalf("ParseRequest: got %+v without error, want a query or a hash", r)
		}
		g, err := operation.Parse(r.Query, r.OperationName)
		if err != nil {
			if !errors.Is(err, operation.ErrInvalid) {
				t.Fatalf("Parse: got error %v, want one wrapping ErrInvalid", err)
			}
			return
		}
		if !slices.Contains([]string{"query", "mutation", "subscription"}, g.Operation) {
			t.Fatalf("Parse: got operation %q", g.Operation)
		}
		if r.OperationName != "" && g.Name != r.OperationName {
			t.Fatalf("Parse: got operation named %q, want %q", g.Name, r.OperationName)
		}
		seen := map[string]bool{}
		for _, f := range g.RootFields {
			if f == "" || seen[f] {
				t.Fatalf("Parse: got root fields %q, want distinct non-empty names", g.RootFields)
			}
			seen[f] = true
		}
	})
}

// FuzzParseFlight feeds untrusted gRPC bodies to the Flight descriptor
// reader. Seeds are in testdata/fuzz/FuzzParseFlight.
func FuzzParseFlight(f *testing.F) {
	f.Add("GetFlightInfo", frame(descriptor(1, "sales", "orders")))
	f.Add("DoGet", []byte{0, 0, 0, 0, 4, 0x0a, 2, 'h', 'i'})
	f.Fuzz(func(t *testing.T, method string, body []byte) {
		got, ok := operation.ParseFlight(operation.FlightServicePrefix+method, body)
		if !ok {
			return
		}
		if got.Method != method {
			t.Fatalf("got method %q, want %q", got.Method, method)
		}
		for _, c := range got.Dataset {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("got dataset %q with a control character", got.Dataset)
			}
		}
	})
}
