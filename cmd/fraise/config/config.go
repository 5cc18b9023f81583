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
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/flight"
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

// The profiles a configuration is loaded in (FRAISE_PROFILE, or the
// --profile flag of every command). Production is the default: it has no
// development credentials, so a deployment that forgot a setting refuses
// to start and names it, instead of starting on .dev/ paths or trusting
// the development token issuer. The development profile holds the
// defaults `make run` uses.
const (
	ProfileProduction = "production"
	ProfileDev        = "dev"
)

// Config is the whole of fraise.toml.
type Config struct {
	// Profile is the profile the configuration was loaded in; it is not a
	// key of fraise.toml (the file cannot choose its own defaults).
	Profile   string    `toml:"-"`
	Log       Log       `toml:"log"`
	Telemetry Telemetry `toml:"telemetry"`
	TLS       TLS       `toml:"tls"`
	Database  Database  `toml:"database"`
	Redis     Redis     `toml:"redis"`
	Server    Server    `toml:"server"`
	// Core is the old name of Server, accepted for one release (see
	// renames); Load sets it to the values in force, for the wiring that
	// has not moved to Server.
	Core      Server    `toml:"core"`
	Authz     Authz     `toml:"authz"`
	RateLimit RateLimit `toml:"ratelimit"`
	Admission Admission `toml:"admission"`
	Gateway   Gateway   `toml:"gateway"`
	XDS       XDS       `toml:"xds"`
	Flight    Flight    `toml:"flight"`
	Observers Observers `toml:"observers"`
	Secrets   Secrets   `toml:"secrets"`
	Backup    Backup    `toml:"backup"`
	Console   Console   `toml:"console"`
	// Deprecations are the renamed keys the configuration set under their
	// old names (see Rename): Load accepts them and returns them here, for
	// the caller to log as warnings.
	Deprecations []Deprecation `toml:"-"`
}

// Secrets configures how the secrets and certificates Fraise reads from
// files follow the files: every TLS certificate, key and CA of [tls],
// [database.tls] and [redis.tls], and every secret given as a file://
// reference (database.url and authz.database_url, for their passwords;
// redis.password; server.assertion_keys; flight.ticket_key;
// observers.smtp.password).
type Secrets struct {
	// ReloadInterval is how often each process reads those files again. A
	// file that changed is in use from the next connection (or ticket,
	// or assertion) on; connections already open keep what they were
	// opened with until they close (database.max_conn_lifetime,
	// redis.max_conn_lifetime).
	ReloadInterval Duration `toml:"reload_interval"`
}

// DataTLS is Fraise's TLS towards a data store (PostgreSQL, Redis): the
// server verified in full, and a client certificate. Setting CA turns it
// on; then nothing is sent in plaintext.
type DataTLS struct {
	// CA is the PEM bundle of the CAs that may sign the server's
	// certificate: they alone, never the system's roots.
	CA string `toml:"ca"`
	// Cert and Key are the client certificate and key (PEM) presented to
	// the server; both or neither.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// ServerName is the name the server's certificate must carry; empty
	// uses the host Fraise connects to.
	ServerName string `toml:"server_name"`
}

// Enabled reports whether TLS is configured.
func (t DataTLS) Enabled() bool {
	return t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != ""
}

func (t DataTLS) validate(key string, bad func(key, format string, args ...any)) {
	if !t.Enabled() {
		return
	}
	if t.CA == "" {
		bad(key+".ca", "required with %s: it is the only root the server is verified against", key)
	}
	if (t.Cert == "") != (t.Key == "") {
		bad(key+".cert", "set cert and key together, or neither")
	}
}

// Flight configures the server's Arrow Flight exports (docs/flight.md).
type Flight struct {
	// TicketKey signs tickets (HMAC-SHA256, at least 32 bytes); always a
	// reference. Empty draws a random key at start, which suits one server
	// instance: with several, they must share it.
	TicketKey string   `toml:"ticket_key"`
	TicketTTL Duration `toml:"ticket_ttl"`
	// BatchRows and BatchBytes bound each record batch, and so the memory
	// one export holds.
	BatchRows  int `toml:"batch_rows"`
	BatchBytes int `toml:"batch_bytes"`
	// StatementTimeout bounds one export's query (0: none); exports are
	// long, so it is separate from database.statement_timeout.
	StatementTimeout Duration `toml:"statement_timeout"`
	// MaxExports is the old name of admission.flight.max_concurrent,
	// accepted for one release (see renames); Load sets it to the value
	// in force, for the wiring that has not moved to the admission class.
	MaxExports int `toml:"max_exports"`
	// MaxExportsPerTenant is the old name of
	// admission.flight.max_concurrent_per_tenant, kept likewise.
	MaxExportsPerTenant int       `toml:"max_exports_per_tenant"`
	Datasets            []Dataset `toml:"datasets"`
}

// Dataset declares a view, or a GraphQL type's view, exportable over
// Flight.
type Dataset struct {
	// Name is what clients ask for: a Flight path joined with ".", and the
	// table name in Flight SQL ("sales.orders").
	Name string `toml:"name"`
	// View is the view read, "[schema.]name"; it should be security_invoker
	// so row-level security applies.
	View string `toml:"view"`
	// GraphQLType, instead of View, exports fields of a GraphQL object type
	// read from its view, each with its @auth and @mask.
	GraphQLType string `toml:"graphql_type"`
	// Roles that may export it; empty leaves the decision to the policy.
	Roles   []string        `toml:"roles"`
	Columns []DatasetColumn `toml:"columns"`
	// Endpoints, above 1, splits an export into up to that many endpoints
	// (at most admission.flight.max_concurrent_per_tenant), disjoint ranges of
	// PartitionKey read in parallel in one snapshot (docs/flight.md).
	Endpoints int `toml:"endpoints"`
	// PartitionKey is the int2, int4, int8 or uuid column the endpoints
	// split; default "id".
	PartitionKey string `toml:"partition_key"`
}

// DatasetColumn is one exported column and its PostgreSQL type, e.g.
// "int8", "numeric(12,2)", "timestamptz", "text[]", with the field
// protection it carries (docs/flight.md).
type DatasetColumn struct {
	Name string `toml:"name"`
	Type string `toml:"type"`
	// Field is the field of the dataset's GraphQL type the column reads
	// ("email", "author.email"); default the column's name in camelCase.
	Field string `toml:"field"`
	// Auth is a scope a principal needs to read the column's values, which
	// are NULL for others, as GraphQL's @auth(scope:).
	Auth string `toml:"auth"`
	// Mask (EMAIL, PII or SECRET) masks the values for principals without
	// MaskScope (default unmask:<dataset>.<column>), as GraphQL's @mask.
	Mask      string `toml:"mask"`
	MaskScope string `toml:"mask_scope"`
}

// XDS configures `fraise xds`, the control plane that serves the Envoy
// configuration to production Envoys.
type XDS struct {
	GRPCAddr string `toml:"grpc_addr"`
	// AdminAddr serves /healthz, /readyz and /metrics (docs/metrics.md);
	// empty (the default) serves none.
	AdminAddr string `toml:"admin_addr"`
	NodeID    string `toml:"node_id"`
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
	// TraceURL is where a trace is shown, "{trace_id}" standing for its
	// id (e.g. Jaeger's http://127.0.0.1:16686/trace/{trace_id}): `fraise
	// dev` prints the link to its sample request's trace. Empty: none.
	TraceURL string `toml:"trace_url"`
}

