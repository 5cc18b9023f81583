package redis

import (
	"context"
	"net"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/core"
)

// Span names of the queue's own spans (docs/tracing.md); the commands'
// spans are named for the command (XADD, ZADD, PIPELINE, ...).
const (
	// SpanSend is the producer span of one job added to its tenant's
	// stream, a child of the request that committed its event; the job
	// carries it to the worker, whose span is its child.
	SpanSend = "send observer.jobs"
	// SpanAck is the client span of one job's acknowledgement, which
	// travels to Redis in a batch with others.
	SpanAck = "XACK"
)

// tracer makes client spans of the Redis commands run within a span (a
// worker's retry, dead-lettering or acknowledgement of a traced job), and a
// producer span of each traced job enqueued. Commands run without a span
// (the dispatcher's batches, fetching, reclaiming) start no trace: they
// are not part of any one request.
type tracer struct {
	t    trace.Tracer
	attr []attribute.KeyValue
}

func newTracer(tp trace.TracerProvider, addr string) *tracer {
	attr := []attribute.KeyValue{semconv.DBSystemRedis}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		attr = append(attr, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attr = append(attr, semconv.ServerPort(p))
		}
	}
	return &tracer{t: tp.Tracer("github.com/fraise-dev/fraise/adapters/redis"), attr: attr}
}

// start starts a client span named name within ctx's span; ctx itself,
// and no span, when ctx has none.
func (t *tracer) start(ctx context.Context, name string, more ...attribute.KeyValue) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	attrs := append(append(make([]attribute.KeyValue, 0, len(t.attr)+len(more)+1), t.attr...), more...)
	attrs = append(attrs, semconv.DBOperationName(name))
	return t.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil && err != goredis.Nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// The command's arguments are never recorded: they are jobs, which carry
// the tenant's data.

// DialHook implements goredis.Hook.
func (t *tracer) DialHook(next goredis.DialHook) goredis.DialHook { return next }

// ProcessHook implements goredis.Hook.
func (t *tracer) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		ctx, span := t.start(ctx, strings.ToUpper(cmd.Name()))
		err := next(ctx, cmd)
		endSpan(span, err)
		return err
	}
}

// ProcessPipelineHook implements goredis.Hook: one span for the pipeline
// (or transaction), whose commands travel in one round trip.
func (t *tracer) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		ctx, span := t.start(ctx, "PIPELINE", attribute.Int("db.operation.batch.size", len(cmds)))
		err := next(ctx, cmds)
		endSpan(span, err)
		return err
	}
}

// send starts the producer span of each traced job in jobs, a child of the
// trace the job carries, and sets the job's trace context to it, so the
// worker's span is the send's child. It returns the function that ends the
// spans with the batch's outcome.
func (t *tracer) send(jobs []core.Job) func(error) {
	var spans []trace.Span
	for i, j := range jobs {
		if j.TraceParent == "" {
			continue
		}
		parent := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": j.TraceParent})
		if !trace.SpanContextFromContext(parent).IsValid() {
			continue
		}
		attrs := append(append(make([]attribute.KeyValue, 0, len(t.attr)+4), t.attr...),
			semconv.MessagingSystemKey.String("redis"), semconv.MessagingOperationTypePublish,
			semconv.MessagingDestinationName(jobsKey(j.Tenant)), semconv.MessagingMessageID(j.ID))
		ctx, span := t.t.Start(parent, SpanSend, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		jobs[i].TraceParent = traceparent(ctx)
		spans = append(spans, span)
	}
	return func(err error) {
		for _, s := range spans {
			endSpan(s, err)
		}
	}
}

// traceparent is the W3C traceparent of ctx's span.
func traceparent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}
