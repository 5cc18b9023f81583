package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
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
	"github.com/fraise-dev/fraise/internal/assertion"
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
	ln, err := listen("core.http_addr", cfg.Core.HTTPAddr)
	if err != nil {
		return err
	}
	var adminLn, flightLn net.Listener
	if cfg.Core.AdminAddr != "" {
		if adminLn, err = listen("core.admin_addr", cfg.Core.AdminAddr); err != nil {
			ln.Close()
			return err
		}
	}
	if cfg.Core.FlightAddr != "" {
		if flightLn, err = listen("core.flight_addr", cfg.Core.FlightAddr); err != nil {
			ln.Close()
			if adminLn != nil {
				adminLn.Close()
			}
			return err
		}
	}
	return serveCore(ctx, cfg, env, log, ln, adminLn, flightLn)
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

// serveCore runs the core on ln (GraphQL over HTTP), adminLn (health and
// metrics) and flightLn (Arrow Flight gRPC; nil serves none) until ctx ends. On shutdown it reports not-ready first, then
// drains: a load balancer stops sending before connections close.
func serveCore(ctx context.Context, cfg config.Config, env Env, log *slog.Logger, ln, adminLn, flightLn net.Listener) error {
	log = log.With("component", "core")
	if flightLn != nil {
		// Every early return below closes ln; the Flight port goes with it.
		defer flightLn.Close()
	}
	// The core's certificates, keys and passwords are re-read every
	// secrets.reload_interval (sec.run below).
	sec := newSecrets(env.Getenv, log)
	configured, err := assertionKeys(sec, cfg.Core.AssertionKeys)
	if err != nil {
		ln.Close()
		return err
	}
	verifier := assertion.NewVerifier(configured.keys(), nil)
	// One replay cache for both listeners, sized for the rate the core is
	// expected to take: an assertion id is spent once, whichever listener.
	verifier.SetReplayCache(assertion.NewReplayCache(assertion.ReplayCapacity(cfg.Core.AssertionReplayRate), nil))
	following := cfg.Core.AssertionJWKSURL != ""
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
	if following {
		client, err := assertionKeyClient(cfg.TLS.CA)
		if err != nil {
			ln.Close()
			return err
		}
		if err := followAssertionKeysOf(ctx, verifier, configured.keys, cfg.Core.AssertionJWKSURL, client, time.Minute, log); err != nil {
			ln.Close()
			return err
		}
	}
	sdl := demo.SDL
	var generated string // core.schema = "auto": the SDL generated at start
	switch cfg.Core.Schema {
	case "":
	case "auto":
		db, err := openSchemaReader(ctx, cfg, env)
		if err != nil {
			ln.Close()
			return err
		}
		generated, err = generateSchema(ctx, db, cfg.Core.SchemaSchemas)
		db.Close()
		if err != nil {
			ln.Close()
			return fmt.Errorf("core.schema: %w", err)
		}
		sdl = generated
	default:
		b, err := os.ReadFile(cfg.Core.Schema)
		if err != nil {
			ln.Close()
			return fmt.Errorf("core.schema: %w", err)
		}
		sdl = string(b)
	}
	if cfg.Observers.Enabled {
		// Rule management is part of every schema observers serve.
		sdl = ruleapi.Merge(sdl)
	}
	schema, err := graphql.ParseSchema(sdl)
	if err != nil {
		ln.Close()
		return fmt.Errorf("core.schema: %w", err)
	}
	var protection *observe.Protection
	if cfg.Observers.Enabled {
		// Rules capture what the schema protects only for authors who may
		// read it.
		protection = ruleapi.Protection(schema)
	}
	// Requests continue the trace Envoy started, in the core's spans; so
	// do their statements and the observer jobs their writes cause.
	tp, stopTracing, err := newTracerProvider(ctx, cfg.Telemetry, serviceCore)
	if err != nil {
		ln.Close()
		return err
	}
	defer stopTracing(ctx)
	db, err := openDatabase(ctx, cfg, sec, "database.url", cfg.Database.URL, postgres.Options{
		MaxConns: int32(cfg.Database.MaxConns), StatementTimeout: cfg.Database.StatementTimeout.Duration, Logger: log,
		GenericPlans: cfg.Database.GenericPlans, TracerProvider: tracerProvider(tp),
		TenantSettings: cfg.Database.TenantSettings, SubjectSettings: cfg.Database.SubjectSettings,
	})
	if err != nil {
		ln.Close()
		return err
	}
	defer db.Close()
	if err := schema.Check(ctx, db); err != nil {
		ln.Close()
		return fmt.Errorf("core.schema: %w", err)
	}

	trusted, err := loadTrustedDocuments(cfg.Core.TrustedDocuments)
	if err != nil {
		ln.Close()
		return err
	}
	var persisted core.PersistedDocuments
	if cfg.Core.APQ {
		// Registrations go to the database, so every replica and extauthz
		// (which resolves hash-only requests for the policy) see them.
		persisted = postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})
	}
	var hooks graphql.Hooks
	if cfg.Observers.Enabled {
		hooks = ruleapi.Hooks(&observe.Rules{Compiler: observe.NewCompiler(), Protection: protection, Store: db})
	}
	// GraphQL's transactions have their own statement timeout when
	// core.statement_timeout is set, set by the adapter as every other.
	gqlDB := db
	if t := cfg.Core.StatementTimeout.Duration; t > 0 {
		gqlDB = db.WithStatementTimeout(t)
	}
	engine := graphql.NewEngine(schema, gqlDB, graphql.Options{
		MaxDepth: cfg.Core.MaxDepth, DefaultLimit: cfg.Core.DefaultLimit, MaxLimit: cfg.Core.MaxLimit,
		Introspection: cfg.Core.Introspection,
		MaxAliases:    cfg.Core.MaxAliases, MaxRootFields: cfg.Core.MaxRootFields, MaxCost: cfg.Core.MaxCost,
		MaxResultBytes: cfg.Core.MaxResultBytes, MaxSelections: cfg.Core.MaxSelections,
		APQ: cfg.Core.APQ, Trusted: trusted, Persisted: persisted, Hooks: hooks, Session: db, Audit: db,
	})
	if cfg.Core.Schema == "auto" {
		// SIGHUP, and in development a watch, serve the schema generated
		// anew. Flight datasets and observer rules keep the schema of start.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		var tick <-chan time.Time
		if cfg.Core.SchemaWatch.Duration > 0 {
			t := time.NewTicker(cfg.Core.SchemaWatch.Duration)
			defer t.Stop()
			tick = t.C
		}
		r := &schemaReloader{db: db, schemas: cfg.Core.SchemaSchemas, observers: cfg.Observers.Enabled, engine: engine, log: log, last: generated}
		go r.run(ctx, hup, tick, nil)
	}
	metrics := httpapi.NewMetrics()
	metrics.Registry.MustRegister(upGauge("fraise_postgres_up", "1 when the core's database answers a ping within a second, at scrape time.", db.Ping))
	if err := metrics.Registry.Register(sec.w); err != nil {
		ln.Close()
		return err
	}
	health := &httpapi.Health{Ready: db.Ping}
	api := httpapi.NewHandler(httpapi.Options{
		Verifier: verifier, Engine: engine, MaxBodyBytes: int64(cfg.Core.MaxBodyBytes), MaxBatch: cfg.Core.MaxBatch, Logger: log, Metrics: metrics,
		RetryAfter: cfg.Admission.RetryAfter.Duration,
	})
	breakers := &consoleBreakers{}
	consoleHandler, closeConsole, err := newConsole(cfg, sec, log, db, engine, verifier, breakers)
	if err != nil {
		ln.Close()
		return fmt.Errorf("console: %w", err)
	}
	defer closeConsole()
	handler := httpTracing(withTraceHeaders(withConsole(httpapi.VerifyAssertion(admitted(api, cfg.Admission, int64(cfg.Core.MaxBodyBytes), verifier, metrics), verifier), consoleHandler), cfg.Telemetry.TraceURL), tp, "core")
	srv := newHTTPServer(handler, coreHTTPTimeouts)
	srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	if cfg.Core.TLS {
		// Only the gateway reaches the core: an end user's certificate from
		// the same CA is refused at the handshake.
		if srv.TLSConfig, err = sec.serverTLS(cfg.TLS, true, cfg.TLS.GatewaySAN); err != nil {
			ln.Close()
			return err
		}
	}
	var flightSrv *grpc.Server
	if flightLn != nil {
		var closeFlight func()
		if flightSrv, closeFlight, err = newFlightServer(cfg, sec, log, db, schema, verifier, metrics.Registry, tp); err != nil {
			ln.Close()
			return err
		}
		defer closeFlight() // before db.Close, deferred earlier
	}
	g, gctx := errgroup.WithContext(ctx)
	took := stopClock(gctx)
	stopped := []string{"graphql requests"}
	sec.run(gctx, cfg)
	grace := cfg.Core.ShutdownTimeout.Duration
	drainCtx, drained := context.WithCancel(context.WithoutCancel(gctx))
	defer drained()
	g.Go(func() error {
		<-gctx.Done()
		health.Drain()
		if d := cfg.Core.DrainDelay.Duration; d > 0 {
			// Not ready, still serving: what reaches the listeners while
			// load balancers catch up is answered, not refused.
			log.Info("draining: not ready, serving for the drain delay", "drain_delay", d)
			time.Sleep(d)
		}
		drained()
		return nil
	})
	if cfg.Observers.Enabled {
		obs, err := newObservers(cfg, sec, log.With("component", "observers"), db, "", protection, tp)
		if err != nil {
			ln.Close()
			return fmt.Errorf("observers: %w", err)
		}
		defer obs.Close()
		breakers.p.Store(obs.Breakers())
		if err := obs.register(metrics.Registry); err != nil {
			ln.Close()
			return fmt.Errorf("observers: metrics: %w", err)
		}
		g.Go(func() error { return obs.Run(gctx) })
		stopped = append(stopped, "observer deliveries")
	}
	logServing(log, "core", "graphql", ln)
	g.Go(func() error { return serveHTTP(drainCtx, srv, ln, grace) })
	if flightLn != nil {
		logServing(log, "core", "flight", flightLn)
		g.Go(func() error { return serveGRPC(drainCtx, flightSrv, flightLn, grace) })
		stopped = append(stopped, "flight calls")
	}
	if adminLn != nil {
		admin := newHTTPServer(httpapi.NewAdminHandler(health, metrics.Handler()), adminHTTPTimeouts)
		logServing(log, "core", "admin", adminLn)
		g.Go(func() error { return serveHTTP(drainCtx, admin, adminLn, grace) })
		stopped = append(stopped, "admin requests")
	}
	err = g.Wait()
	logStopped(log, "core", stopped, took(), err)
	return err
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
		name := fmt.Sprintf("core.assertion_keys[%d]", i)
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

// loadTrustedDocuments reads core.trusted_documents, whose hashes are
// checked at start so a wrong manifest fails loudly.
func loadTrustedDocuments(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("core.trusted_documents: %w", err)
	}
	docs, err := graphql.ParseTrustedDocuments(b)
	if err != nil {
		return nil, fmt.Errorf("core.trusted_documents: %s: %w", path, err)
	}
	return docs, nil
}
