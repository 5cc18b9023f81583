// Package extauthz is Fraise's Envoy external-authorization service. For
// every request Envoy asks Check: extauthz authenticates the bearer JWT,
// reads the GraphQL operation (or the Arrow Flight call) from the request,
// evaluates the security team's Rego policy (package policies, or a
// configured folder) with the embedded OPA engine, and answers.
//
// On allow it sends the identity headers upstream, overwriting whatever the
// client sent, and removes the Authorization and Cookie headers so the raw
// token never reaches the core; the core trusts only the signed identity assertion
// among them. On deny it answers the client itself with a GraphQL-shaped
// error that says no more than "authentication required" or "forbidden".
// The precise reason goes to the decision log, one line per Check.
//
// The contract follows opa-envoy-plugin: an unreadable request is denied
// with 400, a policy denial carries the decision's status (403 by default),
// and a failure to evaluate is a gRPC error so that Envoy fails closed.
package extauthz

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql/request"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
	"github.com/fraise-dev/fraise/extauthz/operation"
	"github.com/fraise-dev/fraise/extauthz/policy"
	"github.com/fraise-dev/fraise/extauthz/token"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/httpstatus"
	"github.com/fraise-dev/fraise/policies"
)

// Issuer is one trusted JWT issuer; see token.Issuer for its fields.
type Issuer = token.Issuer

// PersistedOperations resolves persisted-operation hashes, so that a
// request that sends only a hash is still decided on its operation.
type PersistedOperations interface {
	// Lookup returns the document whose SHA-256 is hash (lower-case hex) for
	// tenant, and false when there is none. An error means the store could
	// not be asked; extauthz then fails closed.
	Lookup(ctx context.Context, tenant, hash string) (document string, ok bool, err error)
}

// Options configures a Server. Zero values take the defaults noted.
type Options struct {
	// Issuers are the trusted JWT issuers; at least one is required.
	Issuers []Issuer
	// Leeway tolerates clock skew in exp, nbf and iat; default 30 s.
	Leeway time.Duration
	// PolicyFS is the policy folder; default policies.FS (the embedded one).
	PolicyFS fs.FS
	// Signer signs the identity assertion; required.
	Signer *assertion.Signer
	// Logger receives the decision log; default discards.
	Logger *slog.Logger
	// DryRun logs the real decision and allows every request anyway, for
	// trying a new policy on live traffic. Evaluation failures still fail
	// closed.
	DryRun bool
	// DefaultTier is the tier of principals whose token names none;
	// default "default".
	DefaultTier string
	// GraphQLPath is the path GraphQL is served on; default "/graphql".
	GraphQLPath string
	// Persisted resolves persisted-operation hashes; nil means requests
	// that send only a hash are refused with PERSISTED_QUERY_NOT_FOUND, so
	// clients send the document.
	Persisted PersistedOperations
	// Now is the clock tokens are checked against; default time.Now.
	Now func() time.Time
	// HTTPClient fetches JWKS URLs; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// KeyRefresh is how often issuers' JWKS URLs are refetched in the
	// background; default 15 minutes. An unknown key id refetches sooner
	// (at most every 30 s per issuer).
	KeyRefresh time.Duration
	// DecisionCacheTTL is how long a decision is reused for an identical
	// request (same credential, method, path, host and operation) when the
	// policy reads nothing else and calls nothing nondeterministic; default
	// DefaultDecisionCacheTTL, negative disables.
	DecisionCacheTTL time.Duration
	// APIKeys authenticates "Bearer frs_..." API keys; nil refuses them.
	APIKeys APIKeyVerifier
	// Decisions, when set, receives every decision for the audit log,
	// in batches, off the request path.
	Decisions decisionlog.Store
	// RetryAfter is the Retry-After of every 429 and 503 denial
	// (admission.retry_after, as the core's; default 1 s).
	RetryAfter time.Duration
	// Observe, when set, receives every Check's outcome, for metrics; it
	// runs on the request path and must not block.
	Observe func(Outcome)
	// ConsolePath is the path prefix of the console (DefaultConsolePath
	// when empty): below it, only the login page and its assets are served
	// without a session, and a page load without one is redirected there.
	ConsolePath string
	// ConsoleDevLogin serves the console's development login APIs
	// (/api/dev/users, /api/dev/login) without a session; only `fraise
	// dev` sets it.
	ConsoleDevLogin bool
	// ObserveReload, when set, learns of every attempt to load a new
	// policy revision: err is nil when it was loaded, and otherwise why it
	// was not (the previous policy keeps serving). Reloads of the revision
	// being served are not attempts.
	ObserveReload func(revision string, err error)
}

