// Package ratelimit runs the real envoyproxy/ratelimit service in-process,
// backed by Redis, with its limits generated from Fraise's configuration.
// Envoy asks it ShouldRateLimit with domain
// "fraise" and descriptors built from the identity headers.
package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"expvar"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coocood/freecache"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/ratelimit/src/metrics"
	rlredis "github.com/envoyproxy/ratelimit/src/redis"
	"github.com/envoyproxy/ratelimit/src/server"
	rlservice "github.com/envoyproxy/ratelimit/src/service"
	"github.com/envoyproxy/ratelimit/src/settings"
	rlstats "github.com/envoyproxy/ratelimit/src/stats"
	"github.com/envoyproxy/ratelimit/src/utils"
	gostats "github.com/lyft/gostats"
	"github.com/prometheus/client_golang/prometheus"
	logger "github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"gopkg.in/yaml.v2"
)

// Limit is a budget of requests per unit (second, minute, hour or day).
// A zero Requests means no limit. Shadow counts requests against the limit
// and reports them, but never refuses: for trying a new limit in
// production before enforcing it.
type Limit struct {
	Requests uint32
	Unit     string
	Shadow   bool
}

// Tier is the set of limits of one quota tier. Each non-zero Limit becomes
// one descriptor of the generated configuration:
//
//	Tenant:  [(tier, T), (tenant, X)]                   per-tenant QPS
//	Read, Write, Flight: [(tier, T), (tenant, X), (op, read|write|flight)]
//	Subject: [(tier, T), (subject, S)]                  per API key or user
type Tier struct {
	Tenant, Read, Write, Flight, Subject Limit
}

// DefaultTier is the tier whose limits apply to a tier the configuration
// does not name: the generated descriptor for it has no value, so it
// matches every tier value without a descriptor of its own.
const DefaultTier = "default"

// Descriptor keys of the contract between the gateway (Envoy's route
// actions), the observers' workers and this service.
const (
	KeyTier    = "tier"
	KeyTenant  = "tenant"
	KeyOp      = "op"
	KeySubject = "subject"
	KeyAction  = "action"
)

// Options configures the service.
type Options struct {
	// GRPCAddr is where the gRPC port (ShouldRateLimit and grpc.health.v1)
	// listens; port 0 picks a free one (Service.GRPCAddr says which).
	// Ignored when Listener is set.
	GRPCAddr string
	// Listener, when set, is the gRPC port, already bound by the caller;
	// the service closes it.
	Listener net.Listener
	// TLS is the gRPC port's mutual TLS, required: the port serves
	// nothing in plaintext. It must require client certificates and pin
	// the accepted clients' names (the gateway's, the core's):
	// secretfile.ServerTLS builds such a configuration, which takes a
	// renewed certificate from the next handshake on.
	TLS *tls.Config
	// HTTPAddr (POST /json, GET /healthcheck) and DebugAddr (pprof,
	// /stats, /rlconfig) are operator tools without authentication, off
	// when empty; Start refuses any but a loopback address for them.
	HTTPAddr, DebugAddr      string
	RedisAddr, RedisPassword string
	// RedisTLS, when set, returns the TLS configuration of each new
	// connection to Redis: TLS only, the server verified against its
	// roots for its ServerName, or else RedisAddr's host.
	RedisTLS func() *tls.Config
	// RedisPasswordSource, when set, returns the password of each new
	// connection to Redis, overriding RedisPassword. After either source
	// changes, Service.ReconnectRedis moves the limiter to connections
	// made with what they return now.
	RedisPasswordSource func() string
	// RuntimeDir receives the generated configuration (a temporary
	// directory, removed by Close, when empty).
	RuntimeDir string
	Domain     string
	// Tiers maps tier names to their limits; it must name DefaultTier.
	Tiers map[string]Tier
	// Actions limits observer actions per tenant, by action kind (webhook,
	// slack, email): the descriptor [(tenant, X), (action, kind)].
	Actions map[string]Limit
	// LocalCacheBytes sizes the service's in-process cache of keys that are
	// over their limit: until the window ends they are refused without a
	// Redis round trip. Zero disables it.
	LocalCacheBytes int
	Logger          *slog.Logger
	// Metrics, when set, receives envoyproxy/ratelimit's own stats as
	// Prometheus metrics (see docs/metrics.md), current at each scrape.
	Metrics prometheus.Registerer
}

