package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/logtest"
)

// failingDB fails every transaction with err, as a database that is down
// or broken does.
type failingDB struct{ err error }

func (d failingDB) InTenant(context.Context, string, func(context.Context, core.Querier) error) error {
	return d.err
}

// failingStore fails every persisted-document lookup with err.
type failingStore struct{ err error }

func (s failingStore) Get(context.Context, string, string) (string, bool, error) {
	return "", false, s.err
}
func (s failingStore) Put(context.Context, string, string, string) error { return s.err }

// TestErrorEdge sends an error of every core code through the HTTP
// transport, from the database (execution) and from the persisted-document
// store (a request error, whose status the code decides), and checks the
// status, the body, the log line of an internal error and the error
// metric.
func TestErrorEdge(t *testing.T) {
	schema, err := graphql.ParseSchema(demo.SDL)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := map[core.Code]int{
		core.CodeInvalid: 400, core.CodeNotFound: 404, core.CodeConflict: 409, core.CodeUnauthenticated: 401,
		core.CodeForbidden: 403, core.CodeRateLimited: 429, core.CodeQuotaExceeded: 403, core.CodeTooLarge: 413,
		core.CodeUnavailable: 503, core.CodeTimeout: 504, core.CodeInternal: 500,
	}
	wireCode := map[core.Code]string{core.CodeTimeout: graphql.CodeStatementTimeout, core.CodeTooLarge: graphql.CodeResultTooLarge}
	traceID := trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	spanCtx := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	hash := core.DocumentHash("{ users { id } }")

	for _, path := range []struct {
		name string
		body string
		// status is the status of an error of code c on this path.
		status func(c core.Code) int
		engine func(err error) *graphql.Engine
	}{
		{"execution", `{"query":"{ users { id } }"}`,
			func(core.Code) int { return 200 }, // data is null, so 200 (GraphQL over HTTP)
			func(err error) *graphql.Engine { return graphql.NewEngine(schema, failingDB{err}, graphql.Options{}) }},
		{"request", `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + hash + `"}}}`,
			func(c core.Code) int { return wantStatus[c] },
			func(err error) *graphql.Engine {
				return graphql.NewEngine(schema, failingDB{err}, graphql.Options{APQ: true, Persisted: failingStore{err}})
			}},
	} {
		for _, code := range core.Codes() {
			t.Run(path.name+"/"+string(code), func(t *testing.T) {
				cause := errors.New("the disk is on fire")
				err := &core.Error{Op: "test", Code: code, Message: "message of " + string(code), Err: cause}
				logs := &logtest.Recorder{}
				m := httpapi.NewMetrics()
				signer, keys := assertiontest.New(t, nil)
				h := httpapi.NewHandler(httpapi.Options{
					Verifier: assertion.NewVerifier(keys, nil), Engine: path.engine(err),
					Logger: slog.New(logs), Metrics: m, RetryAfter: 7 * time.Second,
				})
				tok, serr := signer.Sign(alice, assertiontest.RequestID(), assertiontest.GraphQL("POST", "/graphql", []byte(path.body)))
				if serr != nil {
					t.Fatal(serr)
				}
				req := httptest.NewRequest("POST", "/graphql", strings.NewReader(path.body))
				req = req.WithContext(trace.ContextWithSpanContext(req.Context(), spanCtx))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", httpapi.MediaGraphQLResponse)
				req.Header.Set("x-request-id", "req-1")
				req.Header.Set(assertion.Header, tok)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)

				if got, want := w.Code, path.status(code); got != want {
					t.Errorf("got status %d, want %d (body %s)", got, want, w.Body)
				}
				var body struct {
					Errors []struct {
						Message    string
						Extensions struct{ Code string }
					}
				}
				if err := json.NewDecoder(bytes.NewReader(w.Body.Bytes())).Decode(&body); err != nil || len(body.Errors) != 1 {
					t.Fatalf("got body %s, want one error", w.Body)
				}
				wantWire := string(code)
				if c, ok := wireCode[code]; ok {
					wantWire = c
				}
				if got := body.Errors[0].Extensions.Code; got != wantWire {
					t.Errorf("got extensions.code %q, want %q", got, wantWire)
				}
				msg := body.Errors[0].Message
				if code == core.CodeInternal {
					if strings.Contains(msg, "fire") || !strings.Contains(msg, "internal error") {
						t.Errorf("got message %q, want the generic internal error", msg)
					}
				} else if !strings.Contains(msg, "message of "+string(code)) {
					t.Errorf("got message %q, want the error's message", msg)
				}
				wantRetry := ""
				if s := path.status(code); s == 429 || s == 503 {
					wantRetry = "7" // admission.retry_after, not a constant
				}
				if got := w.Header().Get("Retry-After"); got != wantRetry {
					t.Errorf("got Retry-After %q, want %q", got, wantRetry)
				}

				lines := logs.Errors()
				if code != core.CodeInternal {
					if len(lines) != 0 {
						t.Errorf("got error log lines %+v, want none for %s", lines, code)
					}
				} else {
					if len(lines) != 1 {
						t.Fatalf("got %d error log lines %+v, want 1", len(lines), lines)
					}
					l := lines[0]
					if l.Attrs["request_id"] != "req-1" || l.TraceID != traceID.String() ||
						l.Attrs["code"] != "INTERNAL" || !strings.Contains(l.Attrs["err"], "the disk is on fire") {
						t.Errorf("got log line %+v, want request_id req-1, trace %s, code INTERNAL and the cause", l, traceID)
					}
				}
				if got := errorsTotal(t, m.Registry, "http", string(code)); got != 1 {
					t.Errorf("got fraise_errors_total{transport=http,code=%s} %v, want 1", code, got)
				}
			})
		}
	}
}

