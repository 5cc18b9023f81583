package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/cmd/fraise/gctune"
	"github.com/fraise-dev/fraise/extauthz"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/lifecycle"
	"github.com/fraise-dev/fraise/policies"
)

func runAuthz(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := serverFlags("authz", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadServerConfig(*cfgPath, env, config.CommandAuthz)
	if err != nil {
		return err
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
	a := newAuthz(cfg, env, log, lifecycle.Listen("authz.grpc_addr", cfg.Authz.GRPCAddr),
		optionalListener("authz.admin_addr", cfg.Authz.AdminAddr), optionalListener("authz.jwks_addr", cfg.Authz.JWKSAddr))
	return runAuthzComponent(ctx, a)
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

// serveAuthz runs extauthz's gRPC service on ln, its admin port (health,
// metrics, the assertion JWKS) on adminLn, and the assertion JWKS alone
// over TLS on jwksLn (nil: none), until ctx ends, and closes them.
func serveAuthz(ctx context.Context, cfg config.Config, env Env, log *slog.Logger, ln, adminLn, jwksLn net.Listener) error {
	return runAuthzComponent(ctx, newAuthz(cfg, env, log, lifecycle.Adopt(ln), listenerOf(adminLn), listenerOf(jwksLn)))
}

// runAuthzComponent runs a, extauthz, until ctx ends.
func runAuthzComponent(ctx context.Context, a lifecycle.Component) error {
	err := lifecycle.Run(ctx, a)
	if errors.Is(err, errStoppedStarting) {
		// Told to stop while still loading its policy (its tests run
		// first): a stop, not a failure.
		return nil
	}
	return err
}

// errStoppedStarting is extauthz's Open cut short by the end of its
// context.
var errStoppedStarting = errors.New("extauthz: stopped while starting")

// authz is extauthz's parts, each a component of the group newAuthz
// returns: its listeners, its tracer provider, its database and API-key
// cache, the server itself, its policy and key reloads, its admin and JWKS
// ports and its secrets' reloads.
type authz struct {
	cfg config.Config
	env Env
	log *slog.Logger

	sec     *secrets
	signer  *assertion.Signer
	jwksTLS *tls.Config
	o       extauthz.Options
	metrics *authzMetrics
	tp      tracing
	db      *postgres.DB
	keys    *apikey.Authenticator
	srv     *extauthz.Server
	gs      *grpc.Server
	health  *httpapi.Health
}

// newAuthz is extauthz serving its gRPC service on ln, its admin port
// (health, metrics, the assertion JWKS) on adminLn, and the assertion
// JWKS alone over TLS on jwksLn (nil: none).
func newAuthz(cfg config.Config, env Env, log *slog.Logger, ln, adminLn, jwksLn *lifecycle.Listener) lifecycle.Component {
	log = log.With("component", "extauthz")
	p := &authz{cfg: cfg, env: env, log: log, health: &httpapi.Health{},
		// Its certificates and its database's password and TLS files are
		// re-read every secrets.reload_interval.
		sec: newSecrets(env.Getenv, log),
		// Each Check continues the trace Envoy started, in extauthz's spans.
		tp: tracing{c: cfg.Telemetry, service: serviceAuthz},
	}
	a := cfg.Authz
	// The gRPC server bounds its drain by authz.drain_delay and
	// authz.shutdown_timeout, the admin ports by adminGrace: the deadline
	// is the backstop that closes the listeners under one that did not
	// stop.
	g := &lifecycle.Group{Drain: a.DrainDelay.Duration + a.ShutdownTimeout.Duration + adminGrace + drainMargin}
	drained := []string{"authorization checks"}
	g.Add("authz.grpc_addr", ln)
	if adminLn != nil {
		g.Add("authz.admin_addr", adminLn)
	}
	if jwksLn != nil {
		g.Add("authz.jwks_addr", jwksLn)
	}
	g.Add("tracing", &p.tp)
	g.Add("extauthz options", lifecycle.Func{OnOpen: func(context.Context) error { return p.options(jwksLn != nil) }})
	if a.DatabaseURL != "" {
		g.Add("authz.database_url", lifecycle.Func{OnOpen: p.openDatabase, OnClose: func() error {
			if p.db != nil {
				p.db.Close()
			}
			return nil
		}})
		g.Add("api keys", lifecycle.Func{OnOpen: p.openAPIKeys, OnClose: func() error {
			if p.keys != nil {
				// Writes the keys' last use, once the server has stopped.
				p.keys.Close()
			}
			return nil
		}})
	}
	g.Add("extauthz", lifecycle.Func{OnOpen: p.open, OnRun: func(ctx context.Context) error {
		logServing(log, "extauthz", "grpc", ln.Net())
		err := p.srv.Serve(ctx, p.gs, ln.Net(), a.DrainDelay.Duration, a.ShutdownTimeout.Duration)
		p.health.Drain()
		return err
	}, OnClose: func() error {
		if p.srv != nil {
			p.srv.Close()
		}
		return nil
	}})
	switch {
	case a.BundleURL != "":
		g.Add("authz.bundle_url", runner(func(ctx context.Context) {
			first := make(chan error, 1)
			go func() {
				if err := <-first; err != nil {
					log.Warn("first policy bundle not loaded; serving the embedded policy until one loads", "err", err)
				}
			}()
			p.srv.PollBundle(ctx, nil, a.BundleURL, a.BundlePoll.Duration, first)
		}))
	case a.PolicyDir != "" && a.PolicyReload.Duration > 0:
		g.Add("authz.policy_dir", runner(func(ctx context.Context) { p.srv.WatchPolicyDir(ctx, a.PolicyDir, a.PolicyReload.Duration) }))
	}
	if a.AssertionKeyReload.Duration > 0 {
		g.Add("authz.assertion_key", runner(func(ctx context.Context) {
			reloadSigner(ctx, p.signer, a.AssertionKey, env.Getenv, a.AssertionKeyReload.Duration, log)
		}))
	}
	if adminLn != nil {
		admin := &lifecycle.HTTPServer{Listener: adminLn, Grace: adminGrace, Serving: serving(log, "extauthz", "admin")}
		g.Add("extauthz admin", lifecycle.Func{
			OnOpen: func(context.Context) error {
				mux := http.NewServeMux()
				mux.Handle(extauthz.JWKSPath, p.srv.JWKSHandler())
				mux.Handle("/", httpapi.NewAdminHandler(p.health, p.metrics.handler()))
				admin.Server = newHTTPServer(mux, adminHTTPTimeouts)
				return nil
			},
			OnRun: admin.Run,
		})
		drained = append(drained, "admin requests")
	}
	if jwksLn != nil {
		// The port the core follows (server.assertion_jwks_url): https, with
		// a certificate of the internal CA, so that only extauthz can tell
		// the core which keys to trust.
		js := &lifecycle.HTTPServer{Listener: jwksLn, Grace: adminGrace, Serving: serving(log, "extauthz", "jwks")}
		g.Add("extauthz jwks", lifecycle.Func{
			OnOpen: func(context.Context) error {
				mux := http.NewServeMux()
				mux.Handle(extauthz.JWKSPath, p.srv.JWKSHandler())
				js.Server = newHTTPServer(mux, adminHTTPTimeouts)
				js.Server.TLSConfig = p.jwksTLS
				return nil
			},
			OnRun: js.Run,
		})
		drained = append(drained, "jwks requests")
	}
	g.Add("extauthz secrets", p.sec.reloader(cfg))
	return stopLine{Component: g, log: log, name: "extauthz", drained: &drained}
}

// options reads what extauthz.Options takes from the configuration: the
// assertion signer, the issuers, the JWKS port's TLS (jwks true).
func (p *authz) options(jwks bool) error {
	a, env := p.cfg.Authz, p.env
	var err error
	if p.signer, err = loadSigner(a.AssertionKey, env.Getenv); err != nil {
		return err
	}
	if jwks {
		if p.jwksTLS, err = p.sec.plainServerTLS(p.cfg.TLS); err != nil {
			return fmt.Errorf("authz.jwks_addr: %w", err)
		}
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
				return fmt.Errorf("authz.issuers[%d].hmac_secret: %w", i, err)
			}
			issuers[i].HMACSecret = []byte(secret)
		}
	}
	p.o = extauthz.Options{
		Issuers: issuers, Leeway: a.Leeway.Duration, PolicyFS: policyFS(a.PolicyDir),
		Signer: p.signer, Logger: p.log, DryRun: a.DryRun, DefaultTier: a.DefaultTier, KeyRefresh: a.KeyRefresh.Duration,
		DecisionCacheTTL: a.DecisionCacheTTL.Duration, RetryAfter: p.cfg.Admission.RetryAfter.Duration,
		ConsoleDevLogin: p.cfg.Console.DevLogin,
	}
	p.metrics = newAuthzMetrics()
	p.o.Observe, p.o.ObserveReload = p.metrics.observe, p.metrics.observeReload
	if err := p.metrics.reg.Register(p.sec.w); err != nil {
		return err
	}
	if a.BundleURL != "" {
		// The embedded policy serves until the first bundle loads; it
		// denies anything its RBAC does not allow, so this fails safe.
		p.o.PolicyFS = policies.FS
	}
	return nil
}

// openDatabase opens extauthz's pool on authz.database_url.
func (p *authz) openDatabase(ctx context.Context) error {
	db, err := openDatabase(ctx, p.cfg, p.sec, "authz.database_url", p.cfg.Authz.DatabaseURL,
		postgres.Options{MaxConns: 4, StatementTimeout: 2 * time.Second, Logger: p.log})
	if err != nil {
		return err
	}
	p.db = db
	// Open the first connection in the background: a Check that had to
	// would likely outlast the gateway's authz timeout. Not fatal: the
	// database may come up later, and until then lookups fail closed.
	go func() {
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := db.Ping(pingCtx); err != nil && ctx.Err() == nil {
			p.log.Warn("authz.database_url: not reachable yet; API keys and persisted operations fail closed until it is", "err", err)
		}
	}()
	// The store the core registers automatic persisted queries in and
	// `fraise migrate` loads trusted documents into.
	p.o.Persisted = extauthz.PersistedStore{Docs: postgres.NewPersistedDocuments(p.db, postgres.PersistedOptions{})}
	if p.cfg.Authz.Audit {
		p.o.Decisions = postgres.NewDecisions(p.db)
	}
	return nil
}

// openAPIKeys makes the API-key authenticator on the database.
func (p *authz) openAPIKeys(context.Context) error {
	a := p.cfg.Authz
	p.keys = apikey.NewAuthenticator(postgres.NewAPIKeys(p.db), apikey.Options{
		CacheTTL: a.APIKeyCacheTTL.Duration, MaxLookupsPerSecond: a.APIKeyLookups, DefaultTier: a.DefaultTier, Logger: p.log,
		MaxUnknownLookupsPerSecond: a.APIKeyUnknownLookups, MaxClientLookupsPerSecond: a.APIKeyClientLookups,
	})
	p.o.APIKeys = p.keys
	return nil
}

// open makes the server (it loads and tests its policy) and its gRPC
// server.
func (p *authz) open(ctx context.Context) error {
	srv, err := extauthz.New(ctx, p.o)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", errStoppedStarting, err)
		}
		return err
	}
	p.srv = srv
	// Envoy alone asks for decisions: plaintext and any certificate but the
	// gateway's are refused at the handshake.
	tc, err := p.sec.serverTLS(p.cfg.TLS, false, p.cfg.TLS.GatewaySAN)
	if err != nil {
		return err
	}
	grpcOpts := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(tc))}, grpcTracing(p.tp.tp)...)
	a := p.cfg.Authz
	p.gs = srv.NewGRPCServer(extauthz.GRPCOptions{MaxRecvMsgBytes: a.MaxRecvMsgBytes, Reflection: a.Reflection, ServerOptions: grpcOpts})
	return nil
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

