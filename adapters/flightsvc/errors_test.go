package flightsvc_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	aflight "github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/adapters/flightsvc"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/coretest"
	"github.com/fraise-dev/fraise/core/flight"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/logtest"
)

var testTrace = trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// traced puts a span of testTrace in every call's context, as the
// process's OpenTelemetry stats handler does.
func traced(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: testTrace, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	return h(srv, &spanStream{ss, trace.ContextWithSpanContext(ss.Context(), sc)})
}

type spanStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *spanStream) Context() context.Context { return s.ctx }

// edgeServer is a Flight service exporting from src, logging
// into logs and counting into reg, and a client that signs its calls.
type edgeServer struct {
	client aflight.Client
	cs     callSigner
	reg    *prometheus.Registry
	logs   *logtest.Recorder
}

func mustEdgeServer(tb testing.TB, src flight.Source) *edgeServer {
	tb.Helper()
	return mustEdgeServerWith(tb, src, nil)
}

// mustEdgeServerWith is mustEdgeServer admitting exports through adm.
func mustEdgeServerWith(tb testing.TB, src flight.Source, adm core.Admitter) *edgeServer {
	tb.Helper()
	pub, priv, kerr := ed25519.GenerateKey(rand.Reader)
	if kerr != nil {
		tb.Fatal(kerr)
	}
	signer, serr := assertion.NewSigner(priv, assertion.KeyID(pub), nil)
	if serr != nil {
		tb.Fatal(serr)
	}
	cat, cerr := flight.NewCatalog([]flight.Dataset{{Name: "ids", View: "v_ids",
		Columns: []flight.Column{{Name: "id", Type: flight.Type{Kind: flight.KindInt8}}}}}, nil)
	if cerr != nil {
		tb.Fatal(cerr)
	}
	tickets, terr := flight.NewTickets(make([]byte, 32), time.Minute, nil, nil)
	if terr != nil {
		tb.Fatal(terr)
	}
	e := &edgeServer{cs: callSigner{signer}, reg: prometheus.NewRegistry(), logs: &logtest.Recorder{}}
	svc := flightsvc.New(flightsvc.Options{
		Metrics: e.reg, Logger: slog.New(e.logs),
		Verifier: assertion.NewVerifier(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}, nil),
		Service:  flight.NewService(flight.ServiceOptions{Catalog: cat, Tickets: tickets, Source: src, Admitter: adm}),
	})
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.ChainStreamInterceptor(traced)}, svc.ServerOptions()...)...)
	svc.Register(g)
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		tb.Fatal(lerr)
	}
	go func() { _ = g.Serve(ln) }()
	tb.Cleanup(g.Stop)
	c, nerr := aflight.NewClientWithMiddleware(ln.Addr().String(), nil, nil,
		append(e.cs.dialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if nerr != nil {
		tb.Fatal(nerr)
	}
	tb.Cleanup(func() { c.Close() })
	e.client = c
	return e
}

// TestErrorEdge sends an error of every core code through a Flight export
// (DoGet, whose source fails with it) and checks the gRPC code, the
// message, the log line of an internal error and the error metric.
func TestErrorEdge(t *testing.T) {
	want := map[core.Code]codes.Code{
		core.CodeInvalid: codes.InvalidArgument, core.CodeNotFound: codes.NotFound, core.CodeConflict: codes.AlreadyExists,
		core.CodeUnauthenticated: codes.Unauthenticated, core.CodeForbidden: codes.PermissionDenied,
		core.CodeRateLimited: codes.ResourceExhausted, core.CodeQuotaExceeded: codes.ResourceExhausted,
		core.CodeTooLarge: codes.ResourceExhausted, core.CodeUnavailable: codes.Unavailable,
		core.CodeTimeout: codes.DeadlineExceeded, core.CodeInternal: codes.Internal,
	}
	for _, code := range core.Codes() {
		t.Run(string(code), func(t *testing.T) {
			e := mustEdgeServer(t, &coretest.FlightSource{Err: &core.Error{Op: "test", Code: code, Message: "message of " + string(code),
				Err: errors.New("the disk is on fire")}})
			c, cs, reg, logs := e.client, e.cs, e.reg, e.logs
			ctx := cs.as(t, metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "req-1"), alice)
			info, err := c.GetFlightInfo(ctx, &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}})
			if err != nil {
				t.Fatalf("GetFlightInfo: %v", err)
			}
			stream, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
			for err == nil {
				_, err = stream.Recv()
			}
			st, _ := status.FromError(err)
			if st.Code() != want[code] {
				t.Errorf("got %v (%v), want %v", st.Code(), err, want[code])
			}
			if code == core.CodeInternal {
				if st.Message() != "internal error" {
					t.Errorf("got message %q, want the generic internal error", st.Message())
				}
			} else if st.Message() != "message of "+string(code) {
				t.Errorf("got message %q, want the error's message", st.Message())
			}

			lines := logs.Errors()
			if code != core.CodeInternal {
				if len(lines) != 0 {
					t.Errorf("got error log lines %+v, want none for %s", lines, code)
				}
			} else {
				if len(lines) != 1 {
					t.Fatalf("got %d error log lines %+v, want 1", len(lines), lines)
				}
				l := lines[0]
				if l.Attrs["request_id"] != "req-1" || l.TraceID != testTrace.String() ||
					l.Attrs["code"] != "INTERNAL" || !strings.Contains(l.Attrs["err"], "the disk is on fire") {
					t.Errorf("got log line %+v, want request_id req-1, trace %s, code INTERNAL and the cause", l, testTrace)
				}
			}
			if got := errorsTotal(t, reg, "flight", string(code)); got != 1 {
				t.Errorf("got fraise_errors_total{transport=flight,code=%s} %v, want 1", code, got)
			}
			if got := allErrors(t, reg); got != 1 {
				t.Errorf("got %v errors counted in all, want 1 (counted once)", got)
			}
		})
	}
}

