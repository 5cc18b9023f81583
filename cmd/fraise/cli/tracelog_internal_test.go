package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestLogLinesNameTheirTrace: a line logged with a span in its context
// carries the trace and span ids, in both formats and through With; a line
// without one carries neither.
func TestLogLinesNameTheirTrace(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled,
	}))
	for _, tc := range []struct {
		name   string
		format string
		ctx    context.Context
		with   bool
		want   bool
	}{
		{"json with a span", "json", traced, false, true},
		{"json with a span, through With", "json", traced, true, true},
		{"text with a span", "text", traced, false, true},
		{"json without a span", "json", context.Background(), false, false},
		{"text without a span", "text", context.Background(), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := newLogger(config.Log{Format: tc.format, Level: "info"}, &buf)
			if tc.with {
				log = log.With("component", "core")
			}
			log.InfoContext(tc.ctx, "served", "request_id", "r1")
			line := buf.String()
			if tc.format == "json" {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("got %q, want one JSON object: %v", line, err)
				}
				_, has := m["trace_id"]
				if has != tc.want {
					t.Fatalf("got trace_id present %v in %s, want %v", has, line, tc.want)
				}
				if tc.want && (m["trace_id"] != tid.String() || m["span_id"] != sid.String()) {
					t.Fatalf("got trace_id=%v span_id=%v, want %s %s", m["trace_id"], m["span_id"], tid, sid)
				}
				return
			}
			want := "trace_id=" + tid.String() + " span_id=" + sid.String()
			if got := strings.Contains(line, want); got != tc.want {
				t.Fatalf("got %q, want %q in it: %v", line, want, tc.want)
			}
		})
	}
}
