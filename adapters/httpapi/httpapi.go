// Package httpapi serves the core over HTTP: GraphQL over HTTP on /graphql,
// behind a check of the identity assertion extauthz signed, and the admin
// endpoints (/healthz, /readyz, /metrics). It is where core errors become
// HTTP statuses, through one table.
//
// The GraphQL endpoint follows the GraphQL-over-HTTP specification (draft):
// POST with application/json, GET for queries only, Accept negotiation
// between application/graphql-response+json and application/json with the
// status codes each prescribes, and optional batches. docs/graphql-over-http.md
// lists every refusal and its extensions.code.
package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/graphql/request"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/httpstatus"
)

// Executor runs GraphQL requests; *graphql.Engine is the production one.
type Executor interface {
	Execute(ctx context.Context, req graphql.Request) *graphql.Response
}

// Options configures the GraphQL handler.
type Options struct {
	Verifier *assertion.Verifier
	Engine   Executor
	// MaxBodyBytes bounds a POST body (0: 1 MiB); larger ones get 413.
	MaxBodyBytes int64
	// MaxBatch is how many operations one POST may carry as a JSON array.
	// 0 (the default) turns batching off: an array is refused with 400.
	MaxBatch int
	Logger   *slog.Logger
	Metrics  *Metrics
	// RetryAfter is the Retry-After of every 429 and 503 the handler
	// answers (admission.retry_after; 0: 1s).
	RetryAfter time.Duration
}

// Media types of GraphQL over HTTP.
const (
	MediaGraphQLResponse = "application/graphql-response+json"
	MediaJSON            = "application/json"
)

// The extensions.code of each refusal the HTTP edge makes before a request
// reaches the engine. Malformed requests, authentication and size refusals
// use the core's codes (INVALID, UNAUTHENTICATED, TOO_LARGE), as extauthz
// does for the same requests at the gateway, so every component names them
// alike.
const (
	CodeInvalid              = string(core.CodeInvalid) // malformed body or parameters (400)
	CodeNotAcceptable        = "NOT_ACCEPTABLE"         // no acceptable response media type (406)
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED" // other methods, and mutations over GET (405)
	CodeBatchDisabled        = "BATCH_DISABLED"     // a JSON array while batching is off (400)
	CodeBatchLimit           = "BATCH_LIMIT_EXCEEDED"
)

// codeMutationNotAllowed is the engine's refusal of a mutation in a
// read-only request (graphql.Request.ReadOnly, which GET sets).
const codeMutationNotAllowed = "MUTATION_NOT_ALLOWED"

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
	h := &handler{o: o, edge: newEdge(o.Logger, o.Metrics, o.RetryAfter)}
	mux := http.NewServeMux()
	mux.HandleFunc("/graphql", h.graphql)
	return mux
}

type handler struct {
	o    Options
	edge *edge
}

// VerifyAssertion wraps next so that a request's identity assertion is
// verified at most once, however many layers need the identity: admission
// control (TenantFromAssertion) counts the request against its tenant
// before the GraphQL handler runs it, and an Ed25519 verification is the
// largest CPU cost of a cheap read. Verification waits for the first layer
// that asks: a request that admission refuses because the core is full is
// never verified, which keeps refusing far cheaper than serving when an
// overload makes most requests refusals. The outcome travels in the
// request's context, tied to the verifier and the exact header value, so a
// layer that swaps either gets its own verification.
func VerifyAssertion(next http.Handler, v *assertion.Verifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &verified{v: v, token: r.Header.Get(assertion.Header)}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), verifiedKey{}, c)))
	})
}

type verifiedKey struct{}

// verified is VerifyAssertion's outcome for one request, computed on first
// use.
type verified struct {
	v     *assertion.Verifier
	token string
	once  sync.Once
	a     assertion.Assertion
	err   error
}

// assertion verifies the assertion the first time it is called and
// returns the outcome every time.
func (c *verified) assertion() (assertion.Assertion, error) {
	c.once.Do(func() { c.a, c.err = c.v.Verify(c.token, assertion.AudienceGraphQL) })
	return c.a, c.err
}

