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
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sort"
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
type Limit struct {
	Requests uint32
	Unit     string
}

// Options configures the service.
type Options struct {
	GRPCAddr, HTTPAddr, DebugAddr string
	RedisAddr, RedisPassword      string
	// RuntimeDir receives the generated configuration (a temporary
	// directory, removed by Close, when empty).
	RuntimeDir string
	Domain     string
	// PerTenant applies to every distinct value of the tenant descriptor.
	PerTenant Limit
	// PerAction limits observer actions per tenant, by action kind: the
	// descriptor [(tenant, id), (action, kind)] ActionLimiter sends.
	PerAction       map[string]Limit
	ShadowMode      bool
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

// ConfigYAML returns the envoyproxy/ratelimit configuration for o: a
// "tenant" descriptor without a value, which the service applies to each
// tenant separately.
func ConfigYAML(o Options) ([]byte, error) {
	if o.Domain == "" {
		o.Domain = "fraise"
	}
	switch o.PerTenant.Unit {
	case "second", "minute", "hour", "day":
	default:
		return nil, fmt.Errorf("ratelimit: unit %q: want second, minute, hour or day", o.PerTenant.Unit)
	}
	if o.PerTenant.Requests == 0 {
		return nil, errors.New("ratelimit: per-tenant requests must be at least 1")
	}
	var actions []yamlDescriptor
	kinds := make([]string, 0, len(o.PerAction))
	for k := range o.PerAction {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		l := o.PerAction[k]
		if l.Requests == 0 {
			continue
		}
		switch l.Unit {
		case "second", "minute", "hour", "day":
		default:
			return nil, fmt.Errorf("ratelimit: action %s: unit %q: want second, minute, hour or day", k, l.Unit)
		}
		actions = append(actions, yamlDescriptor{Key: "action", Value: k,
			RateLimit: &yamlLimit{Unit: l.Unit, RequestsPerUnit: l.Requests}, ShadowMode: o.ShadowMode})
	}
	return yaml.Marshal(yamlRoot{Domain: o.Domain, Descriptors: []yamlDescriptor{{
		Key:         "tenant",
		RateLimit:   &yamlLimit{Unit: o.PerTenant.Unit, RequestsPerUnit: o.PerTenant.Requests},
		ShadowMode:  o.ShadowMode,
		Descriptors: actions,
	}}})
}

// Service is a running rate-limit service.
type Service struct {
	runner  *runner.Runner
	done    chan struct{}
	tempDir string
	once    sync.Once
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
	s := &Service{done: make(chan struct{})}
	dir := o.RuntimeDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "fraise-ratelimit-"); err != nil {
			return nil, err
		}
		s.tempDir = dir
	}
	cfgDir := filepath.Join(dir, "ratelimit", "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "fraise.yaml"), yml, 0o644); err != nil {
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
			"per_tenant", strconv.Itoa(int(o.PerTenant.Requests))+"/"+o.PerTenant.Unit, "shadow", o.ShadowMode)
	}
	return s, nil
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