// assertionKeyClient is the client the core fetches extauthz's assertion
// keys with: TLS verified against the internal CA in caFile alone (never
// the system roots), never through a proxy, never following a redirect.
// Those keys decide who the core believes a request runs as, so only
// extauthz, holding a certificate of the internal CA for the URL's host,
// may answer.
func assertionKeyClient(caFile string) (*http.Client, error) {
	pool, err := loadCAPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("server.assertion_jwks_url: %w", err)
	}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 5 * time.Second,
			ForceAttemptHTTP2:   true,
		},
		Timeout: 5 * time.Second,
	}, nil
}

// errRedirect refuses every redirect: the URL configured is the only one
// the keys may come from.
var errRedirect = errors.New("assertion JWKS: redirect refused (server.assertion_jwks_url must name the JWKS itself)")

// keyFetchClient returns c as the assertion keys must be fetched with it,
// whoever built it: no redirects, and no proxy even if c's transport was
// given one (as Go's default transport takes HTTPS_PROXY from the
// environment).
func keyFetchClient(c *http.Client) (*http.Client, error) {
	t, ok := c.Transport.(*http.Transport)
	if !ok || t == nil {
		return nil, fmt.Errorf("server.assertion_jwks_url: the key client's transport is %T, want an *http.Transport", c.Transport)
	}
	t = t.Clone()
	t.Proxy = nil
	return &http.Client{
		Transport:     t,
		Timeout:       c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}, nil
}