// verifyRequest returns r's identity assertion, verified for the GraphQL
// listener: the outcome VerifyAssertion recorded for this verifier and this
// header value, or else a verification of its own. It does not spend the
// assertion: the handler does, once, whichever layers looked at it first.
func verifyRequest(r *http.Request, v *assertion.Verifier) (assertion.Assertion, error) {
	tok := r.Header.Get(assertion.Header)
	if c, ok := r.Context().Value(verifiedKey{}).(*verified); ok && c.v == v && c.token == tok {
		return c.assertion()
	}
	return v.Verify(tok, assertion.AudienceGraphQL)
}

// requestPath is r's path as the client sent it and extauthz saw it (the
// request target up to its query string), which the assertion names.
func requestPath(r *http.Request) string {
	if r.RequestURI != "" {
		p, _, _ := strings.Cut(r.RequestURI, "?")
		return p
	}
	return r.URL.EscapedPath()
}

// refusal is a request the edge answers itself, with a GraphQL-shaped body.
type refusal struct {
	status int
	code   string
	msg    string
	allow  string // the Allow header of a 405
	cause  error  // logged when the code is INTERNAL
}

func badRequest(msg string) *refusal {
	return &refusal{status: http.StatusBadRequest, code: CodeInvalid, msg: msg}
}

func (h *handler) graphql(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	defer func() { h.o.Metrics.observe(r.Method, rw.status, time.Since(start)) }()
	w = rw

	ctx := r.Context()
	if id := r.Header.Get("x-request-id"); id != "" {
		ctx = core.WithRequestID(ctx, id)
	}
	defer h.edge.recoverPanic(ctx, rw)
	a, err := verifyRequest(r, h.o.Verifier)
	if err == nil {
		// Spent before anything else is looked at: an assertion presented
		// with a request it was not issued for is used up all the same.
		err = h.o.Verifier.Spend(a)
	}
	if errors.Is(err, assertion.ErrReplayCacheFull) {
		h.o.Logger.LogAttrs(ctx, slog.LevelError, "refused request: the assertion replay cache is full",
			slog.String("request_id", core.RequestIDFrom(ctx)))
		h.edge.fail(ctx, w, MediaJSON, core.E("httpapi.graphql", core.CodeUnavailable, err))
		return
	}
	if err != nil {
		h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "refused request without a valid assertion",
			slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("err", err.Error()))
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		h.edge.fail(ctx, w, MediaJSON, core.E("httpapi.graphql", core.CodeUnauthenticated, err))
		return
	}
	ctx = core.WithPrincipal(ctx, a.Principal)

	media, ok := negotiate(r.Header.Values("Accept"))
	if !ok {
		h.edge.refuse(ctx, w, MediaJSON, &refusal{status: http.StatusNotAcceptable, code: CodeNotAcceptable,
			msg: "Accept must allow " + MediaGraphQLResponse + " or " + MediaJSON})
		return
	}

	var reqs []graphql.Request
	var ops []string // the operation hash of each request
	batch := false
	switch r.Method {
	case http.MethodGet:
		req, op, ref := h.fromQuery(r.URL.RawQuery)
		if ref != nil {
			h.edge.refuse(ctx, w, media, ref)
			return
		}
		reqs, ops = []graphql.Request{req}, []string{op}
	case http.MethodPost:
		var ref *refusal
		reqs, ops, batch, ref = h.fromBody(w, r)
		if ref != nil {
			h.edge.refuse(ctx, w, media, ref)
			return
		}
	default:
		h.edge.refuse(ctx, w, media, &refusal{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
			msg: "use GET (queries) or POST", allow: "GET, POST"})
		return
	}
	// The assertion names the request extauthz decided on: its method, path
	// and operation (the document, persisted hash resolved, and operation
	// name). Every request of a batch must be that operation.
	for _, op := range ops {
		if err := a.Check(r.Method, requestPath(r), op, ""); err != nil {
			h.o.Logger.LogAttrs(ctx, slog.LevelWarn, "refused request its assertion was not issued for",
				slog.String("request_id", core.RequestIDFrom(ctx)), slog.String("err", err.Error()))
			h.edge.fail(ctx, w, media, core.Errorf(core.CodeForbidden, "the identity assertion was issued for another request").WithOp("httpapi.graphql").Wrap(err))
			return
		}
	}

	if !batch {
		resp := h.o.Engine.Execute(ctx, reqs[0])
		if r.Method == http.MethodGet && resp.Data == nil && len(resp.Errors) > 0 && resp.Errors[0].Extensions["code"] == codeMutationNotAllowed {
			// A persisted operation sent by hash alone is a mutation only
			// the engine can tell; it refuses it for a read-only request.
			h.edge.refuse(ctx, w, media, &refusal{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
				msg: "mutations must use POST", allow: http.MethodPost})
			return
		}
		if b, ok := resp.Body(); ok {
			// The common answer, data alone, is written as the engine
			// assembled it around what PostgreSQL built: encoding/json
			// would only re-scan (compact and validate) it, and a copy
			// into an envelope would allocate it again.
			writeBody(w, http.StatusOK, media, b)
			return
		}
		if len(resp.Errors) == 0 && len(resp.Data) > 0 {
			writeBody(w, http.StatusOK, media, append(append(append(make([]byte, 0, len(resp.Data)+9), `{"data":`...), resp.Data...), '}'))
			return
		}
		status := statusFor(media, resp)
		h.edge.answer(ctx, w, status, media, resp, resp)
		return
	}
	out := make([]*graphql.Response, len(reqs))
	for i, req := range reqs {
		out[i] = h.o.Engine.Execute(ctx, req)
	}
	// A batch is not in the specification; it cannot have one status for
	// mixed outcomes, so it is 200 and each entry carries its own errors.
	h.edge.answer(ctx, w, http.StatusOK, media, out, out...)
}

