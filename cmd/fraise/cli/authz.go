package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core/assertion"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/policies"
)

func runAuthz(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := flags("authz", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, env)
	if err != nil {
		return err
	}
	stopTracing, err := startTracing(ctx, cfg.Telemetry, "fraise-extauthz")
	if err != nil {
		return err
	}
	defer stopTracing(ctx)
	ln, err := listen("authz.grpc_addr", cfg.Authz.GRPCAddr)
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if cfg.Authz.AdminAddr != "" {
		if adminLn, err = listen("authz.admin_addr", cfg.Authz.AdminAddr); err != nil {
			ln.Close()
			return err
		}
	}
	return serveAuthz(ctx, cfg, env, log, ln, adminLn)
}

// policyFS is the policy directory, or the policies compiled into the binary.
func policyFS(dir string) fs.FS {
	if dir == "" {
		return policies.FS
	}
	return os.DirFS(dir)
}

// serveAuthz runs extauthz's gRPC service on ln until ctx ends.
func serveAuthz(ctx context.Context, cfg config.Config, env Env, log *slog.Logger, ln, adminLn net.Listener) error {
	log = log.With("component", "extauthz")
	signer, err := loadSigner(cfg.Authz.AssertionKey, env.Getenv)
	if err != nil {
		ln.Close()
		return err
	}
	issuers := make([]extauthz.Issuer, len(cfg.Authz.Issuers))
	for i, is := range cfg.Authz.Issuers {
		issuers[i] = extauthz.Issuer{
			Issuer: is.Issuer, Audiences: is.Audiences, JWKSFile: is.JWKSFile, JWKSURL: is.JWKSURL,
			Algorithms: is.Algorithms, TenantClaim: is.TenantClaim, RolesClaim: is.RolesClaim,
			ScopesClaim: is.ScopesClaim, TierClaim: is.TierClaim,
		}
	}
	srv, err := extauthz.New(ctx, extauthz.Options{
		Issuers: issuers, Leeway: cfg.Authz.Leeway.Duration, PolicyFS: policyFS(cfg.Authz.PolicyDir),
		Signer: signer, Logger: log, DryRun: cfg.Authz.DryRun, DefaultTier: cfg.Authz.DefaultTier,
	})
	if err != nil {
		ln.Close()
		return err
	}
	gs := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.MaxRecvMsgSize(4<<20),
		// Checks run on long-lived workers: a goroutine per call starts
		// with a small stack and grew it through the policy's deep
		// evaluation on every call (runtime.copystack was a tenth of the
		// gateway stack's CPU); a worker keeps its grown stack. Calls
		// beyond the workers still get goroutines of their own.
		grpc.NumStreamWorkers(uint32(max(32, 8*runtime.GOMAXPROCS(0)))),
	)
	srv.Register(gs)

	g, gctx := errgroup.WithContext(ctx)
	health := &httpapi.Health{}
	logServing(log, "extauthz", "grpc", ln)
	g.Go(func() error { return gs.Serve(ln) })
	g.Go(func() error {
		<-gctx.Done()
		health.Drain()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			gs.Stop()
		}
		return nil
	})
	if adminLn != nil {
		admin := &http.Server{Handler: httpapi.NewAdminHandler(health, nil), ReadHeaderTimeout: 5 * time.Second}
		logServing(log, "extauthz", "admin", adminLn)
		g.Go(func() error { return serveHTTP(gctx, admin, adminLn, 5*time.Second) })
	}
	return g.Wait()
}

// loadSigner reads extauthz's Ed25519 assertion key from its reference.
func loadSigner(ref string, getenv func(string) string) (*assertion.Signer, error) {
	data, err := readFileRef(ref, getenv)
	if err != nil {
		return nil, fmt.Errorf("authz.assertion_key: %w (run `fraise certs`)", err)
	}
	key, err := assertion.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("authz.assertion_key: %w", err)
	}
	return assertion.NewSigner(key, assertion.KeyID(key.Public().(ed25519.PublicKey)), nil)
}