// TestRefusalsGoThroughTheEdge checks that the interceptor's refusals
// are counted as every other error is.
func TestRefusalsGoThroughTheEdge(t *testing.T) {
	e := mustEdgeServer(t, &coretest.FlightSource{})
	desc := &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}}
	_, err := e.client.GetFlightInfo(context.Background(), desc) // no assertion
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Fatalf("got %v, want Unauthenticated", err)
	}
	if got := errorsTotal(t, e.reg, "flight", string(core.CodeUnauthenticated)); got != 1 {
		t.Errorf("got fraise_errors_total{transport=flight,code=UNAUTHENTICATED} %v, want 1", got)
	}
}

// TestLibraryErrorsGoThroughTheEdge checks that an error the Flight SQL
// library answers itself, without our handlers, is counted once, by its
// gRPC code's name.
func TestLibraryErrorsGoThroughTheEdge(t *testing.T) {
	e := mustEdgeServer(t, &coretest.FlightSource{})
	ctx := e.cs.as(t, context.Background(), alice)
	stream, err := e.client.DoAction(ctx, &aflight.Action{Type: "NoSuchAction"})
	for err == nil {
		_, err = stream.Recv()
	}
	code := status.Code(err)
	if code == codes.OK || code == codes.Unknown {
		t.Fatalf("got %v, want a status from the library", err)
	}
	if got := errorsTotal(t, e.reg, "flight", code.String()); got != 1 {
		t.Errorf("got fraise_errors_total{transport=flight,code=%s} %v, want 1", code, got)
	}
	if got := allErrors(t, e.reg); got != 1 {
		t.Errorf("got %v errors counted in all, want 1", got)
	}
}

// panickingSource is a source with a bug.
type panickingSource struct{}

func (panickingSource) Export(context.Context, string, flight.Statement, flight.BatchLimits, func(arrow.RecordBatch) error) error {
	panic("a bug")
}