// statusFor is the status the specification prescribes for an executed
// request. With application/json every well-formed request gets 200. With
// application/graphql-response+json a response without data is an error
// status: 400 for a request error (parse, validation, variable coercion),
// or the status of its first error's code when that code names one, as a
// refused operation's or a failed persisted-document lookup's does (504
// for a statement timeout, 503 for an unavailable database); a response
// with data, even null, is 200.
func statusFor(media string, resp *graphql.Response) int {
	if media != MediaGraphQLResponse || resp.Data != nil || len(resp.Errors) == 0 {
		return http.StatusOK
	}
	return httpstatus.Of(resp.Errors[0].Code())
}

// fromQuery reads a GET request's parameters. GET never runs a mutation
// (the specification requires 405): the document is parsed here to find out
// which operation would run.
func (h *handler) fromQuery(raw string) (graphql.Request, string, *refusal) {
	p, err := request.DecodeQuery(raw)
	if err != nil {
		return graphql.Request{}, "", decodeRefusal(err)
	}
	// ReadOnly also covers a mutation sent as a persisted-query hash alone,
	// which cannot be seen here without the stored document.
	req := engineRequest(p)
	req.ReadOnly = true
	if isMutation(req.Query, req.OperationName) {
		return req, "", &refusal{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
			msg: "mutations must use POST", allow: http.MethodPost}
	}
	return req, operationHash(p), nil
}

// engineRequest is the engine's request for p.
func engineRequest(p request.Params) graphql.Request {
	return graphql.Request{Query: p.Query, OperationName: p.OperationName, Variables: p.Variables, Extensions: p.Extensions}
}

// operationHash names the operation p runs as extauthz named the one it
// decided on. The engine runs, for a persisted hash, only the document
// whose SHA-256 that hash is (and refuses a query sent with another hash),
// so the document hash of p is the hash of the document that runs.
func operationHash(p request.Params) string {
	return request.OperationHash(p.DocumentHash(), p.OperationName)
}

// decodeRefusal is the 400 for a request the shared decoder refused, with
// its message, which names the problem in the client's terms.
func decodeRefusal(err error) *refusal {
	var re *request.Error
	if errors.As(err, &re) {
		return badRequest(re.Message)
	}
	return badRequest("the request is not a GraphQL request")
}

// isMutation reports whether the operation query and name select is a
// mutation. A document that does not parse, or names no single operation,
// is not one: the engine reports those errors the usual way.
func isMutation(query, name string) bool {
	if !strings.Contains(query, "mutation") {
		return false
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		return false
	}
	var op *ast.OperationDefinition
	switch {
	case name != "":
		op = doc.Operations.ForName(name)
	case len(doc.Operations) == 1:
		op = doc.Operations[0]
	}
	return op != nil && op.Operation == ast.Mutation
}

