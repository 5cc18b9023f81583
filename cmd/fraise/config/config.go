// Package config is Fraise's one typed configuration: every component's
// settings with their defaults in one place, loaded from fraise.toml with
// FRAISE_* environment overrides and validated at start with every problem
// reported at once. Components never see this type: cmd/fraise hands each
// one the plain values it needs.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration written as "250ms" or "5s" in TOML and in
// environment overrides.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 250ms, 5s, 1m): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Config is the whole of fraise.toml.
type Config struct {
	Log       Log       `toml:"log"`
	Telemetry Telemetry `toml:"telemetry"`
	TLS       TLS       `toml:"tls"`
	Database  Database  `toml:"database"`
	Redis     Redis     `toml:"redis"`
	Core      Core      `toml:"core"`
	Authz     Authz     `toml:"authz"`
	RateLimit RateLimit `toml:"ratelimit"`
	Gateway   Gateway   `toml:"gateway"`
	XDS       XDS       `toml:"xds"`
	Observers Observers `toml:"observers"`
}

// XDS configures `fraise xds`, the control plane that serves the Envoy
// configuration to production Envoys.
type XDS struct {
	GRPCAddr string `toml:"grpc_addr"`
	NodeID   string `toml:"node_id"`
	// PollInterval is how often fraise.toml is checked for changes.
	PollInterval Duration `toml:"poll_interval"`
}

// Log configures log/slog output.
type Log struct {
	Format string `toml:"format"` // "text" (development) or "json" (production)
	Level  string `toml:"level"`  // debug, info, warn, error
}

// Telemetry configures OpenTelemetry tracing.
type Telemetry struct {
	// OTLPEndpoint is the OTLP/gRPC collector (host:port); empty keeps
	// traces in-process, still propagating W3C trace context.
	OTLPEndpoint string  `toml:"otlp_endpoint"`
	SampleRatio  float64 `toml:"sample_ratio"`
}

// TLS names the PEM files for mTLS between the gateway, its clients and the
// core. `fraise certs` writes development ones under .dev/certs.
type TLS struct {
	CA         string `toml:"ca"`
	ServerCert string `toml:"server_cert"`
	ServerKey  string `toml:"server_key"`
	ClientCert string `toml:"client_cert"`
	ClientKey  string `toml:"client_key"`
	// ServerName is the name the gateway expects on the core's certificate.
	ServerName string `toml:"server_name"`
}

// Database configures PostgreSQL.
type Database struct {
	// URL is how the core connects: as a role without BYPASSRLS, so that
	// row-level security applies to it. May be a secret reference.
	URL string `toml:"url"`
	// AdminURL is how `fraise migrate` connects, as the schema owner.
	AdminURL         string   `toml:"admin_url"`
	AppRole          string   `toml:"app_role"`
	MaxConns         int      `toml:"max_conns"`
	StatementTimeout Duration `toml:"statement_timeout"`
}

// Redis configures the Redis used by the rate limiter and observers.
type Redis struct {
	Addr     string `toml:"addr"`
	Password string `toml:"password"`
}

