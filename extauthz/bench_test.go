package extauthz_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/fraise-dev/fraise/extauthz"
)

// BenchmarkCheck measures one Check as Envoy makes it: over real gRPC on
// loopback, with an ES256 JWT to verify, a GraphQL body to parse, the
// embedded RBAC policy to evaluate, an assertion to sign and a JSON
// decision log line to write.
func BenchmarkCheck(b *testing.B) {
	f := mustFixture(b, func(o *extauthz.Options) { o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) })
	req := graphqlRequest("Bearer "+f.token(b, "operator"), "mutation UpdateRule { updateRule(id: 1) { id } }")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := f.client.Check(ctx, req)
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("got %v, %v, want allowed", resp, err)
		}
	}
}

// BenchmarkCheckInProcess is BenchmarkCheck without gRPC, to separate the
// decision's own cost from the transport's.
func BenchmarkCheckInProcess(b *testing.B) {
	f := mustFixture(b, func(o *extauthz.Options) { o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) })
	req := graphqlRequest("Bearer "+f.token(b, "operator"), "mutation UpdateRule { updateRule(id: 1) { id } }")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := f.srv.Check(ctx, req)
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("got %v, %v, want allowed", resp, err)
		}
	}
}

// BenchmarkCheckDenied measures a refusal of a bad token, the path a
// flood of junk requests takes.
func BenchmarkCheckDenied(b *testing.B) {
	f := mustFixture(b, func(o *extauthz.Options) { o.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil)) })
	req := graphqlRequest("Bearer not.a.jwt", "{ users { id } }")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := f.srv.Check(ctx, req)
		if err != nil || resp.GetDeniedResponse() == nil {
			b.Fatalf("got %v, %v, want denied", resp, err)
		}
	}
}
