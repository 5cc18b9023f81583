package extauthz

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// The identity headers extauthz sets on every allowed request. Envoy
// strips client-sent x-fraise-* headers at the ingress and extauthz
// overwrites these, so upstream sees only extauthz's values.
const (
	HeaderTenant  = "x-fraise-tenant"
	HeaderSubject = "x-fraise-subject"
	HeaderRoles   = "x-fraise-roles"
	HeaderScopes  = "x-fraise-scopes"
	HeaderOp      = "x-fraise-op"
	HeaderTier    = "x-fraise-tier"
)

// codePersistedQueryNotFound is the extensions.code clients of persisted
// queries (Apollo's protocol) look for before resending the document.
const codePersistedQueryNotFound core.Code = "PERSISTED_QUERY_NOT_FOUND"

// decision is what one Check learned and decided: the decision log line
// and the response are both built from it.
type decision struct {
	id, requestID, revision string
	method, path            string

	tokenPresent  bool
	authenticated bool
	principal     core.Principal
	issuer        string

	op, opType, opName string // op is the rate-limit class
	rootFields         []string
	dataset            string

	// binding is what the assertion names: the listener, the request and
	// the hash of what the policy decided on.
	binding assertion.Binding

	// console says the request is for the console, whose denials are
	// shaped for its web application; session is how it was
	// authenticated ("cookie", "header", "").
	console bool
	session string
	// in is the policy's input, once the request has one; kept for the
	// audit log.
	in *input
	// traceID is the W3C trace id of the request's traceparent header.
	traceID string

	allow      bool
	status     int
	reason     string
	extra      []*corev3.HeaderValueOption
	code       core.Code // of a denial or a failure
	retryAfter string    // Retry-After of a 429 or 503 denial
	stack      string    // of a Check that panicked
	cached     bool      // the policy's decision came from the decision cache
	dryRun     bool
	latency    time.Duration
}

// Bodies of the common denials, built once: they are the same for every
// request, which is the point.
var (
	body401 = errorBody(core.CodeUnauthenticated, core.ErrorMessage(core.Errorf(core.CodeUnauthenticated, "")))
	body403 = errorBody(core.CodeForbidden, core.ErrorMessage(core.Errorf(core.CodeForbidden, "")))
)

type errorEntry struct {
	Message    string            `json:"message"`
	Extensions map[string]string `json:"extensions"`
}

func errorBody(code core.Code, msg string) string {
	b, _ := json.Marshal(struct {
		Errors []errorEntry `json:"errors"`
	}{[]errorEntry{{Message: msg, Extensions: map[string]string{"code": string(code)}}}})
	return string(b)
}

// answer is what extauthz answers for a core code: the HTTP status of a
// denial and the gRPC code of the Check's answer (of its status when it
// denies, of the error when it fails and Envoy fails closed).
type answer struct {
	status int
	grpc   codes.Code
}

// answerOf is extauthz's one table from core codes to its answers; the
// gRPC codes are those of the core's Flight edge, so a code reads the
// same whichever component refused.
var answerOf = map[core.Code]answer{
	core.CodeInvalid:         {http.StatusBadRequest, codes.InvalidArgument},
	core.CodeNotFound:        {http.StatusNotFound, codes.NotFound},
	core.CodeConflict:        {http.StatusConflict, codes.AlreadyExists},
	core.CodeUnauthenticated: {http.StatusUnauthorized, codes.Unauthenticated},
	core.CodeForbidden:       {http.StatusForbidden, codes.PermissionDenied},
	core.CodeRateLimited:     {http.StatusTooManyRequests, codes.ResourceExhausted},
	core.CodeQuotaExceeded:   {http.StatusForbidden, codes.ResourceExhausted},
	core.CodeTooLarge:        {http.StatusRequestEntityTooLarge, codes.ResourceExhausted},
	core.CodeUnavailable:     {http.StatusServiceUnavailable, codes.Unavailable},
	core.CodeTimeout:         {http.StatusGatewayTimeout, codes.DeadlineExceeded},
	core.CodeInternal:        {http.StatusInternalServerError, codes.Internal},
}

// answerFor is code's answer; an unknown code is internal.
func answerFor(code core.Code) answer {
	if a, ok := answerOf[code]; ok {
		return a
	}
	return answerOf[core.CodeInternal]
}

