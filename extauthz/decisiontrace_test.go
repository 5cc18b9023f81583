package extauthz_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/authztest"
)

// TestDecisionLogKeepsTheChecksTrace: Envoy sends its trace context to
// extauthz as the Check call's gRPC metadata, not as a header of the
// request being checked, so the logged decision (which the console links
// to its trace) takes the trace id of the Check's own span; a traceparent
// header the client sent counts only when the Check is not traced.
func TestDecisionLogKeepsTheChecksTrace(t *testing.T) {
	t.Parallel()
	checkTrace := trace.TraceID{0xab, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	const clientTrace = "0af7651916cd43dd8448eb211c80319c"
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: checkTrace, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))
	tests := []struct {
		name        string
		ctx         context.Context
		traceparent string
		want        string
	}{
		{"a traced Check, no header", traced, "", checkTrace.String()},
		{"a traced Check and a client's header", traced, "00-" + clientTrace + "-b7ad6b7169203331-01", checkTrace.String()},
		{"an untraced Check and a client's header", context.Background(), "00-" + clientTrace + "-b7ad6b7169203331-01", clientTrace},
		{"neither", context.Background(), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &authztest.DecisionLog{}
			f := mustFixture(t, func(o *extauthz.Options) { o.Decisions = log })
			req := graphqlRequest("Bearer "+f.token(t, "viewer"), `{ users { id } }`)
			if tt.traceparent != "" {
				req.GetAttributes().GetRequest().GetHttp().GetHeaders()["traceparent"] = tt.traceparent
			}
			if _, err := f.srv.Check(tt.ctx, req); err != nil {
				t.Fatal(err)
			}
			f.srv.Close() // writes the queued decisions
			ds := log.Decisions()
			if len(ds) != 1 {
				t.Fatalf("got %d decisions, want 1", len(ds))
			}
			if ds[0].TraceID != tt.want {
				t.Errorf("trace id %q, want %q", ds[0].TraceID, tt.want)
			}
		})
	}
}