// HealthService is the grpc.health.v1 service name whose status follows
// the service's health: NOT_SERVING from SIGTERM or Close on. Envoy's
// health check should name it; the empty name stays SERVING until Close.
// (envoyproxy/ratelimit's server.NewServer hard-codes it.)
const HealthService = "ratelimit"

// Headers the service adds to its answers; Envoy copies them onto the
// response, so a refused client learns when to come back.
const (
	HeaderLimit     = "RateLimit-Limit"
	HeaderRemaining = "RateLimit-Remaining"
	// HeaderReset is the reset header renamed Retry-After: its value is the
	// seconds until the window resets, exactly Retry-After's meaning.
	HeaderReset = "Retry-After"
)

type yamlLimit struct {
	Unit            string `yaml:"unit"`
	RequestsPerUnit uint32 `yaml:"requests_per_unit"`
}

type yamlDescriptor struct {
	Key         string           `yaml:"key"`
	Value       string           `yaml:"value,omitempty"`
	RateLimit   *yamlLimit       `yaml:"rate_limit,omitempty"`
	ShadowMode  bool             `yaml:"shadow_mode,omitempty"`
	Descriptors []yamlDescriptor `yaml:"descriptors,omitempty"`
}

type yamlRoot struct {
	Domain      string           `yaml:"domain"`
	Descriptors []yamlDescriptor `yaml:"descriptors"`
}

// ValidateLimit reports whether l is a usable limit; a zero Requests (no
// limit) is valid whatever its unit.
func ValidateLimit(l Limit) error {
	if l.Requests == 0 {
		return nil
	}
	switch l.Unit {
	case "second", "minute", "hour", "day":
		return nil
	}
	return fmt.Errorf("unit %q: want second, minute, hour or day", l.Unit)
}

// node returns a descriptor for key (and value, "" for any value) carrying
// l when it is set.
func node(key, value string, l Limit, children []yamlDescriptor) yamlDescriptor {
	d := yamlDescriptor{Key: key, Value: value, Descriptors: children}
	if l.Requests > 0 {
		d.RateLimit = &yamlLimit{Unit: l.Unit, RequestsPerUnit: l.Requests}
		d.ShadowMode = l.Shadow
	}
	return d
}

