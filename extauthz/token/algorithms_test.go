package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/token"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
	"github.com/fraise-dev/fraise/internal/await"
)

// TestVerifyAlgorithms signs with every algorithm an issuer may allow and
// checks that each verifies only when allowed for that issuer.
func TestVerifyAlgorithms(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// The RSA key has no "alg", so it serves every RSA algorithm.
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &is.RSA.PublicKey, KeyID: "rsa", Use: "sig"},
		{Key: &is.EC.PublicKey, KeyID: "ec256", Use: "sig"},
		{Key: &ec384.PublicKey, KeyID: "ec384", Use: "sig"},
		{Key: edPub, KeyID: "ed", Use: "sig"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	all := token.Issuer{Issuer: iss, Audiences: []string{aud}, JWKSFile: file, HMACSecret: secret,
		Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256"}}
	only := all
	only.Issuer, only.Algorithms = "https://strict.example.test/", []string{"ES256"}
	v := mustVerifier(t, []token.Issuer{all, only}, token.Options{})
	claims := is.Claims("alice", tenant)

	tests := []struct {
		alg jose.SignatureAlgorithm
		key any
		kid string
	}{
		{jose.RS256, is.RSA, "rsa"}, {jose.RS384, is.RSA, "rsa"}, {jose.RS512, is.RSA, "rsa"}, {jose.PS256, is.RSA, "rsa"},
		{jose.ES256, is.EC, "ec256"}, {jose.ES384, ec384, "ec384"}, {jose.EdDSA, edPriv, "ed"}, {jose.HS256, secret, ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.alg), func(t *testing.T) {
			if _, err := v.Verify(context.Background(), tokentest.SignWith(t, tt.alg, tt.key, tt.kid, claims)); err != nil {
				t.Fatalf("allowed issuer: got error %v, want none", err)
			}
			strict := with(claims, "iss", only.Issuer)
			_, err := v.Verify(context.Background(), tokentest.SignWith(t, tt.alg, tt.key, tt.kid, strict))
			if tt.alg == jose.ES256 {
				if err != nil {
					t.Fatalf("strict issuer, ES256: got error %v, want none", err)
				}
			} else if !errors.Is(err, token.ErrInvalid) || !strings.Contains(err.Error(), "not accepted") {
				t.Fatalf("strict issuer: got error %v, want %s not accepted", err, tt.alg)
			}
		})
	}

	t.Run("HS256 keyed with the RSA public key, issuer allows HS256", func(t *testing.T) {
		_, err := v.Verify(context.Background(), tokentest.SignWith(t, jose.HS256, rsaPublicPEM(t, is), "rsa", claims))
		if !errors.Is(err, token.ErrInvalid) || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("got error %v, want a signature refusal: HS* verifies only with the configured secret", err)
		}
	})
	t.Run("ES384 header on the P-256 key", func(t *testing.T) {
		_, err := v.Verify(context.Background(), tokentest.SignWith(t, jose.ES384, ec384, "ec256", claims))
		if !errors.Is(err, token.ErrInvalid) || !strings.Contains(err.Error(), "cannot verify") {
			t.Fatalf("got error %v, want key-type refusal", err)
		}
	})
}

