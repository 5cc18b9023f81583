package operation_test

import (
	"encoding/binary"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/fraise-dev/fraise/extauthz/operation"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name          string
		doc, opName   string
		wantOp, wantN string
		wantFields    []string
	}{
		{name: "shorthand query", doc: "{ users { id } }", wantOp: "query", wantFields: []string{"users"}},
		{name: "named query", doc: "query Q { users { id } me { id } }", wantOp: "query", wantN: "Q", wantFields: []string{"users", "me"}},
		{name: "mutation", doc: "mutation { deleteRule(id: 1) { id } }", wantOp: "mutation", wantFields: []string{"deleteRule"}},
		{name: "subscription", doc: "subscription S { userChanged { id } }", wantOp: "subscription", wantN: "S", wantFields: []string{"userChanged"}},
		{name: "aliases report field names", doc: "mutation { safe: deleteRule(id: 1) { id } }", wantOp: "mutation", wantFields: []string{"deleteRule"}},
		{name: "duplicates once", doc: "{ a: users { id } b: users { name } }", wantOp: "query", wantFields: []string{"users"}},
		{
			name:   "operationName picks the operation",
			doc:    "query A { users { id } } mutation B { deleteRule(id: 1) { id } }",
			opName: "B", wantOp: "mutation", wantN: "B", wantFields: []string{"deleteRule"},
		},
		{
			name:   "fragment spread at the root counts its fields",
			doc:    "mutation M { ...F updateUser { id } } fragment F on Mutation { deleteRule(id: 1) { id } }",
			wantOp: "mutation", wantN: "M", wantFields: []string{"deleteRule", "updateUser"},
		},
		{
			name:   "nested fragments and inline fragments",
			doc:    "query { ... on Query { ...A } } fragment A on Query { users { id } ...B } fragment B on Query { me { id } }",
			wantOp: "query", wantFields: []string{"users", "me"},
		},
		{
			name:   "fragment spread twice is expanded once",
			doc:    "query { ...A ...A } fragment A on Query { users { id } }",
			wantOp: "query", wantFields: []string{"users"},
		},
		{name: "introspection", doc: "{ __schema { types { name } } }", wantOp: "query", wantFields: []string{"__schema"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := operation.Parse(tt.doc, tt.opName)
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got.Operation != tt.wantOp || got.Name != tt.wantN {
				t.Errorf("got operation %q name %q, want %q %q", got.Operation, got.Name, tt.wantOp, tt.wantN)
			}
			if !slices.Equal(got.RootFields, tt.wantFields) {
				t.Errorf("got root fields %v, want %v", got.RootFields, tt.wantFields)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	tests := []struct {
		name, doc, opName string
	}{
		{name: "syntax error", doc: "{ users { id }"},
		{name: "empty document", doc: ""},
		{name: "only a fragment", doc: "fragment F on Query { users { id } }"},
		{name: "several operations without a name", doc: "query A { a } query B { b }"},
		{name: "unknown operation name", doc: "query A { a }", opName: "B"},
		{name: "operation defined twice", doc: "query A { a } mutation A { b }", opName: "A"},
		{name: "unknown fragment", doc: "query { ...Nope }"},
		{name: "fragment cycle", doc: "query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }"},
		{name: "schema definition", doc: "type Query { a: Int }"},
		{name: "too many tokens", doc: "{" + strings.Repeat(" a", operation.MaxTokens) + " }"},
		{name: "too deep", doc: strings.Repeat("{ a ", operation.MaxTokens) + strings.Repeat("}", operation.MaxTokens)},
		{name: "too long", doc: "{ a }" + strings.Repeat(" ", operation.MaxDocumentBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := operation.Parse(tt.doc, tt.opName)
			if !errors.Is(err, operation.ErrInvalid) {
				t.Fatalf("got %+v, %v, want an error wrapping ErrInvalid", got, err)
			}
		})
	}
}

func TestParseRequest(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	tests := []struct {
		name, method, query, body string
		want                      operation.Request
		wantErr                   bool
	}{
		{name: "POST", method: "POST", body: `{"query":"{ users { id } }","operationName":"Q","variables":{"a":1}}`, want: operation.Request{Query: "{ users { id } }", OperationName: "Q"}},
		{name: "POST with null members", method: "POST", body: `{"query":"{ a }","operationName":null,"variables":null,"extensions":null}`, want: operation.Request{Query: "{ a }"}},
		{name: "POST persisted hash only", method: "POST", body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + strings.ToUpper(hash) + `"}}}`, want: operation.Request{PersistedHash: hash}},
		{name: "GET", method: "GET", query: "query=" + url.QueryEscape("{ users { id } }") + "&operationName=Q", want: operation.Request{Query: "{ users { id } }", OperationName: "Q"}},
		{name: "GET persisted", method: "GET", query: "extensions=" + url.QueryEscape(`{"persistedQuery":{"version":1,"sha256Hash":"`+hash+`"}}`), want: operation.Request{PersistedHash: hash}},
		{name: "empty body", method: "POST", body: "", wantErr: true},
		{name: "not JSON", method: "POST", body: "query { users }", wantErr: true},
		{name: "batch", method: "POST", body: `[{"query":"{ a }"}]`, wantErr: true},
		{name: "query not a string", method: "POST", body: `{"query":1}`, wantErr: true},
		{name: "no query", method: "POST", body: `{"variables":{}}`, wantErr: true},
		{name: "bad hash", method: "POST", body: `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"xyz"}}}`, wantErr: true},
		{name: "GET without query", method: "GET", query: "", wantErr: true},
		{name: "GET bad escape", method: "GET", query: "query=%zz", wantErr: true},
		{name: "PUT", method: "PUT", body: `{"query":"{ a }"}`, wantErr: true},
		// Read as the core reads it, with one decoder that resolves no
		// ambiguity (security #13, defect 1).
		{name: "sha256Hash and its case twin", method: "POST", body: `{"extensions":{"persistedQuery":{"sha256Hash":"` + hash + `","Sha256Hash":"` + strings.Repeat("cd", 32) + `"}}}`, wantErr: true},
		{name: "sha256Hash twice", method: "POST", body: `{"extensions":{"persistedQuery":{"sha256Hash":"` + hash + `","sha256Hash":"` + strings.Repeat("cd", 32) + `"}}}`, wantErr: true},
		{name: "query nulled by its case twin", method: "POST", body: `{"query":"mutation { a }","QUERY":null,"extensions":{"persistedQuery":{"sha256Hash":"` + hash + `"}}}`, wantErr: true},
		{name: "GET query twice", method: "GET", query: "query=a&query=b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := operation.ParseRequest(tt.method, tt.query, []byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, operation.ErrInvalid) {
					t.Fatalf("got %+v, %v, want an error wrapping ErrInvalid", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// frame wraps msg as one uncompressed gRPC message.
func frame(msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// descriptor encodes a FlightDescriptor of type typ with path segments.
func descriptor(typ uint64, path ...string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, typ)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("ignored"))
	for _, p := range path {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte(p))
	}
	return b
}

func TestParseFlight(t *testing.T) {
	flightData := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), descriptor(1, "sales", "orders"))
	tests := []struct {
		name   string
		path   string
		body   []byte
		want   operation.Flight
		wantOK bool
	}{
		{name: "GetFlightInfo with a path", path: operation.FlightServicePrefix + "GetFlightInfo", body: frame(descriptor(1, "sales", "orders")), want: operation.Flight{Method: "GetFlightInfo", Dataset: "sales.orders"}, wantOK: true},
		{name: "GetSchema", path: operation.FlightServicePrefix + "GetSchema", body: frame(descriptor(1, "users")), want: operation.Flight{Method: "GetSchema", Dataset: "users"}, wantOK: true},
		{name: "command descriptor has no dataset", path: operation.FlightServicePrefix + "GetFlightInfo", body: frame(descriptor(2, "x")), want: operation.Flight{Method: "GetFlightInfo"}, wantOK: true},
		{name: "DoGet ticket is opaque", path: operation.FlightServicePrefix + "DoGet", body: frame([]byte{0x0a, 0x02, 'h', 'i'}), want: operation.Flight{Method: "DoGet"}, wantOK: true},
		{name: "DoPut reads the first message's descriptor", path: operation.FlightServicePrefix + "DoPut", body: frame(flightData), want: operation.Flight{Method: "DoPut", Dataset: "sales.orders"}, wantOK: true},
		{name: "no body", path: operation.FlightServicePrefix + "DoGet", want: operation.Flight{Method: "DoGet"}, wantOK: true},
		{name: "truncated body", path: operation.FlightServicePrefix + "GetFlightInfo", body: frame(descriptor(1, "sales"))[:8], want: operation.Flight{Method: "GetFlightInfo"}, wantOK: true},
		{name: "compressed body", path: operation.FlightServicePrefix + "GetFlightInfo", body: append([]byte{1}, frame(descriptor(1, "a"))[1:]...), want: operation.Flight{Method: "GetFlightInfo"}, wantOK: true},
		{name: "control characters in the path", path: operation.FlightServicePrefix + "GetFlightInfo", body: frame(descriptor(1, "a\nb")), want: operation.Flight{Method: "GetFlightInfo"}, wantOK: true},
		{name: "not Flight", path: "/graphql"},
		{name: "no method", path: operation.FlightServicePrefix},
		{name: "nested path", path: operation.FlightServicePrefix + "DoGet/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := operation.ParseFlight(tt.path, tt.body)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("got %+v, %v, want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
