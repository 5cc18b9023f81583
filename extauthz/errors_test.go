package extauthz_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
)

// downStore is a persisted-operation store that does not answer.
type downStore struct{}

func (downStore) Lookup(context.Context, string, string) (string, bool, error) {
	return "", false, core.Errorf(core.CodeUnavailable, "connection refused")
}

// edgePolicy denies with the status a test header names, and fails to
// evaluate (two conflicting decisions) when another asks it to.
var edgePolicy = fstest.MapFS{
	"authz.rego": {Data: []byte(`package fraise.authz

default decision := {"allow": false, "reason": "default"}

decision := {"allow": false, "reason": "asked", "status": to_number(input.request.headers["x-test-status"])} if {
	input.request.headers["x-test-status"]
}

decision := {"allow": true, "reason": "a"} if input.request.headers["x-test-fail"]

decision := {"allow": false, "reason": "b"} if input.request.headers["x-test-fail"]
`)},
	"authz_test.rego": {Data: []byte(`package fraise.authz_test

import data.fraise.authz

test_default_denies if not authz.decision.allow with input as {"request": {"headers": {}}}
`)},
}

var edgeTrace = trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// traced puts a span of edgeTrace in every call's context, as the
// process's OpenTelemetry stats handler does.
func traced(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: edgeTrace, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	return h(trace.ContextWithSpanContext(ctx, sc), req)
}

// traceLines is a JSON log handler that writes the trace id of each
// line's context beside it, as the process's log handler does.
type traceLines struct{ slog.Handler }

