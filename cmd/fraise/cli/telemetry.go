package cli

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
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

// startGlobalTracing installs, process-wide, the W3C propagator and a
// tracer provider naming its spans service, for the libraries that trace
// through OpenTelemetry's globals: envoyproxy/ratelimit's server, which
// `fraise dev` runs in its process. It returns the provider's shutdown.
func startGlobalTracing(ctx context.Context, c config.Telemetry, service string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagator)
	tp, stop, err := newTracerProvider(ctx, c, service)
	if err != nil || tp == nil {
		return stop, err
	}
	otel.SetTracerProvider(tp)
	return stop, nil
}
