// Package ratelimit runs the real envoyproxy/ratelimit service in-process,
// backed by Redis, with its limits generated from Fraise's configuration.
// Envoy (or the development gateway) asks it ShouldRateLimit with domain
// "fraise" and descriptors built from the identity headers.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/envoyproxy/ratelimit/src/service_cmd/runner"
	"github.com/envoyproxy/ratelimit/src/settings"
	logger "github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	GRPCAddr, HTTPAddr, DebugAddr string
	RedisAddr, RedisPassword      string
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
}

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

// Service is a running rate-limit service.
type Service struct {
	runner  *runner.Runner
	done    chan struct{}
	tempDir string
	dir     string
	domain  string
	once    sync.Once
	mu      sync.Mutex // serialises Reload
}

// runMu serialises starts: the service configures logrus, a process-wide
// logger, and installs signal handlers that Start must then remove.
var runMu sync.Mutex

// Start starts the service and returns once its gRPC health service answers
// SERVING. The service installs handlers for SIGINT, SIGTERM and SIGHUP that
// exit the process; Start removes them, so a caller that handles signals
// must install its handlers after Start returns.
func Start(ctx context.Context, o Options) (*Service, error) {
	yml, err := ConfigYAML(o)
	if err != nil {
		return nil, err
	}
	for _, a := range []struct{ key, addr string }{{"grpc", o.GRPCAddr}, {"http", o.HTTPAddr}, {"debug", o.DebugAddr}} {
		// The service calls logrus.Fatal (exiting the process) when it cannot
		// listen: find out first and return an error instead.
		l, err := net.Listen("tcp", a.addr)
		if err != nil {
			return nil, fmt.Errorf("ratelimit %s address: %w", a.key, err)
		}
		l.Close()
	}
	s := &Service{done: make(chan struct{}), domain: o.Domain}
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
	runMu.Lock()
	defer runMu.Unlock()
	// The service re-reads a few settings from the process environment each
	// time it loads its configuration (settings.NewSettings in
	// service.reloadConfig), ignoring the Settings it was given: the
	// response headers are only enabled that way. Set exactly those.
	for k, v := range map[string]string{
		"LIMIT_RESPONSE_HEADERS_ENABLED": "true",
		"LIMIT_LIMIT_HEADER":             HeaderLimit,
		"LIMIT_REMAINING_HEADER":         HeaderRemaining,
		"LIMIT_RESET_HEADER":             HeaderReset,
	} {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	logger.SetLevel(logger.ErrorLevel)
	r := runner.NewRunner(st)
	s.runner = &r
	go func() {
		defer close(s.done)
		r.Run()
	}()
	if err := waitServing(ctx, o.GRPCAddr, s.done); err != nil {
		s.Close()
		return nil, err
	}
	// Run has installed its exit-on-signal handler by the time it serves.
	signal.Reset(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if o.Logger != nil {
		o.Logger.Info("rate limiter serving", "grpc", o.GRPCAddr, "domain", o.Domain,
			"tiers", len(o.Tiers), "actions", len(o.Actions))
	}
	return s, nil
}

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
// addresses and Redis of the running service stay) and replaces the file
// the service watches. The service reloads it within moments, without a
// restart and without resetting counters; an invalid o changes nothing.
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

func waitServing(ctx context.Context, addr string, done <-chan struct{}) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-done:
			return errors.New("ratelimit: the service stopped while starting")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ratelimit: not serving on %s after 20s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close stops the service. It is safe to call more than once.
func (s *Service) Close() error {
	s.once.Do(func() {
		if s.runner != nil {
			s.runner.Stop()
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
			}
		}
		if s.tempDir != "" {
			os.RemoveAll(s.tempDir)
		}
	})
	return nil
}

// newSettings builds the service's settings from their documented defaults
// (the struct's `default` tags) without reading the environment, which
// settings.NewSettings would do, and sets what Fraise decides.
func newSettings(o Options, runtimeDir string) (settings.Settings, error) {
	var s settings.Settings
	if err := applyDefaults(reflect.ValueOf(&s).Elem()); err != nil {
		return s, err
	}
	split := func(addr string) (string, int, error) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", 0, err
		}
		n, err := strconv.Atoi(p)
		return h, n, err
	}
	var err error
	var errs []error
	s.GrpcHost, s.GrpcPort, err = split(o.GRPCAddr)
	errs = append(errs, err)
	s.Host, s.Port, err = split(o.HTTPAddr)
	errs = append(errs, err)
	s.DebugHost, s.DebugPort, err = split(o.DebugAddr)
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("ratelimit: %w", err)
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