// TestPanicGoesThroughTheEdge checks that a call that panics is answered
// INTERNAL, logged once and counted, and that the server goes on serving.
func TestPanicGoesThroughTheEdge(t *testing.T) {
	e := mustEdgeServer(t, panickingSource{})
	ctx := e.cs.as(t, context.Background(), alice)
	desc := &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}}
	for range 2 { // the second call shows the server survived the first
		info, err := e.client.GetFlightInfo(ctx, desc)
		if err != nil {
			t.Fatalf("GetFlightInfo: %v", err)
		}
		stream, err := e.client.DoGet(ctx, info.Endpoint[0].Ticket)
		for err == nil {
			_, err = stream.Recv()
		}
		if st, _ := status.FromError(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "a bug") {
			t.Fatalf("got %v, want Internal without the panic's value", err)
		}
	}
	if lines := e.logs.Errors(); len(lines) != 2 || !strings.Contains(lines[0].Attrs["err"], "panic: a bug") {
		t.Errorf("got error log lines %+v, want one per call with the panic", lines)
	}
	if got := errorsTotal(t, e.reg, "flight", "INTERNAL"); got != 2 {
		t.Errorf("got fraise_errors_total{transport=flight,code=INTERNAL} %v, want 2", got)
	}
}

// allErrors is the sum of fraise_errors_total's series in reg.
func allErrors(tb testing.TB, reg prometheus.Gatherer) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "fraise_errors_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// errorsTotal is the fraise_errors_total series of transport and code in
// reg, 0 when it has none.
func errorsTotal(tb testing.TB, reg prometheus.Gatherer, transport, code string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fraise_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["transport"] == transport && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// refusing refuses every export with code, asking the client to retry
// after delay, as internal/admission's refusals do.
type refusing struct {
	code  core.Code
	delay time.Duration
}

func (r refusing) Admit(context.Context, string) (func(), error) {
	return nil, &core.Error{Op: "test", Code: r.code, Message: "refused", Err: retryDelay(r.delay)}
}

type retryDelay time.Duration

func (d retryDelay) Error() string             { return "retry later" }
func (d retryDelay) RetryDelay() time.Duration { return time.Duration(d) }

// TestRefusedExportCarriesRetryInfo: an export the admitter refuses is
// answered with gRPC's RetryInfo holding the refusal's own delay, not a
// constant; other errors carry none.
func TestRefusedExportCarriesRetryInfo(t *testing.T) {
	tests := []struct {
		name  string
		adm   core.Admitter
		code  codes.Code
		delay time.Duration // 0: no RetryInfo
	}{
		{"tenant over its share", refusing{core.CodeRateLimited, 7 * time.Second}, codes.ResourceExhausted, 7 * time.Second},
		{"overloaded", refusing{core.CodeUnavailable, 3 * time.Second}, codes.Unavailable, 3 * time.Second},
		{"admitted, failing", nil, codes.Unavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEdgeServerWith(t, &coretest.FlightSource{Err: core.Errorf(core.CodeUnavailable, "down")}, tt.adm)
			ctx := e.cs.as(t, context.Background(), alice)
			info, err := e.client.GetFlightInfo(ctx, &aflight.FlightDescriptor{Type: aflight.DescriptorPATH, Path: []string{"ids"}})
			if err != nil {
				t.Fatalf("GetFlightInfo: %v", err)
			}
			stream, err := e.client.DoGet(ctx, info.Endpoint[0].Ticket)
			for err == nil {
				_, err = stream.Recv()
			}
			st, _ := status.FromError(err)
			if st.Code() != tt.code {
				t.Fatalf("got %v, want %v", err, tt.code)
			}
			var got time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					got = ri.GetRetryDelay().AsDuration()
				}
			}
			if got != tt.delay {
				t.Errorf("got RetryInfo delay %v, want %v", got, tt.delay)
			}
		})
	}
}