func (h traceLines) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// TestErrorEdge sends every class of error through Check and checks what
// Envoy is answered (the denial's status, gRPC code, body and Retry-After,
// or the gRPC error of a failure), the decision log's line for an
// internal error and the code Observe receives for the error metric.
// extauthz's denials by code come from the policy's status (the policy
// speaks HTTP); its internal error is a policy that fails to evaluate.
func TestErrorEdge(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var outcomes []extauthz.Outcome
	logs := &syncBuffer{}
	f := mustFixture(t, func(o *extauthz.Options) {
		o.PolicyFS = edgePolicy
		o.RetryAfter = 7 * time.Second
		o.Logger = slog.New(traceLines{slog.NewJSONHandler(logs, nil)})
		o.Observe = func(oc extauthz.Outcome) { mu.Lock(); outcomes = append(outcomes, oc); mu.Unlock() }
		o.Persisted = downStore{}
	})
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(traced))
	authv3.RegisterAuthorizationServer(g, f.srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := authv3.NewAuthorizationClient(conn)
	tok := "Bearer " + f.token(t, "viewer")

	for _, tt := range []struct {
		code       core.Code
		status     int        // the denial's HTTP status (0: a gRPC error)
		fail       string     // for a gRPC error: "eval" (the policy) or "store" (the persisted operations)
		grpc       codes.Code // of the denial's status, or of the error
		outcome    core.Code  // what Observe (and so the metric) counts
		retryAfter string
	}{
		{code: core.CodeInvalid, status: 400, grpc: codes.InvalidArgument, outcome: core.CodeInvalid},
		{code: core.CodeNotFound, status: 404, grpc: codes.NotFound, outcome: core.CodeNotFound},
		{code: core.CodeConflict, status: 409, grpc: codes.AlreadyExists, outcome: core.CodeConflict},
		{code: core.CodeUnauthenticated, status: 401, grpc: codes.Unauthenticated, outcome: core.CodeUnauthenticated},
		{code: core.CodeForbidden, status: 403, grpc: codes.PermissionDenied, outcome: core.CodeForbidden},
		{code: core.CodeRateLimited, status: 429, grpc: codes.ResourceExhausted, outcome: core.CodeRateLimited, retryAfter: "7"},
		// A policy's 403 is FORBIDDEN: nothing in extauthz refuses a quota.
		{code: core.CodeQuotaExceeded, status: 403, grpc: codes.PermissionDenied, outcome: core.CodeForbidden},
		// As the core's Flight edge maps it, not InvalidArgument.
		{code: core.CodeTooLarge, status: 413, grpc: codes.ResourceExhausted, outcome: core.CodeTooLarge},
		// A policy denies with 4xx only; extauthz's UNAVAILABLE is a failure
		// to decide (Envoy answers 503 with its own Retry-After). Nothing in
		// extauthz times out with a code of its own (TIMEOUT).
		{code: core.CodeUnavailable, fail: "store", grpc: codes.Unavailable, outcome: core.CodeUnavailable},
		{code: core.CodeInternal, fail: "eval", grpc: codes.Internal, outcome: core.CodeInternal},
	} {
		t.Run(string(tt.code), func(t *testing.T) {
			mu.Lock()
			outcomes = nil
			mu.Unlock()
			before := len(logs.lines(t))
			req := graphqlRequest(tok, "{ users { id } }")
			if tt.fail == "store" {
				req = httpRequest(tok, "POST", "/graphql", `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"`+core.DocumentHash("{ a }")+`"}}}`)
			}
			h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
			switch {
			case tt.status != 0:
				h["x-test-status"] = strconv.Itoa(tt.status)
			case tt.fail == "eval":
				h["x-test-fail"] = "1"
			}
			resp, err := client.Check(context.Background(), req)
			if tt.status == 0 {
				if status.Code(err) != tt.grpc {
					t.Fatalf("got %v, %v, want a gRPC %v error (Envoy fails closed)", resp, err, tt.grpc)
				}
			} else {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				d := mustDenial(t, resp)
				if d.status != tt.status || d.code != tt.grpc {
					t.Errorf("got status %d and gRPC %v, want %d and %v", d.status, d.code, tt.status, tt.grpc)
				}
				var body struct {
					Errors []struct {
						Message    string
						Extensions struct{ Code string }
					}
				}
				if err := json.Unmarshal([]byte(d.body), &body); err != nil || len(body.Errors) != 1 ||
					body.Errors[0].Extensions.Code != string(tt.outcome) || body.Errors[0].Message != core.ErrorMessage(&core.Error{Code: tt.outcome}) {
					t.Errorf("got body %s, want one %s error with its generic message", d.body, tt.outcome)
				}
				if got := d.headers["retry-after"]; got != tt.retryAfter {
					t.Errorf("got Retry-After %q, want %q", got, tt.retryAfter)
				}
			}

			lines := logs.lines(t)[before:]
			if len(lines) != 1 {
				t.Fatalf("got %d decision log lines, want 1", len(lines))
			}
			l := lines[0]
			if tt.fail != "" {
				errText, _ := l["err"].(string)
				if l["level"] != "ERROR" || l["code"] != string(tt.code) || l["request_id"] != requestID ||
					l["trace_id"] != edgeTrace.String() || !strings.Contains(errText, "extauthz:") {
					t.Errorf("got log line %v, want one ERROR line with code %s, request and trace id and the error", l, tt.code)
				}
			} else if l["level"] != "INFO" {
				t.Errorf("got log line %v, want an INFO decision line", l)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(outcomes) != 1 || outcomes[0].Code != tt.outcome {
				t.Errorf("got outcomes %+v, want one with code %s", outcomes, tt.outcome)
			}
		})
	}
}

// panickingKeys is an API key verifier with a bug.
type panickingKeys struct{}

func (panickingKeys) Verify(context.Context, string) (core.Principal, error) { panic("a bug") }

// TestPanicGoesThroughTheEdge checks that a Check that panics fails to
// decide (a gRPC Internal error: Envoy fails closed), logged and observed
// as INTERNAL, and that the server goes on answering.
func TestPanicGoesThroughTheEdge(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var outcomes []extauthz.Outcome
	f := mustFixture(t, func(o *extauthz.Options) {
		o.APIKeys = panickingKeys{}
		o.Observe = func(oc extauthz.Outcome) { mu.Lock(); outcomes = append(outcomes, oc); mu.Unlock() }
	})
	for range 2 { // the second Check shows the server survived the first
		resp, err := f.client.Check(context.Background(), graphqlRequest("Bearer frs_0123456789abcdef_secret", "{ users { id } }"))
		if st, _ := status.FromError(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "a bug") {
			t.Fatalf("got %v, %v, want a gRPC Internal error without the panic's value", resp, err)
		}
	}
	lines := f.logs.lines(t)
	if len(lines) != 2 || lines[0]["level"] != "ERROR" || lines[0]["code"] != "INTERNAL" ||
		!strings.Contains(lines[0]["reason"].(string), "panic: a bug") || lines[0]["stack"] == nil {
		t.Errorf("got log %v, want one ERROR line per Check with the panic and its stack", lines)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(outcomes) != 2 || outcomes[0].Code != core.CodeInternal {
		t.Errorf("got outcomes %+v, want two INTERNAL ones", outcomes)
	}
}