// ConfigYAML returns the envoyproxy/ratelimit configuration for o's tiers
// and actions (see Tier for the descriptors). Output is deterministic:
// tiers and actions are sorted by name.
func ConfigYAML(o Options) ([]byte, error) {
	if o.Domain == "" {
		o.Domain = "fraise"
	}
	if _, ok := o.Tiers[DefaultTier]; !ok {
		return nil, fmt.Errorf("ratelimit: tier %q is required: it applies to unknown tiers", DefaultTier)
	}
	var errs []error
	root := yamlRoot{Domain: o.Domain}
	for _, name := range slices.Sorted(maps.Keys(o.Tiers)) {
		t := o.Tiers[name]
		if name == "" {
			errs = append(errs, errors.New("ratelimit: a tier needs a name"))
			continue
		}
		for _, l := range []struct {
			key string
			l   Limit
		}{{"tenant", t.Tenant}, {"read", t.Read}, {"write", t.Write}, {"flight", t.Flight}, {"subject", t.Subject}} {
			if err := ValidateLimit(l.l); err != nil {
				errs = append(errs, fmt.Errorf("ratelimit: tier %s: %s: %w", name, l.key, err))
			}
		}
		var ops []yamlDescriptor
		for _, op := range []struct {
			name string
			l    Limit
		}{{"read", t.Read}, {"write", t.Write}, {"flight", t.Flight}} {
			if op.l.Requests > 0 {
				ops = append(ops, node(KeyOp, op.name, op.l, nil))
			}
		}
		var children []yamlDescriptor
		if t.Tenant.Requests > 0 || len(ops) > 0 {
			children = append(children, node(KeyTenant, "", t.Tenant, ops))
		}
		if t.Subject.Requests > 0 {
			children = append(children, node(KeySubject, "", t.Subject, nil))
		}
		value := name
		if name == DefaultTier {
			value = ""
		}
		root.Descriptors = append(root.Descriptors, node(KeyTier, value, Limit{}, children))
	}
	var actions []yamlDescriptor
	for _, name := range slices.Sorted(maps.Keys(o.Actions)) {
		l := o.Actions[name]
		if err := ValidateLimit(l); err != nil {
			errs = append(errs, fmt.Errorf("ratelimit: action %s: %w", name, err))
		}
		if l.Requests > 0 {
			actions = append(actions, node(KeyAction, name, l, nil))
		}
	}
	// Observers ask for [(tenant, X), (action, kind)]; the tenant node
	// itself carries no limit: gateways always send the tier first.
	if len(actions) > 0 {
		root.Descriptors = append(root.Descriptors, node(KeyTenant, "", Limit{}, actions))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return yaml.Marshal(root)
}

// Service is a running rate-limit service: envoyproxy/ratelimit's own
// server, Redis limiter and service, assembled as its runner assembles
// them, but serving on listeners Fraise owns. The runner always binds the
// HTTP and debug ports, serves gRPC in plaintext unless its own TLS
// settings (one client SAN, exiting the process on a bad file) are used,
// and exits the process on a signal or a port it cannot bind.
type Service struct {
	srv       server.Server
	service   rlservice.RateLimitServiceServer
	limiter   io.Closer
	redis     *redisClient
	grpcLn    net.Listener
	operators []*http.Server // the HTTP and debug ports that are on
	httpAddr  string
	debugAddr string
	tempDir   string
	dir       string
	domain    string
	log       *slog.Logger
	once      sync.Once
	mu        sync.Mutex // serialises Reload
}

// runMu serialises starts: the service configures logrus, a process-wide
// logger.
var runMu sync.Mutex

// closeGrace bounds how long Close lets calls under way finish.
const closeGrace = 10 * time.Second

// Start starts the service and returns once it serves: its gRPC port
// (ShouldRateLimit and grpc.health.v1, mutual TLS only) and the operator
// ports o turns on. It installs no signal handler that exits the process
// (envoyproxy/ratelimit's health service marks itself NOT_SERVING on
// SIGTERM, so Envoy moves away while Fraise drains). A Listener in o is
// closed when Start fails.
func Start(ctx context.Context, o Options) (_ *Service, err error) {
	s := &Service{domain: o.Domain, grpcLn: o.Listener, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	yml, err := ConfigYAML(o)
	if err != nil {
		return nil, err
	}
	for _, a := range []struct{ key, addr string }{{"http", o.HTTPAddr}, {"debug", o.DebugAddr}} {
		if err := operatorAddr(a.addr); err != nil {
			return nil, fmt.Errorf("ratelimit %s address: %w", a.key, err)
		}
	}
	if o.TLS == nil {
		return nil, fmt.Errorf("%w: the gRPC port serves mutual TLS only, and no TLS configuration was given", ErrTLS)
	}
	serverTLS := serverConfig(o.TLS)
	var lc net.ListenConfig
	if s.grpcLn == nil {
		if s.grpcLn, err = lc.Listen(ctx, "tcp", o.GRPCAddr); err != nil {
			return nil, fmt.Errorf("ratelimit grpc address: %w", err)
		}
	}
	var httpLn, debugLn net.Listener
	if o.HTTPAddr != "" {
		if httpLn, err = lc.Listen(ctx, "tcp", o.HTTPAddr); err != nil {
			return nil, fmt.Errorf("ratelimit http address: %w", err)
		}
		defer closeUnserved(httpLn, &err)
	}
	if o.DebugAddr != "" {
		if debugLn, err = lc.Listen(ctx, "tcp", o.DebugAddr); err != nil {
			return nil, fmt.Errorf("ratelimit debug address: %w", err)
		}
		defer closeUnserved(debugLn, &err)
	}

	dir := o.RuntimeDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fraise-ratelimit-"); err != nil {
			return nil, err
		}
		s.tempDir = dir
	}
	s.dir = dir
	if err := os.MkdirAll(filepath.Join(dir, "ratelimit", "config"), 0o755); err != nil {
		return nil, err
	}
	if err := s.write(yml); err != nil {
		return nil, err
	}
	st, err := newSettings(o, dir)
	if err != nil {
		return nil, err
	}
	pass := o.RedisPasswordSource
	if pass == nil {
		pass = func() string { return o.RedisPassword }
	}
	if s.redis, err = newRedisClient(ctx, o.RedisAddr, st.RedisPoolSize, st.RedisTimeout, o.RedisTLS, pass, s.log); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	s.limiter = s.redis
	store := gostats.NewStore(gostats.NewNullSink(), false)
	if o.Metrics != nil {
		b := newStatsBridge()
		if err := o.Metrics.Register(b); err != nil {
			return nil, fmt.Errorf("ratelimit metrics: %w", err)
		}
		store = b.store
	}
	if err := s.assemble(st, store); err != nil {
		return nil, err
	}

	go func() {
		// The listener is TLS itself: the server sees only connections
		// that completed the mutual TLS handshake (see serverCreds).
		err := s.srv.GrpcServer().Serve(tls.NewListener(s.grpcLn, serverTLS))
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("rate limiter gRPC port stopped", "err", err)
		}
	}()
	if httpLn != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/json", server.NewJsonHandler(s.service))
		mux.Handle("/healthcheck", s.srv.HealthChecker())
		s.httpAddr = s.serveOperator(httpLn, mux)
	}
	if debugLn != nil {
		s.debugAddr = s.serveOperator(debugLn, debugMux(s.service))
	}
	s.log.Info("rate limiter serving", "grpc", s.GRPCAddr(), "http", s.httpAddr, "debug", s.debugAddr,
		"domain", o.Domain, "tiers", len(o.Tiers), "actions", len(o.Actions))
	return s, nil
}