// Outcome is what one Check decided, as Options.Observe receives it: the
// dimensions an operator counts and alerts on, and nothing that names a
// caller (subjects and tenants are unbounded; the decision log has them).
type Outcome struct {
	// Result is OutcomeAllow, OutcomeDeny, or OutcomeError when the check
	// could not be decided and Envoy fails closed.
	Result string
	// Status is the HTTP status the client is answered with: 200 when
	// allowed, the denial's status, and 500 for an error.
	Status int
	// Code is the core code of a denial or an error ("" when allowed),
	// which fraise_errors_total counts.
	Code core.Code
	// Kind is how the principal authenticated; empty when it did not.
	Kind core.PrincipalKind
	// Op is the rate-limit class (read, write, flight); empty when the
	// request was refused before it was classified.
	Op string
	// Cached says the policy's decision came from the decision cache.
	Cached bool
	// DryRun says a denial was logged and the request allowed anyway.
	DryRun bool
	// Latency is the time Check took.
	Latency time.Duration
}

// The results an Outcome reports.
const (
	OutcomeAllow = "allow"
	OutcomeDeny  = "deny"
	OutcomeError = "error"
)

// APIKeyVerifier authenticates API keys; *apikey.Authenticator is one.
type APIKeyVerifier interface {
	// Verify returns the principal raw grants; ctx names the check's
	// client (apikey.WithClient), by which lookups are limited. A refused
	// key is an error with core.CodeUnauthenticated, one not checked because of too many
	// lookups has core.CodeRateLimited (429); any other error means the
	// key could not be checked, and extauthz fails closed.
	Verify(ctx context.Context, raw string) (core.Principal, error)
}

