package webhook_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/adapters/webhook"
	"github.com/fraise-dev/fraise/core"
)

// TestDeliveriesContinueTheTrace: a delivery made within a span is a
// client span, its child, whose ids the target receives in traceparent,
// and whose attributes never quote the URL's secret; one made outside any
// span sends no traceparent and makes no span.
func TestDeliveriesContinueTheTrace(t *testing.T) {
	const secret = "s3cr3tTOKENs3cr3t"
	headers := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	n := webhook.New(webhook.Options{AllowPrivate: true, TracerProvider: tp})
	m := core.Message{Kind: core.ActionWebhook, URL: srv.URL + "/hook?token=" + secret, Body: []byte(`{}`)}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "worker")
	if err := n.Notify(ctx, m); err == nil {
		t.Fatal("got no error from a 503, want a transient one")
	}
	parent.End()
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != "POST" {
		t.Fatalf("got spans %v, want POST then worker", spans)
	}
	post := spans[0]
	if post.SpanKind() != trace.SpanKindClient || post.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("got kind %v parent %s, want a client span, child of the worker's %s", post.SpanKind(), post.Parent().SpanID(), parent.SpanContext().SpanID())
	}
	want := "00-" + post.SpanContext().TraceID().String() + "-" + post.SpanContext().SpanID().String() + "-01"
	if got := (<-headers).Get("Traceparent"); got != want {
		t.Errorf("got traceparent %q at the target, want %q (the delivery's span)", got, want)
	}
	attrs := map[string]string{}
	for _, a := range post.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
		if strings.Contains(a.Value.String(), secret) {
			t.Errorf("got attribute %s=%q, want the URL's secret left out", a.Key, a.Value.String())
		}
	}
	if attrs["http.response.status_code"] != "503" || attrs["http.request.method"] != "POST" || attrs["server.address"] != "127.0.0.1" {
		t.Errorf("got attributes %v, want method POST, status 503, server.address 127.0.0.1", attrs)
	}
	if post.Status().Code.String() != "Error" {
		t.Errorf("got status %v, want Error for a 503", post.Status())
	}

	if err := n.Notify(context.Background(), m); err == nil {
		t.Fatal("got no error from a 503, want a transient one")
	}
	if got := (<-headers).Get("Traceparent"); got != "" {
		t.Errorf("got traceparent %q from an untraced delivery, want none", got)
	}
	if got := len(rec.Ended()); got != 2 {
		t.Errorf("got %d spans after an untraced delivery, want still 2", got)
	}
}
