package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/fraise-dev/fraise/adapters/httpapi"
	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/cmd/fraise/gctune"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/core/observe"
	"github.com/fraise-dev/fraise/core/observe/ruleapi"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/admission"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/lifecycle"
)

func runServe(ctx context.Context, env Env, args []string) error {
	fs, cfgPath := serverFlags("serve", env)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, log, err := loadServerConfig(*cfgPath, env, config.CommandServe)
	if err != nil {
		return err
	}
	if env.Getenv("GOGC") == "" {
		// The core's live heap is small (plans, pools, caches) while each
		// request allocates tens of KiB, so the default GOGC collects
		// several times a second under load, and each collection's mark
		// phase slows the requests in flight and takes CPU from them: at
		// twice saturation the core spent about a third less CPU per
		// answer with a 64 MiB heap goal (test/bench BenchmarkCoreOverload).
		// GOGC in the environment wins; GOMEMLIMIT still caps the heap.
		defer gctune.Tune(coreHeapFloor(cfg.Admission), 100)()
	}
	return lifecycle.Run(ctx, newCore(cfg, env, log, lifecycle.Listen("server.http_addr", cfg.Server.HTTPAddr),
		optionalListener("server.admin_addr", cfg.Server.AdminAddr), optionalListener("server.flight_addr", cfg.Server.FlightAddr)))
}

// coreHeapFloor is the core's heap goal floor: gctune.DefaultHeapFloor,
// but at most half the heap admission control refuses requests at. The
// heap admission reads counts garbage not yet collected, so a goal above
// its threshold would refuse requests for garbage the collector had not
// yet been asked to collect.
func coreHeapFloor(a config.Admission) uint64 {
	floor := uint64(gctune.DefaultHeapFloor)
	limit := a.MemoryLimitBytes
	if l := debug.SetMemoryLimit(-1); limit == 0 && l > 0 && l < math.MaxInt64 {
		limit = uint64(l)
	}
	if limit > 0 {
		floor = min(floor, uint64(float64(limit)*a.MemoryThreshold/2))
	}
	return floor
}

// coreParts are the core's parts, each a component of the group newCore
// returns.
type coreParts struct {
	cfg config.Config
	env Env
	log *slog.Logger

	sec       *secrets
	tp        tracing
	verifier  *assertion.Verifier
	schema    *graphql.Schema
	generated string // core.schema = "auto": the SDL generated at start
	db        *postgres.DB
	engine    *graphql.Engine
	metrics   *httpapi.Metrics
	health    *httpapi.Health
	breakers  *consoleBreakers
	prot      *observe.Protection
	obs       *observers
	// adm is the process's one admission: a class each for GraphQL
	// requests, Flight exports and observer deliveries ([admission]).
	adm admission.Admitters

	closeConsole, closeFlight func()
}

