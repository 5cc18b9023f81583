package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	ln, err := listen("xds.grpc_addr", cfg.XDS.GRPCAddr)
	if err != nil {
		return err
	}
	srv, err := newXDSServer(ctx, cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	var reg *prometheus.Registry
	if cfg.XDS.AdminAddr != "" {
		adminLn, err := listen("xds.admin_addr", cfg.XDS.AdminAddr)
		if err != nil {
			ln.Close()
			return err
		}
		reg = newProcessRegistry()
		reg.MustRegister(srv.Collectors()...)
		go func() {
			if err := serveAdmin(ctx, "xds", adminLn, reg, log); err != nil {
				log.Error("xds admin port stopped", "err", err)
			}
		}()
	}
	if *readyFile != "" {
		if err := writeJSONFile(*readyFile, map[string]string{"xds": ln.Addr().String()}); err != nil {
			ln.Close()
			return err
		}
	}
	if *cfgPath != "" {
		go watchConfig(ctx, *cfgPath, loaded, cfg.XDS.PollInterval.Duration, env, log, publishChange(ctx, srv, *cfgPath, log, nil))
	}
	var r prometheus.Registerer
	if reg != nil {
		r = reg
	}
	return serveXDS(ctx, srv, cfg, ln, log, r)
}

// newXDSServer returns an xDS server holding the snapshot of cfg.
func newXDSServer(ctx context.Context, cfg config.Config, log *slog.Logger) (*xds.Server, error) {
	srv := xds.New(ctx, cfg.XDS.NodeID, log)
	if err := publish(ctx, srv, cfg); err != nil {
		return nil, err
	}
	return srv, nil
}

// serveXDS serves srv on ln over mTLS, accepting only the gateway's
// certificate, until ctx ends; the server certificate and CA are re-read
// every secrets.reload_interval. A watchConfig calling publishChange
// publishes the snapshots that follow fraise.toml. reg, when set, receives
// the certificates' expiry and reloads.
func serveXDS(ctx context.Context, srv *xds.Server, cfg config.Config, ln net.Listener, log *slog.Logger, reg prometheus.Registerer) error {
	// Only TLS files here: no reference to read from the environment.
	sec := newSecrets(func(string) string { return "" }, log)
	if reg != nil {
		if err := reg.Register(sec.w); err != nil {
			ln.Close()
			return err
		}
	}
	tc, err := sec.serverTLS(cfg.TLS, false, cfg.TLS.GatewaySAN)
	if err != nil {
		ln.Close()
		return err
	}
	sec.run(ctx, cfg)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	srv.Register(gs)
	// The xDS bootstrap health-checks its xds cluster with grpc.health.v1.
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() {
		<-ctx.Done()
		gs.GracefulStop()
	}()
	took := stopClock(ctx)
	logServing(log, "xds", "ads", ln)
	if err := gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		logStopped(log, "xds", []string{"ads streams"}, took(), err)
		return err
	}
	logStopped(log, "xds", []string{"ads streams"}, took(), nil)
	return nil
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
