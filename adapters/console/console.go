// Package console serves the Fraise console: the embedded web application
// (package web) and the JSON APIs its screens call, under /console/ of the
// core's HTTP listener, behind the ingress like every other request.
//
// extauthz decides who reaches which path (the session cookie, the CSRF
// double submit, the roles' console screens in the policy); the console
// trusts only the identity assertion extauthz signed for it (audience
// assertion.AudienceConsole), bound to the request's method, path and body,
// and spent once. Without one it serves the login page, the static assets
// and, in development, the dev login, and nothing else. Every response
// carries the strict Content-Security-Policy and the other security
// headers (docs/console.md).
//
// The console reads what the processes already produce (the decision log,
// persisted operations, observer rules and queues, quotas) through ports,
// and evaluates draft policies with the embedded OPA engine. It never
// writes the live policy: a draft leaves as a diff for review.
package console

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/fraise-dev/fraise/adapters/console/web"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/extauthz/decisionlog"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/httpstatus"
)

// Prefix is the path the console is served under.
const Prefix = "/console"

// CSP is the Content-Security-Policy of every console response: scripts,
// styles and connections from the console's own origin only, no inline
// script or style, no framing, no plugins, forms only to itself.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// The session cookies, as extauthz reads them (extauthz.SessionCookie,
// extauthz.CSRFCookie); the console sets and clears them.
const (
	SessionCookie = "fraise_session"
	CSRFCookie    = "fraise_csrf"
)

// securityHeaders are set on every console response.
var securityHeaders = map[string]string{
	"Content-Security-Policy":      CSP,
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Strict-Transport-Security":    "max-age=31536000",
	"Permissions-Policy":           "camera=(), microphone=(), geolocation=()",
}

// CostEstimator measures a GraphQL operation without running it;
// *graphql.Engine is one.
type CostEstimator interface {
	// Estimate measures query's operation opName with vars.
	Estimate(ctx context.Context, query, opName string, vars map[string]any) graphql.Estimate
}

// Observers is what the observer screen reads of the job queues and
// changes in them; *redis.Queue is one.
type Observers interface {
	core.DeadLetters
	// Backlog returns how many jobs wait or run for tenant.
	Backlog(ctx context.Context, tenant string) (int64, error)
	// OldestAge returns how long ago the oldest job waiting for tenant
	// was enqueued (0 when none waits).
	OldestAge(ctx context.Context, tenant string) (time.Duration, error)
}

// DevUser is a demo user the development login may sign in as.
type DevUser struct {
	Subject string   `json:"subject"`
	Tenant  string   `json:"tenant"`
	Roles   []string `json:"roles"`
	Label   string   `json:"label"`
}

// DevLogin is the development login: the users offered and how a token is
// minted for one (with the development issuer's key). Only `fraise dev`
// configures it.
type DevLogin struct {
	Users []DevUser
	// Mint returns a bearer token for u valid for ttl.
	Mint func(u DevUser, ttl time.Duration) (string, error)
}

// Store is what the console reads: the tenant's state (core) and its
// authorization decisions (extauthz's audit log).
type Store interface {
	core.ConsoleStore
	decisionlog.Reader
}