// newCore is the core serving GraphQL over HTTP on ln, health and metrics
// on adminLn and Arrow Flight gRPC on flightLn (nil: none of either),
// until its context ends. On stop it reports not-ready first, serves on
// for core.drain_delay, then drains: a load balancer stops sending before
// connections close. Observer deliveries stop at once.
func newCore(cfg config.Config, env Env, log *slog.Logger, ln, adminLn, flightLn *lifecycle.Listener) lifecycle.Component {
	log = log.With("component", "core")
	c := &coreParts{cfg: cfg, env: env, log: log,
		// The core's certificates, keys and passwords are re-read every
		// secrets.reload_interval (the secrets component below).
		sec: newSecrets(env.Getenv, log),
		// Requests continue the trace Envoy started, in the core's spans;
		// so do their statements and the observer jobs their writes cause.
		tp:       tracing{c: cfg.Telemetry, service: serviceCore},
		metrics:  httpapi.NewMetrics(),
		breakers: &consoleBreakers{},
	}
	c.adm = admitters(cfg.Admission, c.metrics.Registry)
	grace := cfg.Server.ShutdownTimeout.Duration
	g := &lifecycle.Group{}
	g.Add("server.http_addr", ln)
	if adminLn != nil {
		g.Add("server.admin_addr", adminLn)
	}
	if flightLn != nil {
		g.Add("server.flight_addr", flightLn)
	}
	g.Add("core assertion keys", lifecycle.Func{OnOpen: c.openVerifier})
	g.Add("server.schema", lifecycle.Func{OnOpen: c.openSchema})
	g.Add("tracing", &c.tp)
	g.Add("database.url", lifecycle.Func{OnOpen: c.openDatabase, OnClose: func() error {
		if c.db != nil {
			c.db.Close()
		}
		return nil
	}})
	if cfg.Server.Schema == "auto" {
		// SIGHUP, and in development a watch, serve the schema generated
		// anew. Flight datasets and observer rules keep the schema of
		// start.
		g.Add("server.schema reload", runner(c.reloadSchema))
	}

	// The servers stop together, core.drain_delay after the core is told
	// to: not ready, still serving, so that what reaches the listeners
	// while load balancers catch up is answered, not refused.
	// Each server bounds its own drain by core.shutdown_timeout; the
	// group's deadline is the backstop that closes their listeners under
	// one that did not stop.
	servers := &lifecycle.Group{Linger: cfg.Server.DrainDelay.Duration, Drain: grace + drainMargin, Stopping: func() {
		c.health.Drain()
		if d := cfg.Server.DrainDelay.Duration; d > 0 {
			log.Info("draining: not ready, serving for the drain delay", "drain_delay", d)
		}
	}}
	drained := []string{"graphql requests"}
	gql := &lifecycle.HTTPServer{Listener: ln, Grace: grace, Serving: serving(log, "core", "graphql")}
	g.Add("console", lifecycle.Func{OnOpen: func(context.Context) error { return c.openHTTP(gql) }, OnClose: func() error {
		if c.closeConsole != nil {
			c.closeConsole()
		}
		return nil
	}})
	servers.Add("graphql", lifecycle.Func{OnRun: gql.Run})
	if flightLn != nil {
		var fs *grpc.Server
		g.Add("flight", lifecycle.Func{OnOpen: func(context.Context) error {
			var err error
			fs, c.closeFlight, err = newFlightServer(cfg, c.sec, log, c.db, c.schema, c.verifier, c.metrics.Registry, c.tp.tp, c.adm.Flight)
			return err
		}, OnClose: func() error {
			if c.closeFlight != nil {
				c.closeFlight() // before the database closes
			}
			return nil
		}})
		servers.Add("flight", lifecycle.Func{OnRun: func(ctx context.Context) error {
			logServing(log, "core", "flight", flightLn.Net())
			return lifecycle.ServeGRPC(ctx, fs, flightLn.Net(), grace) // a running export is cut at grace rather than awaited
		}})
	}
	if cfg.Observers.Enabled {
		g.Add("observers", lifecycle.Func{OnOpen: c.openObservers, OnRun: func(ctx context.Context) error { return c.obs.Run(ctx) },
			OnClose: func() error {
				if c.obs != nil {
					c.obs.Close()
				}
				return nil
			}})
		drained = append(drained, "observer deliveries")
	}
	if flightLn != nil {
		drained = append(drained, "flight calls")
	}
	if adminLn != nil {
		admin := &lifecycle.HTTPServer{Listener: adminLn, Grace: grace, Serving: serving(log, "core", "admin")}
		servers.Add("admin", lifecycle.Func{OnRun: func(ctx context.Context) error {
			admin.Server = newHTTPServer(httpapi.NewAdminHandler(c.health, c.metrics.Handler()), adminHTTPTimeouts)
			return admin.Run(ctx)
		}})
		drained = append(drained, "admin requests")
	}
	g.Add("core servers", servers)
	g.Add("core secrets", c.sec.reloader(cfg))
	return stopLine{Component: g, log: log, name: "core", drained: &drained}
}