// TLS names the PEM files for mTLS on every hop: clients to the gateway
// (Envoy), and Envoy to the server, extauthz, the rate limiter and the xDS
// server. `fraise certs` writes development ones under .dev/certs.
type TLS struct {
	CA         string `toml:"ca"`
	ServerCert string `toml:"server_cert"`
	ServerKey  string `toml:"server_key"`
	// ClientCert is an end user's client certificate: the sample requests
	// `fraise dev` prints present it to the gateway.
	ClientCert string `toml:"client_cert"`
	ClientKey  string `toml:"client_key"`
	// ServerName is the name the gateway expects on the certificates of
	// the server and the sidecars.
	ServerName string `toml:"server_name"`
	// GatewayCert is the client certificate Envoy presents to every
	// upstream. The server's listeners, extauthz, the rate limiter and the
	// xDS server accept only a certificate with GatewaySAN (a DNS or URI
	// SAN), so an end user's certificate from the same CA opens none of
	// them.
	GatewayCert string `toml:"gateway_cert"`
	GatewayKey  string `toml:"gateway_key"`
	GatewaySAN  string `toml:"gateway_san"`
	// CoreClientCert is the server's client certificate towards the rate
	// limiter (observer action limits), which accepts CoreClientSAN
	// besides GatewaySAN.
	CoreClientCert string `toml:"core_client_cert"`
	CoreClientKey  string `toml:"core_client_key"`
	CoreClientSAN  string `toml:"core_client_san"`
}

// Database configures PostgreSQL.
type Database struct {
	// URL is how the server connects: as a role without BYPASSRLS, so that
	// row-level security applies to it. May be a secret reference.
	URL string `toml:"url"`
	// AdminURL is how `fraise migrate` connects, as the schema owner.
	AdminURL         string   `toml:"admin_url"`
	AppRole          string   `toml:"app_role"`
	MaxConns         int      `toml:"max_conns"`
	StatementTimeout Duration `toml:"statement_timeout"`
	// GenericPlans makes reads use PostgreSQL's generic plans of their
	// prepared statements rather than planning every execution anew.
	GenericPlans bool `toml:"generic_plans"`
	// TLS makes the app role's connections (database.url and
	// authz.database_url) TLS only: sslmode=verify-full against TLS.CA,
	// with the client certificate TLS.Cert, both re-read as they change.
	// database.admin_url (`fraise migrate`, `fraise apikey`) uses it too
	// unless the URL sets sslmode itself (with libpq's sslrootcert,
	// sslcert and sslkey parameters: the schema owner's certificate).
	TLS DataTLS `toml:"tls"`
	// MaxConnLifetime closes a connection once it has been open this long
	// (when next idle): the longest a connection made with a rotated
	// password or certificate lives on.
	MaxConnLifetime Duration `toml:"max_conn_lifetime"`
	// TenantSettings are settings every transaction sets to the tenant
	// besides fraise.tenant, for an existing database's row-level
	// security (FraiseQL's app.tenant_id); SubjectSettings likewise for
	// the subject, in mutations, besides fraise.subject.
	TenantSettings  []string `toml:"tenant_settings"`
	SubjectSettings []string `toml:"subject_settings"`
}

// Redis configures the Redis used by the rate limiter and observers.
type Redis struct {
	// Addr is host:port, or rediss://host:port for TLS (which [redis.tls]
	// also turns on).
	Addr string `toml:"addr"`
	// Password may be a secret reference; a file:// one is re-read as it
	// changes, and new connections authenticate with what it holds.
	Password string `toml:"password"`
	// TLS makes every connection to Redis TLS only, the server verified
	// against TLS.CA (the system's roots for rediss:// without it).
	TLS DataTLS `toml:"tls"`
	// MaxConnLifetime closes an observer connection once it has been
	// open this long (when next idle); the rate limiter moves to new
	// connections as soon as the password or certificate changes.
	MaxConnLifetime Duration `toml:"max_conn_lifetime"`
}

// Endpoint returns the host:port of Addr and whether connections use TLS
// (rediss://, or [redis.tls] set).
func (r Redis) Endpoint() (addr string, useTLS bool) {
	switch {
	case strings.HasPrefix(r.Addr, "rediss://"):
		return strings.TrimPrefix(r.Addr, "rediss://"), true
	case strings.HasPrefix(r.Addr, "redis://"):
		return strings.TrimPrefix(r.Addr, "redis://"), r.TLS.Enabled()
	}
	return r.Addr, r.TLS.Enabled()
}

