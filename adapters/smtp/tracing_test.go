package smtp_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/adapters/smtp"
	"github.com/fraise-dev/fraise/adapters/smtp/smtptest"
	"github.com/fraise-dev/fraise/core"
)

// TestSendsContinueTheTrace: an email sent within a span is a client span,
// its child, that counts the recipients without naming them; one sent
// outside any span makes none.
func TestSendsContinueTheTrace(t *testing.T) {
	srv := smtptest.Start(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	n := smtp.New(smtp.Options{Addr: srv.Addr, From: "observers@fraise.test", Username: srv.Username,
		Password: srv.Password, TLS: &tls.Config{RootCAs: srv.Roots}, TracerProvider: tp})
	m := core.Message{Kind: core.ActionEmail, To: []string{"sales@acme.test"}, Subject: "s", Body: []byte("b")}

	ctx, parent := tp.Tracer("test").Start(context.Background(), "worker")
	if err := n.Notify(ctx, m); err != nil {
		t.Fatal(err)
	}
	parent.End()
	if err := n.Notify(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 || spans[0].Name() != smtp.SpanSend {
		t.Fatalf("got %d spans, want %q then the worker's", len(spans), smtp.SpanSend)
	}
	send := spans[0]
	if send.SpanKind() != trace.SpanKindClient || send.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("got kind %v parent %s, want a client span, child of the worker's", send.SpanKind(), send.Parent().SpanID())
	}
	for _, a := range send.Attributes() {
		if strings.Contains(a.Value.String(), "acme.test") {
			t.Errorf("got attribute %s=%q, want no recipient named", a.Key, a.Value.String())
		}
	}
}
