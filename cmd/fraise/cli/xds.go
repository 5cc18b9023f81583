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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/xds"
)

func runXDS(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("xds", env)
	readyFile := fs.String("ready-file", "", "write the listening address here as JSON once serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, env)
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
	if *readyFile != "" {
		if err := writeJSONFile(*readyFile, map[string]string{"xds": ln.Addr().String()}); err != nil {
			ln.Close()
			return err
		}
	}
	return serveXDS(ctx, srv, cfg, *cfgPath, ln, env, log, nil)
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
// certificate, until ctx ends, publishing a new snapshot whenever the file
// at cfgPath changes. keep, when set, amends each reloaded configuration
// first (`fraise dev` keeps the ports it bound).
func serveXDS(ctx context.Context, srv *xds.Server, cfg config.Config, cfgPath string, ln net.Listener, env Env, log *slog.Logger, keep func(*config.Config)) error {
	tc, err := pinnedMTLSServerConfig(cfg.TLS, cfg.TLS.GatewaySAN)
	if err != nil {
		ln.Close()
		return err
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	srv.Register(gs)
	// The xDS bootstrap health-checks its xds cluster with grpc.health.v1.
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() {
		<-ctx.Done()
		gs.GracefulStop()
	}()
	if cfgPath != "" {
		last, _ := os.ReadFile(cfgPath)
		go watchConfig(ctx, cfgPath, last, cfg.XDS.PollInterval.Duration, env, log, func(c config.Config) {
			if keep != nil {
				keep(&c)
			}
			if err := publish(ctx, srv, c); err != nil {
				log.Error("configuration change not published; the previous snapshot keeps serving", "err", err)
				return
			}
			log.Info("configuration change published", "path", cfgPath)
		})
	}
	logServing(log, "xds", "ads", ln)
	if err := gs.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

func publish(ctx context.Context, srv *xds.Server, cfg config.Config) error {
	res, err := envoy.Build(envoyOptions(cfg))
	if err != nil {
		return err
	}
	_, err = srv.Publish(ctx, res)
	return err
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
