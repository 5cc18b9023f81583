package cli

import (
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/fraise-dev/fraise/adapters/console"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// devConsoleUsers are the development login's demo users: one per role
// in the Acme tenant, whose decisions, rules and quotas the demo fills,
// and a Globex viewer to show that tenants do not see each other.
var devConsoleUsers = []console.DevUser{
	{Subject: "alice", Tenant: demo.TenantAcme, Roles: []string{"admin"}, Label: "Alice (Acme, admin)"},
	{Subject: "bob", Tenant: demo.TenantAcme, Roles: []string{"operator"}, Label: "Bob (Acme, operator)"},
	{Subject: "sam", Tenant: demo.TenantAcme, Roles: []string{"security"}, Label: "Sam (Acme, security)"},
	{Subject: "victor", Tenant: demo.TenantAcme, Roles: []string{"viewer"}, Label: "Victor (Acme, viewer)"},
	{Subject: "dave", Tenant: demo.TenantGlobex, Roles: []string{"viewer"}, Label: "Dave (Globex, viewer)"},
}

// consoleBreakers are the breakers of this process's observer workers,
// which the console shows per rule; set once the workers exist (after the
// console's handler), nil without observers.
type consoleBreakers struct {
	p atomic.Pointer[observe.Breakers]
}

// state is the state of the breaker guarding tenant's action a.
func (cb *consoleBreakers) state(tenant string, a core.Action) string {
	bs := cb.p.Load()
	if bs == nil {
		return "unknown"
	}
	st, _ := bs.ActionState(tenant, a)
	return st.String()
}

// newConsole is the console's handler for the server (nil when
// console.disabled), and what closes it. The breakers' states show once
// breakers is given the workers' (breakers.p.Store).
func newConsole(cfg config.Config, sec *secrets, log *slog.Logger, db *postgres.DB, engine *graphql.Engine, verifier *assertion.Verifier, breakers *consoleBreakers) (http.Handler, func(), error) {
	if cfg.Console.Disabled {
		return nil, func() {}, nil
	}
	o := console.Options{
		Verifier: verifier, Policies: policyFS(cfg.Authz.PolicyDir), Store: postgres.NewConsole(db), Cost: engine,
		TraceURL: cfg.Telemetry.TraceURL, MaxBodyBytes: int64(cfg.Server.MaxBodyBytes), Logger: log.With("component", "console"),
		RetryAfter: cfg.Admission.RetryAfter.Duration,
	}
	closer := func() {}
	if cfg.Observers.Enabled {
		// A small pool of its own: the console reads the queues and
		// replays dead letters now and then, beside the workers.
		q, err := newQueue(cfg, sec, redis.Options{PoolSize: 4})
		if err != nil {
			return nil, nil, err
		}
		o.Observers, o.Deliveries, closer = q, q, func() { q.Close() }
		o.Breaker = breakers.state
	}
	if cfg.Console.DevLogin {
		dir := cfg.Console.DevKeysDir
		o.DevLogin = &console.DevLogin{Users: devConsoleUsers, Mint: func(u console.DevUser, ttl time.Duration) (string, error) {
			return mintDevToken(dir, tokenRequest{Tenant: u.Tenant, Subject: u.Subject, Roles: u.Roles, TTL: ttl})
		}}
	}
	h, err := console.New(o)
	if err != nil {
		closer()
		return nil, nil, err
	}
	return h, closer, nil
}

// withConsole routes the console's paths to c and every other path to
// next (nil c: next alone).
func withConsole(next, c http.Handler) http.Handler {
	if c == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == console.Prefix || strings.HasPrefix(p, console.Prefix+"/") {
			c.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The response headers that name a request's trace, for the console's
// explorer to link each response to it.
const (
	headerTraceID  = "x-fraise-trace-id"
	headerTraceURL = "x-fraise-trace-url"
)

// withTraceHeaders names the request's trace in its response: the trace
// id of the span the tracing middleware started (so it must run inside
// it) and, with a trace URL template (telemetry.trace_url), the link. A
// request that is not traced gets neither.
func withTraceHeaders(next http.Handler, traceURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() && sc.IsSampled() {
			id := sc.TraceID().String()
			w.Header().Set(headerTraceID, id)
			if traceURL != "" {
				w.Header().Set(headerTraceURL, strings.ReplaceAll(traceURL, "{trace_id}", id))
			}
		}
		next.ServeHTTP(w, r)
	})
}