// Options configures a Handler. Verifier is required.
type Options struct {
	// Verifier checks the identity assertion; the core's, so that its
	// replay cache spends each assertion once across listeners.
	Verifier *assertion.Verifier
	// Assets is the web application; default web.Assets().
	Assets fs.FS
	// Policies is the live policy folder (the one extauthz serves), read
	// only; nil, or a folder that does not load, serves none: the
	// playground answers 503 and /api/me names no screen.
	Policies fs.FS
	// Store reads the tenant's decisions, persisted operations, rules and
	// quotas; nil answers those APIs with 503.
	Store Store
	// Cost measures GraphQL operations for the explorer; nil answers 503.
	Cost CostEstimator
	// Observers reads and replays the job queues; nil when observers are
	// off (the rules are still listed).
	Observers Observers
	// Deliveries, when set, holds each rule's recent delivery attempts
	// (the workers', core.DeliveryLog); nil lists only the dead letters.
	Deliveries core.DeliveryLog
	// Breaker, when set, names the state of the circuit breaker that
	// guards tenant's action in this process ("closed", "open",
	// "half-open"); nil shows every rule's breaker as "unknown".
	Breaker func(tenant string, a core.Action) string
	// DevLogin, when set, serves the development login.
	DevLogin *DevLogin
	// SessionTTL is how long a development session lasts; default 8 h.
	SessionTTL time.Duration
	// TraceURL is where a trace is shown, "{trace_id}" standing for its id
	// (telemetry.trace_url); "" links no trace.
	TraceURL string
	// MaxBodyBytes bounds a request's body; default 1 MiB.
	MaxBodyBytes int64
	// RetryAfter is the Retry-After of a 429 or 503 whose error names no
	// delay of its own (admission.retry_after); default 1s.
	RetryAfter time.Duration
	// Logger receives errors; default discards.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Handler serves the console. Mount it at Prefix (and Prefix+"/").
type Handler struct {
	o      Options
	assets fs.FS
	play   *playground
	mux    *http.ServeMux
}

// New returns the console's handler for o.
func New(o Options) (*Handler, error) {
	if o.Verifier == nil {
		return nil, errors.New("console: a Verifier is required")
	}
	if o.Assets == nil {
		o.Assets = web.Assets()
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{o: o, assets: o.Assets}
	if o.Policies != nil {
		// Not fatal: the core may run where the policy folder is not
		// mounted (it is extauthz's). The playground then answers 503 and
		// /api/me names no screen, which the log says once here.
		p, err := newPlayground(o.Policies)
		if err != nil {
			o.Logger.Warn("console: the policy folder does not load; the playground and /api/me's screens are off", "err", err)
		} else {
			h.play = p
		}
	}
	h.routes()
	return h, nil
}

// session is an authenticated console request.
type session struct {
	p    core.Principal
	body []byte
}

// apiFunc is an API handler for an authenticated request; it returns the
// value to answer with as JSON, or an error.
type apiFunc func(ctx context.Context, r *http.Request, s *session) (any, error)

func (h *Handler) routes() {
	m := http.NewServeMux()
	// Served without a session (extauthz lets these, and only these,
	// through without one).
	m.HandleFunc("GET "+Prefix+"/login", h.page("login.html"))
	m.HandleFunc("GET "+Prefix+"/login.html", h.page("login.html"))
	m.HandleFunc("GET "+Prefix+"/assets/", h.asset)
	m.HandleFunc("GET "+Prefix+"/api/dev/users", h.devUsers)
	m.HandleFunc("POST "+Prefix+"/api/dev/login", h.devLogin)
	// The application shell and the APIs need a session.
	m.HandleFunc("GET "+Prefix, h.authed(func(w http.ResponseWriter, r *http.Request, _ *session) {
		http.Redirect(w, r, Prefix+"/", http.StatusFound)
	}))
	m.HandleFunc("GET "+Prefix+"/{$}", h.authed(h.shell))
	m.HandleFunc("GET "+Prefix+"/index.html", h.authed(h.shell))
	api := func(pattern string, f apiFunc) { m.HandleFunc(pattern, h.authed(h.api(f))) }
	api("GET "+Prefix+"/api/me", h.me)
	m.HandleFunc("POST "+Prefix+"/api/logout", h.authed(h.logout))
	api("GET "+Prefix+"/api/persisted", h.persisted)
	api("POST "+Prefix+"/api/cost", h.cost)
	api("GET "+Prefix+"/api/policies", h.policies)
	api("POST "+Prefix+"/api/policies/check", h.policyCheck)
	api("POST "+Prefix+"/api/policies/evaluate", h.policyEvaluate)
	api("POST "+Prefix+"/api/policies/input", h.policyInput)
	api("POST "+Prefix+"/api/policies/test", h.policyTest)
	api("POST "+Prefix+"/api/policies/replay", h.policyReplay)
	api("POST "+Prefix+"/api/policies/export", h.policyExport)
	api("GET "+Prefix+"/api/decisions", h.decisions)
	api("GET "+Prefix+"/api/observers", h.observers)
	api("GET "+Prefix+"/api/observers/dlq", h.deadLetters)
	api("POST "+Prefix+"/api/observers/dlq/{id}/replay", h.replayDeadLetter)
	api("GET "+Prefix+"/api/quotas", h.quotas)
	h.mux = m
}

// ServeHTTP implements http.Handler: the security headers first, on every
// answer, then the route.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	for k, v := range securityHeaders {
		hd.Set(k, v)
	}
	if _, pattern := h.mux.Handler(r); pattern == "" {
		// Without the mux's own 404 and 405 pages, which are text and
		// would, for a 405, name the methods a path takes.
		writeError(w, http.StatusNotFound, core.CodeNotFound, "not found")
		return
	}
	h.mux.ServeHTTP(w, r)
}

