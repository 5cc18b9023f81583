package cli

import (
	"context"
	"log/slog"

	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

func runRateLimit(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("ratelimit", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
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
	rearmSignals(ctx, cancel)
	<-ctx.Done()
	return nil
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
		PerTenant:  ratelimit.Limit{Requests: cfg.RateLimit.PerTenant.Requests, Unit: cfg.RateLimit.PerTenant.Unit},
		PerAction:  observerActionLimits(cfg.Observers),
		ShadowMode: cfg.RateLimit.ShadowMode, LocalCacheBytes: cfg.RateLimit.LocalCacheBytes,
		Logger: log.With("component", "ratelimit"),
	})
}
