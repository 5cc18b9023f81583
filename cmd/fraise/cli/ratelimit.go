package cli

import (
	"context"
	"log/slog"
	"net/http"

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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	svc, err := startRateLimit(ctx, cfg, env, log)
	if err != nil {
		return err
	}
	defer svc.Close()
	if *cfgPath != "" {
		go watchConfig(ctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, reloadRateLimits(svc, *cfgPath, log))
	}
	rearmSignals(ctx, cancel)
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
// configuration.
func startRateLimit(ctx context.Context, cfg config.Config, env Env, log *slog.Logger) (*ratelimit.Service, error) {
	pw, err := config.Resolve(cfg.Redis.Password, env.Getenv)
	if err != nil {
		return nil, err
	}
	return ratelimit.Start(ctx, ratelimit.Options{
		GRPCAddr: cfg.RateLimit.GRPCAddr, HTTPAddr: cfg.RateLimit.HTTPAddr, DebugAddr: cfg.RateLimit.DebugAddr,
		RedisAddr: cfg.Redis.Addr, RedisPassword: pw, Domain: cfg.RateLimit.Domain,
		Tiers: rateLimitTiers(cfg.RateLimit), Actions: rateLimitActions(cfg.RateLimit),
		LocalCacheBytes: cfg.RateLimit.LocalCacheBytes,
		Logger:          log.With("component", "ratelimit"),
	})
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
