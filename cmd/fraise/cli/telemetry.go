package cli

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/observe"
)

// The service.name of each component's spans. The trace starts at Envoy
// (envoy.TraceServiceName, fraise-ingress).
const (
	serviceAuthz     = "fraise-extauthz"
	serviceCore      = "fraise-core"
	serviceRateLimit = "fraise-ratelimit"
)

// propagator reads the W3C trace context (traceparent, tracestate) and
// baggage Envoy sends with every request it forwards: the one format
// Envoy's OpenTelemetry tracer writes.
var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// newTracerProvider returns the tracer provider of one component, whose
// spans name it service, exporting over OTLP/gRPC to
// telemetry.otlp_endpoint, and its shutdown, which flushes the spans still
// batched. Each component has its own, so that in `fraise dev`, where
// extauthz and the core share a process, each span still says which made
// it. Without an endpoint nothing would see a span, so none is made: the
// provider is nil and the servers run without their tracing middleware,
// which costs an overloaded core a tenth of its CPU.
func newTracerProvider(ctx context.Context, c config.Telemetry, service string) (*sdktrace.TracerProvider, func(context.Context) error, error) {
	if c.OTLPEndpoint == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.OTLPEndpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, nil, err
	}
	tp := sdktrace.NewTracerProvider(
		// Envoy decided (telemetry.sample_ratio) for the requests it
		// forwards; the ratio applies to traces started here.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
		sdktrace.WithBatcher(exp),
	)
	return tp, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return tp.Shutdown(ctx)
	}, nil
}

// grpcTracing returns the server option that continues the caller's trace
// in tp's spans, none when tp is nil (no tracing).
func grpcTracing(tp *sdktrace.TracerProvider) []grpc.ServerOption {
	if tp == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(propagator),
	))}
}

// httpTracing wraps h so that each request continues the caller's trace in
// a span of tp's, h itself when tp is nil (no tracing).
func httpTracing(h http.Handler, tp *sdktrace.TracerProvider, operation string) http.Handler {
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, operation, otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagator))
}

// tracing is the component holding one service's tracer provider: Open
// makes it, Close flushes the spans still batched and stops it. Added to a
// group before the servers that trace in its spans, it closes after them.
// With global set it is also installed process-wide, with the W3C
// propagator, for the libraries that trace through OpenTelemetry's globals:
// envoyproxy/ratelimit's server.
type tracing struct {
	c       config.Telemetry
	service string
	global  bool
	tp      *sdktrace.TracerProvider
	stop    func(context.Context) error
}

// Open makes the tracer provider (none without telemetry.otlp_endpoint).
func (t *tracing) Open(ctx context.Context) error {
	if t.global {
		otel.SetTextMapPropagator(propagator)
	}
	tp, stop, err := newTracerProvider(ctx, t.c, t.service)
	if err != nil {
		return err
	}
	t.tp, t.stop = tp, stop
	if t.global && tp != nil {
		otel.SetTracerProvider(tp)
	}
	return nil
}

// Run waits for ctx to end: the servers trace.
func (t *tracing) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// Close flushes and stops the provider. A collector that cannot be reached
// loses the last spans, but does not fail the command's stop.
func (t *tracing) Close() error {
	if t.stop != nil {
		_ = t.stop(context.Background())
	}
	return nil
}

// tracerProvider is tp as the adapters take it: a nil interface, not one
// holding a nil pointer, when there is no tracing.
func tracerProvider(tp *sdktrace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return nil
	}
	return tp
}

// spanJob names the span of one run of an observer job (docs/tracing.md).
const spanJob = "process observer.jobs"

// jobTracing returns the observers' Worker.Trace: each run of a job that
// carries a trace context is a consumer span continuing it (the child of
// the span that added the job to its stream), within which the rate
// limiter is asked, the target called and the outcome recorded. A job
// without one (written outside any request) runs untraced. nil when tp is.
func jobTracing(tp *sdktrace.TracerProvider) func(context.Context, core.Job) (context.Context, func(string, error)) {
	if tp == nil {
		return nil
	}
	tr := tp.Tracer("github.com/fraise-dev/fraise/core/observe")
	return func(ctx context.Context, job core.Job) (context.Context, func(string, error)) {
		if job.TraceParent == "" {
			return ctx, func(string, error) {}
		}
		parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": job.TraceParent})
		if !trace.SpanContextFromContext(parent).IsValid() {
			return ctx, func(string, error) {}
		}
		ctx, span := tr.Start(parent, spanJob, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			semconv.MessagingSystemKey.String("redis"), semconv.MessagingOperationTypeDeliver,
			semconv.MessagingMessageID(job.ID),
			attribute.String("fraise.tenant", job.Tenant), attribute.String("fraise.observer.rule", job.RuleID),
			attribute.String("fraise.action.kind", job.Action.Kind), attribute.Int("fraise.job.attempt", job.Attempt+1),
		))
		return ctx, func(outcome string, err error) {
			span.SetAttributes(attribute.String("fraise.job.outcome", outcome))
			// A deferred run (rate limited, circuit open) or one cut short
			// by a stop is not a failure of the job: it runs again.
			if err != nil && (outcome == observe.OutcomeRetried || outcome == observe.OutcomeDeadLettered) {
				span.SetStatus(codes.Error, err.Error())
			} else if err != nil {
				span.SetAttributes(attribute.String("fraise.job.reason", err.Error()))
			}
			span.End()
		}
	}
}
