package cli

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/lifecycle"
)

func runRateLimit(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := serverFlags("ratelimit", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Read before loading: a change made while the service starts must
	// still count as a change.
	loaded := readConfigFile(*cfgPath)
	cfg, log, err := loadServerConfig(*cfgPath, env, config.CommandRateLimit)
	if err != nil {
		return err
	}
	g := &lifecycle.Group{}
	// envoyproxy/ratelimit's server traces through OpenTelemetry's globals.
	g.Add("tracing", &tracing{c: cfg.Telemetry, service: serviceRateLimit, global: true})
	reg := newProcessRegistry()
	if adminLn := optionalListener("ratelimit.admin_addr", cfg.RateLimit.AdminAddr); adminLn != nil {
		g.Add("ratelimit.admin_addr", adminServer("ratelimit", adminLn, reg, log))
	}
	rl := &rateLimiter{cfg: cfg, env: env, log: log, reg: reg}
	g.Add("ratelimit", rl)
	if *cfgPath != "" {
		g.Add("config watch", runner(func(ctx context.Context) {
			watchConfig(ctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, reloadRateLimits(rl.svc, *cfgPath, log))
		}))
	}
	return lifecycle.Run(ctx, g)
}

// reloadRateLimits returns what a change of the file at path does to svc:
// tier and action limits changed in fraise.toml reach the running service,
// which reloads the regenerated file keeping its counters.
func reloadRateLimits(svc *ratelimit.Service, path string, log *slog.Logger) func(config.Config) {
	return func(c config.Config) {
		if err := svc.Reload(ratelimit.Options{Tiers: rateLimitTiers(c.RateLimit), Actions: rateLimitActions(c.RateLimit)}); err != nil {
			log.Error("rate limits not reloaded; the previous ones stay", "err", err)
			return
		}
		log.Info("rate limits reloaded", "path", path)
	}
}

// startRateLimit starts envoyproxy/ratelimit with limits generated from the
// configuration, its gRPC port on ratelimit.grpc_addr, until ctx ends or
// the service is closed (tests).
func startRateLimit(ctx context.Context, cfg config.Config, env Env, log *slog.Logger) (*ratelimit.Service, error) {
	rl := &rateLimiter{cfg: cfg, env: env, log: log}
	if err := rl.Open(ctx); err != nil {
		return nil, errors.Join(err, rl.Close())
	}
	go rl.Run(ctx)
	return rl.svc, nil
}

// rateLimiter is envoyproxy/ratelimit as a component. Open starts it,
// serving its gRPC port on l (bound already, `fraise dev` binds every port
// first) or, when l is nil, on ratelimit.grpc_addr. The port serves mutual
// TLS only: the server certificate tls.server_cert, client certificates
// from tls.ca naming tls.gateway_san (Envoy) or tls.core_client_san (the
// observers' workers).
//
// Run re-reads its certificates, its Redis's TLS files and password (a
// file:// reference) every secrets.reload_interval: a renewed server
// certificate is served from the next handshake, and a changed Redis
// password or certificate moves the limiter to new Redis connections made
// with it (ratelimit.Service.ReconnectRedis).
//
// Close drains it: health NOT_SERVING, calls under way finished, then its
// port and Redis connections closed. The limiter drains in Close, not at
// the end of Run, because what runs beside it depends on it (the
// observers ask it, Envoy forwards to it): a group closes it after their
// Runs have returned.
//
// reg, when set, receives the service's own stats, its certificates'
// expiry and its secrets' reloads.
type rateLimiter struct {
	cfg config.Config
	env Env
	log *slog.Logger
	l   *lifecycle.Listener
	reg prometheus.Registerer

	svc     *ratelimit.Service
	sec     *secrets
	stopped atomic.Pointer[func() time.Duration] // set by Run, read by Close
}

// Open starts the service.
func (r *rateLimiter) Open(ctx context.Context) error {
	cfg := r.cfg
	r.log = r.log.With("component", "ratelimit")
	r.sec = newSecrets(r.env.Getenv, r.log)
	if r.reg != nil {
		if err := r.reg.Register(r.sec.w); err != nil {
			return err
		}
	}
	tc, err := r.sec.serverTLS(cfg.TLS, false, cfg.TLS.GatewaySAN, cfg.TLS.CoreClientSAN)
	if err != nil {
		return err
	}
	redisAddr, useTLS := cfg.Redis.Endpoint()
	redisTLS, err := r.sec.dataTLS("redis.tls", cfg.Redis.TLS, useTLS)
	if err != nil {
		return err
	}
	pw, err := r.sec.text("redis.password", cfg.Redis.Password)
	if err != nil {
		return err
	}
	o := ratelimit.Options{
		GRPCAddr: cfg.RateLimit.GRPCAddr, TLS: tc,
		HTTPAddr: cfg.RateLimit.HTTPAddr, DebugAddr: cfg.RateLimit.DebugAddr,
		RedisAddr: redisAddr, RedisTLS: redisTLS, RedisPasswordSource: pw.Get, Domain: cfg.RateLimit.Domain,
		Tiers: rateLimitTiers(cfg.RateLimit), Actions: rateLimitActions(cfg.RateLimit),
		LocalCacheBytes: cfg.RateLimit.LocalCacheBytes,
		Logger:          r.log,
		Metrics:         r.reg,
	}
	if r.l != nil {
		if err := r.l.Open(ctx); err != nil {
			return err
		}
		// The service closes it, through the component: once.
		o.Listener = r.l.Net()
	}
	if r.svc, err = ratelimit.Start(ctx, o); err != nil {
		return err
	}
	r.sec.onChange(func() {
		if err := r.svc.ReconnectRedis(); err != nil {
			r.log.Warn("redis credentials changed but not accepted yet; the open connections keep serving and the move is retried every second", "err", err)
			return
		}
		r.log.Info("moved to new redis connections with the changed credentials")
	}, "redis.")
	return nil
}

// Run re-reads the secrets until ctx ends.
func (r *rateLimiter) Run(ctx context.Context) error {
	took := stopClock(ctx)
	r.stopped.Store(&took)
	r.log.Info("listening", "component", "ratelimit", "serves", "grpc", "addr", r.svc.GRPCAddr())
	r.sec.w.Run(ctx, r.cfg.Secrets.ReloadInterval.Duration)
	return nil
}

// Close drains and stops the service.
func (r *rateLimiter) Close() error {
	if r.svc == nil {
		if r.l != nil {
			return r.l.Close()
		}
		return nil
	}
	err := r.svc.Close()
	if took := r.stopped.Load(); took != nil {
		logStopped(r.log, "ratelimit", []string{"rate-limit checks"}, (*took)(), err)
	}
	return err
}

// rateLimitClient is how the observers' workers reach the rate limiter:
// mutual TLS with the core's client certificate, verifying the limiter's
// against tls.ca for tls.server_name, both re-read through sec.
func rateLimitClient(cfg config.Config, sec *secrets, log *slog.Logger) (ratelimit.ActionLimiterOptions, error) {
	tc, err := sec.rateLimitClientTLS(cfg.TLS)
	if err != nil {
		return ratelimit.ActionLimiterOptions{}, err
	}
	return ratelimit.ActionLimiterOptions{
		Addr: cfg.RateLimit.GRPCAddr, Domain: cfg.RateLimit.Domain, Timeout: cfg.RateLimit.Timeout.Duration,
		TLS: tc, Logger: log.With("component", "ratelimit-client"),
	}, nil
}

func rateLimit(l config.Limit) ratelimit.Limit {
	return ratelimit.Limit{Requests: l.Requests, Unit: l.Unit, Shadow: l.Shadow}
}

// rateLimitTiers hands the adapter the tiers as plain values.
func rateLimitTiers(c config.RateLimit) map[string]ratelimit.Tier {
	tiers := make(map[string]ratelimit.Tier, len(c.Tiers))
	for name, t := range c.Tiers {
		tiers[name] = ratelimit.Tier{
			Tenant: rateLimit(t.Tenant), Read: rateLimit(t.Read), Write: rateLimit(t.Write),
			Flight: rateLimit(t.Flight), Subject: rateLimit(t.Subject),
		}
	}
	return tiers
}

func rateLimitActions(c config.RateLimit) map[string]ratelimit.Limit {
	actions := make(map[string]ratelimit.Limit, len(c.Actions))
	for name, l := range c.Actions {
		actions[name] = rateLimit(l)
	}
	return actions
}

// admitters builds the process's admission controllers from the
// [admission] section, one per class (graphql, flight, observers), sharing
// one memory guard, their decisions counted in reg by class. Call it once
// per process (it registers the admission metrics): the GraphQL handler
// takes GraphQL (admitWith), the Flight service Flight and the observer
// workers Observers, each as a core.Admitter.
func admitters(cfg config.Admission, reg prometheus.Registerer) admission.Admitters {
	limits := func(c config.AdmissionClass) admission.Limits {
		return admission.Limits{
			MaxConcurrent: c.MaxConcurrent, MaxPerTenant: c.MaxConcurrentPerTenant,
			MaxQueue: c.MaxQueue, MaxQueuePerTenant: c.MaxQueuePerTenant, QueueTimeout: c.QueueTimeout.Duration,
			Congestion: c.Congestion.Duration, CongestedWait: c.CongestedWait.Duration,
		}
	}
	return admission.Build(admission.Config{
		GraphQL: limits(cfg.GraphQL()), Flight: limits(cfg.Flight), Observers: limits(cfg.Observers),
		MemoryLimit: cfg.MemoryLimitBytes, MemoryThreshold: cfg.MemoryThreshold,
		RetryAfter: cfg.RetryAfter.Duration, Metrics: admission.NewMetrics(reg),
	})
}

// admitWith wraps the core's handler with admission control by ctrl (the
// graphql class's), its refusals counted in the core's error metric.
func admitWith(next http.Handler, ctrl *admission.Controller, maxBody int64, verifier *assertion.Verifier, metrics *httpapi.Metrics) http.Handler {
	return httpapi.Admit(next, httpapi.AdmissionOptions{Controller: ctrl, Tenant: httpapi.TenantFromAssertion(verifier), MaxBodyBytes: maxBody, Metrics: metrics})
}
