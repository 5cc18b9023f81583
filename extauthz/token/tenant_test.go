package token_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/token"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
)

const (
	acme    = "0b7c2a40-6f1e-4d4b-9a57-3f0d6e3c8a11"
	globex  = "5d1e8f22-3c4b-4a1d-8e9f-7a6b5c4d3e2f"
	initech = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
)

// TestIssuerTenantBinding is security issue #13, defect 3: with one
// Keycloak realm per tenant, a token from realm acme naming Globex's
// tenant id must not be admitted as Globex. An issuer bound to a tenant
// (Tenant) or to a set (Tenants) vouches for those tenants only.
func TestIssuerTenantBinding(t *testing.T) {
	acmeRealm := tokentest.NewIssuer(t, "https://sso.example.test/realms/acme", aud, now)
	globexRealm := tokentest.NewIssuer(t, "https://sso.example.test/realms/globex", aud, now)
	partners := tokentest.NewIssuer(t, "https://partners.example.test/", aud, now)
	acmeCfg, globexCfg, partnersCfg := acmeRealm.Config(), globexRealm.Config(), partners.Config()
	acmeCfg.Tenant, globexCfg.Tenant = acme, globex
	partnersCfg.Tenants = []string{acme, initech}
	v := mustVerifier(t, []token.Issuer{acmeCfg, globexCfg, partnersCfg}, token.Options{})

	tests := []struct {
		name   string
		tok    string
		tenant string // the principal's tenant; "" when refused
		reason string // in the log-only reason of a refusal
	}{
		{name: "realm acme naming acme", tok: acmeRealm.Sign(t, acmeRealm.Claims("alice", acme, "admin")), tenant: acme},
		{name: "realm acme without a tenant claim is acme", tok: acmeRealm.Sign(t, with(acmeRealm.Claims("alice", acme, "admin"), "tenant", nil)), tenant: acme},
		{name: "realm acme naming globex", tok: acmeRealm.Sign(t, acmeRealm.Claims("alice", globex, "admin")), reason: `tenant "` + globex + `"`},
		{name: "realm acme naming an empty tenant", tok: acmeRealm.Sign(t, acmeRealm.Claims("alice", "", "admin")), tenant: acme},
		{name: "realm globex naming globex", tok: globexRealm.Sign(t, globexRealm.Claims("bob", globex, "viewer")), tenant: globex},
		{name: "realm globex naming acme", tok: globexRealm.Sign(t, globexRealm.Claims("bob", acme, "viewer")), reason: `tenant "` + acme + `"`},
		{name: "partners naming one of its tenants", tok: partners.Sign(t, partners.Claims("carol", initech)), tenant: initech},
		{name: "partners naming another of its tenants", tok: partners.Sign(t, partners.Claims("carol", acme)), tenant: acme},
		{name: "partners naming a tenant outside its set", tok: partners.Sign(t, partners.Claims("carol", globex)), reason: `tenant "` + globex + `"`},
		{name: "partners naming no tenant", tok: partners.Sign(t, with(partners.Claims("carol", ""), "tenant", nil)), reason: "names no tenant"},
		{name: "partners naming a tenant in another case", tok: partners.Sign(t, partners.Claims("carol", strings.ToUpper(acme))), reason: "not one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.tok)
			if tt.reason == "" {
				if err != nil || id.Principal.Tenant != tt.tenant {
					t.Fatalf("got tenant %q, %v, want %q", id.Principal.Tenant, err, tt.tenant)
				}
				return
			}
			if err == nil {
				t.Fatalf("got tenant %q admitted, want a refusal", id.Principal.Tenant)
			}
			if !errors.Is(err, token.ErrInvalid) || core.ErrorCode(err) != core.CodeUnauthenticated || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("got %v (%s), want ErrInvalid, UNAUTHENTICATED, mentioning %q", err, core.ErrorCode(err), tt.reason)
			}
		})
	}
}