// Server configures the server: the process `fraise serve` runs, which
// serves the GraphQL API and Arrow Flight behind the gateway. (Until the
// release that renamed it, the section was [core]: "core" now names the
// domain packages alone.)
type Server struct {
	HTTPAddr  string `toml:"http_addr"`
	AdminAddr string `toml:"admin_addr"`
	// FlightAddr is the Arrow Flight gRPC port; empty serves no Flight.
	FlightAddr string `toml:"flight_addr"`
	// TLS makes the server's HTTP port require client certificates signed by
	// the CA: only the gateway (Envoy) can reach it.
	TLS bool `toml:"tls"`
	// Schema is a GraphQL SDL file; empty serves the demo schema; "auto"
	// generates it from the database at start (what `fraise schema
	// generate` writes), again on SIGHUP and, with SchemaWatch, whenever
	// the generated schema would change.
	Schema string `toml:"schema"`
	// SchemaSchemas are the database schemas "auto" reads (default public).
	SchemaSchemas []string `toml:"schema_schemas"`
	// SchemaWatch, with schema "auto", regenerates the schema this often
	// and serves it when it changed: for development (0: off).
	SchemaWatch Duration `toml:"schema_watch"`
	// AssertionKeys are extauthz's Ed25519 public keys (PEM, or references
	// to them); the current and the previous key during a rotation.
	AssertionKeys   []string `toml:"assertion_keys"`
	MaxBodyBytes    int      `toml:"max_body_bytes"`
	MaxBatch        int      `toml:"max_batch"` // operations one POST may batch; 0 (default): batching off
	MaxDepth        int      `toml:"max_depth"`
	DefaultLimit    int      `toml:"default_limit"`
	MaxLimit        int      `toml:"max_limit"`
	Introspection   bool     `toml:"introspection"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// DrainDelay is how long the server, told to stop, reports not-ready on
	// /readyz while it still serves, before it closes its listeners and
	// drains: the time a load balancer needs to notice (where nothing
	// like a Kubernetes preStop hook waits for it).
	DrainDelay Duration `toml:"drain_delay"`
	// GraphQL limits beyond depth, each answered with its own
	// extensions.code (docs/schema.md).
	MaxAliases     int `toml:"max_aliases"`
	MaxRootFields  int `toml:"max_root_fields"`
	MaxCost        int `toml:"max_cost"`
	MaxResultBytes int `toml:"max_result_bytes"`
	// MaxSelections bounds the selections checking a document visits,
	// fragments expanded and repeated fields counted, before validation
	// (graphql.Options.MaxSelections).
	MaxSelections int `toml:"max_selections"`
	// StatementTimeout is SET LOCAL statement_timeout in every GraphQL
	// transaction (0 keeps database.statement_timeout).
	StatementTimeout Duration `toml:"statement_timeout"`
	// APQ accepts automatic persisted queries.
	APQ bool `toml:"apq"`
	// TrustedDocuments is a JSON file mapping SHA-256 hashes to documents;
	// when set, only those documents run.
	TrustedDocuments string `toml:"trusted_documents"`

	// AssertionJWKSURL is extauthz's JWKS over https (authz.jwks_addr's
	// /.well-known/jwks.json); when set, the server fetches the keys there,
	// on start, every minute and on an unknown key id, and trusts them
	// besides assertion_keys (which stay trusted). It is fetched with
	// tls.ca as the only root, directly (no proxy) and without redirects.
	AssertionJWKSURL string `toml:"assertion_jwks_url"`

	// AssertionReplayRate is the rate of identity assertions, per second,
	// the server's replay cache is sized for: it remembers each spent
	// assertion id for the assertion's lifetime (about 70 s), so it holds
	// rate × 70 ids, about 52 bytes each, and refuses requests (503) once
	// full rather than forget one (docs/authentication.md).
	AssertionReplayRate int `toml:"assertion_replay_rate"`
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

	// Discovery finds the JWKS through OpenID Connect discovery at
	// issuer + "/.well-known/openid-configuration".
	Discovery bool `toml:"discovery"`
	// HMACSecret is the HS256/384/512 shared secret, a reference
	// (env://, file://, vault://), at least 32 bytes.
	HMACSecret string `toml:"hmac_secret"`

	// Tenant binds the issuer to one tenant (one Keycloak realm per
	// tenant): its tokens are for that tenant whatever their tenant
	// claim, and one naming another tenant is refused.
	Tenant string `toml:"tenant"`
	// Tenants binds the issuer to a set of tenants its tokens' tenant
	// claim must name one of; ["*"] is every tenant (one shared realm).
	// With several issuers, each must set Tenant or Tenants.
	Tenants []string `toml:"tenants"`
}

// AnyTenant in an issuer's tenants declares it trusted to name every
// tenant.
const AnyTenant = "*"

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

	// KeyRefresh is how often JWKS URLs are refetched in the background.
	KeyRefresh Duration `toml:"key_refresh"`
	// AssertionKeyReload is how often the assertion key reference is
	// re-read; a new key there rotates the signing key (0 never).
	AssertionKeyReload Duration `toml:"assertion_key_reload"`
	// PolicyReload is how often policy_dir is checked for changes (0 never).
	PolicyReload Duration `toml:"policy_reload"`
	// BundleURL loads the policy as an OPA bundle from a bundle server
	// instead of policy_dir; BundlePoll is how often it is fetched.
	BundleURL  string   `toml:"bundle_url"`
	BundlePoll Duration `toml:"bundle_poll"`
	// DatabaseURL enables API keys (and the audit table): extauthz reads
	// keys through it. A reference or a URL without a literal password.
	DatabaseURL string `toml:"database_url"`
	// APIKeyCacheTTL is how long a looked-up API key is trusted, and so
	// the longest a revoked key keeps working.
	APIKeyCacheTTL Duration `toml:"api_key_cache_ttl"`
	// APIKeyLookups bounds database lookups of keys per second; beyond
	// it keys that must be looked up get 429.
	APIKeyLookups int `toml:"api_key_lookups_per_second"`
	// APIKeyUnknownLookups bounds, within APIKeyLookups, lookups of ids
	// not known to be keys, so that made-up keys never take the room
	// known keys are read again in; it must be below APIKeyLookups. 0
	// means a fifth of APIKeyLookups.
	APIKeyUnknownLookups int `toml:"api_key_unknown_lookups_per_second"`
	// APIKeyClientLookups bounds one client's (client certificate and
	// peer address) lookups of ids not known to be keys, before
	// APIKeyUnknownLookups; at most APIKeyUnknownLookups. 0 means a
	// twentieth of APIKeyLookups.
	APIKeyClientLookups int `toml:"api_key_client_lookups_per_second"`
	// Audit writes every decision to fraise.authz_decisions as well.
	Audit bool `toml:"audit"`
	// JWKSAddr serves the assertion JWKS alone over TLS (tls.server_cert),
	// for servers that follow it (server.assertion_jwks_url); empty: none.
	JWKSAddr string `toml:"jwks_addr"`
	// Reflection serves gRPC reflection (development only).
	Reflection      bool     `toml:"reflection"`
	MaxRecvMsgBytes int      `toml:"max_recv_msg_bytes"`
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// DecisionCacheTTL is how long a decision is reused for an identical
	// request when the policy permits it; a negative value disables it.
	DecisionCacheTTL Duration `toml:"decision_cache_ttl"`
	// DrainDelay is how long extauthz reports NOT_SERVING before it stops
	// accepting checks, so Envoy's health checks move traffic away first.
	DrainDelay Duration `toml:"drain_delay"`
}

// Limit is a request budget per unit of time; zero requests is no limit.
type Limit struct {
	Requests uint32 `toml:"requests"`
	Unit     string `toml:"unit"` // second, minute, hour, day
	// Shadow counts requests against the limit without refusing any, for
	// trying a new limit before enforcing it.
	Shadow bool `toml:"shadow"`
}

// Tier is one quota tier's rate limits: per tenant, per tenant and
// operation class (x-fraise-op), and per subject (user or API key).
type Tier struct {
	Tenant  Limit `toml:"tenant"`
	Read    Limit `toml:"read"`
	Write   Limit `toml:"write"`
	Flight  Limit `toml:"flight"`
	Subject Limit `toml:"subject"`
}

// Admission configures the server's admission control (internal/admission):
// concurrency bounds, a bounded wait queue, and refusal under memory
// pressure. Each kind of work is a class with limits of its own: the
// section's own keys are the GraphQL API's (class graphql, as they were
// before the section had classes), [admission.flight] Flight exports' and
// [admission.observers] observer deliveries'; the memory guard and
// RetryAfter are shared. A zero means what it means to admission.Options,
// which is not "unbounded" for every key: a queue of zero is no queue.
type Admission struct {
	// MaxConcurrent bounds the requests running at once; zero is
	// unbounded.
	MaxConcurrent int `toml:"max_concurrent"`
	// MaxConcurrentPerTenant bounds one tenant's running requests; zero
	// is unbounded.
	MaxConcurrentPerTenant int `toml:"max_concurrent_per_tenant"`
	// MaxQueue bounds the requests waiting for a slot; zero queues none:
	// a request that finds no slot is refused at once.
	MaxQueue int `toml:"max_queue"`
	// MaxQueuePerTenant bounds one tenant's waiting requests; zero leaves
	// them bounded by MaxQueue alone.
	MaxQueuePerTenant int `toml:"max_queue_per_tenant"`
	// QueueTimeout bounds a queued request's wait; zero waits until a
	// slot frees or the client goes away.
	QueueTimeout Duration `toml:"queue_timeout"`
	// Congestion is how long the server must be found full (or its queue
	// stand) before it counts as overloaded rather than in a burst;
	// zero means QueueTimeout.
	Congestion Duration `toml:"congestion"`
	// CongestedWait is how long a request may wait while the server is
	// overloaded; zero refuses at once (see admission.Options).
	CongestedWait Duration `toml:"congested_wait"`
	// MemoryLimitBytes is the heap budget; zero uses GOMEMLIMIT when set.
	MemoryLimitBytes uint64 `toml:"memory_limit_bytes"`
	// MemoryThreshold is the share of the budget above which requests are
	// refused with 503.
	MemoryThreshold float64  `toml:"memory_threshold"`
	RetryAfter      Duration `toml:"retry_after"`
	// Flight bounds Arrow Flight exports, each holding one of
	// database.max_conns for its whole length.
	Flight AdmissionClass `toml:"flight"`
	// Observers bounds observer deliveries (webhooks, Slack, email).
	Observers AdmissionClass `toml:"observers"`
}

// AdmissionClass is the limits of one class of work; each key means what
// the [admission] key of the same name means for GraphQL requests.
type AdmissionClass struct {
	MaxConcurrent          int      `toml:"max_concurrent"`
	MaxConcurrentPerTenant int      `toml:"max_concurrent_per_tenant"`
	MaxQueue               int      `toml:"max_queue"`
	MaxQueuePerTenant      int      `toml:"max_queue_per_tenant"`
	QueueTimeout           Duration `toml:"queue_timeout"`
	Congestion             Duration `toml:"congestion"`
	CongestedWait          Duration `toml:"congested_wait"`
}

// validate reports the class's negative values, each key after prefix.
// The concurrency bounds of a class where zero is unbounded (unbounded)
// are checked here; the others' are checked with their ranges.
func (a AdmissionClass) validate(prefix string, unbounded bool, bad func(key, format string, args ...any)) {
	for _, n := range []struct {
		key  string
		v    int
		zero string // what 0 means, which differs between the keys
	}{
		{"max_concurrent", a.MaxConcurrent, "0 is unbounded"},
		{"max_concurrent_per_tenant", a.MaxConcurrentPerTenant, "0 is unbounded"},
		{"max_queue", a.MaxQueue, "0 queues none"},
		{"max_queue_per_tenant", a.MaxQueuePerTenant, "0 is bounded by " + prefix + "max_queue alone"},
	} {
		if !unbounded && strings.HasPrefix(n.key, "max_concurrent") {
			continue
		}
		if n.v < 0 {
			bad(prefix+n.key, "must not be negative (%s)", n.zero)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"queue_timeout", a.QueueTimeout.Duration},
		{"congestion", a.Congestion.Duration},
		{"congested_wait", a.CongestedWait.Duration},
	} {
		if d.v < 0 {
			bad(prefix+d.key, "must not be negative")
		}
	}
}

// GraphQL returns the limits of the graphql class: the section's own keys.
func (a Admission) GraphQL() AdmissionClass {
	return AdmissionClass{
		MaxConcurrent: a.MaxConcurrent, MaxConcurrentPerTenant: a.MaxConcurrentPerTenant,
		MaxQueue: a.MaxQueue, MaxQueuePerTenant: a.MaxQueuePerTenant, QueueTimeout: a.QueueTimeout,
		Congestion: a.Congestion, CongestedWait: a.CongestedWait,
	}
}

// RateLimit configures `fraise ratelimit` (envoyproxy/ratelimit) and how
// the gateway consults it.
type RateLimit struct {
	// GRPCAddr serves ShouldRateLimit and grpc.health.v1 over mutual TLS
	// only: tls.server_cert, client certificates from tls.ca naming
	// tls.gateway_san or tls.core_client_san.
	GRPCAddr string `toml:"grpc_addr"`
	// HTTPAddr (POST /json, GET /healthcheck) and DebugAddr (pprof,
	// /stats, /rlconfig) are operator tools without authentication: empty
	// (the default) serves neither, and when set they must be loopback.
	HTTPAddr  string `toml:"http_addr"`
	DebugAddr string `toml:"debug_addr"`
	// AdminAddr serves /healthz, /readyz and /metrics (envoyproxy/ratelimit's
	// own stats, docs/metrics.md); empty (the default) serves none.
	AdminAddr string `toml:"admin_addr"`
	Domain    string `toml:"domain"`
	// Tiers are the rate limits of each quota tier by name; "default"
	// is required and applies to any tier not named here.
	Tiers map[string]Tier `toml:"tiers"`
	// Actions limit observer actions per tenant, by kind (webhook, slack,
	// email); workers consult the service before each action.
	Actions map[string]Limit `toml:"actions"`
	// FailureModeDeny refuses requests when the limiter is unreachable;
	// the default lets them through (fail open).
	FailureModeDeny bool     `toml:"failure_mode_deny"`
	Timeout         Duration `toml:"timeout"`
	LocalCacheBytes int      `toml:"local_cache_bytes"`
}

// Gateway configures the ingress: the Envoy configuration `fraise envoy
// bootstrap` and `fraise xds` generate, and the Envoy `fraise dev` runs.
type Gateway struct {
	ListenAddr      string   `toml:"listen_addr"`
	AdminAddr       string   `toml:"admin_addr"`
	AuthzTimeout    Duration `toml:"authz_timeout"`
	MaxRequestBytes uint32   `toml:"max_request_bytes"`
	// GraphQLTimeout is the graphql route's timeout: Envoy answers 504
	// TIMEOUT when the server has not answered within it.
	GraphQLTimeout Duration `toml:"graphql_timeout"`
	// MaxConnections bounds the ingress's open client connections; those
	// over it are closed at once.
	MaxConnections uint64 `toml:"max_connections"`
	// Envoy is the Envoy binary `fraise dev` runs: a path or a name on
	// PATH. Empty looks for envoy on PATH, then for the one `make deps`
	// installs under .tools/; either way it must be Envoy 1.40.0.
	Envoy string `toml:"envoy"`
	// Concurrency is the worker threads of the Envoy `fraise dev` runs (0:
	// one per core, at most two).
	Concurrency int `toml:"concurrency"`
	// LogLevel is that Envoy's log level (trace, debug, info, warn,
	// error, critical, off).
	LogLevel string `toml:"log_level"`
}

// Observers configures the observer dispatcher and workers that `fraise
// serve` (and `fraise dev`) run when Enabled.
type Observers struct {
	Enabled bool `toml:"enabled"`
	// Cursor names the dispatcher's position in the outbox; dispatchers
	// sharing a name take turns (one leads at a time).
	Cursor    string `toml:"cursor"`
	BatchSize int    `toml:"batch_size"`
	// Workers and PerTenant are the old names of
	// admission.observers.max_concurrent and max_concurrent_per_tenant,
	// accepted for one release (see renames); Load sets them to the
	// values in force, for the wiring that has not moved to the
	// admission class.
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
	// MaxJobAge is how long after it was enqueued a job may still be
	// deferred by an open breaker or a rate limit (which use no attempt)
	// before it is dead-lettered.
	MaxJobAge Duration `toml:"max_job_age"`
	// BackpressureMaxPause bounds how long adaptive backpressure holds the
	// dispatcher for one tenant whose queue stays full before
	// dead-lettering that tenant's jobs.
	BackpressureMaxPause Duration `toml:"backpressure_max_pause"`
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

// Default returns the development profile's configuration: the embedded
// defaults `make run` uses, on loopback, with the development credentials
// `fraise certs` writes under .dev/, the development token issuer and the
// demo schema. Production starts from ProductionDefault instead.
func Default() Config {
	c := Config{
		Profile:   ProfileDev,
		Log:       Log{Format: "text", Level: "info"},
		Telemetry: Telemetry{SampleRatio: 1},
		TLS: TLS{
			CA: ".dev/certs/ca.pem", ServerCert: ".dev/certs/server.pem", ServerKey: ".dev/certs/server-key.pem",
			ClientCert: ".dev/certs/client.pem", ClientKey: ".dev/certs/client-key.pem", ServerName: "localhost",
			GatewayCert: ".dev/certs/gateway.pem", GatewayKey: ".dev/certs/gateway-key.pem", GatewaySAN: "gateway.fraise.internal",
			CoreClientCert: ".dev/certs/core-client.pem", CoreClientKey: ".dev/certs/core-client-key.pem",
			CoreClientSAN: "core.fraise.internal",
		},
		Database: Database{
			URL:              "postgres://fraise_app@127.0.0.1:55432/fraise?sslmode=disable",
			AdminURL:         "postgres://postgres@127.0.0.1:55432/fraise?sslmode=disable",
			AppRole:          "fraise_app",
			MaxConns:         20,
			StatementTimeout: Duration{5 * time.Second},
			GenericPlans:     true,
			MaxConnLifetime:  Duration{30 * time.Minute},
		},
		Redis: Redis{Addr: "127.0.0.1:56379", MaxConnLifetime: Duration{30 * time.Minute}},
		Server: Server{
			HTTPAddr: "127.0.0.1:8080", AdminAddr: "127.0.0.1:9080", FlightAddr: "127.0.0.1:8815", TLS: true,
			AssertionKeys: []string{"file://.dev/keys/assertion.pub"},
			MaxBodyBytes:  1 << 20, MaxDepth: 10, DefaultLimit: 100, MaxLimit: 1000,
			Introspection: true, ShutdownTimeout: Duration{10 * time.Second},
			MaxAliases: 30, MaxRootFields: 10, MaxCost: 50000, MaxResultBytes: 8 << 20, MaxSelections: 5000,
			APQ: true, AssertionReplayRate: 10_000, SchemaSchemas: []string{"public"},
		},
		Authz: Authz{
			GRPCAddr: "127.0.0.1:9191", AdminAddr: "127.0.0.1:9192",
			AssertionKey: "file://.dev/keys/assertion.key",
			Leeway:       Duration{30 * time.Second}, DefaultTier: "default",
			KeyRefresh: Duration{15 * time.Minute}, AssertionKeyReload: Duration{time.Minute},
			PolicyReload: Duration{2 * time.Second}, BundlePoll: Duration{30 * time.Second},
			APIKeyCacheTTL: Duration{30 * time.Second}, APIKeyLookups: 100, MaxRecvMsgBytes: 1 << 20,
			ShutdownTimeout: Duration{10 * time.Second}, DecisionCacheTTL: Duration{10 * time.Second},
			Issuers: []Issuer{{
				Issuer: DevIssuer, Audiences: []string{DevAudience},
				JWKSFile: ".dev/keys/dev-issuer.jwks", Algorithms: []string{"ES256"},
			}},
		},
		RateLimit: RateLimit{
			GRPCAddr: "127.0.0.1:8081",
			Domain:   "fraise",
			Tiers: map[string]Tier{
				"default": {
					Tenant: Limit{Requests: 100, Unit: "second"}, Read: Limit{Requests: 100, Unit: "second"},
					Write: Limit{Requests: 20, Unit: "second"}, Flight: Limit{Requests: 5, Unit: "second"},
					Subject: Limit{Requests: 50, Unit: "second"},
				},
				"enterprise": {
					Tenant: Limit{Requests: 10000, Unit: "second"}, Read: Limit{Requests: 10000, Unit: "second"},
					Write: Limit{Requests: 2000, Unit: "second"}, Flight: Limit{Requests: 100, Unit: "second"},
					Subject: Limit{Requests: 1000, Unit: "second"},
				},
			},
			Actions: map[string]Limit{
				"webhook": {Requests: 50, Unit: "second"}, "slack": {Requests: 10, Unit: "second"},
				"email": {Requests: 5, Unit: "second"},
			},
			Timeout: Duration{100 * time.Millisecond},
		},
		Admission: Admission{
			MaxConcurrent: 100, MaxConcurrentPerTenant: 10, MaxQueue: 200, MaxQueuePerTenant: 20,
			QueueTimeout: Duration{time.Second}, MemoryThreshold: 0.8, RetryAfter: Duration{time.Second},
			// An export holds a database connection for minutes: a few run,
			// a few wait, long.
			Flight: AdmissionClass{MaxConcurrent: 4, MaxConcurrentPerTenant: 2, MaxQueue: 8, MaxQueuePerTenant: 2,
				QueueTimeout: Duration{30 * time.Second}},
			// A delivery waits on someone else's server, not on Fraise:
			// many run at once, one tenant's share bounded.
			Observers: AdmissionClass{MaxConcurrent: 256, MaxConcurrentPerTenant: 64, MaxQueue: 256, MaxQueuePerTenant: 64,
				QueueTimeout: Duration{10 * time.Second}},
		},
		Gateway: Gateway{
			ListenAddr: "127.0.0.1:8443", AdminAddr: "127.0.0.1:9901",
			AuthzTimeout: Duration{250 * time.Millisecond}, MaxRequestBytes: 64 << 10, MaxConnections: 10000,
			LogLevel: "warn", GraphQLTimeout: Duration{30 * time.Second},
		},
		XDS: XDS{GRPCAddr: "127.0.0.1:18000", NodeID: "fraise-ingress", PollInterval: Duration{time.Second}},
		Flight: Flight{
			TicketTTL: Duration{5 * time.Minute}, BatchRows: 65536, BatchBytes: 3 << 20,
			StatementTimeout: Duration{30 * time.Minute},
		},
		Observers: Observers{
			Cursor: "default", BatchSize: 500, MaxAttempts: 10,
			BackoffBase: Duration{time.Second}, BackoffCap: Duration{5 * time.Minute}, ReclaimIdle: Duration{time.Minute},
			MaxJobAge: Duration{24 * time.Hour}, BackpressureMaxPause: Duration{time.Minute},
			Backpressure: "adaptive", MaxQueueMemoryMB: 500, MemoryThresholdPercent: 80,
			Webhook: ObserverAction{Timeout: Duration{10 * time.Second}, FailureThreshold: 5, FailureWindow: Duration{time.Minute},
				OpenTimeout: Duration{30 * time.Second}, SuccessThreshold: 1},
			Slack: ObserverAction{Timeout: Duration{10 * time.Second}, FailureThreshold: 3, FailureWindow: Duration{time.Minute},
				OpenTimeout: Duration{30 * time.Second}, SuccessThreshold: 1},
			Email: ObserverAction{Timeout: Duration{30 * time.Second}, FailureThreshold: 2, FailureWindow: Duration{time.Minute},
				OpenTimeout: Duration{time.Minute}, SuccessThreshold: 1},
			SMTP: SMTP{From: "fraise@localhost"},
		},
		Secrets: Secrets{ReloadInterval: Duration{time.Second}},
		Backup:  defaultBackup(),
	}
	syncRenamed(&c)
	return c
}

// ProductionDefault returns the production profile's configuration: the
// development profile's limits, timeouts and loopback addresses, without
// anything that only makes sense on a developer's machine: no certificate
// or key paths, no trusted token issuer, no database or Redis address, no
// JSON-less log format. Require names each setting a command then needs.
func ProductionDefault() Config {
	c := Default()
	c.Profile = ProfileProduction
	c.Log.Format = "json"
	// The identities peers are verified by stay; the files go.
	c.TLS = TLS{GatewaySAN: c.TLS.GatewaySAN, CoreClientSAN: c.TLS.CoreClientSAN}
	c.Database.URL, c.Database.AdminURL = "", ""
	c.Redis.Addr = ""
	c.Server.AssertionKeys = nil
	c.Authz.AssertionKey = ""
	c.Authz.Issuers = nil
	syncRenamed(&c) // the old fields lose the development values too
	return c
}

// defaultFor returns the configuration profile starts from.
func defaultFor(profile string) Config {
	if profile == ProfileDev {
		return Default()
	}
	return ProductionDefault()
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
// A renamed key is accepted under its old name for one release (renames):
// it is returned in Config.Deprecations, which the caller logs as
// warnings; setting both its names is an error naming both.
//
// The profile is getenv("FRAISE_PROFILE"): "dev" or "production" (the
// default when unset).
func Load(path string, getenv func(string) string) (Config, error) {
	profile := getenv("FRAISE_PROFILE")
	switch profile {
	case "":
		profile = ProfileProduction
	case ProfileDev, ProfileProduction:
	default:
		return Default(), fmt.Errorf("profile (--profile or FRAISE_PROFILE): want dev or production, got %q", profile)
	}
	cfg := defaultFor(profile)
	var meta *toml.MetaData // what the file defined; nil without one
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		// Lists of tables replace the defaults rather than merge into them.
		cfg.Authz.Issuers = nil
		cfg.RateLimit.Tiers, cfg.RateLimit.Actions = nil, nil
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
			cfg.Authz.Issuers = defaultFor(profile).Authz.Issuers
		}
		if !md.IsDefined("ratelimit", "tiers") {
			cfg.RateLimit.Tiers = defaultFor(profile).RateLimit.Tiers
		}
		if !md.IsDefined("ratelimit", "actions") {
			cfg.RateLimit.Actions = defaultFor(profile).RateLimit.Actions
		}
		meta = &md
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "FRAISE", getenv); err != nil {
		return cfg, err
	}
	deps, err := applyRenames(&cfg, meta, getenv)
	cfg.Deprecations = deps
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// applyEnv overrides every scalar key of the configuration's structs from
// FRAISE_<SECTION>_<KEY>, e.g. FRAISE_DATABASE_URL or
// FRAISE_ADMISSION_MAX_CONCURRENT. Lists take comma-separated values;
// named tables (maps) and lists of tables have no override.
func applyEnv(v reflect.Value, prefix string, getenv func(string) string) error {
	var errs []error
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
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
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{c.setAs(key)}, args...)...))
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
	if u := c.Telemetry.TraceURL; u != "" && !strings.Contains(u, "{trace_id}") {
		bad("telemetry.trace_url", "want a URL with {trace_id} in it, got %q", u)
	}
	if c.Database.MaxConns < 1 {
		bad("database.max_conns", "want at least 1, got %d", c.Database.MaxConns)
	}
	if c.Database.StatementTimeout.Duration < 0 {
		bad("database.statement_timeout", "must not be negative")
	}
	if c.Database.MaxConnLifetime.Duration <= 0 {
		bad("database.max_conn_lifetime", "must be positive")
	}
	c.Database.TLS.validate("database.tls", bad)
	redisAddr, _ := c.Redis.Endpoint()
	addr("redis.addr", redisAddr, true)
	if strings.HasPrefix(c.Redis.Addr, "redis://") && c.Redis.TLS.Enabled() {
		bad("redis.addr", "redis:// is plaintext, but [redis.tls] is set: write rediss:// or host:port")
	}
	c.Redis.TLS.validate("redis.tls", bad)
	if c.Redis.MaxConnLifetime.Duration <= 0 {
		bad("redis.max_conn_lifetime", "must be positive")
	}
	if c.Secrets.ReloadInterval.Duration <= 0 {
		bad("secrets.reload_interval", "must be positive")
	}
	addr("server.http_addr", c.Server.HTTPAddr, false)
	addr("server.admin_addr", c.Server.AdminAddr, true)
	addr("server.flight_addr", c.Server.FlightAddr, true)
	if c.Server.AssertionReplayRate < 1 {
		bad("server.assertion_replay_rate", "want 1 or more assertions per second, got %d", c.Server.AssertionReplayRate)
	}
	if u := c.Server.AssertionJWKSURL; u != "" {
		if p, err := url.Parse(u); err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil {
			bad("server.assertion_jwks_url", "want an https:// URL without credentials (extauthz's authz.jwks_addr, verified against tls.ca), got %q", u)
		}
		if c.TLS.CA == "" {
			bad("tls.ca", "required with server.assertion_jwks_url: it is the only root the keys' server is verified against")
		}
	}
	if c.Server.MaxBatch < 0 {
		bad("server.max_batch", "want 0 (batching off) or more, got %d", c.Server.MaxBatch)
	}
	if c.Server.MaxBodyBytes < 1 {
		bad("server.max_body_bytes", "want at least 1, got %d", c.Server.MaxBodyBytes)
	}
	for key, v := range map[string]int{"server.max_depth": c.Server.MaxDepth, "server.max_aliases": c.Server.MaxAliases,
		"server.max_root_fields": c.Server.MaxRootFields, "server.max_cost": c.Server.MaxCost, "server.max_result_bytes": c.Server.MaxResultBytes,
		"server.max_selections": c.Server.MaxSelections} {
		if v < 1 {
			bad(key, "want at least 1, got %d", v)
		}
	}
	if c.Server.StatementTimeout.Duration < 0 {
		bad("server.statement_timeout", "want a non-negative duration, got %s", c.Server.StatementTimeout)
	}
	if c.Server.MaxLimit < c.Server.DefaultLimit || c.Server.DefaultLimit < 1 {
		bad("server.default_limit", "want 1 <= default_limit <= max_limit, got %d and %d", c.Server.DefaultLimit, c.Server.MaxLimit)
	}
	addr("authz.grpc_addr", c.Authz.GRPCAddr, false)
	addr("authz.admin_addr", c.Authz.AdminAddr, true)
	if c.Authz.AssertionKey != "" && !IsReference(c.Authz.AssertionKey) {
		bad("authz.assertion_key", "must be a reference (file://, env:// or vault://), never a literal key")
	}
	addr("authz.jwks_addr", c.Authz.JWKSAddr, true)
	for i, is := range c.Authz.Issuers {
		key := fmt.Sprintf("authz.issuers[%d]", i)
		if is.Issuer == "" {
			bad(key+".issuer", "required")
		}
		sources, asymmetric := 0, false
		for _, set := range []bool{is.JWKSFile != "", is.JWKSURL != "", is.Discovery} {
			if set {
				sources++
			}
		}
		if len(is.Algorithms) == 0 {
			bad(key+".algorithms", "required, e.g. [\"RS256\"]")
		}
		for _, a := range is.Algorithms {
			switch {
			case strings.EqualFold(a, "none"):
				bad(key+".algorithms", "\"none\" is never allowed")
			case strings.HasPrefix(a, "HS"):
				if is.HMACSecret == "" {
					bad(key+".hmac_secret", "required for %s", a)
				}
			default:
				asymmetric = true
			}
		}
		if is.HMACSecret != "" && !IsReference(is.HMACSecret) {
			bad(key+".hmac_secret", "must be a reference (file://, env:// or vault://), never a literal secret")
		}
		if sources > 1 || (asymmetric && sources == 0) {
			bad(key, "set exactly one of jwks_file, jwks_url and discovery")
		}
		is.validateTenants(key, len(c.Authz.Issuers), bad)
	}
	if c.Authz.BundleURL != "" && c.Authz.PolicyDir != "" {
		bad("authz.bundle_url", "set either bundle_url or policy_dir, not both")
	}
	if c.Authz.BundleURL != "" && c.Authz.BundlePoll.Duration <= 0 {
		bad("authz.bundle_poll", "must be positive")
	}
	if c.Authz.Audit && c.Authz.DatabaseURL == "" {
		bad("authz.audit", "needs authz.database_url")
	}
	if c.Authz.APIKeyCacheTTL.Duration <= 0 || c.Authz.KeyRefresh.Duration <= 0 {
		bad("authz.api_key_cache_ttl", "api_key_cache_ttl and key_refresh must be positive")
	}
	if c.Authz.APIKeyLookups < 2 {
		bad("authz.api_key_lookups_per_second", "want at least 2 (room for known keys beside unknown ids), got %d", c.Authz.APIKeyLookups)
	}
	unknown := c.Authz.APIKeyUnknownLookups
	if unknown == 0 {
		unknown = max(1, c.Authz.APIKeyLookups/5)
	}
	if n := c.Authz.APIKeyUnknownLookups; n < 0 || n > 0 && n >= c.Authz.APIKeyLookups {
		bad("authz.api_key_unknown_lookups_per_second", "want 1 to authz.api_key_lookups_per_second - 1 (%d), so known keys always find room, or 0 for a fifth of it; got %d",
			c.Authz.APIKeyLookups-1, n)
	}
	if n := c.Authz.APIKeyClientLookups; n < 0 || n > unknown {
		bad("authz.api_key_client_lookups_per_second", "want 1 to the unknown ids' lookups per second (%d), or 0 for a twentieth of authz.api_key_lookups_per_second; got %d", unknown, n)
	}
	if c.Authz.MaxRecvMsgBytes < 64<<10 {
		bad("authz.max_recv_msg_bytes", "want at least 65536, got %d", c.Authz.MaxRecvMsgBytes)
	}
	addr("ratelimit.grpc_addr", c.RateLimit.GRPCAddr, false)
	addr("ratelimit.admin_addr", c.RateLimit.AdminAddr, true)
	for _, a := range []struct{ key, v string }{
		{"ratelimit.http_addr", c.RateLimit.HTTPAddr}, {"ratelimit.debug_addr", c.RateLimit.DebugAddr},
	} {
		// Anyone who reaches these ports spends any tenant's limits or
		// profiles the process: operator tools, on loopback only.
		if a.v == "" {
			continue
		}
		if host, _, err := net.SplitHostPort(a.v); err != nil {
			bad(a.key, "want host:port, got %q", a.v)
		} else if !isLoopback(host) {
			bad(a.key, "want a loopback address (127.0.0.1, [::1] or localhost) or empty (off), got %q", a.v)
		}
	}
	if c.RateLimit.Domain == "" {
		bad("ratelimit.domain", "required")
	}
	limit := func(key string, l Limit) {
		if l.Requests > 0 && !slices.Contains([]string{"second", "minute", "hour", "day"}, l.Unit) {
			bad(key+".unit", "want second, minute, hour or day, got %q", l.Unit)
		}
	}
	if _, ok := c.RateLimit.Tiers["default"]; !ok {
		bad("ratelimit.tiers", "the \"default\" tier is required: it applies to unknown tiers")
	}
	for _, name := range slices.Sorted(maps.Keys(c.RateLimit.Tiers)) {
		t, key := c.RateLimit.Tiers[name], "ratelimit.tiers."+name
		limit(key+".tenant", t.Tenant)
		limit(key+".read", t.Read)
		limit(key+".write", t.Write)
		limit(key+".flight", t.Flight)
		limit(key+".subject", t.Subject)
	}
	for _, name := range slices.Sorted(maps.Keys(c.RateLimit.Actions)) {
		limit("ratelimit.actions."+name, c.RateLimit.Actions[name])
	}
	if c.RateLimit.LocalCacheBytes < 0 {
		bad("ratelimit.local_cache_bytes", "must not be negative")
	}
	c.Admission.GraphQL().validate("admission.", true, bad)
	c.Admission.Flight.validate("admission.flight.", false, bad)
	c.Admission.Observers.validate("admission.observers.", false, bad)
	// Each export holds a connection for its whole length: GraphQL needs
	// at least one left.
	if f := c.Admission.Flight; f.MaxConcurrent < 1 || f.MaxConcurrent >= c.Database.MaxConns {
		bad("admission.flight.max_concurrent", "want 1 to database.max_conns - 1 (%d), got %d", c.Database.MaxConns-1, f.MaxConcurrent)
	}
	if o := c.Admission.Observers; o.MaxConcurrent < 1 {
		bad("admission.observers.max_concurrent", "want at least 1, got %d", o.MaxConcurrent)
	}
	for _, k := range []struct {
		prefix string
		class  AdmissionClass
	}{{"admission.flight.", c.Admission.Flight}, {"admission.observers.", c.Admission.Observers}} {
		if n := k.class.MaxConcurrentPerTenant; n < 1 || n > k.class.MaxConcurrent {
			bad(k.prefix+"max_concurrent_per_tenant", "want 1 to %smax_concurrent (%d), got %d", k.prefix, k.class.MaxConcurrent, n)
		}
	}
	if c.Admission.MemoryThreshold <= 0 || c.Admission.MemoryThreshold > 1 {
		bad("admission.memory_threshold", "want a share above 0 and at most 1, got %v", c.Admission.MemoryThreshold)
	}
	if c.Admission.RetryAfter.Duration < time.Second {
		bad("admission.retry_after", "want at least 1s (Retry-After counts whole seconds)")
	}
	addr("gateway.listen_addr", c.Gateway.ListenAddr, false)
	addr("gateway.admin_addr", c.Gateway.AdminAddr, true)
	if c.Gateway.AuthzTimeout.Duration <= 0 {
		bad("gateway.authz_timeout", "must be positive")
	}
	if c.Gateway.GraphQLTimeout.Duration <= 0 {
		bad("gateway.graphql_timeout", "must be positive")
	}
	if c.Gateway.MaxRequestBytes == 0 || c.Gateway.MaxRequestBytes > 64<<20 {
		bad("gateway.max_request_bytes", "want 1 to 67108864, got %d", c.Gateway.MaxRequestBytes)
	}
	if c.Gateway.Concurrency < 0 {
		bad("gateway.concurrency", "want 0 (one per core, at most two) or more, got %d", c.Gateway.Concurrency)
	}
	switch c.Gateway.LogLevel {
	case "trace", "debug", "info", "warn", "error", "critical", "off":
	default:
		bad("gateway.log_level", "want trace, debug, info, warn, error, critical or off, got %q", c.Gateway.LogLevel)
	}
	if c.Gateway.MaxConnections == 0 {
		bad("gateway.max_connections", "want at least 1")
	}
	addr("xds.grpc_addr", c.XDS.GRPCAddr, false)
	addr("xds.admin_addr", c.XDS.AdminAddr, true)
	if c.XDS.NodeID == "" {
		bad("xds.node_id", "required")
	}
	if c.XDS.PollInterval.Duration <= 0 {
		bad("xds.poll_interval", "must be positive")
	}
	c.Flight.validate(bad)
	if c.Server.SchemaWatch.Duration < 0 || c.Server.SchemaWatch.Duration > 0 && c.Server.Schema != "auto" {
		bad("server.schema_watch", "applies to server.schema = \"auto\" only, and must not be negative")
	}
	if c.Server.Schema == "auto" && len(c.Server.SchemaSchemas) == 0 {
		bad("server.schema_schemas", "name at least one database schema for server.schema = \"auto\"")
	}
	for _, k := range []struct {
		key   string
		names []string
	}{{"database.tenant_settings", c.Database.TenantSettings}, {"database.subject_settings", c.Database.SubjectSettings}} {
		for _, n := range k.names {
			if !settingName(n) {
				bad(k.key, "%q is not a custom setting name (prefix.name in lower case, like app.tenant_id)", n)
			}
		}
	}
	errs = append(errs, c.Observers.validate()...)
	c.Backup.validate(bad)
	return errors.Join(errs...)
}