// assemble builds the service from envoyproxy/ratelimit's exported pieces,
// as runner.Run does, its stats kept in store. The pieces panic (a Redis they
// cannot reach, a runtime directory they cannot watch), which in the
// runner's goroutine would end the process: here it is Start's error.
func (s *Service) assemble(st settings.Settings, store gostats.Store) (err error) {
	runMu.Lock()
	defer runMu.Unlock()
	logger.SetLevel(logger.ErrorLevel)
	step := "server"
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ratelimit: %s: %v", step, r)
		}
	}()
	stats := rlstats.NewStatManager(store, st)
	var localCache *freecache.Cache
	if st.LocalCacheSizeInBytes != 0 {
		localCache = freecache.NewCache(st.LocalCacheSizeInBytes)
	}
	reporter := metrics.NewServerReporter(store.ScopeWithTags("ratelimit_server", st.ExtraTags))
	s.srv = server.NewServer(st, "ratelimit", stats, localCache, settings.GrpcUnaryInterceptor(reporter.UnaryServerInterceptor()))
	// The cache as rlredis.NewRateLimiterCacheImplFromSettings builds it,
	// but on Fraise's own Redis client (redisClient).
	cache := rlredis.NewFixedRateLimitCacheImpl(s.redis, nil, utils.NewTimeSourceImpl(),
		rand.New(utils.NewLockedSource(time.Now().Unix())), st.ExpirationJitterMaxSeconds, localCache,
		st.NearLimitRatio, st.CacheKeyPrefix, stats, st.StopCacheKeyIncrementWhenOverlimit)
	// NewService waits for the first configuration from the runtime
	// directory, written above.
	step = "limits"
	s.service = rlservice.NewService(cache, s.srv.Provider(), stats, s.srv.HealthChecker(), utils.NewTimeSourceImpl(),
		st.GlobalShadowMode, st.ForceStartWithoutInitialConfig, st.HealthyWithAtLeastOneConfigLoaded)
	// The rate-limit headers are added here, not by the service, which
	// adds them only when the process environment says so.
	s.service = withHeaders{RateLimitServiceServer: s.service, clock: utils.NewTimeSourceImpl()}
	pb.RegisterRateLimitServiceServer(s.srv.GrpcServer(), s.service)
	return nil
}

// withHeaders adds HeaderLimit, HeaderRemaining and HeaderReset to the
// answers of envoyproxy/ratelimit's service, for the descriptor the answer
// turns on: the last one over its limit, else the one with the least
// remaining (the service's own choice when its headers are on).
//
// The service turns its headers on only from the process environment
// (LIMIT_RESPONSE_HEADERS_ENABLED and the header names, re-read by
// settings.NewSettings at each configuration load, whatever Settings it was
// given). Setting them there would change the environment of the whole
// process, its other libraries and its children (Envoy under `fraise dev`)
// for good; adding the headers here keeps them Fraise's decision.
type withHeaders struct {
	rlservice.RateLimitServiceServer
	clock utils.TimeSource
}

