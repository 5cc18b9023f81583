package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// tracer makes a client span of every statement and batch run within a
// span (a statement's implicit prepare is part of its span): PostgreSQL's part of a request's trace. A statement run
// without one (the dispatcher's polling, the listener, health checks)
// starts no trace of its own; it would be a root span a second, saying
// nothing about any request.
type tracer struct {
	t    trace.Tracer
	attr []attribute.KeyValue
}

var (
	_ pgx.QueryTracer = (*tracer)(nil)
	_ pgx.BatchTracer = (*tracer)(nil)
)

// maxTracedSQL bounds the statement text a span carries: the engine's
// statements are generated and may be long; their values are parameters,
// never in the text.
const maxTracedSQL = 2048

func newTracer(tp trace.TracerProvider, cfg *pgx.ConnConfig) *tracer {
	return &tracer{
		t: tp.Tracer("github.com/fraise-dev/fraise/adapters/postgres"),
		attr: []attribute.KeyValue{
			semconv.DBSystemPostgreSQL, semconv.DBNamespace(cfg.Database),
			semconv.ServerAddress(cfg.Host), semconv.ServerPort(int(cfg.Port)),
		},
	}
}

func (t *tracer) start(ctx context.Context, name, sql string, more ...attribute.KeyValue) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	attrs := append(append(make([]attribute.KeyValue, 0, len(t.attr)+2+len(more)), t.attr...), more...)
	if sql != "" {
		if len(sql) > maxTracedSQL {
			sql = sql[:maxTracedSQL]
		}
		attrs = append(attrs, semconv.DBQueryText(sql))
	}
	ctx, _ = t.t.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx
}

func end(ctx context.Context, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// spanName is the statement's operation (its first word, upper case), as
// OpenTelemetry's database conventions name a span when the statement has
// no simpler summary.
func spanName(sql string) string {
	sql = strings.TrimSpace(sql)
	if i := strings.IndexAny(sql, " \t\r\n("); i > 0 {
		sql = sql[:i]
	}
	if sql == "" || len(sql) > 16 {
		return "postgresql"
	}
	return strings.ToUpper(sql)
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return t.start(ctx, spanName(d.SQL), d.SQL, semconv.DBOperationName(spanName(d.SQL)))
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t *tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() && d.Err == nil {
		span.SetAttributes(attribute.Int64("db.response.rows", d.CommandTag.RowsAffected()))
	}
	end(ctx, d.Err)
}

// TraceBatchStart implements pgx.BatchTracer: one span for the pipeline,
// whose statements are sent together and answered in one round trip.
func (t *tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	var sql string
	if d.Batch != nil && len(d.Batch.QueuedQueries) > 0 {
		sql = d.Batch.QueuedQueries[len(d.Batch.QueuedQueries)-1].SQL
	}
	n := 0
	if d.Batch != nil {
		n = d.Batch.Len()
	}
	return t.start(ctx, "BATCH", sql, semconv.DBOperationName("BATCH"), attribute.Int("db.operation.batch.size", n))
}

// TraceBatchQuery implements pgx.BatchTracer.
func (t *tracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() && d.Err != nil {
		span.RecordError(d.Err)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t *tracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchEndData) {
	end(ctx, d.Err)
}

// traceparent returns the W3C traceparent of the span in ctx, "" when
// there is none: what a writing transaction records in
// fraise.traceparent, so the observer jobs its changes cause continue its
// trace (migration 0012).
func traceparent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}