// codeOfStatus is the core code of a status a policy chose for its
// denial: the policy speaks HTTP, so its status is the input here, read
// back through answerOf (the first code in core.Codes' order with that
// status: 403 is FORBIDDEN). A status the table does not have is
// FORBIDDEN, a denial's default.
func codeOfStatus(st int) core.Code {
	for _, c := range core.Codes() {
		if answerOf[c].status == st {
			return c
		}
	}
	return core.CodeForbidden
}

// deny records a denial with code and the log-only reason, and returns
// the response. clientMsg is shown to the client for INVALID (their own
// syntax); every other code shows only its generic message.
func (d *decision) deny(code core.Code, reason, clientMsg string) *authv3.CheckResponse {
	if code != core.CodeInvalid || clientMsg == "" {
		clientMsg = core.ErrorMessage(core.Errorf(code, ""))
	}
	return d.denyCode(code, reason, clientMsg, code)
}

// denyStatus records the policy's denial with status st.
func (d *decision) denyStatus(st int, reason string) *authv3.CheckResponse {
	code := codeOfStatus(st)
	return d.respond(st, answerFor(code).grpc, reason, core.ErrorMessage(core.Errorf(code, "")), code, code)
}

// denyCode records a denial of code whose body names bodyCode (a core
// code, or a protocol's own such as PERSISTED_QUERY_NOT_FOUND).
func (d *decision) denyCode(code core.Code, reason, clientMsg string, bodyCode core.Code) *authv3.CheckResponse {
	a := answerFor(code)
	return d.respond(a.status, a.grpc, reason, clientMsg, code, bodyCode)
}

// fail records a failure to decide, which Envoy answers by failing closed
// (status_on_error), and returns the gRPC error for Check. reason is for
// the decision log only; msg is the error's, which names no detail.
func (d *decision) fail(code core.Code, reason, msg string) error {
	d.reason, d.code = reason, code
	return status.Error(answerFor(code).grpc, msg)
}

func (d *decision) respond(st int, gcode codes.Code, reason, clientMsg string, code, bodyCode core.Code) *authv3.CheckResponse {
	d.allow, d.status, d.reason, d.code = false, st, reason, code
	var body string
	switch {
	case st == http.StatusUnauthorized && bodyCode == core.CodeUnauthenticated:
		body = body401
	case st == http.StatusForbidden && bodyCode == core.CodeForbidden:
		body = body403
	default:
		body = errorBody(bodyCode, clientMsg)
	}
	if d.console {
		body = consoleErrorBody(string(bodyCode), clientMsg)
	}
	headers := []*corev3.HeaderValueOption{header("content-type", "application/json")}
	if st == http.StatusUnauthorized {
		// RFC 6750: a request without credentials gets the bare challenge;
		// one whose token was refused learns only that it was invalid.
		challenge := "Bearer"
		if d.tokenPresent {
			challenge = `Bearer error="invalid_token"`
		}
		headers = append(headers, header("www-authenticate", challenge))
	}
	if d.console {
		headers = append(headers, consoleHeaders()...)
	}
	if st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable {
		// As every other 429 and 503 of the project's, so clients back off
		// alike whichever component refused.
		headers = append(headers, header("retry-after", d.retryAfter))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(gcode)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(st)},
			Headers: headers,
			Body:    body,
		}},
		DynamicMetadata: d.metadata(),
	}
}

// okResponse allows the request with headers and removes the
// Authorization and Cookie headers, so the raw token never travels further.
func okResponse(d *decision, headers []*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: headers,
			// The cookie goes too: it may carry the session token, and
			// nothing upstream reads cookies.
			HeadersToRemove: []string{"authorization", "cookie"},
		}},
		DynamicMetadata: d.metadata(),
	}
}

// metadata is the dynamic metadata Envoy attaches to the request for its
// access log, tying it to the decision log line.
func (d *decision) metadata() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"decision_id":     structpb.NewStringValue(d.id),
		"policy_revision": structpb.NewStringValue(d.revision),
	}}
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func identityHeaders(d *decision, signed string) []*corev3.HeaderValueOption {
	p := d.principal
	h := make([]*corev3.HeaderValueOption, 0, 7+len(d.extra))
	h = append(h,
		header(HeaderTenant, p.Tenant),
		header(HeaderSubject, p.Subject),
		header(HeaderRoles, strings.Join(p.Roles, ",")),
		header(HeaderScopes, strings.Join(p.Scopes, " ")),
		header(HeaderOp, d.op),
		header(HeaderTier, p.Tier),
		header(assertion.Header, signed),
	)
	return append(h, d.extra...)
}

