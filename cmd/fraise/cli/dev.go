package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/envoy"
)

// devAddrs are the addresses `fraise dev` actually listens on, written to
// --ready-file once Envoy reports ready, so callers (the end-to-end tests)
// can run it on :0 ports.
type devAddrs struct {
	// Gateway is Envoy's ingress listener, the stack's one public port.
	Gateway string `json:"gateway"`
	// EnvoyAdmin is Envoy's admin interface: /ready, /stats/prometheus.
	EnvoyAdmin string `json:"envoy_admin"`
	// EnvoyPid is the Envoy process `fraise dev` supervises.
	EnvoyPid  int    `json:"envoy_pid"`
	CoreHTTP  string `json:"core_http"`
	CoreAdmin string `json:"core_admin"`
	// CoreFlight is the core's Arrow Flight port ("" when disabled).
	CoreFlight string `json:"core_flight"`
	Authz      string `json:"authz"`
	// AuthzAdmin is extauthz's admin port: health, metrics, the assertion
	// JWKS ("" when disabled).
	AuthzAdmin string `json:"authz_admin"`
	RateLimit  string `json:"ratelimit"`
	// RateLimitAdmin is the rate limiter's admin port: health and metrics
	// ("" when disabled).
	RateLimitAdmin string `json:"ratelimit_admin"`
	// XDSAdmin is the xDS server's admin port ("" without --xds or when
	// disabled).
	XDSAdmin string `json:"xds_admin,omitempty"`
	// XDS is the xDS server Envoy follows with --xds ("" otherwise).
	XDS string `json:"xds,omitempty"`
	// DemoReceiver is the webhook receiver of --demo ("" otherwise).
	DemoReceiver string `json:"demo_receiver,omitempty"`
}

