package cli

import (
	"context"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/gateway"
)

func runGateway(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("gateway", env)
	readyFile := fs.String("ready-file", "", "write the listening address here as JSON once serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	stopTracing, err := startTracing(ctx, cfg.Telemetry, "fraise-gateway")
	if err != nil {
		return err
	}
	defer stopTracing(ctx)
	ln, err := listen("gateway.listen_addr", cfg.Gateway.ListenAddr)
	if err != nil {
		return err
	}
	// The Envoy configuration names the address actually bound (a :0 port
	// becomes concrete).
	cfg.Gateway.ListenAddr = ln.Addr().String()
	ready := map[string]string{"gateway": ln.Addr().String()}
	g, gctx := errgroup.WithContext(ctx)
	if cfg.Gateway.AdminAddr != "" {
		// /healthz and /readyz, as every Fraise process serves; /readyz
		// fails from the moment the gateway starts draining.
		adminLn, err := listen("gateway.admin_addr", cfg.Gateway.AdminAddr)
		if err != nil {
			ln.Close()
			return err
		}
		ready["admin"] = adminLn.Addr().String()
		health := &httpapi.Health{}
		admin := newHTTPServer(httpapi.NewAdminHandler(health, nil), adminHTTPTimeouts)
		logServing(log, "gateway", "admin", adminLn)
		g.Go(func() error {
			<-gctx.Done()
			health.Drain()
			return nil
		})
		g.Go(func() error { return serveHTTP(gctx, admin, adminLn, 5*time.Second) })
	}
	if *readyFile != "" {
		if err := writeJSONFile(*readyFile, ready); err != nil {
			ln.Close()
			return err
		}
	}
	g.Go(func() error { return serveGateway(gctx, cfg, log, ln) })
	return g.Wait()
}

// envoyOptions is the one mapping from fraise.toml to the Envoy
// configuration: the xDS server, the static bootstrap and the development
// gateway all start from it.
func envoyOptions(cfg config.Config) envoy.Options {
	return envoy.Options{
		ListenAddr:               cfg.Gateway.ListenAddr,
		CoreHTTPAddr:             cfg.Core.HTTPAddr,
		CoreFlightAddr:           cfg.Core.FlightAddr,
		AuthzAddr:                cfg.Authz.GRPCAddr,
		RateLimitAddr:            cfg.RateLimit.GRPCAddr,
		CACert:                   cfg.TLS.CA,
		ServerCert:               cfg.TLS.ServerCert,
		ServerKey:                cfg.TLS.ServerKey,
		UpstreamCA:               cfg.TLS.CA,
		UpstreamCert:             cfg.TLS.ClientCert,
		UpstreamKey:              cfg.TLS.ClientKey,
		UpstreamServerName:       cfg.TLS.ServerName,
		AuthzTimeout:             cfg.Gateway.AuthzTimeout.Duration,
		MaxRequestBytes:          cfg.Gateway.MaxRequestBytes,
		RateLimitDomain:          cfg.RateLimit.Domain,
		RateLimitTimeout:         cfg.RateLimit.Timeout.Duration,
		RateLimitFailureModeDeny: cfg.RateLimit.FailureModeDeny,
		MaxConnections:           cfg.Gateway.MaxConnections,
		AdminAddr:                cfg.Gateway.AdminAddr,
		OTLPEndpoint:             cfg.Telemetry.OTLPEndpoint,
		TraceSamplePercent:       cfg.Telemetry.SampleRatio * 100,
		XDSAddr:                  cfg.XDS.GRPCAddr,
		NodeID:                   cfg.XDS.NodeID,
	}
}

// serveGateway executes the generated Envoy configuration on ln.
func serveGateway(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener) error {
	log = log.With("component", "gateway")
	res, err := envoy.Build(envoyOptions(cfg))
	if err != nil {
		ln.Close()
		return err
	}
	gw, err := gateway.New(res, gateway.Options{Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	logServing(log, "gateway", "https", ln)
	return gw.Serve(ctx, ln)
}