// assertionKeyFetcher fetches extauthz's assertion JWKS from u with c,
// for the core's assertion.Verifier (which may not import net/http).
func assertionKeyFetcher(u string, c *http.Client) func() (map[string]ed25519.PublicKey, error) {
	return func() (map[string]ed25519.PublicKey, error) {
		resp, err := c.Get(u)
		if err != nil {
			return nil, fmt.Errorf("assertion JWKS: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("assertion JWKS: GET %s: %s", u, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("assertion JWKS: %w", err)
		}
		return assertion.ParseJWKS(b)
	}
}

// checkKeyURL refuses a key URL that is not https: over plain HTTP anyone
// on the path chooses the keys the core trusts.
func checkKeyURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("want an https:// URL without credentials, got %q", raw)
	}
	return nil
}

// followAssertionKeys makes v trust the keys extauthz publishes at rawURL
// in addition to the keys v trusts now (core.assertion_keys), which stay
// trusted whatever the URL answers: a fetch may add keys and retire keys
// an earlier fetch added, never take away a configured one. The keys are
// fetched now (an error if that fails, so that a wrong URL or CA shows at
// start rather than at the next rotation), then every interval and on an
// unknown key id (at most every 5 s), until ctx ends; failed fetches keep
// the previous keys. Configured keys extauthz no longer publishes are
// logged: an operator retires them from core.assertion_keys.
func followAssertionKeys(ctx context.Context, v *assertion.Verifier, rawURL string, client *http.Client, interval time.Duration, log *slog.Logger) error {
	pinned := v.Keys()
	return followAssertionKeysOf(ctx, v, func() map[string]ed25519.PublicKey { return pinned }, rawURL, client, interval, log)
}

