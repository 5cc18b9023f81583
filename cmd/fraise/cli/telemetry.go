package cli

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// startTracing installs a tracer provider and the W3C trace-context
// propagator for this process, so a trace started at the gateway continues
// through extauthz into the core. Without an OTLP endpoint nothing would
// see a span, so none is made: the propagator alone passes a caller's
// trace context through the gateway, and the servers run without their
// tracing middleware (tracing reports whether they should wrap), which
// costs an overloaded core a tenth of its CPU.
func startTracing(ctx context.Context, c config.Telemetry, service string) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !tracing(c) {
		return func(context.Context) error { return nil }, nil
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	}
	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.OTLPEndpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		return nil, err
	}
	opts = append(opts, sdktrace.WithBatcher(exp))
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		return errors.Join(tp.Shutdown(ctx))
	}, nil
}

// tracing reports whether spans are exported, and so worth making.
func tracing(c config.Telemetry) bool { return c.OTLPEndpoint != "" }