// openVerifier reads core.assertion_keys and, with
// server.assertion_jwks_url, fetches extauthz's.
func (c *coreParts) openVerifier(ctx context.Context) error {
	cfg, log := c.cfg, c.log
	configured, err := assertionKeys(c.sec, cfg.Server.AssertionKeys)
	if err != nil {
		return err
	}
	verifier := assertion.NewVerifier(configured.keys(), nil)
	c.verifier = verifier
	// One replay cache for both listeners, sized for the rate the core is
	// expected to take: an assertion id is spent once, whichever listener.
	verifier.SetReplayCache(assertion.NewReplayCache(assertion.ReplayCapacity(cfg.Server.AssertionReplayRate), nil))
	following := cfg.Server.AssertionJWKSURL != ""
	configured.onChange(func() {
		if following {
			// Add the new keys now; the next fetch drops those no longer
			// configured or published.
			keys := verifier.Keys()
			maps.Copy(keys, configured.keys())
			verifier.SetKeys(keys)
		} else {
			verifier.SetKeys(configured.keys())
		}
		log.Info("assertion keys reloaded", "kids", strings.Join(slices.Sorted(maps.Keys(configured.keys())), ","))
	})
	if !following {
		return nil
	}
	client, err := assertionKeyClient(cfg.TLS.CA)
	if err != nil {
		return err
	}
	// Fetches until ctx, the command's, ends.
	return followAssertionKeysOf(ctx, verifier, configured.keys, cfg.Server.AssertionJWKSURL, client, time.Minute, log)
}

// openSchema reads (or, for core.schema = "auto", generates) and parses
// the GraphQL schema.
func (c *coreParts) openSchema(ctx context.Context) error {
	cfg := c.cfg
	sdl := demo.SDL
	switch cfg.Server.Schema {
	case "":
	case "auto":
		db, err := openSchemaReader(ctx, cfg, c.env)
		if err != nil {
			return err
		}
		c.generated, err = generateSchema(ctx, db, cfg.Server.SchemaSchemas)
		db.Close()
		if err != nil {
			return fmt.Errorf("server.schema: %w", err)
		}
		sdl = c.generated
	default:
		b, err := os.ReadFile(cfg.Server.Schema)
		if err != nil {
			return fmt.Errorf("server.schema: %w", err)
		}
		sdl = string(b)
	}
	if cfg.Observers.Enabled {
		// Rule management is part of every schema observers serve.
		sdl = ruleapi.Merge(sdl)
	}
	schema, err := graphql.ParseSchema(sdl)
	if err != nil {
		return fmt.Errorf("server.schema: %w", err)
	}
	c.schema = schema
	if cfg.Observers.Enabled {
		// Rules capture what the schema protects only for authors who may
		// read it.
		c.prot = ruleapi.Protection(schema)
	}
	return nil
}

// openDatabase opens the core's pool, checks the schema against the
// database and builds the GraphQL engine on it.
func (c *coreParts) openDatabase(ctx context.Context) error {
	cfg := c.cfg
	db, err := openDatabase(ctx, cfg, c.sec, "database.url", cfg.Database.URL, postgres.Options{
		MaxConns: int32(cfg.Database.MaxConns), StatementTimeout: cfg.Database.StatementTimeout.Duration, Logger: c.log,
		GenericPlans: cfg.Database.GenericPlans, TracerProvider: tracerProvider(c.tp.tp),
		TenantSettings: cfg.Database.TenantSettings, SubjectSettings: cfg.Database.SubjectSettings,
	})
	if err != nil {
		return err
	}
	c.db = db
	if err := c.schema.Check(ctx, db); err != nil {
		return fmt.Errorf("server.schema: %w", err)
	}
	trusted, err := loadTrustedDocuments(cfg.Server.TrustedDocuments)
	if err != nil {
		return err
	}
	var persisted core.PersistedDocuments
	if cfg.Server.APQ {
		// Registrations go to the database, so every replica and extauthz
		// (which resolves hash-only requests for the policy) see them.
		persisted = postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})
	}
	var hooks graphql.Hooks
	if cfg.Observers.Enabled {
		hooks = ruleapi.Hooks(&observe.Rules{Compiler: observe.NewCompiler(), Protection: c.prot, Store: db})
	}
	// GraphQL's transactions have their own statement timeout when
	// core.statement_timeout is set, set by the adapter as every other.
	gqlDB := db
	if t := cfg.Server.StatementTimeout.Duration; t > 0 {
		gqlDB = db.WithStatementTimeout(t)
	}
	c.engine = graphql.NewEngine(c.schema, gqlDB, graphql.Options{
		MaxDepth: cfg.Server.MaxDepth, DefaultLimit: cfg.Server.DefaultLimit, MaxLimit: cfg.Server.MaxLimit,
		Introspection: cfg.Server.Introspection,
		MaxAliases:    cfg.Server.MaxAliases, MaxRootFields: cfg.Server.MaxRootFields, MaxCost: cfg.Server.MaxCost,
		MaxResultBytes: cfg.Server.MaxResultBytes, MaxSelections: cfg.Server.MaxSelections,
		APQ: cfg.Server.APQ, Trusted: trusted, Persisted: persisted, Hooks: hooks, Session: db, Audit: db,
		Batcher: gqlDB, Writer: gqlDB,
	})
	c.metrics.Registry.MustRegister(upGauge("fraise_postgres_up", "1 when the core's database answers a ping within a second, at scrape time.", db.Ping))
	if err := c.metrics.Registry.Register(c.sec.w); err != nil {
		return err
	}
	c.health = &httpapi.Health{Ready: db.Ping}
	return nil
}