// Server answers Envoy's Authorization/Check. It is safe for concurrent
// use; the policy it evaluates can be replaced while it serves.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	o   Options
	log *slog.Logger
	// retryAfter is Options.RetryAfter in Retry-After's whole seconds.
	retryAfter string
	tokens     *token.Verifier
	policy     atomic.Pointer[policy.Policy]
	health     *health.Server

	reloadMu sync.Mutex // serialises ReloadPolicy
	audit    *auditor   // nil without Options.Decisions

	// decisions memoises the current policy's decisions; nil when the
	// policy is not cacheable or caching is off.
	decisions atomic.Pointer[decisionCache]

	stopRefresh context.CancelFunc
	refreshDone chan struct{}
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server for o. It loads the issuers' keys and the policy,
// and refuses to start on a policy that does not compile strictly or whose
// own tests fail.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Signer == nil {
		return nil, errors.New("extauthz: a Signer is required")
	}
	if o.PolicyFS == nil {
		o.PolicyFS = policies.FS
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DefaultTier == "" {
		o.DefaultTier = "default"
	}
	if o.Leeway == 0 {
		o.Leeway = token.DefaultLeeway
	}
	if o.GraphQLPath == "" {
		o.GraphQLPath = "/graphql"
	}
	o.ConsolePath = strings.TrimSuffix(cmp.Or(o.ConsolePath, DefaultConsolePath), "/")
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeyRefresh == 0 {
		o.KeyRefresh = 15 * time.Minute
	}
	if o.DecisionCacheTTL == 0 {
		o.DecisionCacheTTL = DefaultDecisionCacheTTL
	}
	tokens, err := token.NewVerifier(ctx, o.Issuers, token.Options{
		Leeway: o.Leeway, DefaultTier: o.DefaultTier, Now: o.Now, HTTPClient: o.HTTPClient, Logger: o.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	s := &Server{o: o, log: o.Logger, tokens: tokens, health: health.NewServer(),
		retryAfter: httpstatus.RetryAfter(nil, o.RetryAfter)}
	if o.Decisions != nil {
		s.audit = newAuditor(o.Decisions, o.Logger)
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopRefresh, s.refreshDone = cancel, make(chan struct{})
	go func() {
		defer close(s.refreshDone)
		tokens.RefreshEvery(rctx, o.KeyRefresh, o.Logger)
	}()
	if err := s.ReloadPolicy(ctx, o.PolicyFS); err != nil {
		s.Close()
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// Register registers the Authorization service and the gRPC health service
// on g.
func (s *Server) Register(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
}

// Drain reports NOT_SERVING on the gRPC health service, so that Envoy stops
// sending checks before the server stops.
func (s *Server) Drain() { s.health.Shutdown() }

// Close writes the decisions still queued for the audit log. Call it after
// the gRPC server has stopped.
func (s *Server) Close() {
	s.stopRefresh()
	<-s.refreshDone
	if s.audit != nil {
		s.audit.close()
	}
}

// PolicyRevision returns the revision of the policy being served.
func (s *Server) PolicyRevision() string { return s.policy.Load().Revision() }

// ReloadPolicy loads the policy folder fsys, runs its Rego tests, compiles
// it strictly and, only if all of that succeeds, swaps it in atomically.
// Otherwise the policy being served keeps serving and the error says why.
func (s *Server) ReloadPolicy(ctx context.Context, fsys fs.FS) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	src, err := policy.Load(fsys)
	if err != nil {
		return s.reloaded("", err)
	}
	if cur := s.policy.Load(); cur != nil && cur.Revision() == src.Revision {
		return nil
	}
	rep, err := src.Test(ctx)
	if err != nil {
		return s.reloaded(src.Revision, fmt.Errorf("policy %s not loaded: %w", src.Revision, err))
	}
	p, err := policy.Prepare(ctx, src)
	if err != nil {
		return s.reloaded(src.Revision, fmt.Errorf("policy %s not loaded: %w", src.Revision, err))
	}
	var cache *decisionCache
	cacheable, why := p.Cacheable()
	if cacheable && s.o.DecisionCacheTTL > 0 {
		cache = newDecisionCache(p, s.o.DecisionCacheTTL)
	}
	// The cache is tied to p: a Check that loaded the previous policy will
	// not find it, and one that loaded p before the cache was stored
	// evaluates without one.
	prev := s.policy.Swap(p)
	s.decisions.Store(cache)
	attrs := []slog.Attr{slog.String("policy_revision", p.Revision()), slog.Int("tests_passed", rep.Passed),
		slog.Bool("decisions_cached", cache != nil)}
	if !cacheable {
		attrs = append(attrs, slog.String("not_cached_because", why))
	}
	if prev != nil {
		attrs = append(attrs, slog.String("previous_revision", prev.Revision()))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "policy loaded", attrs...)
	return s.reloaded(p.Revision(), nil)
}

// reloaded reports a reload attempt's result to Options.ObserveReload and
// returns err.
func (s *Server) reloaded(revision string, err error) error {
	if s.o.ObserveReload != nil {
		s.o.ObserveReload(revision, err)
	}
	return err
}

// Check implements authv3.AuthorizationServer.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	pol := s.policy.Load()
	d := &decision{id: newDecisionID(), revision: pol.Revision(), retryAfter: s.retryAfter}
	resp, err := s.checkGuarded(withSource(ctx, req.GetAttributes().GetSource()), pol, req.GetAttributes().GetRequest().GetHttp(), d)
	if err == nil && s.o.DryRun && !d.allow {
		resp, err = s.allow(d)
		d.dryRun = true
	}
	d.latency = time.Since(start)
	s.logDecision(context.WithoutCancel(ctx), d, err)
	if s.o.Observe != nil {
		s.o.Observe(outcomeOf(d, err))
	}
	return resp, err
}

// checkGuarded is check, with a panic turned into a failure to decide
// (Envoy fails closed) that is logged and counted like any other: gRPC
// does not recover a handler's panic, so one bad request would end the
// process and every Check in flight with it.
func (s *Server) checkGuarded(ctx context.Context, pol *policy.Policy, h *authv3.AttributeContext_HttpRequest, d *decision) (resp *authv3.CheckResponse, err error) {
	defer func() {
		if v := recover(); v != nil {
			// The stack goes to the decision log line alone; the audit
			// trail gets the panic's value, as the reason.
			d.stack = string(debug.Stack())
			resp, err = nil, d.fail(core.CodeInternal, fmt.Sprintf("panic: %v", v), "extauthz: internal error")
		}
	}()
	return s.check(ctx, pol, h, d)
}

// outcomeOf is the Outcome of decision d, which ended in err.
func outcomeOf(d *decision, err error) Outcome {
	o := Outcome{Result: OutcomeAllow, Status: http.StatusOK, Op: d.op, Cached: d.cached, DryRun: d.dryRun, Latency: d.latency}
	if d.authenticated {
		o.Kind = d.principal.Kind
	}
	switch {
	case err != nil:
		o.Result, o.Status, o.Code = OutcomeError, http.StatusInternalServerError, cmp.Or(d.code, core.CodeInternal)
	case !d.allow && !d.dryRun:
		o.Result, o.Status, o.Code = OutcomeDeny, d.status, d.code
	}
	return o
}

// check decides on one request, recording what it learns in d.
func (s *Server) check(ctx context.Context, pol *policy.Policy, h *authv3.AttributeContext_HttpRequest, d *decision) (*authv3.CheckResponse, error) {
	if h == nil {
		return nil, d.fail(core.CodeInvalid, "check request has no HTTP attributes", "extauthz: check request has no attributes.request.http")
	}
	headers := headersOf(h)
	// Envoy's attributes id is its stream id, meaningful only inside that
	// Envoy; x-request-id is the id it generates (or keeps) and forwards to
	// the core, so logs and the assertion's jti agree across processes.
	d.requestID = headers["x-request-id"]
	if d.requestID == "" {
		d.requestID = h.GetId()
	}
	d.method = h.GetMethod()
	// Envoy hands its trace context to the Check call as gRPC metadata
	// (the span the server's instrumentation continues), not as a header
	// of the request being checked: a client's own traceparent is the
	// trace only when the Check itself is not traced.
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		d.traceID = sc.TraceID().String()
	} else {
		d.traceID = traceID(headers["traceparent"])
	}
	path, rawQuery, _ := strings.Cut(h.GetPath(), "?")
	d.path = path

	var con *consoleInput
	if s.isConsole(path) {
		con = &consoleInput{path: strings.TrimPrefix(path, s.o.ConsolePath)}
		d.console = true
		if s.consolePublic(d.method, con.path) {
			// The login page and what it needs: served to anyone, with no
			// identity (the console serves nothing else without one).
			d.reason = "console page served without a session: " + con.path
			d.allow = true
			return okResponse(d, nil), nil
		}
	}
	authz, present := headers["authorization"]
	var jar map[string][]string
	if !present {
		// A browser's session: the cookie stands for the header, and only
		// where the header is absent, so an API client's explicit token
		// always wins over a cookie it may also carry.
		jar = cookies(headers["cookie"], SessionCookie, CSRFCookie)
		switch sess := jar[SessionCookie]; len(sess) {
		case 0:
		case 1:
			authz, present, d.session = "Bearer "+sess[0], true, "cookie"
		default:
			d.tokenPresent = true
			return s.unauthenticated(d, con, "several session cookies"), nil
		}
	} else {
		d.session = "header"
	}
	if con != nil {
		con.session = d.session
	}
	if !present {
		return s.unauthenticated(d, con, "no authorization header"), nil
	}
	d.tokenPresent = true
	raw, ok := bearer(authz)
	if !ok {
		return s.unauthenticated(d, con, "authorization header is not a Bearer token"), nil
	}
	var id token.Identity
	if apikey.Looks(raw) {
		if s.o.APIKeys == nil {
			return s.unauthenticated(d, con, "API key presented but API keys are not enabled"), nil
		}
		p, err := s.o.APIKeys.Verify(apikey.WithClient(ctx, clientOf(source(ctx))), raw)
		if err != nil {
			if core.ErrorCode(err) == core.CodeRateLimited {
				// The refusal's own delay when it names one, else the
				// configured one.
				d.retryAfter = httpstatus.RetryAfter(err, s.o.RetryAfter)
				return d.deny(core.CodeRateLimited, err.Error(), ""), nil
			}
			if core.ErrorCode(err) != core.CodeUnauthenticated {
				return nil, d.fail(core.CodeUnavailable, "API key store: "+err.Error(), "extauthz: API key store unavailable")
			}
			return s.unauthenticated(d, con, err.Error()), nil
		}
		id = token.Identity{Principal: p, Issuer: "apikey"}
	} else {
		var err error
		if id, err = s.tokens.Verify(ctx, raw); err != nil {
			if errors.Is(err, token.ErrKeysUnavailable) {
				// No verdict: the caller retries, keeping its token.
				return nil, d.fail(core.CodeUnavailable, err.Error(), "extauthz: identity provider's keys unavailable")
			}
			return s.unauthenticated(d, con, err.Error()), nil
		}
	}
	d.principal, d.issuer, d.authenticated = id.Principal, id.Issuer, true
	if d.session == "cookie" && !safeMethod(d.method) && !csrfOK(jar, headers) {
		// A write the browser's cookie authenticated, without the token
		// only a page of this origin can read: a cross-site request.
		return d.csrf(), nil
	}

	in := input{method: d.method, path: path, host: h.GetHost(), headers: headers, identity: id, console: con}
	body := h.GetRawBody()
	if len(body) == 0 && h.GetBody() != "" {
		body = []byte(h.GetBody())
	}
	// The assertion names the request and what the policy decides on, so
	// that the core runs this request and no other with it.
	d.binding = assertion.Binding{Audience: assertion.AudienceGraphQL, Method: d.method, Path: path}
	switch {
	case path == s.o.GraphQLPath:
		gql, opHash, resp, err := s.graphql(ctx, d, rawQuery, body)
		if resp != nil || err != nil {
			return resp, err
		}
		in.graphql = &gql
		d.op = opClass(gql.Operation)
		d.opName, d.rootFields, d.opType = gql.Name, gql.RootFields, gql.Operation
		d.binding.Operation = opHash
	default:
		if f, ok := operation.ParseFlight(path, body); ok {
			in.flight = &f
			d.op, d.opType, d.opName = "flight", "flight", f.Method
			d.dataset = f.Dataset
			d.binding.Audience = assertion.AudienceFlight
			d.binding.Body = operation.FlightBodyHash(f.Method, body)
		} else {
			d.op = methodClass(d.method)
			if con != nil {
				d.binding.Audience = assertion.AudienceConsole
			}
			if len(body) > 0 {
				d.binding.Body = core.DocumentHash(string(body))
			}
		}
	}

	d.in = &in
	var dec policy.Decision
	var key [sha256.Size]byte
	cache := s.decisions.Load()
	if cache != nil && cache.pol != pol {
		cache = nil // a reload is under way; this Check has the other policy
	}
	if cache != nil {
		key = decisionKey(raw, &in)
		dec, d.cached = cache.get(key, s.o.Now())
	}
	if !d.cached {
		var err error
		if dec, err = pol.Eval(ctx, in.value()); err != nil {
			return nil, d.fail(core.CodeInternal, err.Error(), "extauthz: policy evaluation failed")
		}
		if cache != nil {
			cache.put(key, dec, s.o.Now())
		}
	}
	d.reason = dec.Reason
	if !dec.Allow {
		st := dec.Status
		if st == 0 {
			st = http.StatusForbidden
		}
		return d.denyStatus(st, dec.Reason), nil
	}
	if d.principal.Tenant == "" {
		// The core cannot scope a request to no tenant; a policy that
		// allows one anyway is overruled rather than trusted.
		return d.deny(core.CodeForbidden, "policy allowed a principal without a tenant: "+dec.Reason, ""), nil
	}
	extra, err := policyHeaders(dec.Headers)
	if err != nil {
		return nil, d.fail(core.CodeInternal, err.Error(), "extauthz: policy returned invalid headers")
	}
	d.extra = extra
	d.allow = true
	return s.allow(d)
}

// graphql reads the GraphQL operation of the request, and names it as the
// assertion does: request.OperationHash of the document it decided on
// (the persisted hash resolved) and the operation name. A request it
// cannot read is denied with 400: the core would refuse it too, and the
// policy cannot decide without the operation.
func (s *Server) graphql(ctx context.Context, d *decision, rawQuery string, body []byte) (operation.GraphQL, string, *authv3.CheckResponse, error) {
	r, err := operation.ParseRequest(d.method, rawQuery, body)
	if err != nil {
		return operation.GraphQL{}, "", d.deny(core.CodeInvalid, err.Error(), clientMessage(err)), nil
	}
	doc := r.Query
	if doc == "" {
		// Only a persisted-operation hash was sent.
		var found bool
		if s.o.Persisted != nil {
			doc, found, err = s.o.Persisted.Lookup(ctx, d.principal.Tenant, r.PersistedHash)
			if err != nil {
				return operation.GraphQL{}, "", nil, d.fail(core.CodeUnavailable, "persisted operations: "+err.Error(), "extauthz: persisted operations unavailable")
			}
		}
		if !found {
			return operation.GraphQL{}, "", d.denyCode(core.CodeInvalid, "persisted operation "+r.PersistedHash+" not found",
				"PersistedQueryNotFound", codePersistedQueryNotFound), nil
		}
	}
	gql, err := operation.Parse(doc, r.OperationName)
	if err != nil {
		return operation.GraphQL{}, "", d.deny(core.CodeInvalid, err.Error(), clientMessage(err)), nil
	}
	return gql, request.OperationHash(core.DocumentHash(doc), r.OperationName), nil, nil
}

// clientMessage is the part of a parse error a client may see: its syntax
// problem, which it sent itself, without Go's wrapping.
func clientMessage(err error) string {
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	return msg
}

// allow answers OK with the identity headers for d's principal, or, for a
// dry-run request that was never authenticated, with none.
func (s *Server) allow(d *decision) (*authv3.CheckResponse, error) {
	if !d.authenticated {
		return okResponse(d, nil), nil
	}
	if d.op == "" {
		d.op = methodClass(d.method)
	}
	rid := d.requestID
	if rid == "" {
		rid = d.id
	}
	a, err := s.o.Signer.Sign(d.principal, rid, d.binding)
	if err != nil {
		return nil, d.fail(core.CodeInternal, err.Error(), "extauthz: could not sign the identity assertion")
	}
	return okResponse(d, identityHeaders(d, a)), nil
}

// bearer returns the token of an "Authorization: Bearer <token>" value.
func bearer(v string) (string, bool) {
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// opClass is the rate limiter's operation class of a GraphQL operation:
// subscriptions read.
func opClass(op string) string {
	if op == "mutation" {
		return "write"
	}
	return "read"
}

func methodClass(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return "read"
	}
	return "write"
}

// headersOf returns the request headers, from the headers map or, when
// Envoy sends raw headers, the header map, repeated headers joined with ","
// as Envoy joins them.
func headersOf(h *authv3.AttributeContext_HttpRequest) map[string]string {
	if m := h.GetHeaders(); len(m) > 0 {
		return m
	}
	out := make(map[string]string)
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if v == "" && len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		if prev, ok := out[k]; ok {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}

func newDecisionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