// reservedHeaders may not be set by a policy: the identity headers must
// stay consistent with the assertion, and the others would confuse
// routing or framing.
var reservedHeaders = map[string]bool{
	HeaderTenant: true, HeaderSubject: true, HeaderRoles: true, HeaderScopes: true,
	HeaderOp: true, HeaderTier: true, assertion.Header: true,
	"authorization": true, "host": true, "content-length": true, "content-type": true,
	"transfer-encoding": true, "connection": true, "te": true, "upgrade": true,
	"keep-alive": true, "proxy-authorization": true, "x-request-id": true,
}

// policyHeaders validates the headers a decision adds. An invalid one is a
// policy bug, which fails the check closed rather than being dropped.
func policyHeaders(m map[string]string) ([]*corev3.HeaderValueOption, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make([]*corev3.HeaderValueOption, 0, len(m))
	for k, v := range m {
		if k == "" || strings.HasPrefix(k, ":") || reservedHeaders[k] {
			return nil, fmt.Errorf("decision.headers: %q may not be set by a policy", k)
		}
		for _, c := range k {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return nil, fmt.Errorf("decision.headers: %q is not a lower-case header name", k)
			}
		}
		if len(v) > 4096 || strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("decision.headers[%q]: value too long or contains a line break", k)
		}
		out = append(out, header(k, v))
	}
	return out, nil
}

// logDecision writes the one decision log line of a Check. It never logs
// the token or the query string (which may carry either).
func (s *Server) logDecision(ctx context.Context, d *decision, err error) {
	level := slog.LevelInfo
	if err != nil {
		level = slog.LevelError
	}
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("decision_id", d.id),
		slog.String("request_id", d.requestID),
		slog.String("method", d.method),
		slog.String("path", d.path),
		slog.Bool("allow", d.allow),
		slog.String("reason", mask(d.reason)),
		slog.String("subject", d.principal.Subject),
		slog.String("tenant", d.principal.Tenant),
		slog.String("policy_revision", d.revision),
		slog.Duration("latency", d.latency),
	)
	if !d.allow {
		attrs = append(attrs, slog.Int("status", d.status))
	}
	if d.authenticated {
		attrs = append(attrs,
			slog.String("kind", string(d.principal.Kind)),
			slog.String("issuer", d.issuer),
		)
	}
	if d.opType != "" {
		attrs = append(attrs, slog.String("operation", d.opType), slog.String("operation_name", d.opName))
	}
	if len(d.rootFields) > 0 {
		attrs = append(attrs, slog.Any("root_fields", d.rootFields))
	}
	if d.dataset != "" {
		attrs = append(attrs, slog.String("dataset", d.dataset))
	}
	if d.dryRun {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	if d.cached {
		attrs = append(attrs, slog.Bool("cached", true))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()), slog.String("code", string(cmp.Or(d.code, core.CodeInternal))))
		if d.stack != "" {
			attrs = append(attrs, slog.String("stack", d.stack))
		}
	}
	s.log.LogAttrs(ctx, level, "authz decision", attrs...)
	if s.audit != nil {
		reason, st := mask(d.reason), cmp.Or(d.status, http.StatusOK)
		if err != nil {
			reason, st = "error: "+reason, http.StatusInternalServerError
		}
		var in []byte
		if d.in != nil {
			// Marshalled off the hot path's allocation budget only when an
			// audit log is kept; a failure leaves the input out, never
			// the decision.
			in, _ = json.Marshal(d.in.value())
		}
		s.audit.add(decisionlog.Decision{
			ID: d.id, RequestID: d.requestID, At: time.Now().UTC(), Subject: d.principal.Subject,
			Tenant: d.principal.Tenant, Kind: d.principal.Kind, Operation: d.opType, OperationName: d.opName,
			Allow: d.allow, Status: st, Reason: reason, PolicyRevision: d.revision, Latency: d.latency,
			Method: d.method, Path: d.path, TraceID: d.traceID, Input: in,
		})
	}
}
