// Package logtest records log lines for tests that check what a component
// logs, with the trace id of each line's context, or keeps its output as
// written (Buffer).
package logtest

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// Line is one recorded log line.
type Line struct {
	Level slog.Level
	Msg   string
	// Attrs are the line's attributes, each value as a string.
	Attrs map[string]string
	// TraceID is the trace id of the line's context, "" outside a span:
	// the log handler in production writes it from there, not from Attrs.
	TraceID string
}

// Recorder is a slog.Handler that keeps every line; the zero value is
// ready to use.
type Recorder struct {
	mu    sync.Mutex
	lines []Line
}

// Enabled implements slog.Handler: every level is kept.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs implements slog.Handler; the attributes are not kept.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements slog.Handler; the group is not kept.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Handle implements slog.Handler.
func (r *Recorder) Handle(ctx context.Context, rec slog.Record) error {
	line := Line{Level: rec.Level, Msg: rec.Message, Attrs: map[string]string{}}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		line.TraceID = sc.TraceID().String()
	}
	rec.Attrs(func(a slog.Attr) bool { line.Attrs[a.Key] = a.Value.String(); return true })
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, line)
	return nil
}

// Errors returns the lines logged at error level or above.
func (r *Recorder) Errors() []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Line
	for _, line := range r.lines {
		if line.Level >= slog.LevelError {
			out = append(out, line)
		}
	}
	return out
}

// Buffer is a log destination that goroutines write while a test reads
// it (a slog handler's writer, a command's stderr); the zero value is
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