// ShouldRateLimit asks the service and sets the headers of its answer.
func (h withHeaders) ShouldRateLimit(ctx context.Context, req *pb.RateLimitRequest) (*pb.RateLimitResponse, error) {
	resp, err := h.RateLimitServiceServer.ShouldRateLimit(ctx, req)
	if err != nil || resp == nil {
		return resp, err
	}
	var decisive *pb.RateLimitResponse_DescriptorStatus
	least := uint32(math.MaxUint32)
	for _, st := range resp.Statuses {
		switch {
		case st.GetCode() == pb.RateLimitResponse_OVER_LIMIT:
			decisive, least = st, 0
		case st.GetCurrentLimit() != nil && st.GetLimitRemaining() < least:
			decisive, least = st, st.GetLimitRemaining()
		}
	}
	resp.ResponseHeadersToAdd = nil
	if decisive == nil || decisive.GetCurrentLimit() == nil {
		return resp, nil
	}
	unit := decisive.CurrentLimit.Unit
	resp.ResponseHeadersToAdd = []*corev3.HeaderValue{
		{Key: HeaderLimit, Value: strconv.FormatUint(uint64(decisive.CurrentLimit.RequestsPerUnit), 10)},
		{Key: HeaderRemaining, Value: strconv.FormatUint(uint64(decisive.LimitRemaining), 10)},
		{Key: HeaderReset, Value: strconv.FormatInt(utils.CalculateReset(&unit, h.clock).GetSeconds(), 10)},
	}
	return resp, nil
}

// closeUnserved closes ln when Start fails before serving it.
func closeUnserved(ln net.Listener, err *error) {
	if *err != nil {
		ln.Close()
	}
}

// serveOperator serves h on ln, an operator port, until Close, and returns
// its address.
func (s *Service) serveOperator(ln net.Listener, h http.Handler) string {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.operators = append(s.operators, srv)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("rate limiter operator port stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return ln.Addr().String()
}

// operatorAddr returns an error unless addr is empty (the port is off) or
// a loopback address: the HTTP and debug ports authenticate nobody.
func operatorAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address: the port is an unauthenticated operator tool", addr)
}

// debugMux serves what envoyproxy/ratelimit's debug port serves: pprof,
// expvar's /stats, the loaded limits at /rlconfig and an index at /.
func debugMux(svc rlservice.RateLimitServiceServer) http.Handler {
	mux := http.NewServeMux()
	help := map[string]string{}
	add := func(path, what string, h http.HandlerFunc) {
		mux.HandleFunc(path, h)
		help[path] = what
	}
	add("/debug/pprof/", "root of various pprof endpoints. hit for help.", pprof.Index)
	add("/debug/pprof/profile", "CPU profiling endpoint", pprof.Profile)
	add("/debug/pprof/trace", "trace endpoint", pprof.Trace)
	add("/stats", "print out stats", func(w http.ResponseWriter, _ *http.Request) {
		expvar.Do(func(kv expvar.KeyValue) { fmt.Fprintf(w, "%s: %s\n", kv.Key, kv.Value) })
	})
	add("/rlconfig", "print out the currently loaded configuration for debugging", func(w http.ResponseWriter, _ *http.Request) {
		if current, _, _ := svc.GetCurrentConfig(); current != nil {
			io.WriteString(w, current.Dump())
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		for _, path := range slices.Sorted(maps.Keys(help)) {
			fmt.Fprintf(w, "%s: %s\n", path, help[path])
		}
	})
	return mux
}

// GRPCAddr returns the address the gRPC port listens on.
func (s *Service) GRPCAddr() string { return s.grpcLn.Addr().String() }

// HTTPAddr returns the address the HTTP port listens on, "" when it is
// off.
func (s *Service) HTTPAddr() string { return s.httpAddr }

// DebugAddr returns the address the debug port listens on, "" when it is
// off.
func (s *Service) DebugAddr() string { return s.debugAddr }

// write replaces the configuration file atomically: the service watches
// its runtime directory and must never read a half-written file. The
// temporary file lives outside the watched directory.
func (s *Service) write(yml []byte) error {
	tmp, err := os.CreateTemp(s.dir, ".fraise-*.yaml")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(yml); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(s.dir, "ratelimit", "config", "fraise.yaml"))
}

// Reload regenerates the configuration from o's Tiers and Actions (the
// addresses, TLS and Redis of the running service stay) and replaces the
// file the service watches. The service reloads it within moments,
// without a restart and without resetting counters; an invalid o changes
// nothing.
func (s *Service) Reload(o Options) error {
	o.Domain = s.domain
	yml, err := ConfigYAML(o)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.write(yml)
}

