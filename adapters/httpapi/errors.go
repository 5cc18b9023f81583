package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/internal/httpstatus"
)

// StatusOf returns the HTTP status for an error's code.
func StatusOf(err error) int { return httpstatus.Of(core.ErrorCode(err)) }

// newErrorCounter returns fraise_errors_total, registered in reg. Every
// transport of a process counts into the one metric, by its transport
// label, so whichever registers it first creates it.
func newErrorCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fraise_errors_total",
		Help: "Errors answered at each transport's edge, by transport and code.",
	}, []string{"transport", "code"})
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector.(*prometheus.CounterVec)
		}
		panic(err) // a different metric of the same name: a programming error
	}
	return c
}

// edge is the HTTP transport's one way out for an error: every refusal and
// failed request the GraphQL endpoint answers goes through it, so the
// status comes from one table, an internal error is logged once (with the
// request id; the process's log handler adds the trace id from ctx), every
// error is counted by code, and every 429 and 503 carries the configured
// Retry-After.
type edge struct {
	log        *slog.Logger
	errors     *prometheus.CounterVec // nil: not counted
	retryAfter time.Duration          // admission.retry_after
}

func newEdge(log *slog.Logger, m *Metrics, retryAfter time.Duration) *edge {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &edge{log: log, retryAfter: retryAfter}
	if m != nil {
		e.errors = m.errors
	}
	return e
}

// fail answers err with its code's status and its client-safe message.
func (e *edge) fail(ctx context.Context, w http.ResponseWriter, media string, err error) {
	code := core.ErrorCode(err)
	e.refuse(ctx, w, media, &refusal{status: httpstatus.Of(code), code: string(code), msg: core.ErrorMessage(err), cause: err})
}

// refuse answers r: a core error, or one of the refusals of GraphQL over
// HTTP itself (406, 415, 405, ...), whose codes are the edge's own.
func (e *edge) refuse(ctx context.Context, w http.ResponseWriter, media string, r *refusal) {
	if r.allow != "" {
		w.Header().Set("Allow", r.allow)
	}
	e.record(ctx, w, r.status, r.code, r.cause)
	e.writeJSON(ctx, w, r.status, media, errorBody{Errors: []errorEntry{{Message: r.msg, Extensions: map[string]any{"code": r.code}}}})
}

// writeJSON writes v as the response. A value that does not encode (data
// that is not JSON) is the server's failure, answered, counted and logged
// as every internal error is.
func (e *edge) writeJSON(ctx context.Context, w http.ResponseWriter, status int, media string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		e.unencodable(ctx, w, media, err)
		return
	}
	writeBody(w, status, media, b)
}

// recoverPanic, deferred, turns a panic of the request's into an internal
// error answered through the edge (when nothing was written yet) instead
// of a connection net/http drops without an answer. http.ErrAbortHandler
// goes on: it is how a handler asks for exactly that.
func (e *edge) recoverPanic(ctx context.Context, w *statusWriter) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	err := fmt.Errorf("panic: %v\n%s", v, debug.Stack())
	if w.status != 0 {
		// The answer has begun: it cannot become an error any more.
		e.record(ctx, w, w.status, string(core.CodeInternal), err)
		panic(http.ErrAbortHandler)
	}
	e.fail(ctx, w, MediaJSON, core.E("httpapi.graphql", core.CodeInternal, err))
}

// unencodable answers a response that did not encode.
func (e *edge) unencodable(ctx context.Context, w http.ResponseWriter, media string, err error) {
	e.record(ctx, w, http.StatusInternalServerError, string(core.CodeInternal), err)
	writeBody(w, http.StatusInternalServerError, media, []byte(`{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}`))
}

// record sets Retry-After, counts the error and logs it when internal.
func (e *edge) record(ctx context.Context, w http.ResponseWriter, status int, code string, cause error) {
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		// The refusal's own delay when it names one (an admission
		// refusal, a quota); otherwise the configured one.
		w.Header().Set("Retry-After", httpstatus.RetryAfter(cause, e.retryAfter))
	}
	if e.errors != nil {
		e.errors.WithLabelValues("http", code).Inc()
	}
	if code == string(core.CodeInternal) {
		attrs := []slog.Attr{slog.String("code", code), slog.String("request_id", core.RequestIDFrom(ctx))}
		if cause != nil {
			attrs = append(attrs, slog.String("err", cause.Error()))
		}
		e.log.LogAttrs(ctx, slog.LevelError, "request failed", attrs...)
	}
}

// answer writes the engine's answer v holding resps: each of their
// errors is counted by its core code, and each internal one logged with
// its cause, which the engine keeps out of the response.
func (e *edge) answer(ctx context.Context, w http.ResponseWriter, status int, media string, v any, resps ...*graphql.Response) {
	b, err := json.Marshal(v)
	if err != nil {
		e.unencodable(ctx, w, media, err)
		return
	}
	st := status // Retry-After follows the response's status, once
	for _, resp := range resps {
		for _, ge := range resp.Errors {
			e.record(ctx, w, st, string(ge.Code()), ge.Err)
			st = 0
		}
	}
	writeBody(w, status, media, b)
}
