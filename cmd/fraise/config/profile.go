package config

import (
	"errors"
	"fmt"
	"strings"
)

// The server commands Require knows what they need.
const (
	CommandServe     = "serve"
	CommandAuthz     = "authz"
	CommandRateLimit = "ratelimit"
	CommandXDS       = "xds"
	CommandMigrate   = "migrate"
)

// Require reports every setting command needs that the configuration
// lacks, each with what it is and an example, in one error; nil when the
// command can start. In the development profile the defaults provide
// them all; in production a deployment names them, so a forgotten one
// stops the process at start rather than at its first request. Production
// also refuses the development token issuer.
func (c Config) Require(command string) error {
	var missing []string
	need := func(ok bool, key, what string) {
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (%s)", key, what))
		}
	}
	serverTLS := func() {
		need(c.TLS.CA != "", "tls.ca", "the CA that signs the gateway's client certificate, e.g. file:///etc/fraise/tls/ca.pem")
		need(c.TLS.ServerCert != "", "tls.server_cert", "this server's certificate")
		need(c.TLS.ServerKey != "", "tls.server_key", "this server's private key")
	}
	switch command {
	case CommandServe:
		need(c.Database.URL != "", "database.url", "the application role's connection string, e.g. postgres://fraise_app@db:5432/fraise?sslmode=verify-full")
		need(len(c.Server.AssertionKeys) > 0, "server.assertion_keys", "extauthz's public keys, e.g. [\"file:///etc/fraise/keys/assertion.pub\"]")
		if c.Profile == ProfileProduction {
			need(c.Server.Schema != "", "server.schema", "a GraphQL SDL file, or \"auto\" to generate it from the database; empty serves the demo schema, in the dev profile only")
		}
		if c.Observers.Enabled {
			need(c.Redis.Addr != "", "redis.addr", "the observers' Redis, e.g. rediss://redis:6379")
		}
		if c.Server.TLS || c.Server.FlightAddr != "" {
			serverTLS()
		}
	case CommandAuthz:
		need(c.Authz.AssertionKey != "", "authz.assertion_key", "a reference to the key extauthz signs identity assertions with, e.g. file:///etc/fraise/keys/assertion.key")
		need(len(c.Authz.Issuers) > 0 || c.Authz.DatabaseURL != "", "authz.issuers",
			"at least one token issuer ([[authz.issuers]] with issuer, audiences, algorithms and jwks_url), or authz.database_url for API keys only")
		serverTLS()
	case CommandRateLimit:
		need(c.Redis.Addr != "", "redis.addr", "the rate limiter's Redis, e.g. rediss://redis:6379")
		serverTLS()
	case CommandXDS:
		serverTLS()
		need(c.TLS.GatewayCert != "", "tls.gateway_cert", "the certificate Envoy presents to the sidecars and the server")
		need(c.TLS.GatewayKey != "", "tls.gateway_key", "its private key")
	case CommandMigrate:
		need(c.Database.AdminURL != "", "database.admin_url",
			"a role that owns the schema, e.g. postgres://fraise_owner@db:5432/fraise?sslmode=verify-full")
	default:
		return fmt.Errorf("config: no requirements known for command %q", command)
	}
	var errs []error
	if len(missing) > 0 {
		hint := ""
		if c.Profile == ProfileProduction {
			hint = "; `--profile dev` (or FRAISE_PROFILE=dev) starts on the development defaults `make run` uses"
		}
		errs = append(errs, fmt.Errorf("fraise %s in the %s profile needs: %s%s", command, c.Profile, strings.Join(missing, "; "), hint))
	}
	if c.Profile == ProfileProduction {
		for i, is := range c.Authz.Issuers {
			if command == CommandAuthz && is.Issuer == DevIssuer {
				errs = append(errs, fmt.Errorf("authz.issuers[%d].issuer: %s is the development token issuer (fraise token mints its tokens): trusted in the dev profile only", i, DevIssuer))
			}
		}
	}
	return errors.Join(errs...)
}