// Close stops the service: it reports NOT_SERVING, closes the operator
// ports, lets calls under way finish (for up to ten seconds) and closes
// ReconnectRedis moves the limiter to new connections to Redis, made with
// the TLS configuration and password Options.RedisTLS and
// Options.RedisPasswordSource return now; the connections open finish the
// commands they run and close. Call it when either changed. When Redis
// does not accept the new connections yet, the open ones keep serving, the
// error is returned, and the move is retried every second until it
// succeeds or ReconnectRedis is called again.
func (s *Service) ReconnectRedis() error { return s.redis.Reconnect() }

// its Redis connections. It is safe to call more than once.
func (s *Service) Close() error {
	s.once.Do(func() {
		if s.srv != nil {
			// Not ready first, for every service name health is asked
			// for: Envoy stops sending before the port closes.
			_ = s.srv.HealthChecker().Fail(server.SigtermComponentName)
			s.srv.HealthChecker().Server().Shutdown()
		}
		for _, srv := range s.operators {
			srv.Close()
		}
		if s.srv != nil {
			g := s.srv.GrpcServer()
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				g.GracefulStop()
			}()
			select {
			case <-stopped:
			case <-time.After(closeGrace):
				g.Stop()
				<-stopped
			}
			s.srv.Provider().Stop()
		}
		if s.grpcLn != nil {
			// Serving closed it; a Start that failed before serving did not.
			s.grpcLn.Close()
		}
		if s.limiter != nil {
			s.limiter.Close()
		}
		if s.tempDir != "" {
			os.RemoveAll(s.tempDir)
		}
	})
	return nil
}

// newSettings builds the service's settings from their documented defaults
// (the struct's `default` tags) without reading the environment, which
// settings.NewSettings would do, and sets what Fraise decides. The
// settings' addresses stay unused: Fraise binds the ports.
func newSettings(o Options, runtimeDir string) (settings.Settings, error) {
	var s settings.Settings
	if err := applyDefaults(reflect.ValueOf(&s).Elem()); err != nil {
		return s, err
	}
	s.UseStatsd = false
	s.DisableStats = true
	s.StatsFlushInterval = 10 * time.Second
	s.LogLevel = "error"
	s.ConfigType = "FILE"
	s.RuntimePath = runtimeDir
	s.RuntimeSubdirectory = "ratelimit"
	s.RuntimeAppDirectory = "config"
	s.RuntimeWatchRoot = false
	s.BackendType = "redis"
	s.RedisSocketType = "tcp"
	s.RedisType = "SINGLE"
	s.RedisUrl = o.RedisAddr
	s.RedisAuth = o.RedisPassword
	s.RedisTimeout = 2 * time.Second
	s.LocalCacheSizeInBytes = o.LocalCacheBytes
	s.RateLimitResponseHeadersEnabled = true
	s.HeaderRatelimitLimit = HeaderLimit
	s.HeaderRatelimitRemaining = HeaderRemaining
	s.HeaderRatelimitReset = HeaderReset
	return s, nil
}

func applyDefaults(v reflect.Value) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		def, ok := t.Field(i).Tag.Lookup("default")
		if !ok || def == "" {
			continue
		}
		f := v.Field(i)
		switch {
		case f.Type() == reflect.TypeOf(time.Duration(0)):
			d, err := time.ParseDuration(def)
			if err != nil {
				return fmt.Errorf("ratelimit default %s: %w", t.Field(i).Name, err)
			}
			f.SetInt(int64(d))
		case f.Kind() == reflect.String:
			f.SetString(def)
		case f.Kind() == reflect.Bool:
			b, _ := strconv.ParseBool(def)
			f.SetBool(b)
		case f.Kind() >= reflect.Int && f.Kind() <= reflect.Int64:
			n, _ := strconv.ParseInt(def, 10, 64)
			f.SetInt(n)
		case f.Kind() >= reflect.Uint && f.Kind() <= reflect.Uint64:
			n, _ := strconv.ParseUint(def, 10, 64)
			f.SetUint(n)
		case f.Kind() == reflect.Float32 || f.Kind() == reflect.Float64:
			n, _ := strconv.ParseFloat(def, 64)
			f.SetFloat(n)
		}
	}
	return nil
}
