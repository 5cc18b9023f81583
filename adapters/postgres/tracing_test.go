package postgres_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/core"
)

// mustTraced is mustObserved with the pool tracing into a span recorder.
func mustTraced(tb testing.TB) (*pgx.Conn, *postgres.EventLog, *postgres.DB, *tracetest.SpanRecorder, trace.Tracer) {
	tb.Helper()
	ctx := context.Background()
	pg, db := postgrestest.New(tb)
	admin, err := pgx.Connect(ctx, pg.AdminURL(db))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { admin.Close(ctx) })
	if _, err := admin.Exec(ctx, `CREATE TABLE public.orders (id int PRIMARY KEY, tenant_id uuid NOT NULL, total numeric, note text);
		SELECT fraise.observe_table('public.orders');
		GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO fraise_app`); err != nil {
		tb.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	d, err := postgres.Open(ctx, pg.URL("fraise_app", db), postgres.Options{TracerProvider: tp})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.Close)
	l := postgres.NewEventLog(d, nil)
	tb.Cleanup(l.Close)
	return admin, l, d, rec, tp.Tracer("test")
}

var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// TestWritesCarryTheirTraceToTheOutbox: a transaction run within a span
// records the span's traceparent with its outbox events, and each of its
// statements is a client span of PostgreSQL's, a child of the request's;
// a transaction without a span records none and makes no span.
func TestWritesCarryTheirTraceToTheOutbox(t *testing.T) {
	_, l, d, rec, tr := mustTraced(t)
	ctx, parent := tr.Start(context.Background(), "request")
	err := d.InTenant(ctx, tenantA, func(ctx context.Context, q core.Querier) error {
		_, err := q.QueryJSON(ctx, "with x as (insert into orders values (1, '"+tenantA+"', 10, 'a') returning 1) select to_jsonb(count(*)) from x")
		return err
	})
	parent.End()
	if err != nil {
		t.Fatal(err)
	}
	exec(t, d, tenantA, "insert into orders values (2, '"+tenantA+"', 20, 'b')") // no span

	events, err := l.Read(context.Background(), core.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("got %d events, want 2", len(events))
	}
	m := traceparentRE.FindStringSubmatch(events[0].TraceParent)
	if m == nil {
		t.Fatalf("got traceparent %q on the traced write's event, want a sampled version-00 traceparent", events[0].TraceParent)
	}
	if m[1] != parent.SpanContext().TraceID().String() || m[2] != parent.SpanContext().SpanID().String() {
		t.Errorf("got traceparent %s, want the request span's trace %s and span %s", events[0].TraceParent,
			parent.SpanContext().TraceID(), parent.SpanContext().SpanID())
	}
	if events[1].TraceParent != "" {
		t.Errorf("got traceparent %q on the untraced write's event, want none", events[1].TraceParent)
	}

	var names []string
	for _, s := range rec.Ended() {
		if s.Name() == "request" {
			continue
		}
		names = append(names, s.Name())
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanKind() != trace.SpanKindClient {
			t.Errorf("span %q: got parent %s kind %s, want the request span %s, client", s.Name(), s.Parent().SpanID(), s.SpanKind(), parent.SpanContext().SpanID())
		}
		if !hasAttr(s.Attributes(), attribute.String("db.system", "postgresql")) {
			t.Errorf("span %q: got attributes %v, want db.system=postgresql", s.Name(), s.Attributes())
		}
	}
	// BEGIN, the settings, the statement and COMMIT; the untraced write,
	// and the event log's reads, made none.
	want := []string{"BEGIN", "SELECT", "WITH", "COMMIT"}
	if len(names) != len(want) {
		t.Fatalf("got spans %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("got spans %v, want %v", names, want)
		}
	}
}

// TestAMalformedTraceparentIsDropped: a fraise.traceparent that is not a
// traceparent is not stored, and the write goes through: tracing never
// fails a write.
func TestAMalformedTraceparentIsDropped(t *testing.T) {
	_, l, d, _, _ := mustTraced(t)
	err := d.InTenant(context.Background(), tenantA, func(ctx context.Context, q core.Querier) error {
		if _, err := q.QueryJSON(ctx, "select to_jsonb(set_config('fraise.traceparent', 'x''); drop table orders; --', true))"); err != nil {
			return err
		}
		_, err := q.QueryJSON(ctx, "with x as (insert into orders values (1, '"+tenantA+"', 10, 'a') returning 1) select to_jsonb(count(*)) from x")
		return err
	})
	if err != nil {
		t.Fatalf("got %v, want the write committed", err)
	}
	events, err := l.Read(context.Background(), core.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].TraceParent != "" {
		t.Fatalf("got %d events, traceparent %q; want 1 event without one", len(events), events[0].TraceParent)
	}
}

func hasAttr(attrs []attribute.KeyValue, want attribute.KeyValue) bool {
	for _, a := range attrs {
		if a == want {
			return true
		}
	}
	return false
}