// reloadSchema serves the schema generated anew on SIGHUP and every
// core.schema_watch, until ctx ends.
func (c *coreParts) reloadSchema(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if d := c.cfg.Server.SchemaWatch.Duration; d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		tick = t.C
	}
	r := &schemaReloader{db: c.db, schemas: c.cfg.Server.SchemaSchemas, observers: c.cfg.Observers.Enabled, engine: c.engine, log: c.log, last: c.generated}
	r.run(ctx, hup, tick, nil)
}

// openHTTP builds the GraphQL port's server, with the console, into s.
func (c *coreParts) openHTTP(s *lifecycle.HTTPServer) error {
	cfg := c.cfg
	api := httpapi.NewHandler(httpapi.Options{
		Verifier: c.verifier, Engine: c.engine, MaxBodyBytes: int64(cfg.Server.MaxBodyBytes), MaxBatch: cfg.Server.MaxBatch, Logger: c.log, Metrics: c.metrics,
		RetryAfter: cfg.Admission.RetryAfter.Duration,
	})
	consoleHandler, closeConsole, err := newConsole(cfg, c.sec, c.log, c.db, c.engine, c.verifier, c.breakers)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	c.closeConsole = closeConsole
	handler := httpTracing(withTraceHeaders(withConsole(httpapi.VerifyAssertion(admitWith(api, c.adm.GraphQL, int64(cfg.Server.MaxBodyBytes), c.verifier, c.metrics), c.verifier), consoleHandler), cfg.Telemetry.TraceURL), c.tp.tp, "core")
	srv := newHTTPServer(handler, coreHTTPTimeouts)
	srv.ErrorLog = slog.NewLogLogger(c.log.Handler(), slog.LevelWarn)
	if cfg.Server.TLS {
		// Only the gateway reaches the core: an end user's certificate from
		// the same CA is refused at the handshake.
		if srv.TLSConfig, err = c.sec.serverTLS(cfg.TLS, true, cfg.TLS.GatewaySAN); err != nil {
			return err
		}
	}
	s.Server = srv
	return nil
}

// openObservers builds the observers' pipeline.
func (c *coreParts) openObservers(context.Context) error {
	obs, err := newObservers(c.cfg, c.sec, c.log.With("component", "observers"), c.db, "", c.prot, c.tp.tp, c.adm.Observers)
	if err != nil {
		return fmt.Errorf("observers: %w", err)
	}
	c.obs = obs
	c.breakers.p.Store(obs.Breakers())
	if err := obs.register(c.metrics.Registry); err != nil {
		return fmt.Errorf("observers: metrics: %w", err)
	}
	return nil
}

