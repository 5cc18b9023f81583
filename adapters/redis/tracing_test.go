package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestJobsCarryTheirTraceThroughTheStream: a traced job is enqueued in a
// producer span, a child of the trace it carries, and reaches the worker
// carrying that span; the worker's commands within its span are client
// spans of Redis, its children; untraced calls make no span.
func TestJobsCarryTheirTraceThroughTheStream(t *testing.T) {
	rd := harness.StartRedis(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	q := redis.New(redis.Options{Addr: rd.Addr, TracerProvider: tp})
	t.Cleanup(func() { q.Close() })
	ctx := context.Background()

	const parentTrace, parentSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	traced := job("t1", "traced")
	traced.TraceParent = "00-" + parentTrace + "-" + parentSpan + "-01"
	if err := q.Enqueue(ctx, []core.Job{traced, job("t1", "untraced")}); err != nil {
		t.Fatal(err)
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("got %d spans after enqueuing, want 1 (the traced job's send): %v", len(ended), names(ended))
	}
	send := ended[0]
	if send.Name() != redis.SpanSend || send.SpanKind() != trace.SpanKindProducer ||
		send.Parent().TraceID().String() != parentTrace || send.Parent().SpanID().String() != parentSpan {
		t.Fatalf("got span %q kind %v parent %v, want %q, a producer, child of %s-%s", send.Name(), send.SpanKind(), send.Parent(), redis.SpanSend, parentTrace, parentSpan)
	}

	ds := fetch(t, q, "c1", all)
	if len(rec.Ended()) != 1 {
		t.Fatalf("got spans %v after an untraced fetch, want no new one", names(rec.Ended()))
	}
	var got core.Delivery
	for _, d := range ds {
		if d.Job.ID == "traced" {
			got = d
		} else if d.Job.TraceParent != "" {
			t.Errorf("got traceparent %q on the untraced job, want none", d.Job.TraceParent)
		}
	}
	want := "00-" + parentTrace + "-" + send.SpanContext().SpanID().String() + "-01"
	if got.Job.TraceParent != want {
		t.Fatalf("got traceparent %q on the fetched job, want %q (the send span)", got.Job.TraceParent, want)
	}

	// The worker's span, continuing the job's trace.
	wctx, worker := tp.Tracer("test").Start(trace.ContextWithRemoteSpanContext(ctx, send.SpanContext()), "worker")
	if err := q.Retry(wctx, got, got.Job, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(wctx, ds[0]); err != nil {
		t.Fatal(err)
	}
	worker.End()
	var seen []string
	for _, s := range rec.Ended()[1:] {
		if s.Name() == "worker" {
			continue
		}
		seen = append(seen, s.Name())
		if s.Parent().SpanID() != worker.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
			t.Errorf("got span %q kind %v parent %s, want a client span, child of the worker's", s.Name(), s.SpanKind(), s.Parent().SpanID())
		}
	}
	if strings.Join(seen, ",") != "PIPELINE,"+redis.SpanAck {
		t.Errorf("got the worker's Redis spans %q, want PIPELINE (the retry's transaction), %s", seen, redis.SpanAck)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	return n
}
