package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/process"
	"github.com/fraise-dev/fraise/envoy/xds"
	"github.com/fraise-dev/fraise/internal/lifecycle"
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
	g := &lifecycle.Group{}
	// extauthz and the core trace with providers of their own; the rate
	// limiter, envoyproxy/ratelimit's server, traces through the globals.
	g.Add("tracing", &tracing{c: cfg.Telemetry, service: serviceRateLimit, global: true})

	// Bind every listener first: with :0 addresses the real ports are known
	// only then, and the configuration of the components and of Envoy must
	// name them. Envoy binds its own ingress and admin ports (:0 too) and
	// reports them. The rate limiter's HTTP and debug ports are operator
	// tools, bound by it only when configured. Each listener is a
	// component of the ports group, and also of the component serving on
	// it; whichever closes it first closes it.
	ports := &lifecycle.Group{}
	bind := func(key, addr string) *lifecycle.Listener {
		if addr == "" {
			return nil
		}
		l := lifecycle.Listen(key, addr)
		ports.Add(key, l)
		return l
	}
	coreLn, coreAdminLn := bind("server.http_addr", cfg.Server.HTTPAddr), bind("server.admin_addr", cfg.Server.AdminAddr)
	coreFlightLn := bind("server.flight_addr", cfg.Server.FlightAddr)
	authzLn, authzAdminLn := bind("authz.grpc_addr", cfg.Authz.GRPCAddr), bind("authz.admin_addr", cfg.Authz.AdminAddr)
	rlAdminLn := bind("ratelimit.admin_addr", cfg.RateLimit.AdminAddr)
	var xdsLn, xdsAdminLn, receiverLn *lifecycle.Listener
	if *useXDS {
		xdsLn, xdsAdminLn = bind("xds.grpc_addr", cfg.XDS.GRPCAddr), bind("xds.admin_addr", cfg.XDS.AdminAddr)
	}
	if *withDemo {
		receiverLn = bind("--demo-receiver", *receiverAddr)
	}
	// The rate limiter's gRPC port is bound here too: the observers dial it
	// and the Envoy configuration names it.
	rlLn := bind("ratelimit.grpc_addr", cfg.RateLimit.GRPCAddr)
	g.Add("ports", ports)
	addrs := devAddrs{}
	g.Add("addresses", lifecycle.Func{OnOpen: func(ctx context.Context) error {
		addr := func(l *lifecycle.Listener) string {
			if l == nil {
				return ""
			}
			return l.Addr()
		}
		cfg.Server.HTTPAddr, cfg.Server.FlightAddr = addr(coreLn), addr(coreFlightLn)
		cfg.Authz.GRPCAddr, cfg.RateLimit.GRPCAddr = addr(authzLn), addr(rlLn)
		addrs = devAddrs{
			CoreHTTP: cfg.Server.HTTPAddr, Authz: cfg.Authz.GRPCAddr, RateLimit: cfg.RateLimit.GRPCAddr,
			CoreFlight: cfg.Server.FlightAddr, CoreAdmin: addr(coreAdminLn), AuthzAdmin: addr(authzAdminLn),
			RateLimitAdmin: addr(rlAdminLn),
		}
		if *useXDS {
			cfg.XDS.GRPCAddr = addr(xdsLn)
			addrs.XDS, addrs.XDSAdmin = cfg.XDS.GRPCAddr, addr(xdsAdminLn)
		}
		if *withDemo {
			addrs.DemoReceiver = receiverLn.Addr()
			// The rule names the receiver's real port, :0 made concrete.
			dbURL, err := config.Resolve(cfg.Database.URL, env.Getenv)
			if err == nil {
				err = ensureDemoRule(ctx, dbURL, "http://"+addrs.DemoReceiver+"/observer")
			}
			return err
		}
		return nil
	}})

	rlReg := newProcessRegistry()
	rl := &rateLimiter{env: env, log: log, l: rlLn, reg: rlReg}
	g.Add("ratelimit", &later{build: func() lifecycle.Component { rl.cfg = cfg; return rl }})
	if rlAdminLn != nil {
		g.Add("ratelimit.admin_addr", adminServer("ratelimit", rlAdminLn, rlReg, log))
	}
	// extauthz (which tests its policy) and the core (which checks its
	// schema against the database) open at once: neither needs the other.
	servers := &lifecycle.Group{Together: true}
	servers.Add("extauthz", &later{build: func() lifecycle.Component { return newAuthz(cfg, env, log, authzLn, authzAdminLn, nil) }})
	servers.Add("core", &later{build: func() lifecycle.Component { return newCore(cfg, env, log, coreLn, coreAdminLn, coreFlightLn) }})
	g.Add("extauthz and core", servers)
	if receiverLn != nil {
		rlog := log.With("component", "demo-receiver")
		g.Add("demo receiver", lifecycle.Func{OnRun: func(ctx context.Context) error {
			logServing(rlog, "demo-receiver", "webhook deliveries", receiverLn.Net())
			return serveDemoReceiver(ctx, receiverLn.Net(), env.Stdout, rlog)
		}})
	}
	var xdsSrv *xds.Server
	xlog := log.With("component", "xds")
	if *useXDS {
		xg := &lifecycle.Group{}
		var reg *prometheus.Registry
		if xdsAdminLn != nil {
			reg = newProcessRegistry()
		}
		xg.Add("xds snapshot", lifecycle.Func{OnOpen: func(ctx context.Context) error {
			var err error
			if xdsSrv, err = newXDSServer(ctx, cfg, xlog); err != nil {
				return err
			}
			if reg != nil {
				reg.MustRegister(xdsSrv.Collectors()...)
			}
			return nil
		}})
		if reg != nil {
			xg.Add("xds.admin_addr", adminServer("xds", xdsAdminLn, reg, xlog))
		}
		xg.Add("xds", &later{build: func() lifecycle.Component {
			var r prometheus.Registerer
			if reg != nil {
				r = reg
			}
			return xdsADS(xdsSrv, cfg, xdsLn, xlog, r)
		}})
		g.Add("xds", xg)
	}
	if *cfgPath != "" {
		// One watch of fraise.toml: the rate limiter reloads its limits
		// and, with --xds, the xDS server publishes the new Envoy
		// configuration.
		g.Add("config watch", runner(func(ctx context.Context) {
			follow := []func(config.Config){reloadRateLimits(rl.svc, *cfgPath, log)}
			if xdsSrv != nil {
				// The ports bound above (:0 made concrete) stay as they are
				// when fraise.toml changes.
				keep := func(c *config.Config) {
					c.Gateway.ListenAddr = cfg.Gateway.ListenAddr
					c.Server.HTTPAddr, c.Server.FlightAddr = cfg.Server.HTTPAddr, cfg.Server.FlightAddr
					c.Authz.GRPCAddr, c.RateLimit.GRPCAddr, c.XDS.GRPCAddr = cfg.Authz.GRPCAddr, cfg.RateLimit.GRPCAddr, cfg.XDS.GRPCAddr
				}
				follow = append(follow, publishChange(ctx, xdsSrv, *cfgPath, xlog, keep))
			}
			watchConfig(ctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, func(c config.Config) {
				for _, f := range follow {
					f(c)
				}
			})
		}))
	}
	g.Add("envoy", &later{build: func() lifecycle.Component {
		return &devEnvoy{cfg: cfg, env: env, log: log, dir: *dir, xds: *useXDS, addrs: &addrs,
			readyFile: *readyFile, quiet: *quiet, config: *cfgPath, demo: *withDemo}
	}})
	return lifecycle.Run(ctx, g)
}

