package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/xds"
	"github.com/fraise-dev/fraise/internal/lifecycle"
)

func runXDS(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := serverFlags("xds", env)
	readyFile := fs.String("ready-file", "", "write the listening address here as JSON once serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Read before loading: a change made while the server starts must
	// still count as a change.
	loaded := readConfigFile(*cfgPath)
	cfg, log, err := loadServerConfig(*cfgPath, env, config.CommandXDS)
	if err != nil {
		return err
	}
	log = log.With("component", "xds")
	srv, err := newXDSServer(ctx, cfg, log)
	if err != nil {
		return err
	}
	ln := lifecycle.Listen("xds.grpc_addr", cfg.XDS.GRPCAddr)
	g := &lifecycle.Group{}
	var reg prometheus.Registerer
	if adminLn := optionalListener("xds.admin_addr", cfg.XDS.AdminAddr); adminLn != nil {
		r := newProcessRegistry()
		r.MustRegister(srv.Collectors()...)
		reg = r
		g.Add("xds.admin_addr", adminServer("xds", adminLn, r, log))
	}
	g.Add("xds", xdsADS(srv, cfg, ln, log, reg))
	if *readyFile != "" {
		g.Add("--ready-file", lifecycle.Func{OnOpen: func(context.Context) error {
			return writeJSONFile(*readyFile, map[string]string{"xds": ln.Addr()})
		}})
	}
	if *cfgPath != "" {
		g.Add("config watch", runner(func(ctx context.Context) {
			watchConfig(ctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, publishChange(ctx, srv, *cfgPath, log, nil))
		}))
	}
	return lifecycle.Run(ctx, g)
}

// newXDSServer returns an xDS server holding the snapshot of cfg.
func newXDSServer(ctx context.Context, cfg config.Config, log *slog.Logger) (*xds.Server, error) {
	srv := xds.New(ctx, cfg.XDS.NodeID, log)
	if err := publish(ctx, srv, cfg); err != nil {
		return nil, err
	}
	return srv, nil
}

// serveXDS serves srv on ln (see xdsADS) until ctx ends, and closes ln.
func serveXDS(ctx context.Context, srv *xds.Server, cfg config.Config, ln net.Listener, log *slog.Logger, reg prometheus.Registerer) error {
	return lifecycle.Run(ctx, xdsADS(srv, cfg, lifecycle.Adopt(ln), log, reg))
}

// xdsGrace bounds the drain of the ADS port: Envoy holds its stream for as
// long as it runs, so a graceful stop alone could wait for ever.
const xdsGrace = 5 * time.Second

// xdsADS is the component serving srv on l over mTLS, accepting only the
// gateway's certificate; the server certificate and CA are re-read every
// secrets.reload_interval. A watchConfig calling publishChange publishes
// the snapshots that follow fraise.toml. reg, when set, receives the
// certificates' expiry and reloads.
func xdsADS(srv *xds.Server, cfg config.Config, l *lifecycle.Listener, log *slog.Logger, reg prometheus.Registerer) lifecycle.Component {
	// Only TLS files here: no reference to read from the environment.
	sec := newSecrets(func(string) string { return "" }, log)
	ads := &lifecycle.GRPCServer{Listener: l, Grace: xdsGrace, Serving: serving(log, "xds", "ads")}
	g := &lifecycle.Group{}
	g.Add("xds.grpc_addr", ads)
	g.Add("xds tls", lifecycle.Func{OnOpen: func(context.Context) error {
		if reg != nil {
			if err := reg.Register(sec.w); err != nil {
				return err
			}
		}
		tc, err := sec.serverTLS(cfg.TLS, false, cfg.TLS.GatewaySAN)
		if err != nil {
			return err
		}
		gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
		srv.Register(gs)
		// The xDS bootstrap health-checks its xds cluster with grpc.health.v1.
		healthpb.RegisterHealthServer(gs, health.NewServer())
		ads.Server = gs
		return nil
	}})
	g.Add("xds secrets", sec.reloader(cfg))
	return stopLine{Component: g, log: log, name: "xds", drained: &[]string{"ads streams"}}
}

// publishChange returns what a change of the file at path does to srv:
// publish the configuration's resources as the next snapshot, or log why
// not and keep the last. keep, when set, amends each reloaded
// configuration first (`fraise dev` keeps the ports it bound).
func publishChange(ctx context.Context, srv *xds.Server, path string, log *slog.Logger, keep func(*config.Config)) func(config.Config) {
	return func(c config.Config) {
		if keep != nil {
			keep(&c)
		}
		if err := publish(ctx, srv, c); err != nil {
			log.Error("configuration change not published; the previous snapshot keeps serving", "err", err)
			return
		}
		log.Info("configuration change published", "path", path)
	}
}

func publish(ctx context.Context, srv *xds.Server, cfg config.Config) error {
	res, err := envoy.Build(envoyOptions(cfg))
	if err != nil {
		return err
	}
	_, err = srv.Publish(ctx, res)
	return err
}

// readConfigFile returns the contents of the configuration file at path
// (nil when there is none): what watchConfig compares the file with.
func readConfigFile(path string) []byte {
	if path == "" {
		return nil
	}
	b, _ := os.ReadFile(path)
	return b
}

// watchConfig calls changed with the new configuration whenever the file's
// contents differ from last (what the running configuration was loaded
// from) and still load. Polling the contents rather than watching inotify
// events copes with editors and ConfigMaps that replace the file.
func watchConfig(ctx context.Context, path string, last []byte, every time.Duration, env Env, log *slog.Logger, changed func(config.Config)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := os.ReadFile(path)
		if err != nil || bytes.Equal(cur, last) {
			continue
		}
		last = cur
		cfg, err := config.Load(path, env.Getenv)
		if err != nil {
			log.Error("configuration change ignored", "path", path, "err", err)
			continue
		}
		log.Info("configuration changed", "path", path)
		changed(cfg)
	}
}

// writeJSONFile writes v to path atomically, so a reader never sees half.
func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
