package webhook

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/core"
)

// startSpan starts the client span of one delivery of m to target (m's URL
// redacted). The span records the redacted URL without its query: a Slack
// URL, or a token in a query, is a credential, and traces are kept and
// shown far more widely than the rules that hold them.
func (n *Notifier) startSpan(ctx context.Context, m core.Message, target string) (context.Context, trace.Span) {
	full, _, _ := strings.Cut(target, "?")
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodPost, semconv.URLFull(full),
		attribute.String("fraise.action.kind", m.Kind),
	}
	if u, err := url.Parse(m.URL); err == nil {
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			host, port = u.Host, map[string]string{"https": "443", "http": "80"}[u.Scheme]
		}
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	return n.tracer.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endSpan ends a delivery's span with the target's answer (0: none) and
// the delivery's error, which is already redacted.
func endSpan(span trace.Span, status int, err error) {
	if status != 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
