package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core/admission"
	"github.com/fraise-dev/fraise/core/assertion"
)

func runRateLimit(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("ratelimit", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Read before loading: a change made while the service starts must
	// still count as a change.
	loaded := readConfigFile(*cfgPath)
	cfg, log, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if cfg.RateLimit.AdminAddr != "" {
		if adminLn, err = listen("ratelimit.admin_addr", cfg.RateLimit.AdminAddr); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := newProcessRegistry()
	svc, err := startRateLimitOn(ctx, cfg, env, log, nil, reg)
	if err != nil {
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}
	defer svc.Close()
	if adminLn != nil {
		go func() {
			if err := serveAdmin(ctx, "ratelimit", adminLn, reg, log); err != nil {
				log.Error("rate limiter admin port stopped", "err", err)
			}
		}()
	}
	if *cfgPath != "" {
		go watchConfig(ctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, reloadRateLimits(svc, *cfgPath, log))
	}
	<-ctx.Done()
	return nil
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
// configuration, its gRPC port on ratelimit.grpc_addr.
func startRateLimit(ctx context.Context, cfg config.Config, env Env, log *slog.Logger) (*ratelimit.Service, error) {
	return startRateLimitOn(ctx, cfg, env, log, nil, nil)
}

// startRateLimitOn is startRateLimit serving its gRPC port on ln, already
// bound (`fraise dev` binds every port first); nil listens on
// ratelimit.grpc_addr. The port serves mutual TLS only: the server
// certificate tls.server_cert, client certificates from tls.ca naming
// tls.gateway_san (Envoy) or tls.core_client_san (the observers' workers).
// reg, when set, receives the service's own stats.
func startRateLimitOn(ctx context.Context, cfg config.Config, env Env, log *slog.Logger, ln net.Listener, reg prometheus.Registerer) (*ratelimit.Service, error) {
	pw, err := config.Resolve(cfg.Redis.Password, env.Getenv)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	svc, err := ratelimit.Start(ctx, ratelimit.Options{
		GRPCAddr: cfg.RateLimit.GRPCAddr, Listener: ln,
		TLS: ratelimit.ServerTLS{CA: cfg.TLS.CA, Cert: cfg.TLS.ServerCert, Key: cfg.TLS.ServerKey,
			ClientSANs: []string{cfg.TLS.GatewaySAN, cfg.TLS.CoreClientSAN}},
		HTTPAddr: cfg.RateLimit.HTTPAddr, DebugAddr: cfg.RateLimit.DebugAddr,
		RedisAddr: cfg.Redis.Addr, RedisPassword: pw, Domain: cfg.RateLimit.Domain,
		Tiers: rateLimitTiers(cfg.RateLimit), Actions: rateLimitActions(cfg.RateLimit),
		LocalCacheBytes: cfg.RateLimit.LocalCacheBytes,
		Logger:          log.With("component", "ratelimit"),
		Metrics:         reg,
	})
	if errors.Is(err, ratelimit.ErrTLS) {
		return nil, fmt.Errorf("tls.ca, tls.server_cert, tls.server_key: %w (run `fraise certs`)", err)
	}
	return svc, err
}

// rateLimitClient is how the observers' workers reach the rate limiter:
// mutual TLS with the core's client certificate, verifying the limiter's
// against tls.ca for tls.server_name.
func rateLimitClient(cfg config.Config, log *slog.Logger) ratelimit.ActionLimiterOptions {
	return ratelimit.ActionLimiterOptions{
		Addr: cfg.RateLimit.GRPCAddr, Domain: cfg.RateLimit.Domain, Timeout: cfg.RateLimit.Timeout.Duration,
		TLS: ratelimit.ClientTLS{CA: cfg.TLS.CA, Cert: cfg.TLS.CoreClientCert, Key: cfg.TLS.CoreClientKey,
			ServerName: cfg.TLS.ServerName},
		Logger: log.With("component", "ratelimit-client"),
	}
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

// admitted wraps the core's handler with admission control configured by
// cfg, counting its decisions in the core's metrics.
func admitted(next http.Handler, cfg config.Admission, maxBody int64, verifier *assertion.Verifier, metrics *httpapi.Metrics) http.Handler {
	am := httpapi.NewAdmissionMetrics(metrics.Registry)
	ctrl := admission.New(admission.Options{
		MaxConcurrent: cfg.MaxConcurrent, MaxPerTenant: cfg.MaxConcurrentPerTenant,
		MaxQueue: cfg.MaxQueue, MaxQueuePerTenant: cfg.MaxQueuePerTenant, QueueTimeout: cfg.QueueTimeout.Duration,
		Congestion: cfg.Congestion.Duration, CongestedWait: cfg.CongestedWait.Duration,
		MemoryLimit: cfg.MemoryLimitBytes, MemoryThreshold: cfg.MemoryThreshold,
		RetryAfter: cfg.RetryAfter.Duration, Observe: am.Observe,
	})
	return httpapi.Admit(next, httpapi.AdmissionOptions{Controller: ctrl, Tenant: httpapi.TenantFromAssertion(verifier), MaxBodyBytes: maxBody})
}