func runDev(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := serverFlags("dev", env)
	readyFile := fs.String("ready-file", "", "write the listening addresses here as JSON once ready")
	dir := fs.String("dir", ".dev", "directory of the development keys (for the sample token) and of Envoy's bootstrap")
	quiet := fs.Bool("quiet", false, "do not print the sample request")
	withDemo := fs.Bool("demo", false, "serve the demo: its Flight datasets (unless fraise.toml declares some), observers and a rule that sends each new Acme post to a local webhook receiver, whose deliveries are printed")
	receiverAddr := fs.String("demo-receiver", "127.0.0.1:8090", "the demo's webhook receiver address (with --demo)")
	useXDS := fs.Bool("xds", false, "run Envoy on the xDS bootstrap, following an in-process `fraise xds` (which follows --config), instead of the static bootstrap")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// fraise dev is the development profile: its defaults are what it is
	// for, whatever FRAISE_PROFILE says elsewhere in the shell.
	if p := env.Getenv("FRAISE_PROFILE"); p != "" && p != config.ProfileDev {
		return fmt.Errorf("fraise dev runs the dev profile only, not %q: `fraise serve`, `authz`, `ratelimit` and `xds` run the others", p)
	}
	getenv := env.Getenv
	env.Getenv = func(k string) string {
		if k == "FRAISE_PROFILE" {
			return config.ProfileDev
		}
		return getenv(k)
	}
	// Read before loading: a change made while the stack starts must
	// still count as a change.
	loaded := readConfigFile(*cfgPath)
	cfg, log, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	if *withDemo {
		applyDemo(&cfg)
	}
	// The console's development login: `fraise dev` only (docs/console.md).
	// With --demo, decisions are kept in the audit table too, so that the
	// console's decision log and playground replay have something to show.
	cfg.Console.DevLogin, cfg.Console.DevKeysDir = true, *dir
	cfg.Authz.Audit = cfg.Authz.Audit || *withDemo
	if cfg.Authz.DatabaseURL == "" {
		// One database for the whole development stack: extauthz then
		// resolves persisted-operation hashes the core registered (and
		// takes API keys) without another setting.
		cfg.Authz.DatabaseURL = cfg.Database.URL
	}
	// Find Envoy before starting anything: without it there is no stack.
	if _, err := findEnvoy(cfg.Gateway.Envoy); err != nil {
		return err
	}
	// extauthz and the core trace with providers of their own; the rate
	// limiter, envoyproxy/ratelimit's server, traces through the globals.
	stopTracing, err := startGlobalTracing(ctx, cfg.Telemetry, serviceRateLimit)
	if err != nil {
		return err
	}
	defer stopTracing(ctx)

	// Bind every listener first: with :0 addresses the real ports are known
	// only now, and the Envoy configuration must name them. Envoy binds its
	// own ingress and admin ports (:0 too) and reports them. The rate
	// limiter's HTTP and debug ports are operator tools, bound by it only
	// when configured.
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	bind := func(key string, addr *string) (net.Listener, error) {
		if *addr == "" {
			return nil, nil
		}
		l, err := listen(key, *addr)
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		*addr = l.Addr().String()
		return l, nil
	}
	coreAdminAddr, authzAdminAddr := cfg.Core.AdminAddr, cfg.Authz.AdminAddr
	rlAdminAddr, xdsAdminAddr := cfg.RateLimit.AdminAddr, cfg.XDS.AdminAddr
	var coreLn, coreAdminLn, coreFlightLn, authzLn, authzAdminLn, rlAdminLn, xdsLn, xdsAdminLn net.Listener
	for _, b := range []struct {
		key  string
		addr *string
		ln   *net.Listener
	}{
		{"core.http_addr", &cfg.Core.HTTPAddr, &coreLn},
		{"core.admin_addr", &coreAdminAddr, &coreAdminLn},
		{"core.flight_addr", &cfg.Core.FlightAddr, &coreFlightLn},
		{"authz.grpc_addr", &cfg.Authz.GRPCAddr, &authzLn},
		{"authz.admin_addr", &authzAdminAddr, &authzAdminLn},
		{"ratelimit.admin_addr", &rlAdminAddr, &rlAdminLn},
	} {
		if *b.ln, err = bind(b.key, b.addr); err != nil {
			closeAll()
			return err
		}
	}
	if *useXDS {
		if xdsLn, err = bind("xds.grpc_addr", &cfg.XDS.GRPCAddr); err != nil {
			closeAll()
			return err
		}
		if xdsAdminLn, err = bind("xds.admin_addr", &xdsAdminAddr); err != nil {
			closeAll()
			return err
		}
	}
	var receiverLn net.Listener
	if *withDemo {
		if receiverLn, err = bind("--demo-receiver", receiverAddr); err != nil {
			closeAll()
			return err
		}
		// The rule names the receiver's real port, :0 made concrete.
		dbURL, err := config.Resolve(cfg.Database.URL, env.Getenv)
		if err == nil {
			err = ensureDemoRule(ctx, dbURL, "http://"+*receiverAddr+"/observer")
		}
		if err != nil {
			closeAll()
			return err
		}
	}
	// The rate limiter's gRPC port is bound here too: the observers dial it
	// and the Envoy configuration names it.
	rlLn, err := bind("ratelimit.grpc_addr", &cfg.RateLimit.GRPCAddr)
	if err != nil {
		closeAll()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rlReg := newProcessRegistry()
	rl, err := startRateLimitOn(ctx, cfg, env, log, rlLn, rlReg)
	if err != nil {
		closeAll()
		return err
	}
	logServing(log, "ratelimit", "grpc", rlLn)
	rlTook := stopClock(ctx)
	defer func() {
		rl.Close()
		logStopped(log, "ratelimit", []string{"rate-limit checks"}, rlTook(), nil)
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveAuthz(gctx, cfg, env, log, authzLn, authzAdminLn, nil) })
	g.Go(func() error { return serveCore(gctx, cfg, env, log, coreLn, coreAdminLn, coreFlightLn) })
	if receiverLn != nil {
		rlog := log.With("component", "demo-receiver")
		logServing(rlog, "demo-receiver", "webhook deliveries", receiverLn)
		g.Go(func() error { return serveDemoReceiver(gctx, receiverLn, env.Stdout, rlog) })
	}
	if rlAdminLn != nil {
		g.Go(func() error { return serveAdmin(gctx, "ratelimit", rlAdminLn, rlReg, log) })
	}

	res, err := envoy.Build(envoyOptions(cfg))
	if err != nil {
		cancel()
		closeAll()
		return errors.Join(err, g.Wait())
	}
	// One watch of fraise.toml: the rate limiter reloads its limits and,
	// with --xds, the xDS server publishes the new Envoy configuration.
	follow := []func(config.Config){reloadRateLimits(rl, *cfgPath, log)}
	bootstrap := res.Bootstrap
	if *useXDS {
		xlog := log.With("component", "xds")
		srv, err := newXDSServer(gctx, cfg, xlog)
		if err != nil {
			cancel()
			xdsLn.Close()
			return errors.Join(err, g.Wait())
		}
		// The ports bound above (:0 made concrete) stay as they are when
		// fraise.toml changes.
		keep := func(c *config.Config) {
			c.Gateway.ListenAddr = cfg.Gateway.ListenAddr
			c.Core.HTTPAddr, c.Core.FlightAddr = cfg.Core.HTTPAddr, cfg.Core.FlightAddr
			c.Authz.GRPCAddr, c.RateLimit.GRPCAddr, c.XDS.GRPCAddr = cfg.Authz.GRPCAddr, cfg.RateLimit.GRPCAddr, cfg.XDS.GRPCAddr
		}
		follow = append(follow, publishChange(gctx, srv, *cfgPath, xlog, keep))
		var xdsReg prometheus.Registerer
		if xdsAdminLn != nil {
			reg := newProcessRegistry()
			reg.MustRegister(srv.Collectors()...)
			xdsReg = reg
			g.Go(func() error { return serveAdmin(gctx, "xds", xdsAdminLn, reg, xlog) })
		}
		g.Go(func() error { return serveXDS(gctx, srv, cfg, xdsLn, xlog, xdsReg) })
		bootstrap = res.XDSBootstrap
	}
	if *cfgPath != "" {
		go watchConfig(gctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, func(c config.Config) {
			for _, f := range follow {
				f(c)
			}
		})
	}
	b, err := bootstrap()
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	proxy, err := startEnvoy(gctx, cfg, b, filepath.Join(*dir, "envoy"), env)
	if err != nil {
		cancel()
		return errors.Join(fmt.Errorf("envoy: %w", err), g.Wait())
	}
	g.Go(func() error { return superviseEnvoy(gctx, proxy, log) })
	gateway, err := proxy.ListenerAddr(gctx, envoy.ListenerName)
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	log.Info("listening", "component", "envoy", "serves", "ingress", "addr", gateway, "admin_addr", proxy.AdminAddr(), "pid", proxy.Pid())
	// Envoy's /ready says its listeners and clusters are set, not that
	// extauthz has loaded and tested its policy or that the core reaches
	// its database: the request the banner prints must work when pasted.
	if err := waitComponentsReady(gctx, cfg, coreAdminAddr); err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}

	addrs := devAddrs{
		Gateway: gateway, EnvoyAdmin: proxy.AdminAddr(), EnvoyPid: proxy.Pid(),
		CoreHTTP: cfg.Core.HTTPAddr, Authz: cfg.Authz.GRPCAddr, RateLimit: cfg.RateLimit.GRPCAddr,
		CoreFlight: cfg.Core.FlightAddr, CoreAdmin: coreAdminAddr, AuthzAdmin: authzAdminAddr,
		RateLimitAdmin: rlAdminAddr,
	}
	if *useXDS {
		addrs.XDS, addrs.XDSAdmin = cfg.XDS.GRPCAddr, xdsAdminAddr
	}
	if *withDemo {
		addrs.DemoReceiver = *receiverAddr
	}
	if *readyFile != "" {
		if err := writeJSONFile(*readyFile, addrs); err != nil {
			cancel()
			return errors.Join(err, g.Wait())
		}
	}
	if !*quiet {
		traceURL := ""
		if cfg.Telemetry.OTLPEndpoint != "" {
			traceURL = cfg.Telemetry.TraceURL
		}
		printWelcome(env, welcome{CA: cfg.TLS.CA, Cert: cfg.TLS.ClientCert, Key: cfg.TLS.ClientKey,
			Addrs: addrs, Dir: *dir, Config: *cfgPath, Demo: *withDemo, TraceURL: traceURL})
	}
	return g.Wait()
}

// waitComponentsReady waits until extauthz answers its gRPC health service
// SERVING (as Envoy reaches it: mTLS with the gateway's certificate) and
// the core's admin port answers /readyz, or ctx ends, or a minute passes.
func waitComponentsReady(ctx context.Context, cfg config.Config, coreAdmin string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	tc, err := gatewayClientTLS(cfg.TLS)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(cfg.Authz.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("extauthz not serving: %w (last: %v)", ctx.Err(), err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if coreAdmin == "" {
		return nil
	}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+coreAdmin+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("the core not ready: %w", err)
		}
	}
}

// sleepCtx waits d or until ctx ends: a poll's interval.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// gatewayClientTLS is the client side of mTLS as Envoy speaks it to the
// internal servers: the gateway's certificate, theirs verified against
// tls.ca for tls.server_name.
func gatewayClientTLS(t config.TLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.GatewayCert, t.GatewayKey)
	if err != nil {
		return nil, fmt.Errorf("tls.gateway_cert/gateway_key: %w (run `fraise certs`)", err)
	}
	pool, err := loadCAPool(t.CA)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: t.ServerName, MinVersion: tls.VersionTLS12}, nil
}
