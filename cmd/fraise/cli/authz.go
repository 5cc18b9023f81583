package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/cmd/fraise/gctune"
	"github.com/fraise-dev/fraise/core/assertion"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/apikey"
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
	if env.Getenv("GOGC") == "" {
		// extauthz's live heap is a few MiB while it allocates tens of KiB
		// per check, so the default GOGC collects dozens of times a second
		// and every collection slows the checks in flight. The tuner keeps
		// at least four times the live heap of headroom (GOGC=400) and a
		// heap goal of at least 64 MiB: about one collection a second at
		// 5,000 checks/s instead of five. GOGC in the environment wins;
		// GOMEMLIMIT still caps the heap.
		defer gctune.Tune(gctune.DefaultHeapFloor, authzGCPercent)()
	}
	return serveAuthz(ctx, cfg, env, log, ln, adminLn)
}

// authzGCPercent is the least GOGC `fraise authz` runs with.
const authzGCPercent = 400

// policyFS is the policy directory, or the policies compiled into the binary.
func policyFS(dir string) fs.FS {
	if dir == "" {
		return policies.FS
	}
	return os.DirFS(dir)
}

// serveAuthz runs extauthz's gRPC service on ln, and its admin port
// (health, metrics, the assertion JWKS) on adminLn, until ctx ends.
func serveAuthz(ctx context.Context, cfg config.Config, env Env, log *slog.Logger, ln, adminLn net.Listener) error {
	log = log.With("component", "extauthz")
	a := cfg.Authz
	closeAll := func() {
		ln.Close()
		if adminLn != nil {
			adminLn.Close()
		}
	}
	signer, err := loadSigner(a.AssertionKey, env.Getenv)
	if err != nil {
		closeAll()
		return err
	}
	issuers := make([]extauthz.Issuer, len(a.Issuers))
	for i, is := range a.Issuers {
		issuers[i] = extauthz.Issuer{
			Issuer: is.Issuer, Audiences: is.Audiences, JWKSFile: is.JWKSFile, JWKSURL: is.JWKSURL,
			Discovery: is.Discovery, Algorithms: is.Algorithms, TenantClaim: is.TenantClaim, RolesClaim: is.RolesClaim,
			ScopesClaim: is.ScopesClaim, TierClaim: is.TierClaim,
		}
		issuers[i].Tenant, issuers[i].Tenants = is.TenantBinding()
		if is.HMACSecret != "" {
			secret, err := config.Resolve(is.HMACSecret, env.Getenv)
			if err != nil {
				closeAll()
				return fmt.Errorf("authz.issuers[%d].hmac_secret: %w", i, err)
			}
			issuers[i].HMACSecret = []byte(secret)
		}
	}
	o := extauthz.Options{
		Issuers: issuers, Leeway: a.Leeway.Duration, PolicyFS: policyFS(a.PolicyDir),
		Signer: signer, Logger: log, DryRun: a.DryRun, DefaultTier: a.DefaultTier, KeyRefresh: a.KeyRefresh.Duration,
		DecisionCacheTTL: a.DecisionCacheTTL.Duration,
	}
	metrics := newAuthzMetrics()
	o.Observe, o.ObserveReload = metrics.observe, metrics.observeReload
	if a.BundleURL != "" {
		// The embedded policy serves until the first bundle loads; it
		// denies anything its RBAC does not allow, so this fails safe.
		o.PolicyFS = policies.FS
	}
	if a.DatabaseURL != "" {
		url, err := config.Resolve(a.DatabaseURL, env.Getenv)
		if err != nil {
			closeAll()
			return fmt.Errorf("authz.database_url: %w", err)
		}
		db, err := postgres.Open(ctx, url, postgres.Options{MaxConns: 4, StatementTimeout: 2 * time.Second, Logger: log})
		if err != nil {
			closeAll()
			return fmt.Errorf("authz.database_url: %w", err)
		}
		defer db.Close()
		// Open the first connection in the background: a Check that had to
		// would likely outlast the gateway's authz timeout. Not fatal: the
		// database may come up later, and until then lookups fail closed.
		go func() {
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := db.Ping(pingCtx); err != nil && ctx.Err() == nil {
				log.Warn("authz.database_url: not reachable yet; API keys and persisted operations fail closed until it is", "err", err)
			}
		}()
		keys := apikey.NewAuthenticator(postgres.NewAPIKeys(db), apikey.Options{
			CacheTTL: a.APIKeyCacheTTL.Duration, MaxLookupsPerSecond: a.APIKeyLookups, DefaultTier: a.DefaultTier, Logger: log,
		})
		defer keys.Close()
		o.APIKeys = keys
		// The store the core registers automatic persisted queries in and
		// `fraise migrate` loads trusted documents into.
		o.Persisted = extauthz.PersistedStore{Docs: postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})}
		if a.Audit {
			o.Decisions = postgres.NewDecisions(db)
		}
	}
	srv, err := extauthz.New(ctx, o)
	if err != nil {
		closeAll()
		if ctx.Err() != nil {
			// Told to stop while still loading its policy (its tests
			// run first): a stop, not a failure.
			return nil
		}
		return err
	}
	defer srv.Close()
	var grpcOpts []grpc.ServerOption
	if tracing(cfg.Telemetry) {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(otelgrpc.NewServerHandler()))
	}
	gs := srv.NewGRPCServer(extauthz.GRPCOptions{MaxRecvMsgBytes: a.MaxRecvMsgBytes, Reflection: a.Reflection, ServerOptions: grpcOpts})

	g, gctx := errgroup.WithContext(ctx)
	health := &httpapi.Health{}
	logServing(log, "extauthz", "grpc", ln)
	g.Go(func() error {
		err := srv.Serve(gctx, gs, ln, a.DrainDelay.Duration, a.ShutdownTimeout.Duration)
		health.Drain()
		return err
	})
	switch {
	case a.BundleURL != "":
		first := make(chan error, 1)
		g.Go(func() error { srv.PollBundle(gctx, nil, a.BundleURL, a.BundlePoll.Duration, first); return nil })
		if err := <-first; err != nil {
			log.Warn("first policy bundle not loaded; serving the embedded policy until one loads", "err", err)
		}
	case a.PolicyDir != "" && a.PolicyReload.Duration > 0:
		g.Go(func() error { srv.WatchPolicyDir(gctx, a.PolicyDir, a.PolicyReload.Duration); return nil })
	}
	if a.AssertionKeyReload.Duration > 0 {
		g.Go(func() error {
			reloadSigner(gctx, signer, a.AssertionKey, env.Getenv, a.AssertionKeyReload.Duration, log)
			return nil
		})
	}
	if adminLn != nil {
		mux := http.NewServeMux()
		mux.Handle(extauthz.JWKSPath, srv.JWKSHandler())
		mux.Handle("/", httpapi.NewAdminHandler(health, metrics.handler()))
		admin := newHTTPServer(mux, adminHTTPTimeouts)
		logServing(log, "extauthz", "admin", adminLn)
		g.Go(func() error { return serveHTTP(gctx, admin, adminLn, 5*time.Second) })
	}
	return g.Wait()
}