// followAssertionKeysOf is followAssertionKeys with the configured keys
// given by configured at each fetch, rather than those v trusts at start:
// the core re-reads core.assertion_keys as their files change.
func followAssertionKeysOf(ctx context.Context, v *assertion.Verifier, configured func() map[string]ed25519.PublicKey, rawURL string, client *http.Client, interval time.Duration, log *slog.Logger) error {
	if err := checkKeyURL(rawURL); err != nil {
		return fmt.Errorf("server.assertion_jwks_url: %w", err)
	}
	if client == nil {
		return errors.New("server.assertion_jwks_url: no client (assertionKeyClient builds it from tls.ca)")
	}
	client, err := keyFetchClient(client)
	if err != nil {
		return err
	}
	fetchPublished := assertionKeyFetcher(rawURL, client)
	var mu sync.Mutex
	var warned string // the configured key ids last reported unpublished
	fetch := func() (map[string]ed25519.PublicKey, error) {
		published, err := fetchPublished()
		if err != nil {
			return nil, err
		}
		var unpublished []string
		pinned := configured()
		keys := make(map[string]ed25519.PublicKey, len(pinned)+len(published))
		for kid, pub := range published {
			keys[kid] = pub
		}
		for kid, pub := range pinned {
			keys[kid] = pub
			if _, ok := published[kid]; !ok {
				unpublished = append(unpublished, kid)
			}
		}
		slices.Sort(unpublished)
		mu.Lock()
		if ids := strings.Join(unpublished, ","); ids != warned {
			warned = ids
			if ids != "" {
				log.Warn("configured assertion keys are no longer published by extauthz; they stay trusted until removed from core.assertion_keys",
					"kids", ids)
			}
		}
		mu.Unlock()
		return keys, nil
	}
	keys, err := fetch()
	if err != nil {
		return fmt.Errorf("server.assertion_jwks_url: %w", err)
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
