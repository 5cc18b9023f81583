// Package httpapi serves the core over HTTP: GraphQL over HTTP on /graphql,
// behind a check of the identity assertion extauthz signed, and the admin
// endpoints (/healthz, /readyz, /metrics). It is where core errors become
// HTTP statuses, through one table.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/assertion"
	"github.com/fraise-dev/fraise/core/graphql"
)

// Executor runs GraphQL requests; *graphql.Engine is the production one.
type Executor interface {
	Execute(ctx context.Context, req graphql.Request) *graphql.Response
}

// Options configures the GraphQL handler.
type Options struct {
	Verifier     *assertion.Verifier
	Engine       Executor
	MaxBodyBytes int64
	Logger       *slog.Logger
	Metrics      *Metrics
}

// Content types of GraphQL over HTTP.
const (
	mediaGraphQLResponse = "application/graphql-response+json"
	mediaJSON            = "application/json"
)

// statusOf is the one table from core error codes to HTTP statuses.
var statusOf = map[core.Code]int{
	core.CodeInvalid:         http.StatusBadRequest,
	core.CodeNotFound:        http.StatusNotFound,
	core.CodeConflict:        http.StatusConflict,
	core.CodeUnauthenticated: http.StatusUnauthorized,
	core.CodeForbidden:       http.StatusForbidden,
	core.CodeRateLimited:     http.StatusTooManyRequests,
	core.CodeQuotaExceeded:   http.StatusForbidden,
	core.CodeTooLarge:        http.StatusRequestEntityTooLarge,
	core.CodeUnavailable:     http.StatusServiceUnavailable,
	core.CodeTimeout:         http.StatusGatewayTimeout,
	core.CodeInternal:        http.StatusInternalServerError,
}

// StatusOf returns the HTTP status for an error's code.
func StatusOf(err error) int {
	if s, ok := statusOf[core.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// NewHandler returns the GraphQL over HTTP handler. Every request must carry
// a valid identity assertion: the core trusts nothing else, so a core port
// exposed by mistake answers 401 and leaks nothing.
func NewHandler(o Options) http.Handler {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("/graphql", h.graphql)
	return mux
}

type handler struct{ o Options }

func (h *handler) graphql(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	defer func() { h.o.Metrics.observe(r.Method, rw.status, time.Since(start)) }()
	w = rw

	ctx := r.Context()
	if id := r.Header.Get("x-request-id"); id != "" {
		ctx = core.WithRequestID(ctx, id)
	}
	p, _, err := h.o.Verifier.Verify(r.Header.Get(assertion.Header))
	if err != nil {
		h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "refused request without a valid assertion",
			slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("err", err.Error()))
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, core.CodeUnauthenticated, "authentication required")
		return
	}
	ctx = core.WithPrincipal(ctx, p)

	var req graphql.Request
	switch r.Method {
	case http.MethodPost:
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != mediaJSON {
			writeError(w, http.StatusUnsupportedMediaType, core.CodeInvalid, "Content-Type must be application/json")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, core.CodeTooLarge, "request body too large")
				return
			}
			writeError(w, http.StatusBadRequest, core.CodeInvalid, "could not read request body")
			return
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, core.CodeInvalid, "request body is not a GraphQL request in JSON")
			return
		}
	case http.MethodGet:
		q := r.URL.Query()
		req.Query = q.Get("query")
		req.OperationName = q.Get("operationName")
		if v := q.Get("variables"); v != "" {
			if err := json.Unmarshal([]byte(v), &req.Variables); err != nil {
				writeError(w, http.StatusBadRequest, core.CodeInvalid, "variables is not a JSON object")
				return
			}
		}
		if v := q.Get("extensions"); v != "" {
			if err := json.Unmarshal([]byte(v), &req.Extensions); err != nil {
				writeError(w, http.StatusBadRequest, core.CodeInvalid, "extensions is not a JSON object")
				return
			}
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, core.CodeInvalid, "use GET or POST")
		return
	}
	if req.Query == "" && req.Extensions == nil {
		writeError(w, http.StatusBadRequest, core.CodeInvalid, "missing query")
		return
	}

	resp := h.o.Engine.Execute(ctx, req)
	media := negotiate(r.Header.Get("Accept"))
	status := http.StatusOK
	// GraphQL over HTTP: with the graphql-response media type a request
	// error (no data at all) is a 4xx; plain JSON keeps 200 for old clients.
	if media == mediaGraphQLResponse && resp.Data == nil && len(resp.Errors) > 0 {
		status = http.StatusBadRequest
		if c, ok := resp.Errors[0].Extensions["code"].(string); ok {
			if s, ok := statusOf[core.Code(c)]; ok && c != string(core.CodeInvalid) {
				status = s
			}
		}
	}
	writeJSON(w, status, media, resp)
}

// negotiate picks the response media type from Accept, preferring
// application/graphql-response+json as the specification asks.
func negotiate(accept string) string {
	if accept == "" {
		return mediaJSON
	}
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if mt == mediaGraphQLResponse {
			return mediaGraphQLResponse
		}
	}
	return mediaJSON
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

// writeError writes a GraphQL-shaped error response, the shape every Fraise
// refusal has whichever component refuses.
func writeError(w http.ResponseWriter, status int, code core.Code, msg string) {
	writeJSON(w, status, mediaJSON, errorBody{Errors: []errorEntry{{Message: msg, Extensions: map[string]any{"code": string(code)}}}})
}

func writeJSON(w http.ResponseWriter, status int, media string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}`)
	}
	w.Header().Set("Content-Type", media+"; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