// loadSigner reads extauthz's Ed25519 assertion key from its reference.
func loadSigner(ref string, getenv func(string) string) (*assertion.Signer, error) {
	key, err := readAssertionKey(ref, getenv)
	if err != nil {
		return nil, err
	}
	return assertion.NewSigner(key, assertion.KeyID(key.Public().(ed25519.PublicKey)), nil)
}

func readAssertionKey(ref string, getenv func(string) string) (ed25519.PrivateKey, error) {
	data, err := readFileRef(ref, getenv)
	if err != nil {
		return nil, fmt.Errorf("authz.assertion_key: %w (run `fraise certs`)", err)
	}
	key, err := assertion.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("authz.assertion_key: %w", err)
	}
	return key, nil
}

// reloadSigner re-reads the assertion key reference every interval and
// rotates to the key it finds there when it changed: rotating the key is
// replacing the file (or the secret behind the reference). The previous
// key stays in the JWKS, so assertions in flight keep verifying.
func reloadSigner(ctx context.Context, s *assertion.Signer, ref string, getenv func(string) string, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		key, err := readAssertionKey(ref, getenv)
		if err != nil {
			log.Warn("assertion key not re-read; signing with the current key", "err", err)
			continue
		}
		kid := assertion.KeyID(key.Public().(ed25519.PublicKey))
		if kid == s.KeyID() {
			continue
		}
		prev := s.KeyID()
		if err := s.Rotate(key, kid); err != nil {
			log.Error("assertion key rotation failed", "err", err)
			continue
		}
		log.Info("assertion key rotated", "kid", kid, "previous_kid", prev)
	}
}

// assertionKeyFetcher fetches extauthz's assertion JWKS from url, for the
// core's assertion.Verifier (which may not import net/http).
func assertionKeyFetcher(url string, client *http.Client) func() (map[string]ed25519.PublicKey, error) {
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	return func() (map[string]ed25519.PublicKey, error) {
		resp, err := client.Get(url)
		if err != nil {
			return nil, fmt.Errorf("assertion JWKS: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("assertion JWKS: GET %s: %s", url, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("assertion JWKS: %w", err)
		}
		return assertion.ParseJWKS(b)
	}
}

// followAssertionKeys makes v trust the keys extauthz publishes at url:
// fetched now (an error if that fails, so the core does not start unable
// to verify anything), then every interval and on an unknown key id (at
// most every 5 s), until ctx ends. Failed fetches keep the previous keys.
func followAssertionKeys(ctx context.Context, v *assertion.Verifier, url string, client *http.Client, interval time.Duration, log *slog.Logger) error {
	fetch := assertionKeyFetcher(url, client)
	keys, err := fetch()
	if err != nil {
		return fmt.Errorf("core.assertion_jwks_url: %w", err)
	}
	v.SetKeys(keys)
	v.SetRefresh(fetch, 5*time.Second)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			keys, err := fetch()
			if err != nil {
				log.Warn("assertion keys not refreshed; keeping the previous ones", "err", err)
				continue
			}
			v.SetKeys(keys)
		}
	}()
	return nil
}