// fromBody reads a POST body: one request object or, when batching is on,
// an array of them, and the operation hash of each. Both are read by the
// decoder extauthz reads them with (core/graphql/request), so the core
// runs what extauthz decided on.
func (h *handler) fromBody(w http.ResponseWriter, r *http.Request) ([]graphql.Request, []string, bool, *refusal) {
	if ref := checkContentType(r.Header.Get("Content-Type")); ref != nil {
		return nil, nil, false, ref
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, false, &refusal{status: http.StatusRequestEntityTooLarge, code: string(core.CodeTooLarge),
				msg: "request body is larger than " + strconv.FormatInt(h.o.MaxBodyBytes, 10) + " bytes"}
		}
		return nil, nil, false, badRequest("could not read the request body")
	}
	p, err := request.DecodeBody(body)
	switch {
	case err == nil:
		return []graphql.Request{engineRequest(p)}, []string{operationHash(p)}, false, nil
	case !errors.Is(err, request.ErrBatch):
		return nil, nil, false, decodeRefusal(err)
	case h.o.MaxBatch <= 0:
		return nil, nil, false, &refusal{status: http.StatusBadRequest, code: CodeBatchDisabled, msg: "batched requests are disabled on this server"}
	}
	ps, err := request.DecodeBatch(body, h.o.MaxBatch)
	if errors.Is(err, request.ErrBatchLimit) {
		return nil, nil, false, &refusal{status: http.StatusBadRequest, code: CodeBatchLimit,
			msg: "a batch may hold at most " + strconv.Itoa(h.o.MaxBatch) + " operations"}
	}
	if err != nil {
		return nil, nil, false, decodeRefusal(err)
	}
	reqs, ops := make([]graphql.Request, len(ps)), make([]string, len(ps))
	for i, p := range ps {
		reqs[i], ops[i] = engineRequest(p), operationHash(p)
	}
	return reqs, ops, true, nil
}

// checkContentType accepts application/json in UTF-8, the one encoding the
// specification requires; anything else (or nothing) is 415.
func checkContentType(ct string) *refusal {
	unsupported := &refusal{status: http.StatusUnsupportedMediaType, code: CodeUnsupportedMediaType,
		msg: "Content-Type must be application/json (UTF-8)"}
	if ct == "" {
		return unsupported
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != MediaJSON {
		return unsupported
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupported
	}
	return nil
}

// negotiate picks the response media type from the Accept header. No header
// means application/json. Among acceptable types the higher q wins; at equal
// q an explicit application/graphql-response+json wins, while wildcards
// (*/*, application/*) get application/json, which every client reads. ok
// is false when neither type is acceptable (406).
func negotiate(accept []string) (media string, ok bool) {
	if len(accept) == 0 {
		return MediaJSON, true
	}
	type score struct {
		q        float64
		specific int // 2 exact, 1 application/*, 0 */*
		set      bool
	}
	var gr, js score
	seen := false
	for _, line := range accept {
		for _, part := range strings.Split(line, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			seen = true
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			q := 1.0
			if v, ok := params["q"]; ok {
				if q, err = strconv.ParseFloat(v, 64); err != nil || q < 0 || q > 1 {
					continue
				}
			}
			for _, c := range []struct {
				media string
				s     *score
			}{{MediaGraphQLResponse, &gr}, {MediaJSON, &js}} {
				spec := -1
				switch mt {
				case c.media:
					spec = 2
				case "application/*":
					spec = 1
				case "*/*":
					spec = 0
				}
				// The most specific range that matches decides the q.
				if spec >= 0 && (!c.s.set || spec > c.s.specific) {
					*c.s = score{q: q, specific: spec, set: true}
				}
			}
		}
	}
	if !seen {
		return MediaJSON, true
	}
	switch {
	case gr.q <= 0 && js.q <= 0:
		return "", false
	case gr.q > js.q:
		return MediaGraphQLResponse, true
	case js.q > gr.q:
		return MediaJSON, true
	case gr.specific == 2:
		return MediaGraphQLResponse, true
	default:
		return MediaJSON, true
	}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func writeBody(w http.ResponseWriter, status int, media string, b []byte) {
	h := w.Header()
	h.Set("Content-Type", media+"; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(b)))
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