// settingName reports whether n is a custom PostgreSQL setting name
// Fraise may set: lower-case letters, digits and _, with a dot inside.
func settingName(n string) bool {
	prefix, rest, ok := strings.Cut(n, ".")
	if !ok || prefix == "" || rest == "" || strings.HasSuffix(n, ".") || len(n) > 63 || '0' <= n[0] && n[0] <= '9' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c == '.' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// validateTenants checks the issuer's tenant binding. One issuer may go
// unbound (it speaks for every tenant, as one shared realm does); among
// several, an unbound one could name any other issuer's tenant, so each
// must say which tenants it speaks for, ["*"] included.
func (is Issuer) validateTenants(key string, issuers int, bad func(key, format string, args ...any)) {
	switch {
	case is.Tenant != "" && len(is.Tenants) > 0:
		bad(key, "set tenant or tenants, not both")
	case is.Tenant == AnyTenant:
		bad(key+".tenant", "want one tenant id; for every tenant write tenants = [\"*\"]")
	case slices.Contains(is.Tenants, AnyTenant) && len(is.Tenants) > 1:
		bad(key+".tenants", "\"*\" (every tenant) stands alone, got %q", is.Tenants)
	case slices.Contains(is.Tenants, ""):
		bad(key+".tenants", "holds an empty tenant id")
	case is.Tenant == "" && len(is.Tenants) == 0 && issuers > 1:
		bad(key, "with several issuers each must be bound to the tenants it speaks for: "+
			"set tenant = \"<id>\" (one realm per tenant), tenants = [\"<id>\", ...], or tenants = [\"*\"] for an issuer every tenant trusts")
	}
}

// TenantBinding returns the issuer's tenant binding as token.Issuer takes
// it: the fixed tenant, or the set, nil for every tenant.
func (is Issuer) TenantBinding() (tenant string, tenants []string) {
	if len(is.Tenants) == 1 && is.Tenants[0] == AnyTenant {
		return is.Tenant, nil
	}
	return is.Tenant, is.Tenants
}

func (f Flight) validate(bad func(key, format string, args ...any)) {
	if f.TicketKey != "" && !IsReference(f.TicketKey) {
		bad("flight.ticket_key", "must be a reference (file://, env:// or vault://), never a literal key")
	}
	if f.TicketTTL.Duration <= 0 {
		bad("flight.ticket_ttl", "must be positive")
	}
	if f.BatchRows < 1 {
		bad("flight.batch_rows", "want at least 1, got %d", f.BatchRows)
	}
	if f.BatchBytes < 1<<10 {
		bad("flight.batch_bytes", "want at least 1024, got %d", f.BatchBytes)
	}
	if f.StatementTimeout.Duration < 0 {
		bad("flight.statement_timeout", "must not be negative")
	}
	ds, typeErrs := f.datasets()
	for _, e := range typeErrs {
		bad(e.key, "%v", e.err)
	}
	// Binding datasets over GraphQL types needs the schema, which the
	// server reads at start (flight.NewCatalog); the rest is checked here.
	if err := flight.Check(ds); err != nil {
		bad("flight.datasets", "%v", err)
	}
}

type keyError struct {
	key string
	err error
}

// datasets returns the declared datasets in the core's terms, and the
// columns whose types do not parse.
func (f Flight) datasets() ([]flight.Dataset, []keyError) {
	var ds []flight.Dataset
	var errs []keyError
	for i, d := range f.Datasets {
		fd := flight.Dataset{Name: d.Name, View: d.View, Type: d.GraphQLType, Roles: d.Roles,
			Endpoints: d.Endpoints, PartitionKey: d.PartitionKey}
		for j, c := range d.Columns {
			t, err := flight.ParseType(c.Type)
			if err != nil {
				errs = append(errs, keyError{fmt.Sprintf("flight.datasets[%d].columns[%d].type", i, j), err})
			}
			col := flight.Column{Name: c.Name, Type: t, Field: c.Field, Protection: core.Protection{
				Mask: core.MaskKind(c.Mask), MaskScope: c.MaskScope}}
			if c.Auth != "" {
				col.Protection.Auth = []string{c.Auth}
			}
			fd.Columns = append(fd.Columns, col)
		}
		ds = append(ds, fd)
	}
	return ds, errs
}

// FlightDatasets returns the declared datasets in the core's terms, for
// flight.NewCatalog with the GraphQL schema; call it on a validated
// configuration.
func (f Flight) FlightDatasets() ([]flight.Dataset, error) {
	ds, errs := f.datasets()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", errs[0].key, errs[0].err)
	}
	return ds, nil
}

func (o Observers) validate() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("observers.%s: "+format, append([]any{key}, args...)...))
	}
	if o.Cursor == "" {
		bad("cursor", "required")
	}
	for key, v := range map[string]int{"batch_size": o.BatchSize,
		"max_attempts": o.MaxAttempts, "max_queue_memory_mb": o.MaxQueueMemoryMB} {
		if v < 1 {
			bad(key, "want at least 1, got %d", v)
		}
	}
	for key, v := range map[string]time.Duration{"max_job_age": o.MaxJobAge.Duration, "backpressure_max_pause": o.BackpressureMaxPause.Duration} {
		if v <= 0 {
			bad(key, "want a positive duration, got %s", v)
		}
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

// isLoopback reports whether host is a loopback IP address or localhost;
// an empty host (every interface) is not.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