// authed wraps f so that it runs only for a request with a valid console
// assertion, bound to this request and spent now.
func (h *Handler) authed(f func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
		if err != nil {
			writeError(w, http.StatusRequestEntityTooLarge, core.CodeTooLarge, "request body too large")
			return
		}
		a, err := h.o.Verifier.Verify(r.Header.Get(assertion.Header), assertion.AudienceConsole)
		if err == nil {
			bodyHash := ""
			if len(body) > 0 {
				bodyHash = core.DocumentHash(string(body))
			}
			err = a.Binding.Check(r.Method, r.URL.Path, "", bodyHash)
		}
		if err == nil {
			err = h.o.Verifier.Spend(a)
		}
		if err != nil {
			h.o.Logger.LogAttrs(r.Context(), slog.LevelWarn, "console: refused request without a valid assertion",
				slog.String("path", r.URL.Path), slog.String("err", err.Error()))
			writeError(w, http.StatusUnauthorized, core.CodeUnauthenticated, "authentication required")
			return
		}
		f(w, r, &session{p: a.Principal, body: body})
	}
}

// api adapts an apiFunc: its value as JSON, its error through the one
// table of codes to statuses.
func (h *Handler) api(f apiFunc) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		w.Header().Set("Cache-Control", "no-store")
		v, err := f(r.Context(), r, s)
		if err != nil {
			code := core.ErrorCode(err)
			if code == core.CodeInternal {
				h.o.Logger.LogAttrs(r.Context(), slog.LevelError, "console: internal error",
					slog.String("path", r.URL.Path), slog.String("err", err.Error()))
			}
			status := httpstatus.Of(code)
			if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", httpstatus.RetryAfter(err, h.o.RetryAfter))
			}
			writeError(w, status, code, core.ErrorMessage(err))
			return
		}
		if v == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"INTERNAL","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeError answers {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, status int, code core.Code, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, map[string]map[string]string{"error": {"code": string(code), "message": msg}})
}

// invalid is a CodeInvalid error with a message for the client.
func invalid(op, msg string) error { return core.Errorf(core.CodeInvalid, "%s", msg).WithOp(op) }

// unavailable says that what an API reads is not configured here.
func unavailable(op, what string) error {
	return core.Errorf(core.CodeUnavailable, "%s is not available on this server", what).WithOp(op)
}

// decode reads s's body as JSON into v, refusing unknown fields: a typo in
// a request is an error rather than a silent default.
func decode(op string, s *session, v any) error {
	if len(s.body) == 0 {
		return invalid(op, "a JSON body is required")
	}
	d := json.NewDecoder(strings.NewReader(string(s.body)))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalid(op, "invalid JSON body: "+err.Error())
	}
	return nil
}