// errorsTotal is the fraise_errors_total series of transport and code in
// reg, 0 when it has none.
func errorsTotal(tb testing.TB, reg prometheus.Gatherer, transport, code string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "fraise_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["transport"] == transport && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// brokenData answers data that is not JSON beside an error, which the
// handler cannot encode.
type brokenData struct{}

func (brokenData) Execute(context.Context, graphql.Request) *graphql.Response {
	return &graphql.Response{Data: json.RawMessage(`{"a": `), Errors: []*graphql.Error{{Message: "x", Extensions: map[string]any{"code": "INVALID"}}}}
}

// TestUnencodableAnswerGoesThroughTheEdge checks that a response the
// handler cannot encode is an internal error like any other: 500, the
// generic body, one log line and counted.
func TestUnencodableAnswerGoesThroughTheEdge(t *testing.T) {
	logs := &logtest.Recorder{}
	m := httpapi.NewMetrics()
	signer, keys := assertiontest.New(t, nil)
	h := httpapi.NewHandler(httpapi.Options{Verifier: assertion.NewVerifier(keys, nil), Engine: brokenData{},
		Logger: slog.New(logs), Metrics: m})
	w := serve(h, signer, httpCase{method: "POST", body: okQ})
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"INTERNAL"`) {
		t.Errorf("got %d %s, want 500 INTERNAL", w.Code, w.Body)
	}
	if lines := logs.Errors(); len(lines) != 1 || lines[0].Attrs["code"] != "INTERNAL" {
		t.Errorf("got error log lines %+v, want one INTERNAL line", lines)
	}
	if got := errorsTotal(t, m.Registry, "http", "INTERNAL"); got != 1 {
		t.Errorf("got fraise_errors_total{transport=http,code=INTERNAL} %v, want 1", got)
	}
	if got := errorsTotal(t, m.Registry, "http", "INVALID"); got != 0 {
		t.Errorf("got fraise_errors_total{transport=http,code=INVALID} %v, want 0: the client was not told INVALID", got)
	}
}

// panicking is an engine with a bug.
type panicking struct{}

func (panicking) Execute(context.Context, graphql.Request) *graphql.Response { panic("a bug") }

// TestPanicGoesThroughTheEdge checks that a panic while serving a request
// is answered as an internal error (500, logged once, counted) rather than
// by a dropped connection.
func TestPanicGoesThroughTheEdge(t *testing.T) {
	logs := &logtest.Recorder{}
	m := httpapi.NewMetrics()
	signer, keys := assertiontest.New(t, nil)
	h := httpapi.NewHandler(httpapi.Options{Verifier: assertion.NewVerifier(keys, nil), Engine: panicking{},
		Logger: slog.New(logs), Metrics: m})
	w := serve(h, signer, httpCase{method: "POST", body: okQ})
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"INTERNAL"`) || strings.Contains(w.Body.String(), "a bug") {
		t.Errorf("got %d %s, want 500 INTERNAL without the panic's value", w.Code, w.Body)
	}
	if lines := logs.Errors(); len(lines) != 1 || !strings.Contains(lines[0].Attrs["err"], "panic: a bug") {
		t.Errorf("got error log lines %+v, want one line with the panic", lines)
	}
	if got := errorsTotal(t, m.Registry, "http", "INTERNAL"); got != 1 {
		t.Errorf("got fraise_errors_total{transport=http,code=INTERNAL} %v, want 1", got)
	}
}