// serverTimeouts bound how long a client may hold a connection of the
// core's HTTP servers without finishing a request: with only a header
// timeout, a client that sends a Content-Length and then stalls its body,
// or an idle keep-alive connection, would hold a goroutine and a
// descriptor for good.
//
// There is no write timeout. net/http starts it when a request's headers
// are read, so it would bound the handler as well as the answer; a
// handler may legitimately run for as long as core.statement_timeout (or
// database.statement_timeout, where 0 is none) allows, and a write
// timeout that fired would not stop it, only turn its answer, even the
// STATEMENT_TIMEOUT error that ends it, into a reset connection.
type serverTimeouts struct {
	// header bounds reading a request's headers.
	header time.Duration
	// read bounds reading a whole request, headers and body, from its
	// first byte. net/http lifts it once the handler has read the body to
	// its end (or at once for a request without a body), so it never cuts
	// a running handler; an admission queue wait, which comes before the
	// body is read, counts against it.
	read time.Duration
	// idle bounds a keep-alive connection's wait for its next request.
	idle time.Duration
}

var (
	// coreHTTPTimeouts give a request a minute to arrive, enough for the
	// default core.max_body_bytes (1 MiB) at 17 KiB/s, and keep a
	// connection idle for two minutes, long enough for a client's pool
	// between bursts.
	coreHTTPTimeouts = serverTimeouts{header: 10 * time.Second, read: time.Minute, idle: 2 * time.Minute}
	// adminHTTPTimeouts are the same but for a shorter header timeout:
	// probes and scrapes are small requests from close by.
	adminHTTPTimeouts = serverTimeouts{header: 5 * time.Second, read: time.Minute, idle: 2 * time.Minute}
)

// newHTTPServer returns the server for one of the core's HTTP listeners,
// with the timeouts t.
func newHTTPServer(h http.Handler, t serverTimeouts) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.header, ReadTimeout: t.read, IdleTimeout: t.idle}
}

// configuredKeys are the assertion keys of core.assertion_keys, each
// re-read as its file changes (a file:// reference or a path; an env://
// reference is read at start only). A file that does not hold a key keeps
// the key it held.
type configuredKeys []*secretfile.Value[ed25519.PublicKey]

// assertionKeys reads refs (core.assertion_keys) through sec.
func assertionKeys(sec *secrets, refs []string) (configuredKeys, error) {
	parse := func(b [][]byte) (ed25519.PublicKey, time.Time, error) {
		pub, err := assertion.ParsePublicKeyPEM(b[0])
		return pub, time.Time{}, err
	}
	var ks configuredKeys
	for i, ref := range refs {
		name := fmt.Sprintf("server.assertion_keys[%d]", i)
		if strings.HasPrefix(ref, "env://") || strings.HasPrefix(ref, "vault://") {
			data, err := readFileRef(ref, sec.getenv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			pub, _, err := parse([][]byte{data})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			ks = append(ks, secretfile.Fixed(name, pub))
			continue
		}
		path, _ := config.FilePath(ref)
		if path == "" {
			path = ref
		}
		v, err := secretfile.Watch(sec.w, name, []string{path}, parse)
		if err != nil {
			return nil, fmt.Errorf("%w (run `fraise certs`)", err)
		}
		ks = append(ks, v)
	}
	return ks, nil
}

// keys are the keys as the files hold them now, each named by its
// thumbprint, as the signer names them.
func (ks configuredKeys) keys() map[string]ed25519.PublicKey {
	m := make(map[string]ed25519.PublicKey, len(ks))
	for _, v := range ks {
		pub := v.Get()
		m[assertion.KeyID(pub)] = pub
	}
	return m
}

// onChange calls f after any of the keys changed.
func (ks configuredKeys) onChange(f func()) {
	for _, v := range ks {
		v.OnChange(func(ed25519.PublicKey) { f() })
	}
}

// loadTrustedDocuments reads server.trusted_documents, whose hashes are
// checked at start so a wrong manifest fails loudly.
func loadTrustedDocuments(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server.trusted_documents: %w", err)
	}
	docs, err := graphql.ParseTrustedDocuments(b)
	if err != nil {
		return nil, fmt.Errorf("server.trusted_documents: %s: %w", path, err)
	}
	return docs, nil
}