// TestVerifyLeeway checks that the configured leeway, not the default,
// bounds the tolerated clock skew.
func TestVerifyLeeway(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	v := mustVerifier(t, []token.Issuer{is.Config()}, token.Options{Leeway: 2 * time.Minute, Now: func() time.Time { return now }})
	for _, tt := range []struct {
		name string
		exp  time.Duration
		ok   bool
	}{
		{name: "expired 90 s ago, within 2 min", exp: -90 * time.Second, ok: true},
		{name: "expired 3 min ago", exp: -3 * time.Minute, ok: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), is.Sign(t, with(is.Claims("a", tenant), "exp", now.Add(tt.exp).Unix(), "iat", now.Add(-time.Hour).Unix(), "nbf", now.Add(-time.Hour).Unix())))
			if (err == nil) != tt.ok {
				t.Fatalf("got error %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestVerifyClaimMappingPresets maps the claims of three common kinds of
// identity provider, each configured as its own issuer.
func TestVerifyClaimMappingPresets(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	keycloak := is.Config()
	keycloak.Issuer, keycloak.TenantClaim, keycloak.RolesClaim = "https://sso.example.test/realms/acme", "tenant_id", "realm_access.roles"
	azure := is.Config()
	azure.Issuer, azure.TenantClaim, azure.RolesClaim, azure.ScopesClaim = "https://login.microsoftonline.com/tid/v2.0", "extension_tenant", "roles", "scp"
	plain := is.Config()
	plain.Issuer, plain.TenantClaim = "https://auth.example.test/", "org_id"
	v := mustVerifier(t, []token.Issuer{keycloak, azure, plain}, token.Options{DefaultTier: "free"})

	tests := []struct {
		name   string
		claims map[string]any
		roles  []string
		scopes []string
	}{
		{name: "Keycloak realm roles", claims: map[string]any{"iss": keycloak.Issuer, "tenant_id": tenant,
			"realm_access": map[string]any{"roles": []string{"operator", "offline_access"}}, "roles": []string{"admin"}},
			roles: []string{"operator", "offline_access"}},
		{name: "Azure AD app roles and scp", claims: map[string]any{"iss": azure.Issuer, "extension_tenant": tenant,
			"roles": []string{"viewer"}, "scp": "read:User write:User"},
			roles: []string{"viewer"}, scopes: []string{"read:User", "write:User"}},
		{name: "plain org_id", claims: map[string]any{"iss": plain.Issuer, "org_id": tenant, "roles": "admin"},
			roles: []string{"admin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := is.Claims("alice", "")
			delete(c, "tenant")
			delete(c, "roles")
			for k, val := range tt.claims {
				c[k] = val
			}
			id, err := v.Verify(context.Background(), is.Sign(t, c))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			p := id.Principal
			if p.Tenant != tenant || !slices.Equal(p.Roles, tt.roles) || !slices.Equal(p.Scopes, tt.scopes) || p.Kind != core.KindJWT {
				t.Fatalf("got %+v, want tenant %s roles %v scopes %v", p, tenant, tt.roles, tt.scopes)
			}
		})
	}
}

// TestDiscovery finds the JWKS through the provider's discovery document
// and refuses a document that names another issuer.
func TestDiscovery(t *testing.T) {
	p := tokentest.NewProvider(t, aud)
	v := mustVerifier(t, []token.Issuer{p.Config()}, token.Options{})
	if _, err := v.Verify(context.Background(), p.Sign(t, now, map[string]any{"sub": "alice", "tenant": tenant})); err != nil {
		t.Fatalf("got error %v, want none", err)
	}

	// The configured issuer differs from the one the document names (a
	// trailing slash is enough): nothing is trusted. No key set is loaded,
	// so no token of the issuer gets a verdict: the provider is broken,
	// not the caller's credential.
	cfg := p.Config()
	cfg.Issuer += "/"
	v2 := mustVerifier(t, []token.Issuer{cfg}, token.Options{})
	_, err := v2.Verify(context.Background(), p.Sign(t, now, map[string]any{"sub": "alice", "tenant": tenant, "iss": cfg.Issuer}))
	if !errors.Is(err, token.ErrKeysUnavailable) || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("got error %v, want the discovery document's issuer refused", err)
	}
}

// TestRefreshEvery picks up a new key before any token needs it.
func TestRefreshEvery(t *testing.T) {
	p := tokentest.NewProvider(t, aud)
	v := mustVerifier(t, []token.Issuer{p.Config()}, token.Options{MinRefreshInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.RefreshEvery(ctx, 20*time.Millisecond, nil); close(done) }()
	defer func() { cancel(); <-done }()
	start := p.JWKSFetches.Load()
	await.Until(t, 10*time.Second, "background refreshes", func() bool { return p.JWKSFetches.Load() >= start+2 })
	p.Rotate(t, true)
	// Wait for a refresh after the rotation; the unknown-kid refetch is
	// rate-limited to once an hour, so only the background loop can
	// explain a success.
	n := p.JWKSFetches.Load()
	await.Until(t, 10*time.Second, "a refresh after the rotation", func() bool { return p.JWKSFetches.Load() >= n+2 })
	if _, err := v.Verify(context.Background(), p.Sign(t, now, map[string]any{"sub": "alice", "tenant": tenant})); err != nil {
		t.Fatalf("got error %v, want the rotated key known", err)
	}
}

// TestVerifyCache remembers a verified token, but never past its exp, and
// forgets it when the issuer's keys change.
func TestVerifyCache(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	clk := &clock{t: now}
	v := mustVerifier(t, []token.Issuer{is.Config()}, token.Options{Now: clk.Now, Leeway: time.Second, MinRefreshInterval: time.Second})
	ctx := context.Background()
	tok := is.Sign(t, with(is.Claims("alice", tenant), "exp", now.Add(10*time.Second).Unix()))
	for range 3 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("got %v, want accepted", err)
		}
	}
	clk.Add(12 * time.Second)
	if _, err := v.Verify(ctx, tok); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("after exp: got %v, want expired despite the cache", err)
	}

	// The issuer replaces its keys: a cached token signed with the removed
	// key is checked again, and refused.
	clk.t = now
	long := is.Sign(t, is.Claims("alice", tenant))
	if _, err := v.Verify(ctx, long); err != nil {
		t.Fatal(err)
	}
	next := tokentest.NewIssuer(t, iss, aud, now)
	next.ECKeyID = "ec-next"
	if err := os.WriteFile(is.JWKSFile, next.JWKS(t), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Second)
	if _, err := v.Verify(ctx, next.Sign(t, next.Claims("bob", tenant))); err != nil {
		t.Fatalf("new key: got %v, want accepted", err)
	}
	if _, err := v.Verify(ctx, long); err == nil {
		t.Fatal("cached token of a removed key: got accepted, want refused")
	}
}

// TestVerifyIgnoresKeysInTheToken refuses tokens that bring their own key
// (an embedded "jwk", a "jku" URL): only the issuer's configured keys
// verify.
func TestVerifyIgnoresKeysInTheToken(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	v := mustVerifier(t, []token.Issuer{is.Config()}, token.Options{Now: func() time.Time { return now }})
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	claims := is.Claims("mallory", tenant, "admin")
	for _, tt := range []struct {
		name string
		opts *jose.SignerOptions
	}{
		{name: "embedded jwk", opts: (&jose.SignerOptions{EmbedJWK: true}).WithType("JWT")},
		{name: "jku", opts: (&jose.SignerOptions{}).WithType("JWT").WithHeader("jku", "https://evil.example/jwks").WithHeader("kid", is.ECKeyID)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: attacker}, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(claims)
			obj, err := s.Sign(b)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := obj.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(context.Background(), raw); !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("got %v, want refused", err)
			}
		})
	}
}
