package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fraise-dev/fraise/deploy/demo"
)

// devAddrs are the addresses `fraise dev` actually listens on, written to
// --ready-file once every component accepts connections, so callers (the
// end-to-end tests) can run it on :0 ports.
type devAddrs struct {
	Gateway   string `json:"gateway"`
	CoreHTTP  string `json:"core_http"`
	CoreAdmin string `json:"core_admin"`
	// CoreFlight is the core's Arrow Flight port ("" when disabled).
	CoreFlight string `json:"core_flight"`
	Authz      string `json:"authz"`
	// AuthzAdmin is extauthz's admin port: health, metrics, the assertion
	// JWKS ("" when disabled).
	AuthzAdmin string `json:"authz_admin"`
	RateLimit  string `json:"ratelimit"`
}

func runDev(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("dev", env)
	readyFile := fs.String("ready-file", "", "write the listening addresses here as JSON once ready")
	dir := fs.String("dir", ".dev", "directory of the development keys, for the sample token")
	quiet := fs.Bool("quiet", false, "do not print the sample request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	if cfg.Authz.DatabaseURL == "" {
		// One database for the whole development stack: extauthz then
		// resolves persisted-operation hashes the core registered (and
		// takes API keys) without another setting.
		cfg.Authz.DatabaseURL = cfg.Database.URL
	}
	stopTracing, err := startTracing(ctx, cfg.Telemetry, "fraise-dev")
	if err != nil {
		return err
	}
	defer stopTracing(ctx)

	// Bind every listener first: with :0 addresses the real ports are known
	// only now, and the Envoy configuration must name them.
	var lns []net.Listener
	closeAll := func() {
		for _, l := range lns {
			l.Close()
		}
	}
	bind := func(key, addr string) (net.Listener, error) {
		l, err := listen(key, addr)
		if err == nil {
			lns = append(lns, l)
		}
		return l, err
	}
	coreLn, err := bind("core.http_addr", cfg.Core.HTTPAddr)
	if err != nil {
		return err
	}
	var coreAdminLn net.Listener
	if cfg.Core.AdminAddr != "" {
		if coreAdminLn, err = bind("core.admin_addr", cfg.Core.AdminAddr); err != nil {
			closeAll()
			return err
		}
	}
	var coreFlightLn net.Listener
	if cfg.Core.FlightAddr != "" {
		if coreFlightLn, err = bind("core.flight_addr", cfg.Core.FlightAddr); err != nil {
			closeAll()
			return err
		}
		cfg.Core.FlightAddr = coreFlightLn.Addr().String()
	}
	authzLn, err := bind("authz.grpc_addr", cfg.Authz.GRPCAddr)
	if err != nil {
		closeAll()
		return err
	}
	var authzAdminLn net.Listener
	if cfg.Authz.AdminAddr != "" {
		if authzAdminLn, err = bind("authz.admin_addr", cfg.Authz.AdminAddr); err != nil {
			closeAll()
			return err
		}
	}
	gwLn, err := bind("gateway.listen_addr", cfg.Gateway.ListenAddr)
	if err != nil {
		closeAll()
		return err
	}
	cfg.Core.HTTPAddr = coreLn.Addr().String()
	cfg.Authz.GRPCAddr = authzLn.Addr().String()
	cfg.Gateway.ListenAddr = gwLn.Addr().String()
	// envoyproxy/ratelimit cannot listen on :0; give it concrete free ports.
	for _, a := range []*string{&cfg.RateLimit.GRPCAddr, &cfg.RateLimit.HTTPAddr, &cfg.RateLimit.DebugAddr} {
		if *a, err = concretePort(*a); err != nil {
			closeAll()
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rl, err := startRateLimit(ctx, cfg, env, log)
	if err != nil {
		closeAll()
		return err
	}
	defer rl.Close()
	rearmSignals(ctx, cancel)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveAuthz(gctx, cfg, env, log, authzLn, authzAdminLn, nil) })
	g.Go(func() error { return serveCore(gctx, cfg, env, log, coreLn, coreAdminLn, coreFlightLn) })
	if envoyBin := lookEnvoy(cfg.Gateway.Envoy); envoyBin != "" {
		// A real Envoy runs the same generated configuration; it binds the
		// ingress port itself.
		gwLn.Close()
		g.Go(func() error { return runEnvoyProcess(gctx, cfg, envoyBin, *dir, env) })
	} else {
		g.Go(func() error { return serveGateway(gctx, cfg, log, gwLn) })
	}

	addrs := devAddrs{
		Gateway: cfg.Gateway.ListenAddr, CoreHTTP: cfg.Core.HTTPAddr, Authz: cfg.Authz.GRPCAddr,
		RateLimit: cfg.RateLimit.GRPCAddr, CoreFlight: cfg.Core.FlightAddr,
	}
	if coreAdminLn != nil {
		addrs.CoreAdmin = coreAdminLn.Addr().String()
	}
	if authzAdminLn != nil {
		addrs.AuthzAdmin = authzAdminLn.Addr().String()
	}
	g.Go(func() error {
		// The listeners already accept connections (they were bound above),
		// so the stack is ready as soon as the servers run.
		select {
		case <-gctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if *readyFile != "" {
			if err := writeJSONFile(*readyFile, addrs); err != nil {
				return err
			}
		}
		if !*quiet {
			printWelcome(env, cfg.TLS.CA, cfg.TLS.ClientCert, cfg.TLS.ClientKey, addrs, *dir)
		}
		return nil
	})
	return g.Wait()
}

// concretePort replaces a :0 port with one that is free now.
func concretePort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}

// printWelcome prints the ready-to-paste request `make run` promises, with a
// development token for Alice of the Acme tenant.
func printWelcome(env Env, ca, cert, key string, a devAddrs, dir string) {
	tok, err := mintDevToken(dir, tokenRequest{
		Tenant: demo.TenantAcme, Subject: "alice", Roles: []string{"viewer"}, TTL: 24 * time.Hour,
	})
	if err != nil {
		fmt.Fprintf(env.Stdout, "fraise dev: ready on https://%s (no sample token: %v)\n", a.Gateway, err)
		return
	}
	fmt.Fprintf(env.Stdout, `
Fraise is running (Ctrl-C stops it).
  gateway (mTLS)   https://%s/graphql
  core             %s   (refuses requests without extauthz's assertion)
  extauthz (gRPC)  %s
  ratelimit (gRPC) %s

Paste this to read the Acme tenant's users as Alice (a viewer):

curl -sS --cacert %s --cert %s --key %s \
  -H 'Authorization: Bearer %s' \
  -H 'Content-Type: application/json' \
  -d '{"query":"{ users { id name } }"}' \
  https://%s/graphql

Other tokens: bin/fraise token --tenant %s --subject bob --roles viewer
`, a.Gateway, a.CoreHTTP, a.Authz, a.RateLimit, ca, cert, key, tok, a.Gateway, demo.TenantGlobex)
	if a.CoreAdmin != "" || a.AuthzAdmin != "" {
		fmt.Fprintf(env.Stdout, "Health and Prometheus metrics: core http://%s/metrics, extauthz http://%s/metrics\n", a.CoreAdmin, a.AuthzAdmin)
	}
	if a.CoreFlight != "" {
		fmt.Fprintf(env.Stdout, `Arrow Flight and Flight SQL: grpc+tls://%s (core port %s), with an analyst's token
(bin/fraise token --tenant %s --subject alice --roles analyst); see docs/flight.md.
`, a.Gateway, a.CoreFlight, demo.TenantAcme)
	}
}
