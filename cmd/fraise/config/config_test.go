package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/core"
)

func mustFile(tb testing.TB, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "fraise.toml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// envOf is an environment of m's variables, in the dev profile unless m
// names one: most cases test a key over the development defaults.
func envOf(m map[string]string) func(string) string {
	return func(k string) string {
		if v, ok := m[k]; ok || k != "FRAISE_PROFILE" {
			return v
		}
		return config.ProfileDev
	}
}

// mustLoadCase loads file (no file when "") under env's variables, as a
// table case does. When wantErr names anything, the load must fail with an
// error naming each of them, and mustLoadCase returns false: the case is
// done. Otherwise a load error fails the test.
func mustLoadCase(tb testing.TB, file string, env map[string]string, wantErr []string) (config.Config, bool) {
	tb.Helper()
	path := ""
	if file != "" {
		path = mustFile(tb, file)
	}
	c, err := config.Load(path, envOf(env))
	if len(wantErr) > 0 {
		if err == nil {
			tb.Fatalf("got no error, want one naming %q", wantErr)
		}
		for _, w := range wantErr {
			if !strings.Contains(err.Error(), w) {
				tb.Errorf("got error %q, want it to name %q", err, w)
			}
		}
		return c, false
	}
	if err != nil {
		tb.Fatalf("got error %v", err)
	}
	return c, true
}

func TestDefaultsAreValid(t *testing.T) {
	if err := config.Default().Validate(); err != nil {
		t.Fatalf("default configuration invalid: %v", err)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		check   func(t *testing.T, c config.Config)
		wantErr []string // substrings every one of which the error must name
	}{
		{
			name: "file overrides defaults",
			file: "[server]\nhttp_addr = \"0.0.0.0:9000\"\n[database]\nstatement_timeout = \"2s\"\n",
			check: func(t *testing.T, c config.Config) {
				if c.Server.HTTPAddr != "0.0.0.0:9000" {
					t.Errorf("got server.http_addr %q, want 0.0.0.0:9000", c.Server.HTTPAddr)
				}
				if c.Database.StatementTimeout.Duration != 2*time.Second {
					t.Errorf("got statement_timeout %v, want 2s", c.Database.StatementTimeout)
				}
				if c.Redis.Addr != config.Default().Redis.Addr {
					t.Errorf("unset key lost its default: got %q", c.Redis.Addr)
				}
			},
		},
		{
			name: "environment overrides the file",
			file: "[server]\nhttp_addr = \"0.0.0.0:9000\"\n",
			env: map[string]string{
				"FRAISE_SERVER_HTTP_ADDR":      "127.0.0.1:7000",
				"FRAISE_ADMISSION_MAX_QUEUE":   "7",
				"FRAISE_SERVER_ASSERTION_KEYS": "file://a.pub, file://b.pub",
				"FRAISE_GATEWAY_AUTHZ_TIMEOUT": "1s",
				"FRAISE_AUTHZ_DRY_RUN":         "true",
			},
			check: func(t *testing.T, c config.Config) {
				if c.Server.HTTPAddr != "127.0.0.1:7000" {
					t.Errorf("got %q, want the environment's 127.0.0.1:7000", c.Server.HTTPAddr)
				}
				if c.Admission.MaxQueue != 7 {
					t.Errorf("got %d, want 7", c.Admission.MaxQueue)
				}
				if len(c.Server.AssertionKeys) != 2 || c.Server.AssertionKeys[1] != "file://b.pub" {
					t.Errorf("got %q, want two keys", c.Server.AssertionKeys)
				}
				if c.Gateway.AuthzTimeout.Duration != time.Second || !c.Authz.DryRun {
					t.Errorf("got %v %v, want 1s true", c.Gateway.AuthzTimeout, c.Authz.DryRun)
				}
			},
		},
		{
			name:    "schema_watch applies to server.schema = auto only",
			file:    "[server]\nschema = \"schema.graphql\"\nschema_watch = \"2s\"\n",
			wantErr: []string{"server.schema_watch"},
		},
		{
			name:    "server.schema = auto needs a database schema to read",
			file:    "[server]\nschema = \"auto\"\nschema_schemas = []\n",
			wantErr: []string{"server.schema_schemas"},
		},
		{
			name: "server.schema = auto with a watch",
			file: "[server]\nschema = \"auto\"\nschema_watch = \"2s\"\n",
			check: func(t *testing.T, c config.Config) {
				if c.Server.SchemaWatch.Duration != 2*time.Second || len(c.Server.SchemaSchemas) != 1 || c.Server.SchemaSchemas[0] != "public" {
					t.Errorf("got watch %v, schemas %q, want 2s and [public]", c.Server.SchemaWatch, c.Server.SchemaSchemas)
				}
			},
		},
		{
			name:    "unknown keys are errors",
			file:    "[server]\nhttp_adr = \"x\"\n",
			wantErr: []string{"server.http_adr"},
		},
		{
			name:    "every bad value is named at once",
			file:    "[log]\nformat = \"xml\"\n[server]\nhttp_addr = \"nope\"\n[ratelimit.tiers.default]\ntenant = { requests = 1, unit = \"fortnight\" }\n[admission]\nmemory_threshold = 2.0\n",
			wantErr: []string{"log.format", "server.http_addr", "ratelimit.tiers.default.tenant.unit", "admission.memory_threshold"},
		},
		{
			name: "tiers in the file replace the default tiers",
			file: "[ratelimit.tiers.default]\ntenant = { requests = 5, unit = \"minute\" }\n[ratelimit.tiers.gold]\nwrite = { requests = 9, unit = \"second\", shadow = true }\n",
			check: func(t *testing.T, c config.Config) {
				if len(c.RateLimit.Tiers) != 2 || c.RateLimit.Tiers["default"].Tenant.Requests != 5 || !c.RateLimit.Tiers["gold"].Write.Shadow {
					t.Errorf("got tiers %+v, want exactly the file's default and gold", c.RateLimit.Tiers)
				}
				if c.RateLimit.Actions["webhook"].Requests == 0 {
					t.Errorf("unset actions lost their defaults: got %+v", c.RateLimit.Actions)
				}
			},
		},
		{
			name:    "a default tier is required",
			file:    "[ratelimit.tiers.gold]\ntenant = { requests = 5, unit = \"minute\" }\n",
			wantErr: []string{"ratelimit.tiers", "default"},
		},
		{
			name:    "GraphQL limits must be positive",
			file:    "[server]\nmax_cost = 0\nmax_aliases = -1\nstatement_timeout = \"-1s\"\nmax_selections = 0\n",
			wantErr: []string{"server.max_cost", "server.max_aliases", "server.statement_timeout", "server.max_selections"},
		},
		{
			name:    "bad environment values name the variable",
			env:     map[string]string{"FRAISE_DATABASE_MAX_CONNS": "many"},
			wantErr: []string{"FRAISE_DATABASE_MAX_CONNS"},
		},
		{
			// 0 does not mean the same for every bound: what it means is
			// in the error, as the controller does it (TestAdmissionZeroes
			// in cmd/fraise/cli checks that).
			name: "a negative admission bound names what 0 means for it",
			file: "[admission]\nmax_concurrent = -1\nmax_concurrent_per_tenant = -1\nmax_queue = -1\nmax_queue_per_tenant = -1\n",
			wantErr: []string{
				"admission.max_concurrent: must not be negative (0 is unbounded)",
				"admission.max_concurrent_per_tenant: must not be negative (0 is unbounded)",
				"admission.max_queue: must not be negative (0 queues none)",
				"admission.max_queue_per_tenant: must not be negative (0 is bounded by admission.max_queue alone)",
			},
		},
		{
			name:    "the graphql route timeout must be positive",
			file:    "[gateway]\ngraphql_timeout = \"0s\"\n",
			wantErr: []string{"gateway.graphql_timeout"},
		},
		{
			name:    "a negative batch limit is refused",
			file:    "[server]\nmax_batch = -1\n",
			wantErr: []string{"server.max_batch"},
		},
		{
			name:    "a literal assertion key is refused",
			file:    "[authz]\nassertion_key = \"-----BEGIN PRIVATE KEY-----\"\n",
			wantErr: []string{"authz.assertion_key", "reference"},
		},
		{
			name:    "alg none is never allowed",
			file:    "[[authz.issuers]]\nissuer = \"https://x\"\njwks_url = \"https://x/jwks\"\nalgorithms = [\"none\"]\n",
			wantErr: []string{"authz.issuers[0].algorithms"},
		},
		{
			name:    "an HS256 issuer needs a secret reference",
			file:    "[[authz.issuers]]\nissuer = \"https://x\"\nalgorithms = [\"HS256\"]\nhmac_secret = \"literal\"\n",
			wantErr: []string{"authz.issuers[0].hmac_secret", "reference"},
		},
		{
			name:    "discovery and a JWKS URL are exclusive; audit needs a database",
			file:    "[authz]\naudit = true\n[[authz.issuers]]\nissuer = \"https://x\"\ndiscovery = true\njwks_url = \"https://x/j\"\nalgorithms = [\"RS256\"]\n",
			wantErr: []string{"authz.issuers[0]", "exactly one", "authz.audit"},
		},
		{
			name: "API key lookup limits nest: client within unknown ids within all",
			file: "[authz]\napi_key_lookups_per_second = 50\napi_key_unknown_lookups_per_second = 50\napi_key_client_lookups_per_second = 60\n",
			wantErr: []string{
				"authz.api_key_unknown_lookups_per_second: want 1 to authz.api_key_lookups_per_second - 1 (49)",
				"authz.api_key_client_lookups_per_second: want 1 to the unknown ids' lookups per second (50)",
			},
		},
		{
			name:    "a client's allowance within the derived unknown ids' allowance",
			file:    "[authz]\napi_key_lookups_per_second = 10\napi_key_client_lookups_per_second = 3\n",
			wantErr: []string{"authz.api_key_client_lookups_per_second: want 1 to the unknown ids' lookups per second (2)"},
		},
		{
			name: "a lower global allowance alone derives the others",
			file: "[authz]\napi_key_lookups_per_second = 10\n",
			check: func(t *testing.T, c config.Config) {
				if c.Authz.APIKeyLookups != 10 || c.Authz.APIKeyUnknownLookups != 0 || c.Authz.APIKeyClientLookups != 0 {
					t.Errorf("got %d %d %d, want 10 0 0", c.Authz.APIKeyLookups, c.Authz.APIKeyUnknownLookups, c.Authz.APIKeyClientLookups)
				}
			},
		},
		{
			name: "API key lookup limits from the environment",
			env:  map[string]string{"FRAISE_AUTHZ_API_KEY_UNKNOWN_LOOKUPS_PER_SECOND": "10", "FRAISE_AUTHZ_API_KEY_CLIENT_LOOKUPS_PER_SECOND": "2"},
			check: func(t *testing.T, c config.Config) {
				if c.Authz.APIKeyLookups != 100 || c.Authz.APIKeyUnknownLookups != 10 || c.Authz.APIKeyClientLookups != 2 {
					t.Errorf("got %d %d %d, want 100 10 2", c.Authz.APIKeyLookups, c.Authz.APIKeyUnknownLookups, c.Authz.APIKeyClientLookups)
				}
			},
		},
		{
			name:    "the assertion keys' URL is https and needs the CA",
			file:    "[server]\nassertion_jwks_url = \"http://authz:9192/.well-known/jwks.json\"\n[tls]\nca = \"\"\n[authz]\njwks_addr = \"nope\"\n",
			wantErr: []string{"server.assertion_jwks_url: want an https:// URL", "tls.ca: required with server.assertion_jwks_url", "authz.jwks_addr"},
		},
		{
			name: "an https assertion keys' URL",
			file: "[server]\nassertion_jwks_url = \"https://authz:9193/.well-known/jwks.json\"\n[authz]\njwks_addr = \"0.0.0.0:9193\"\n",
			check: func(t *testing.T, c config.Config) {
				if c.Server.AssertionJWKSURL != "https://authz:9193/.well-known/jwks.json" || c.Authz.JWKSAddr != "0.0.0.0:9193" {
					t.Errorf("got %q %q, want the file's", c.Server.AssertionJWKSURL, c.Authz.JWKSAddr)
				}
			},
		},
		{
			name: "each of several issuers is bound to its tenants",
			file: realm("acme", `tenant = "`+acmeID+`"`) + realm("globex", "") + realm("partners", `tenant = "`+acmeID+`"`+"\ntenants = [\""+acmeID+`"]`) +
				realm("all", `tenants = ["*", "`+acmeID+`"]`) + realm("blank", `tenants = [""]`) + realm("star", `tenant = "*"`),
			wantErr: []string{
				"authz.issuers[1]: with several issuers each must be bound",
				"authz.issuers[2]: set tenant or tenants, not both",
				`authz.issuers[3].tenants: "*" (every tenant) stands alone`,
				"authz.issuers[4].tenants: holds an empty tenant id",
				"authz.issuers[5].tenant: want one tenant id",
			},
		},
		{
			name: "one realm per tenant and one shared realm",
			file: realm("acme", `tenant = "`+acmeID+`"`) + realm("shared", `tenants = ["*"]`) + realm("partners", `tenants = ["`+acmeID+`", "`+globexID+`"]`),
			check: func(t *testing.T, c config.Config) {
				for i, want := range []struct {
					tenant  string
					tenants []string
				}{{acmeID, nil}, {"", nil}, {"", []string{acmeID, globexID}}} {
					tenant, tenants := c.Authz.Issuers[i].TenantBinding()
					if tenant != want.tenant || strings.Join(tenants, ",") != strings.Join(want.tenants, ",") {
						t.Errorf("issuer %d: got binding %q %q, want %q %q", i, tenant, tenants, want.tenant, want.tenants)
					}
				}
			},
		},
		{
			name: "one issuer may go unbound",
			file: realm("shared", ""),
			check: func(t *testing.T, c config.Config) {
				if tenant, tenants := c.Authz.Issuers[0].TenantBinding(); tenant != "" || tenants != nil {
					t.Errorf("got binding %q %q, want none", tenant, tenants)
				}
			},
		},
		{
			name: "issuers from the file replace the default",
			file: "[[authz.issuers]]\nissuer = \"https://idp\"\njwks_url = \"https://idp/jwks\"\nalgorithms = [\"RS256\"]\n",
			check: func(t *testing.T, c config.Config) {
				if len(c.Authz.Issuers) != 1 || c.Authz.Issuers[0].Issuer != "https://idp" {
					t.Errorf("got issuers %+v, want only https://idp", c.Authz.Issuers)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := mustLoadCase(t, tt.file, tt.env, tt.wantErr)
			if !ok {
				return
			}
			tt.check(t, c)
		})
	}
}

const (
	acmeID   = "0b7c2a40-6f1e-4d4b-9a57-3f0d6e3c8a11"
	globexID = "5d1e8f22-3c4b-4a1d-8e9f-7a6b5c4d3e2f"
)

// realm is an [[authz.issuers]] table for Keycloak realm name, with extra
// lines.
func realm(name, extra string) string {
	return "[[authz.issuers]]\nissuer = \"https://sso.example.test/realms/" + name + "\"\naudiences = [\"fraise\"]\n" +
		"discovery = true\nalgorithms = [\"RS256\"]\n" + extra + "\n"
}

func TestResolve(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := envOf(map[string]string{"PW": "from-env"})
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"literal", "plain", "plain", false},
		{"file", "file://" + p, "s3cret", false},
		{"env", "env://PW", "from-env", false},
		{"unset env", "env://MISSING", "", true},
		{"missing file", "file:///does/not/exist", "", true},
		{"vault says it is unsupported", "vault://kv/fraise#pw", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Resolve(tt.in, env)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestFlightDatasetProtection: a dataset over a GraphQL type and columns'
// own protection load into the core's terms; mistakes are reported with
// the rest. Binding to the schema is the server's, at start.
func TestFlightDatasetProtection(t *testing.T) {
	c, err := config.Load(mustFile(t, `
[[flight.datasets]]
name = "people.users"
graphql_type = "User"
columns = [
  { name = "id", type = "uuid" },
  { name = "boss_email", type = "text", field = "boss.email", auth = "read:boss" },
]
[[flight.datasets]]
name = "people.flat"
view = "v_user_flat"
columns = [{ name = "email", type = "text", mask = "EMAIL", mask_scope = "read:User.email" }]
`), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.Flight.FlightDatasets()
	if err != nil {
		t.Fatal(err)
	}
	boss, email := ds[0].Columns[1], ds[1].Columns[0]
	if ds[0].Type != "User" || boss.Field != "boss.email" || !slices.Equal(boss.Protection.Auth, []string{"read:boss"}) ||
		email.Protection.Mask != core.MaskEmail || email.Protection.MaskScope != "read:User.email" {
		t.Errorf("got %+v, want User's dataset with boss.email under read:boss, and the flat email masked", ds)
	}

	_, err = config.Load(mustFile(t, `
[[flight.datasets]]
name = "people.users"
graphql_type = "User"
view = "public.v_user"
columns = [{ name = "id", type = "uuid", mask = "EMAIL" }, { name = "e", type = "text", mask = "email" }]
`), envOf(nil))
	for _, want := range []string{"leave view out", "a masked column is text", `mask "email" is none of EMAIL, PII, SECRET`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error saying %q", err, want)
		}
	}
}

func TestFlightDatasets(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		wantErr []string
		want    string // the first dataset's first column type, as the core reads it
	}{
		{
			name: "declared datasets load",
			file: `
[flight]
ticket_key = "env://TICKET_KEY"
[[flight.datasets]]
name = "sales.orders"
view = "public.v_orders"
roles = ["analyst"]
columns = [{ name = "amount", type = "numeric(12,2)" }, { name = "tags", type = "text[]" }]
`,
			env:  map[string]string{"FRAISE_SERVER_FLIGHT_ADDR": "127.0.0.1:0"},
			want: "numeric(12,2)",
		},
		{
			name: "every problem at once",
			file: `
[flight]
ticket_key = "literal-secret"
ticket_ttl = "0s"
batch_rows = 0
max_exports = 20
[[flight.datasets]]
name = "a"
view = "v; drop"
columns = [{ name = "x", type = "money" }, { name = "y", type = "numeric" }]
`,
			wantErr: []string{"flight.ticket_key", "flight.ticket_ttl", "flight.batch_rows", "flight.max_exports",
				"flight.datasets[0].columns[0].type", "flight.datasets[0].columns[1].type", "flight.datasets"},
		},
		{
			name:    "bad flight address",
			env:     map[string]string{"FRAISE_SERVER_FLIGHT_ADDR": "8815"},
			wantErr: []string{"server.flight_addr"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := mustLoadCase(t, tt.file, tt.env, tt.wantErr)
			if !ok {
				return
			}
			ds, err := c.Flight.FlightDatasets()
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].Columns[0].Type.String() != tt.want || ds[0].Roles[0] != "analyst" {
				t.Errorf("got %+v, want one dataset whose first column is %s", ds, tt.want)
			}
		})
	}
}