// page serves a page of the application: the login page (public) or the
// shell.
func (h *Handler) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { h.serveFile(w, r, name, "no-store") }
}

func (h *Handler) shell(w http.ResponseWriter, r *http.Request, _ *session) {
	h.serveFile(w, r, "index.html", "no-store")
}

// asset serves a file under assets/. Names are checked by fs.ValidPath:
// no "..", no absolute paths, so nothing outside assets/ is reachable.
func (h *Handler) asset(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Prefix+"/")
	if !fs.ValidPath(name) || !strings.HasPrefix(name, "assets/") {
		writeError(w, http.StatusNotFound, core.CodeNotFound, "not found")
		return
	}
	h.serveFile(w, r, name, "no-cache")
}

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name, cache string) {
	b, err := fs.ReadFile(h.assets, name)
	if err != nil {
		writeError(w, http.StatusNotFound, core.CodeNotFound, "not found")
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", cache)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// devUsers lists the development login's users; 404 without it.
func (h *Handler) devUsers(w http.ResponseWriter, r *http.Request) {
	if h.o.DevLogin == nil {
		writeError(w, http.StatusNotFound, core.CodeNotFound, "not found")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, h.o.DevLogin.Users)
}

// devLogin signs in as a development user: a token minted for them in the
// session cookie, and a fresh CSRF token beside it.
func (h *Handler) devLogin(w http.ResponseWriter, r *http.Request) {
	if h.o.DevLogin == nil {
		writeError(w, http.StatusNotFound, core.CodeNotFound, "not found")
		return
	}
	// JSON only: a cross-site form can post urlencoded or text bodies
	// without a preflight, and so could sign a victim in as someone else.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusBadRequest, core.CodeInvalid, "want Content-Type: application/json")
		return
	}
	var req struct {
		Subject string `json:"subject"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, core.CodeInvalid, "want {\"subject\": \"...\"}")
		return
	}
	for _, u := range h.o.DevLogin.Users {
		if u.Subject != req.Subject {
			continue
		}
		tok, err := h.o.DevLogin.Mint(u, h.o.SessionTTL)
		if err != nil {
			h.o.Logger.LogAttrs(r.Context(), slog.LevelError, "console: dev login: mint", slog.String("err", err.Error()))
			writeError(w, http.StatusInternalServerError, core.CodeInternal, "internal error")
			return
		}
		h.setSession(w, tok)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeError(w, http.StatusNotFound, core.CodeNotFound, "no such development user")
}

// setSession sets the session and CSRF cookies. The session is HttpOnly
// (no script reads the token); the CSRF token is readable by the
// console's own pages, which echo it in X-CSRF-Token. Both are Secure and
// SameSite=Strict: a cross-site request carries neither.
func (h *Handler) setSession(w http.ResponseWriter, token string) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	maxAge := int(h.o.SessionTTL.Seconds())
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: token, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: hex.EncodeToString(b[:]), Path: "/", MaxAge: maxAge,
		Secure: true, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
}

// logout clears both cookies. The token itself stays valid until it
// expires: the browser forgets it, and development tokens are short-lived.
func (h *Handler) logout(w http.ResponseWriter, _ *http.Request, _ *session) {
	for _, c := range []*http.Cookie{
		{Name: SessionCookie, Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode},
		{Name: CSRFCookie, Path: "/", MaxAge: -1, Secure: true, SameSite: http.SameSiteStrictMode},
	} {
		http.SetCookie(w, c)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// me answers who the session is and which screens its roles may see.
func (h *Handler) me(ctx context.Context, _ *http.Request, s *session) (any, error) {
	screens := []string{}
	if h.play != nil {
		var err error
		if screens, err = h.play.screens(ctx, s.p); err != nil {
			return nil, err
		}
	}
	roles := s.p.Roles
	if roles == nil {
		roles = []string{}
	}
	return map[string]any{"subject": s.p.Subject, "tenant": s.p.Tenant, "roles": roles, "screens": screens}, nil
}