// devEnvoy is the Envoy `fraise dev` runs, as a component. Open builds its
// configuration from the ports bound; Run starts it (with --xds its
// listeners come from the xDS server, which serves only then), waits for
// it and for the components it routes to, writes --ready-file, prints the
// welcome, and supervises it until its context ends or Envoy exits. Close
// stops it when Run did not.
type devEnvoy struct {
	cfg       config.Config
	env       Env
	log       *slog.Logger
	dir       string
	xds       bool
	addrs     *devAddrs
	readyFile string
	quiet     bool
	config    string
	demo      bool

	bootstrap func() (*bootstrapv3.Bootstrap, error)
	proxy     *process.Envoy
}

// Open builds Envoy's configuration.
func (e *devEnvoy) Open(context.Context) error {
	res, err := envoy.Build(envoyOptions(e.cfg))
	if err != nil {
		return err
	}
	e.bootstrap = res.Bootstrap
	if e.xds {
		e.bootstrap = res.XDSBootstrap
	}
	return nil
}

// Run starts Envoy and supervises it.
func (e *devEnvoy) Run(ctx context.Context) error {
	cfg := e.cfg
	b, err := e.bootstrap()
	if err != nil {
		return err
	}
	if e.proxy, err = startEnvoy(ctx, cfg, b, filepath.Join(e.dir, "envoy"), e.env); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("envoy: %w", err)
	}
	supervised := make(chan error, 1)
	go func() { supervised <- superviseEnvoy(ctx, e.proxy, e.log) }()
	if err := e.announce(ctx); err != nil && ctx.Err() == nil {
		// The stack stops, Envoy with it (Close).
		return err
	}
	return <-supervised
}

// announce waits for Envoy's ingress and for the components Envoy routes
// to, then writes --ready-file and prints the welcome.
func (e *devEnvoy) announce(ctx context.Context) error {
	cfg, proxy := e.cfg, e.proxy
	gateway, err := proxy.ListenerAddr(ctx, envoy.ListenerName)
	if err != nil {
		return err
	}
	e.log.Info("listening", "component", "envoy", "serves", "ingress", "addr", gateway, "admin_addr", proxy.AdminAddr(), "pid", proxy.Pid())
	// Envoy's /ready says its listeners and clusters are set, not that
	// extauthz has loaded and tested its policy or that the core reaches
	// its database: the request the banner prints must work when pasted.
	if err := waitComponentsReady(ctx, cfg, e.addrs.CoreAdmin); err != nil {
		return err
	}
	addrs := *e.addrs
	addrs.Gateway, addrs.EnvoyAdmin, addrs.EnvoyPid = gateway, proxy.AdminAddr(), proxy.Pid()
	if e.readyFile != "" {
		if err := writeJSONFile(e.readyFile, addrs); err != nil {
			return err
		}
	}
	if !e.quiet {
		traceURL := ""
		if cfg.Telemetry.OTLPEndpoint != "" {
			traceURL = cfg.Telemetry.TraceURL
		}
		printWelcome(e.env, welcome{CA: cfg.TLS.CA, Cert: cfg.TLS.ClientCert, Key: cfg.TLS.ClientKey,
			Addrs: addrs, Dir: e.dir, Config: e.config, Demo: e.demo, TraceURL: traceURL})
	}
	return nil
}

// Close stops Envoy if it still runs.
func (e *devEnvoy) Close() error {
	if e.proxy != nil {
		e.proxy.Stop(10 * time.Second)
	}
	return nil
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
