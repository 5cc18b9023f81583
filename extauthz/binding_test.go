package extauthz_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql/request"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/operation"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// TestAssertionNamesTheDecision shows the assertion naming what extauthz
// decided: the listener, the method and path, and the operation (the
// document, persisted hash resolved, and operation name) or the Flight
// descriptor (security #13, defect 4).
func TestAssertionNamesTheDecision(t *testing.T) {
	t.Parallel()
	const mutation = "mutation { createUser { id } }"
	f := mustFixture(t, func(o *extauthz.Options) {
		o.Persisted = persisted{tenantA + "/" + core.DocumentHash(mutation): mutation}
	})
	msg := []byte{0x08, 0x01, 0x1a, 5, 's', 'a', 'l', 'e', 's'} // FlightDescriptor PATH ["sales"]
	framed := string(append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...))
	sha := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	op := func(doc, name string) string { return request.OperationHash(core.DocumentHash(doc), name) }
	getFlightInfo := operation.FlightServicePrefix + "GetFlightInfo"
	tests := []struct {
		name  string
		role  string
		req   func(authz string) *authv3.CheckRequest
		wantB assertion.Binding
	}{
		{name: "a GraphQL POST", role: "viewer",
			req:   func(a string) *authv3.CheckRequest { return graphqlRequest(a, "{ users { id } }") },
			wantB: assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql", Operation: op("{ users { id } }", "")}},
		{name: "a GraphQL GET with an operation name", role: "viewer",
			req: func(a string) *authv3.CheckRequest {
				return httpRequest(a, "GET", "/graphql?query="+url.QueryEscape("query Q { users { id } }")+"&operationName=Q", "")
			},
			wantB: assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "GET", Path: "/graphql", Operation: op("query Q { users { id } }", "Q")}},
		{name: "a persisted hash, named by its resolved document", role: "operator",
			req: func(a string) *authv3.CheckRequest {
				return httpRequest(a, "POST", "/graphql", `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"`+core.DocumentHash(mutation)+`"}}}`)
			},
			wantB: assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql", Operation: op(mutation, "")}},
		{name: "a Flight descriptor read whole", role: "admin",
			req:   func(a string) *authv3.CheckRequest { return httpRequest(a, "POST", getFlightInfo, framed) },
			wantB: assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST", Path: getFlightInfo, Body: sha(msg)}},
		{name: "a Flight descriptor cut short", role: "admin",
			req:   func(a string) *authv3.CheckRequest { return httpRequest(a, "POST", getFlightInfo, framed[:8]) },
			wantB: assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST", Path: getFlightInfo, Body: sha([]byte(framed[:8]))}},
		{name: "a Flight stream: method and path alone", role: "admin",
			req: func(a string) *authv3.CheckRequest {
				return httpRequest(a, "POST", operation.FlightServicePrefix+"DoGet", "")
			},
			wantB: assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST", Path: operation.FlightServicePrefix + "DoGet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := mustCheck(t, f.client, tt.req("Bearer "+f.token(t, tt.role)))
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatalf("got %v, want allowed", resp)
			}
			a, err := f.verifier.Verify(headerMap(ok.GetHeaders())[assertion.Header], tt.wantB.Audience)
			if err != nil {
				t.Fatalf("got %v, want an assertion for %s", err, tt.wantB.Audience)
			}
			if a.Binding != tt.wantB {
				t.Fatalf("got binding %+v, want %+v", a.Binding, tt.wantB)
			}
		})
	}
}
