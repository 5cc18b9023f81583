package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestProfiles: production starts from no credentials and names every
// setting a command needs; the development profile needs none.
func TestProfiles(t *testing.T) {
	full := `
[tls]
ca = "/etc/fraise/ca.pem"
server_cert = "/etc/fraise/server.pem"
server_key = "/etc/fraise/server-key.pem"
gateway_cert = "/etc/fraise/gateway.pem"
gateway_key = "/etc/fraise/gateway-key.pem"
[database]
url = "postgres://fraise_app@db/fraise"
admin_url = "postgres://owner@db/fraise"
[redis]
addr = "redis:6379"
[server]
schema = "auto"
assertion_keys = ["file:///etc/fraise/assertion.pub"]
[authz]
assertion_key = "file:///etc/fraise/assertion.key"
[[authz.issuers]]
issuer = "https://idp.example.com"
audiences = ["fraise"]
algorithms = ["RS256"]
jwks_url = "https://idp.example.com/jwks"
`
	tests := []struct {
		name    string
		profile string
		file    string
		command string
		want    []string // substrings the error must name; none: no error
	}{
		{"production serve, nothing set", "", "", config.CommandServe,
			[]string{"production profile", "database.url", "server.assertion_keys", "server.schema", "tls.ca", "tls.server_cert", "tls.server_key", "--profile dev"}},
		{"production authz, nothing set", "production", "", config.CommandAuthz,
			[]string{"authz.assertion_key", "authz.issuers", "tls.server_key"}},
		{"production ratelimit, nothing set", "", "", config.CommandRateLimit, []string{"redis.addr", "tls.ca"}},
		{"production xds, nothing set", "", "", config.CommandXDS, []string{"tls.gateway_cert", "tls.gateway_key"}},
		{"production migrate, nothing set", "", "", config.CommandMigrate, []string{"database.admin_url"}},
		{"production serve, all set", "", full, config.CommandServe, nil},
		{"production authz, all set", "", full, config.CommandAuthz, nil},
		{"production ratelimit, all set", "", full, config.CommandRateLimit, nil},
		{"production xds, all set", "", full, config.CommandXDS, nil},
		{"production migrate, all set", "", full, config.CommandMigrate, nil},
		{"production refuses the development issuer", "", strings.Replace(full, "https://idp.example.com\"\naud", config.DevIssuer+"\"\naud", 1),
			config.CommandAuthz, []string{"development token issuer", "authz.issuers[0].issuer"}},
		{"dev serve on the defaults", "dev", "", config.CommandServe, nil},
		{"dev authz on the defaults", "dev", "", config.CommandAuthz, nil},
		{"dev ratelimit on the defaults", "dev", "", config.CommandRateLimit, nil},
		{"dev xds on the defaults", "dev", "", config.CommandXDS, nil},
		{"dev migrate on the defaults", "dev", "", config.CommandMigrate, nil},
		{"dev still needs what a file clears", "dev", "[database]\nurl = \"\"\n", config.CommandServe, []string{"dev profile", "database.url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := mustLoadCase(t, tt.file, map[string]string{"FRAISE_PROFILE": tt.profile}, nil)
			if want := map[string]string{"": "production"}[tt.profile]; want != "" && c.Profile != want {
				t.Errorf("profile %q, want %q", c.Profile, want)
			}
			err := c.Require(tt.command)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Require(%s): %v", tt.command, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Require(%s): no error, want one naming %v", tt.command, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Require(%s): %v\nwant it to name %q", tt.command, err, w)
				}
			}
		})
	}
}

func TestProfileIsNotAFileKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fraise.toml")
	if err := os.WriteFile(path, []byte("profile = \"dev\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path, envOf(nil)); err == nil || !strings.Contains(err.Error(), "unknown keys: profile") {
		t.Fatalf("got %v, want unknown keys: profile", err)
	}
	if _, err := config.Load("", envOf(map[string]string{"FRAISE_PROFILE": "staging"})); err == nil || !strings.Contains(err.Error(), "want dev or production") {
		t.Fatalf("got %v, want a refusal of the profile staging", err)
	}
}

// TestProductionHasNoDevelopmentCredentials: nothing of .dev/, and no
// trusted issuer, survives into production's defaults.
func TestProductionHasNoDevelopmentCredentials(t *testing.T) {
	c, err := config.Load("", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Profile != config.ProfileProduction || c.Log.Format != "json" {
		t.Errorf("profile %q, log format %q: want production, json", c.Profile, c.Log.Format)
	}
	if len(c.Authz.Issuers) != 0 || c.Database.URL != "" || c.Redis.Addr != "" {
		t.Errorf("issuers %v, database.url %q, redis.addr %q: want none", c.Authz.Issuers, c.Database.URL, c.Redis.Addr)
	}
	// ProductionDefault itself too, and the old [core] field the code not
	// yet moved to [server] reads.
	for _, c := range []config.Config{c, config.ProductionDefault()} {
		for _, v := range []string{c.TLS.CA, c.TLS.ServerCert, c.TLS.ServerKey, c.TLS.ClientCert, c.TLS.GatewayKey, c.Authz.AssertionKey,
			strings.Join(c.Server.AssertionKeys, ","), strings.Join(c.Core.AssertionKeys, ",")} {
			if strings.Contains(v, ".dev/") {
				t.Errorf("production default %q is a development path", v)
			}
		}
	}
}