// Core configures `fraise serve`.
type Core struct {
	HTTPAddr  string `toml:"http_addr"`
	AdminAddr string `toml:"admin_addr"`
	// TLS makes the core's HTTP port require client certificates signed by
	// the CA: only the gateway (Envoy) can reach it.
	TLS bool `toml:"tls"`
	// Schema is a GraphQL SDL file; empty serves the demo schema.
	Schema string `toml:"schema"`
	// AssertionKeys are extauthz's Ed25519 public keys (PEM, or references
	// to them); the current and the previous key during a rotation.
	AssertionKeys   []string `toml:"assertion_keys"`
	MaxBodyBytes    int      `toml:"max_body_bytes"`
	MaxDepth        int      `toml:"max_depth"`
	DefaultLimit    int      `toml:"default_limit"`
	MaxLimit        int      `toml:"max_limit"`
	Introspection   bool     `toml:"introspection"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
}

// Issuer is one trusted JWT issuer.
type Issuer struct {
	Issuer      string   `toml:"issuer"`
	Audiences   []string `toml:"audiences"`
	JWKSFile    string   `toml:"jwks_file"`
	JWKSURL     string   `toml:"jwks_url"`
	Algorithms  []string `toml:"algorithms"`
	TenantClaim string   `toml:"tenant_claim"`
	RolesClaim  string   `toml:"roles_claim"`
	ScopesClaim string   `toml:"scopes_claim"`
	TierClaim   string   `toml:"tier_claim"`
}

// Authz configures `fraise authz` (extauthz).
type Authz struct {
	GRPCAddr  string `toml:"grpc_addr"`
	AdminAddr string `toml:"admin_addr"`
	// AssertionKey is the Ed25519 private key (PEM) that signs identity
	// assertions; always a reference (file:// or env://), never literal.
	AssertionKey string `toml:"assertion_key"`
	// PolicyDir holds the Rego policies; empty uses the embedded policies/.
	PolicyDir   string   `toml:"policy_dir"`
	DryRun      bool     `toml:"dry_run"`
	Leeway      Duration `toml:"leeway"`
	DefaultTier string   `toml:"default_tier"`
	Issuers     []Issuer `toml:"issuers"`
}

// Limit is a request budget per unit of time.
type Limit struct {
	Requests uint32 `toml:"requests"`
	Unit     string `toml:"unit"` // second, minute, hour, day
}

// RateLimit configures `fraise ratelimit` (envoyproxy/ratelimit) and how
// the gateway consults it.
type RateLimit struct {
	GRPCAddr  string `toml:"grpc_addr"`
	HTTPAddr  string `toml:"http_addr"`
	DebugAddr string `toml:"debug_addr"`
	Domain    string `toml:"domain"`
	PerTenant Limit  `toml:"per_tenant"`
	// ShadowMode counts without refusing, for trying a new limit.
	ShadowMode bool `toml:"shadow_mode"`
	// FailureModeDeny refuses requests when the limiter is unreachable;
	// the default lets them through (fail open).
	FailureModeDeny bool     `toml:"failure_mode_deny"`
	Timeout         Duration `toml:"timeout"`
	LocalCacheBytes int      `toml:"local_cache_bytes"`
}

// Gateway configures `fraise gateway` and the Envoy configuration generated
// for production.
type Gateway struct {
	ListenAddr      string   `toml:"listen_addr"`
	AdminAddr       string   `toml:"admin_addr"`
	AuthzTimeout    Duration `toml:"authz_timeout"`
	MaxRequestBytes uint32   `toml:"max_request_bytes"`
	// Envoy is the Envoy binary `fraise dev` prefers over the development
	// gateway when it is on PATH ("envoy"); empty never uses Envoy.
	Envoy string `toml:"envoy"`
}

// Observers configures the observer dispatcher and workers that `fraise
// serve` (and `fraise dev`) run when Enabled.
type Observers struct {
	Enabled bool `toml:"enabled"`
	// Cursor names the dispatcher's position in the outbox; dispatchers
	// sharing a name take turns (one leads at a time).
	Cursor    string `toml:"cursor"`
	BatchSize int    `toml:"batch_size"`
	// Workers is how many jobs one process runs at once; PerTenant how
	// many of them one tenant may hold.
	Workers     int `toml:"workers"`
	PerTenant   int `toml:"per_tenant"`
	MaxAttempts int `toml:"max_attempts"`
	// BackoffBase doubles per attempt, with full jitter, up to BackoffCap
	// (at most 5m).
	BackoffBase Duration `toml:"backoff_base"`
	BackoffCap  Duration `toml:"backoff_cap"`
	// ReclaimIdle is how long a job may sit with a silent worker before
	// another takes it; it must exceed every action timeout.
	ReclaimIdle Duration `toml:"reclaim_idle"`
	// Backpressure is fail-fast, queue-all or adaptive; MaxQueueMemoryMB
	// bounds each tenant's queued jobs; adaptive slows down past
	// MemoryThresholdPercent of it.
	Backpressure           string `toml:"backpressure"`
	MaxQueueMemoryMB       int    `toml:"max_queue_memory_mb"`
	MemoryThresholdPercent int    `toml:"memory_threshold_percent"`
	// AllowPrivateTargets lets webhooks reach loopback and private
	// addresses (development only).
	AllowPrivateTargets bool `toml:"allow_private_targets"`
	// RateLimits asks the rate-limit service (ratelimit.grpc_addr) before
	// each action, descriptor (tenant, action).
	RateLimits bool           `toml:"rate_limits"`
	Webhook    ObserverAction `toml:"webhook"`
	Slack      ObserverAction `toml:"slack"`
	Email      ObserverAction `toml:"email"`
	SMTP       SMTP           `toml:"smtp"`
}

// ObserverAction are one action kind's timeout and circuit-breaker
// thresholds: FailureThreshold failures within FailureWindow open a
// target's breaker for OpenTimeout; SuccessThreshold probes close it.
type ObserverAction struct {
	Timeout          Duration `toml:"timeout"`
	FailureThreshold int      `toml:"failure_threshold"`
	FailureWindow    Duration `toml:"failure_window"`
	OpenTimeout      Duration `toml:"open_timeout"`
	SuccessThreshold int      `toml:"success_threshold"`
	// RateLimit is the per-tenant budget of this kind of action, enforced
	// by the rate-limit service when observers.rate_limits is on.
	RateLimit Limit `toml:"rate_limit"`
}

// SMTP is the mail server email actions go through.
type SMTP struct {
	Addr     string `toml:"addr"`
	From     string `toml:"from"`
	Username string `toml:"username"`
	// Password may be a secret reference.
	Password string `toml:"password"`
	// CA is a PEM file to trust for the server's certificate (system roots
	// when empty).
	CA string `toml:"ca"`
	// InsecureNoTLS permits a server without STARTTLS (local relays).
	InsecureNoTLS bool `toml:"insecure_no_tls"`
}

// Default returns the configuration every deployment starts from: the
// embedded defaults `make run` uses, on loopback, with the development
// credentials `fraise certs` writes under .dev/.
func Default() Config {
	return Config{
		Log:       Log{Format: "text", Level: "info"},
		Telemetry: Telemetry{SampleRatio: 1},
		TLS: TLS{
			CA: ".dev/certs/ca.pem", ServerCert: ".dev/certs/server.pem", ServerKey: ".dev/certs/server-key.pem",
			ClientCert: ".dev/certs/client.pem", ClientKey: ".dev/certs/client-key.pem", ServerName: "localhost",
		},
		Database: Database{
			URL:              "postgres://fraise_app@127.0.0.1:55432/fraise?sslmode=disable",
			AdminURL:         "postgres://postgres@127.0.0.1:55432/fraise?sslmode=disable",
			AppRole:          "fraise_app",
			MaxConns:         20,
			StatementTimeout: Duration{5 * time.Second},
		},
		Redis: Redis{Addr: "127.0.0.1:56379"},
		Core: Core{
			HTTPAddr: "127.0.0.1:8080", AdminAddr: "127.0.0.1:9080", TLS: true,
			AssertionKeys: []string{"file://.dev/keys/assertion.pub"},
			MaxBodyBytes:  1 << 20, MaxDepth: 10, DefaultLimit: 100, MaxLimit: 1000,
			Introspection: true, ShutdownTimeout: Duration{10 * time.Second},
		},
		Authz: Authz{
			GRPCAddr: "127.0.0.1:9191", AdminAddr: "127.0.0.1:9192",
			AssertionKey: "file://.dev/keys/assertion.key",
			Leeway:       Duration{30 * time.Second}, DefaultTier: "default",
			Issuers: []Issuer{{
				Issuer: DevIssuer, Audiences: []string{DevAudience},
				JWKSFile: ".dev/keys/dev-issuer.jwks", Algorithms: []string{"ES256"},
			}},
		},
		RateLimit: RateLimit{
			GRPCAddr: "127.0.0.1:8081", HTTPAddr: "127.0.0.1:8082", DebugAddr: "127.0.0.1:6070",
			Domain: "fraise", PerTenant: Limit{Requests: 100, Unit: "second"},
			Timeout: Duration{100 * time.Millisecond},
		},
		Gateway: Gateway{
			ListenAddr: "127.0.0.1:8443", AdminAddr: "127.0.0.1:9901",
			AuthzTimeout: Duration{250 * time.Millisecond}, MaxRequestBytes: 64 << 10,
			Envoy: "envoy",
		},
		XDS: XDS{GRPCAddr: "127.0.0.1:18000", NodeID: "fraise-ingress", PollInterval: Duration{time.Second}},
		Observers: Observers{
			Cursor: "default", BatchSize: 500, Workers: 256, PerTenant: 64, MaxAttempts: 10,
			BackoffBase: Duration{time.Second}, BackoffCap: Duration{5 * time.Minute}, ReclaimIdle: Duration{time.Minute},
			Backpressure: "adaptive", MaxQueueMemoryMB: 500, MemoryThresholdPercent: 80,
			Webhook: ObserverAction{Timeout: Duration{10 * time.Second}, FailureThreshold: 5, FailureWindow: Duration{time.Minute},
				OpenTimeout: Duration{30 * time.Second}, SuccessThreshold: 1, RateLimit: Limit{Requests: 50, Unit: "second"}},
			Slack: ObserverAction{Timeout: Duration{10 * time.Second}, FailureThreshold: 3, FailureWindow: Duration{time.Minute},
				OpenTimeout: Duration{30 * time.Second}, SuccessThreshold: 1, RateLimit: Limit{Requests: 10, Unit: "second"}},
			Email: ObserverAction{Timeout: Duration{30 * time.Second}, FailureThreshold: 2, FailureWindow: Duration{time.Minute},
				OpenTimeout: Duration{time.Minute}, SuccessThreshold: 1, RateLimit: Limit{Requests: 5, Unit: "second"}},
			SMTP: SMTP{From: "fraise@localhost"},
		},
	}
}

// DevIssuer and DevAudience identify the development tokens `fraise token`
// mints; only the default configuration trusts them.
const (
	DevIssuer   = "https://dev.fraise.local"
	DevAudience = "fraise"
)

// Load reads the TOML file at path (none when path is empty) over the
// defaults, applies FRAISE_* overrides from getenv and validates the result.
// Unknown keys are errors: a typo must not silently fall back to a default.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		// Lists of tables replace the defaults rather than merge into them.
		cfg.Authz.Issuers = nil
		md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
		if err != nil {
			return cfg, fmt.Errorf("config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return cfg, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
		}
		if !md.IsDefined("authz", "issuers") {
			cfg.Authz.Issuers = Default().Authz.Issuers
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "FRAISE", getenv); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// applyEnv overrides every scalar key from FRAISE_<SECTION>_<KEY>, e.g.
// FRAISE_DATABASE_URL or FRAISE_RATELIMIT_PER_TENANT_REQUESTS. Lists take
// comma-separated values; lists of tables have no override.
func applyEnv(v reflect.Value, prefix string, getenv func(string) string) error {
	var errs []error
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type == reflect.TypeOf(Duration{}) {
			if s := getenv(name); s != "" {
				var d Duration
				if err := d.UnmarshalText([]byte(s)); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
				} else {
					fv.Set(reflect.ValueOf(d))
				}
			}
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			errs = append(errs, applyEnv(fv, name, getenv))
			continue
		}
		s := getenv(name)
		if s == "" {
			continue
		}
		if err := setScalar(fv, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func setScalar(fv reflect.Value, s string) error {
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", s)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || fv.OverflowInt(n) {
			return fmt.Errorf("not an integer: %q", s)
		}
		fv.SetInt(n)
	case reflect.Uint32, reflect.Uint64, reflect.Uint:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || fv.OverflowUint(n) {
			return fmt.Errorf("not a non-negative integer: %q", s)
		}
		fv.SetUint(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("not a number: %q", s)
		}
		fv.SetFloat(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("cannot be set from the environment")
		}
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		fv.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// Validate reports every invalid value at once, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	addr := func(key, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "want host:port, got %q", v)
		}
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		bad("log.format", "want text or json, got %q", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Telemetry.SampleRatio < 0 || c.Telemetry.SampleRatio > 1 {
		bad("telemetry.sample_ratio", "want 0 to 1, got %v", c.Telemetry.SampleRatio)
	}
	addr("telemetry.otlp_endpoint", c.Telemetry.OTLPEndpoint, true)
	if c.Database.URL == "" {
		bad("database.url", "required")
	}
	if c.Database.MaxConns < 1 {
		bad("database.max_conns", "want at least 1, got %d", c.Database.MaxConns)
	}
	if c.Database.StatementTimeout.Duration < 0 {
		bad("database.statement_timeout", "must not be negative")
	}
	addr("redis.addr", c.Redis.Addr, false)
	addr("core.http_addr", c.Core.HTTPAddr, false)
	addr("core.admin_addr", c.Core.AdminAddr, true)
	if len(c.Core.AssertionKeys) == 0 {
		bad("core.assertion_keys", "at least one extauthz public key is required")
	}
	if c.Core.MaxBodyBytes < 1 {
		bad("core.max_body_bytes", "want at least 1, got %d", c.Core.MaxBodyBytes)
	}
	if c.Core.MaxLimit < c.Core.DefaultLimit || c.Core.DefaultLimit < 1 {
		bad("core.default_limit", "want 1 <= default_limit <= max_limit, got %d and %d", c.Core.DefaultLimit, c.Core.MaxLimit)
	}
	addr("authz.grpc_addr", c.Authz.GRPCAddr, false)
	addr("authz.admin_addr", c.Authz.AdminAddr, true)
	if c.Authz.AssertionKey == "" {
		bad("authz.assertion_key", "required")
	} else if !IsReference(c.Authz.AssertionKey) {
		bad("authz.assertion_key", "must be a reference (file://, env:// or vault://), never a literal key")
	}
	for i, is := range c.Authz.Issuers {
		key := fmt.Sprintf("authz.issuers[%d]", i)
		if is.Issuer == "" {
			bad(key+".issuer", "required")
		}
		if (is.JWKSFile == "") == (is.JWKSURL == "") {
			bad(key, "set exactly one of jwks_file and jwks_url")
		}
		if len(is.Algorithms) == 0 {
			bad(key+".algorithms", "required, e.g. [\"RS256\"]")
		}
		for _, a := range is.Algorithms {
			if strings.EqualFold(a, "none") {
				bad(key+".algorithms", "\"none\" is never allowed")
			}
		}
	}
	addr("ratelimit.grpc_addr", c.RateLimit.GRPCAddr, false)
	addr("ratelimit.http_addr", c.RateLimit.HTTPAddr, false)
	addr("ratelimit.debug_addr", c.RateLimit.DebugAddr, false)
	if c.RateLimit.Domain == "" {
		bad("ratelimit.domain", "required")
	}
	if !slices.Contains([]string{"second", "minute", "hour", "day"}, c.RateLimit.PerTenant.Unit) {
		bad("ratelimit.per_tenant.unit", "want second, minute, hour or day, got %q", c.RateLimit.PerTenant.Unit)
	}
	if c.RateLimit.PerTenant.Requests == 0 {
		bad("ratelimit.per_tenant.requests", "want at least 1")
	}
	addr("gateway.listen_addr", c.Gateway.ListenAddr, false)
	addr("gateway.admin_addr", c.Gateway.AdminAddr, true)
	if c.Gateway.AuthzTimeout.Duration <= 0 {
		bad("gateway.authz_timeout", "must be positive")
	}
	addr("xds.grpc_addr", c.XDS.GRPCAddr, false)
	if c.XDS.NodeID == "" {
		bad("xds.node_id", "required")
	}
	if c.XDS.PollInterval.Duration <= 0 {
		bad("xds.poll_interval", "must be positive")
	}
	errs = append(errs, c.Observers.validate()...)
	return errors.Join(errs...)
}

func (o Observers) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("observers.%s: "+format, append([]any{key}, args...)...))
	}
	if o.Cursor == "" {
		bad("cursor", "required")
	}
	for key, v := range map[string]int{"batch_size": o.BatchSize, "workers": o.Workers, "per_tenant": o.PerTenant,
		"max_attempts": o.MaxAttempts, "max_queue_memory_mb": o.MaxQueueMemoryMB} {
		if v < 1 {
			bad(key, "want at least 1, got %d", v)
		}
	}
	if o.PerTenant > o.Workers {
		bad("per_tenant", "want at most workers (%d), got %d", o.Workers, o.PerTenant)
	}
	if o.BackoffBase.Duration <= 0 || o.BackoffCap.Duration < o.BackoffBase.Duration || o.BackoffCap.Duration > 5*time.Minute {
		bad("backoff_cap", "want 0 < backoff_base <= backoff_cap <= 5m, got %v and %v", o.BackoffBase, o.BackoffCap)
	}
	if !slices.Contains([]string{"fail-fast", "queue-all", "adaptive"}, o.Backpressure) {
		bad("backpressure", "want fail-fast, queue-all or adaptive, got %q", o.Backpressure)
	}
	if o.MemoryThresholdPercent < 1 || o.MemoryThresholdPercent > 100 {
		bad("memory_threshold_percent", "want 1 to 100, got %d", o.MemoryThresholdPercent)
	}
	for name, a := range map[string]ObserverAction{"webhook": o.Webhook, "slack": o.Slack, "email": o.Email} {
		if a.Timeout.Duration <= 0 {
			bad(name+".timeout", "must be positive")
		} else if a.Timeout.Duration >= o.ReclaimIdle.Duration {
			bad("reclaim_idle", "must exceed %s.timeout (%v), or running jobs are taken over", name, a.Timeout)
		}
		if a.FailureThreshold < 1 || a.SuccessThreshold < 1 {
			bad(name, "failure_threshold and success_threshold must be at least 1")
		}
		if a.FailureWindow.Duration <= 0 || a.OpenTimeout.Duration <= 0 {
			bad(name, "failure_window and open_timeout must be positive")
		}
		if a.RateLimit.Requests > 0 && !slices.Contains([]string{"second", "minute", "hour", "day"}, a.RateLimit.Unit) {
			bad(name+".rate_limit.unit", "want second, minute, hour or day, got %q", a.RateLimit.Unit)
		}
	}
	if o.SMTP.Addr != "" {
		if _, _, err := net.SplitHostPort(o.SMTP.Addr); err != nil {
			bad("smtp.addr", "want host:port, got %q", o.SMTP.Addr)
		}
		if o.SMTP.From == "" {
			bad("smtp.from", "required with smtp.addr")
		}
	}
	return errs
}
