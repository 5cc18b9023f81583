package e2e_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/test/stack"
)

// TestAssertionAtTheCore presents assertions to the core's ports directly,
// as a party that copied one could (security #13, defect 4): an assertion
// issued for a viewer's query runs that query once, and neither a mutation,
// nor the query again, nor a Flight call.
func TestAssertionAtTheCore(t *testing.T) {
	t.Parallel()
	s := stack.Start(t)
	s.MustServe(t, s.Token(t, demo.TenantAcme, "alice", "admin"))
	query, _ := json.Marshal(map[string]any{"query": "{ users { id name } }"}) // as post sends it
	viewerQuery := func() string {
		return s.Assertion(t, demo.TenantAcme, "bob", "viewer", assertiontest.GraphQL(http.MethodPost, "/graphql", query))
	}
	tok := viewerQuery()

	in := map[string]any{"in": map[string]any{"title": "Replayed", "authorId": "a0000000-0000-4000-8000-00000000000a"}}
	status, g := s.CorePost(t, tok, map[string]any{"query": createPostDoc, "variables": in})
	if status != http.StatusForbidden || len(g.Data) > 0 && string(g.Data) != "null" {
		t.Fatalf("a query's assertion with a mutation: got %d data %s errors %+v, want 403 and no data", status, g.Data, g.Errors)
	}
	tok = viewerQuery()
	if status, _, g := stack.Post(t, s.AsGateway, s.Addrs.CoreHTTP, "{ users { id name } }", map[string]string{assertion.Header: tok}); status != http.StatusOK {
		t.Fatalf("the query it was issued for: got %d %+v, want 200", status, g.Errors)
	}
	if status, _, g := stack.Post(t, s.AsGateway, s.Addrs.CoreHTTP, "{ users { id name } }", map[string]string{assertion.Header: tok}); status != http.StatusUnauthorized {
		t.Fatalf("the same assertion again: got %d %+v, want 401", status, g.Errors)
	}

	c := s.FlightClient(t, s.Addrs.CoreFlight)
	ctx := metadata.AppendToOutgoingContext(context.Background(), assertion.Header, viewerQuery())
	_, err := c.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"users"}})
	if codeOf(err) != codes.Unauthenticated {
		t.Fatalf("a GraphQL assertion at the Flight port: got %v, want Unauthenticated", err)
	}
}
