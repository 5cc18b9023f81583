package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/token"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
	"github.com/fraise-dev/fraise/internal/await"
)

const (
	iss    = "https://id.example.test/"
	aud    = "fraise"
	tenant = "0b7c2a40-6f1e-4d4b-9a57-3f0d6e3c8a11"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for tests of refresh intervals.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustVerifier(tb testing.TB, issuers []token.Issuer, o token.Options) *token.Verifier {
	tb.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return now }
	}
	v, err := token.NewVerifier(context.Background(), issuers, o)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func with(claims map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func rsaPublicPEM(tb testing.TB, is *tokentest.Issuer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(&is.RSA.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestVerifyRefuses(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	cfg := is.Config()
	cfg.Algorithms = []string{"ES256", "RS256"}
	v := mustVerifier(t, []token.Issuer{cfg}, token.Options{})
	good := is.Claims("alice", tenant, "viewer")
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	valid := is.Sign(t, good)

	tests := []struct {
		name string
		tok  string
		want string // in the log-only reason
	}{
		{name: "empty", tok: "", want: "empty"},
		{name: "malformed", tok: "not-a-jwt", want: "parse"},
		{name: "two segments", tok: "a.b", want: "parse"},
		{name: "alg none", tok: tokentest.Unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, good), want: "parse"},
		{name: "alg none with a kid", tok: tokentest.Unsigned(t, map[string]any{"alg": "none", "kid": is.ECKeyID}, good), want: "parse"},
		{name: "HS256 keyed with the RSA public key", tok: tokentest.SignWith(t, jose.HS256, rsaPublicPEM(t, is), is.RSAKeyID, good), want: "parse"},
		{name: "RS256 header on the EC key id", tok: tokentest.SignWith(t, jose.RS256, is.RSA, is.ECKeyID, good), want: "cannot verify RS256"},
		{name: "ES384 not accepted", tok: tokentest.SignWith(t, jose.ES384, mustEC(t, elliptic.P384()), is.ECKeyID, good), want: "parse"},
		{name: "tampered payload", tok: tokentest.WithClaims(t, valid, with(good, "roles", []string{"admin"})), want: "signature"},
		{name: "signed by another key under a known kid", tok: tokentest.SignWith(t, jose.ES256, stranger, is.ECKeyID, good), want: "signature"},
		{name: "unknown kid", tok: tokentest.SignWith(t, jose.ES256, stranger, "who", good), want: "unknown key id"},
		{name: "expired", tok: is.Sign(t, with(good, "exp", now.Add(-time.Minute).Unix())), want: "expired"},
		{name: "expired within leeway is fine but not beyond", tok: is.Sign(t, with(good, "exp", now.Add(-31*time.Second).Unix())), want: "expired"},
		{name: "not yet valid", tok: is.Sign(t, with(good, "nbf", now.Add(time.Minute).Unix())), want: "not valid yet"},
		{name: "issued in the future", tok: is.Sign(t, with(good, "iat", now.Add(time.Hour).Unix())), want: "future"},
		{name: "no exp", tok: is.Sign(t, with(good, "exp", nil)), want: "no exp"},
		{name: "wrong issuer", tok: is.Sign(t, with(good, "iss", "https://evil.example/")), want: "untrusted issuer"},
		{name: "no issuer", tok: is.Sign(t, with(good, "iss", nil)), want: "untrusted issuer"},
		{name: "wrong audience", tok: is.Sign(t, with(good, "aud", "someone-else")), want: "audience"},
		{name: "no sub", tok: is.Sign(t, with(good, "sub", nil)), want: "no sub"},
		{name: "tenant not a string", tok: is.Sign(t, with(good, "tenant", 7)), want: "tenant"},
		{name: "role with a comma", tok: is.Sign(t, with(good, "roles", []string{"viewer,admin"})), want: "separator"},
		{name: "control character in sub", tok: is.Sign(t, with(good, "sub", "a\r\nx-fraise-tenant: b")), want: "control character"},
		{name: "oversized", tok: is.Sign(t, with(good, "pad", strings.Repeat("x", token.MaxBytes))), want: "exceeds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.tok)
			if err == nil {
				t.Fatalf("got %+v, want a refusal", id.Principal)
			}
			if !errors.Is(err, token.ErrInvalid) || core.ErrorCode(err) != core.CodeUnauthenticated {
				t.Errorf("got error %v (code %s), want ErrInvalid with code UNAUTHENTICATED", err, core.ErrorCode(err))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got reason %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

func mustEC(tb testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func TestVerifyMapsClaims(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	custom := is.Config()
	custom.Issuer = "https://custom.example.test/"
	custom.TenantClaim, custom.RolesClaim, custom.ScopesClaim, custom.TierClaim = "https://fraise.dev/org", "realm_access.roles", "permissions", "plan"
	v := mustVerifier(t, []token.Issuer{is.Config(), custom}, token.Options{DefaultTier: "free"})
	base := is.Claims("alice", tenant)

	tests := []struct {
		name  string
		claim map[string]any
		want  core.Principal
	}{
		{
			name:  "arrays, scope string and tier",
			claim: with(base, "roles", []string{"viewer", "operator", "viewer"}, "scope", "read:User.email  write:User", "tier", "gold"),
			want:  core.Principal{Subject: "alice", Tenant: tenant, Roles: []string{"viewer", "operator"}, Scopes: []string{"read:User.email", "write:User"}, Kind: core.KindJWT, Tier: "gold"},
		},
		{
			name:  "roles as a string, scopes array fallback, default tier",
			claim: with(base, "roles", "viewer, analyst", "scopes", []string{"read:A"}),
			want:  core.Principal{Subject: "alice", Tenant: tenant, Roles: []string{"viewer", "analyst"}, Scopes: []string{"read:A"}, Kind: core.KindJWT, Tier: "free"},
		},
		{
			name:  "no roles, no tenant",
			claim: with(base, "roles", nil, "tenant", nil),
			want:  core.Principal{Subject: "alice", Kind: core.KindJWT, Tier: "free"},
		},
		{
			name: "custom claim names, dotted paths and names with dots",
			claim: with(base, "iss", custom.Issuer, "tenant", nil, "roles", nil, "https://fraise.dev/org", tenant,
				"realm_access", map[string]any{"roles": []string{"admin"}}, "permissions", []string{"read:B"}, "plan", "pro"),
			want: core.Principal{Subject: "alice", Tenant: tenant, Roles: []string{"admin"}, Scopes: []string{"read:B"}, Kind: core.KindJWT, Tier: "pro"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), is.Sign(t, tt.claim))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			p := id.Principal
			if p.Subject != tt.want.Subject || p.Tenant != tt.want.Tenant || !slices.Equal(p.Roles, tt.want.Roles) ||
				!slices.Equal(p.Scopes, tt.want.Scopes) || p.Kind != tt.want.Kind || p.Tier != tt.want.Tier {
				t.Errorf("got %+v, want %+v", p, tt.want)
			}
			if id.Claims["sub"] != "alice" {
				t.Errorf("got claims %v, want them all, sub included", id.Claims)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	v := mustVerifier(t, []token.Issuer{is.Config()}, token.Options{})
	good := is.Claims("alice", tenant, "viewer")
	tests := []struct {
		name string
		tok  string
	}{
		{name: "ES256", tok: is.Sign(t, good)},
		{name: "RS256", tok: tokentest.SignWith(t, jose.RS256, is.RSA, is.RSAKeyID, good)},
		{name: "expired within the leeway", tok: is.Sign(t, with(good, "exp", now.Add(-29*time.Second).Unix()))},
		{name: "audience among several", tok: is.Sign(t, with(good, "aud", []string{"other", aud}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := v.Verify(context.Background(), tt.tok); err != nil {
				t.Fatalf("got error %v, want none", err)
			}
		})
	}
}

func TestNewVerifierRefusesBadConfig(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	mod := func(f func(*token.Issuer)) []token.Issuer {
		c := is.Config()
		f(&c)
		return []token.Issuer{c}
	}
	private, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: is.EC, KeyID: "k"}}})
	if err != nil {
		t.Fatal(err)
	}
	privateFile := filepath.Join(t.TempDir(), "private.json")
	if err := os.WriteFile(privateFile, private, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		issuers []token.Issuer
		want    string
	}{
		{name: "no issuers", issuers: nil, want: "no issuers"},
		{name: "alg none", issuers: mod(func(c *token.Issuer) { c.Algorithms = []string{"none"} }), want: "not accepted"},
		{name: "HS256 without a secret", issuers: mod(func(c *token.Issuer) { c.Algorithms = []string{"HS256"} }), want: "HMAC secret"},
		{name: "HS256 with a short secret", issuers: mod(func(c *token.Issuer) { c.Algorithms, c.HMACSecret = []string{"HS256"}, []byte("short") }), want: "32 bytes"},
		{name: "JWKS file and discovery", issuers: mod(func(c *token.Issuer) { c.Discovery = true }), want: "exactly one"},
		{name: "RS256 without keys", issuers: mod(func(c *token.Issuer) { c.JWKSFile = "" }), want: "exactly one"},
		{name: "no algorithms", issuers: mod(func(c *token.Issuer) { c.Algorithms = nil }), want: "algorithm"},
		{name: "no audience", issuers: mod(func(c *token.Issuer) { c.Audiences = nil }), want: "audience"},
		{name: "no issuer name", issuers: mod(func(c *token.Issuer) { c.Issuer = "" }), want: "issuer"},
		{name: "file and URL", issuers: mod(func(c *token.Issuer) { c.JWKSURL = "https://id.example.test/jwks" }), want: "exactly one"},
		{name: "URL not http", issuers: mod(func(c *token.Issuer) { c.JWKSFile, c.JWKSURL = "", "file:///etc/passwd" }), want: "http"},
		{name: "missing JWKS file", issuers: mod(func(c *token.Issuer) { c.JWKSFile = filepath.Join(t.TempDir(), "nope.json") }), want: "no such file"},
		{name: "JWKS with a private key", issuers: mod(func(c *token.Issuer) { c.JWKSFile = privateFile }), want: "not a public key"},
		{name: "Tenant and Tenants", issuers: mod(func(c *token.Issuer) { c.Tenant, c.Tenants = tenant, []string{tenant} }), want: "not both"},
		{name: "Tenants with a wildcard", issuers: mod(func(c *token.Issuer) { c.Tenants = []string{"*"} }), want: "not a tenant"},
		{name: "Tenants with an empty tenant", issuers: mod(func(c *token.Issuer) { c.Tenants = []string{tenant, ""} }), want: "empty tenant among"},
		{name: "Tenant with a control character", issuers: mod(func(c *token.Issuer) { c.Tenant = "a\nb" }), want: "control character"},
		{name: "issuer twice", issuers: append(mod(func(*token.Issuer) {}), is.Config()), want: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := token.NewVerifier(context.Background(), tt.issuers, token.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// jwksServer serves the current JWKS on loopback and counts fetches.
type jwksServer struct {
	mu      sync.Mutex
	body    []byte
	fetches atomic.Int32
	srv     *httptest.Server
}

func mustJWKSServer(tb testing.TB, body []byte) *jwksServer {
	tb.Helper()
	s := &jwksServer{body: body}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		if b == nil {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	tb.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) set(b []byte) {
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func TestJWKSURLRotationAndRateLimit(t *testing.T) {
	old := tokentest.NewIssuer(t, iss, aud, now)
	rotated := tokentest.NewIssuer(t, iss, aud, now)
	rotated.ECKeyID = "ec-2"
	srv := mustJWKSServer(t, old.JWKS(t))
	clk := &clock{t: now}
	cfg := token.Issuer{Issuer: iss, Audiences: []string{aud}, JWKSURL: srv.srv.URL + "/jwks", Algorithms: []string{"ES256"}}
	v := mustVerifier(t, []token.Issuer{cfg}, token.Options{
		Now: clk.Now, HTTPClient: srv.srv.Client(), MinRefreshInterval: time.Minute, MaxAge: time.Hour,
	})
	ctx := context.Background()
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("got %d fetches at start, want 1", got)
	}
	if _, err := v.Verify(ctx, old.Sign(t, old.Claims("alice", tenant))); err != nil {
		t.Fatalf("old key: got error %v, want none", err)
	}

	// The issuer rotates: a token with the new kid makes extauthz refetch,
	// but only once per interval however many such tokens arrive.
	srv.set(rotated.JWKS(t))
	clk.Add(2 * time.Minute)
	newTok := rotated.Sign(t, rotated.Claims("alice", tenant))
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(ctx, newTok); err != nil {
				t.Errorf("rotated key: got error %v, want none", err)
			}
		})
	}
	wg.Wait()
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("got %d fetches after rotation, want 2", got)
	}

	// Tokens with made-up key ids do not reach the identity provider
	// again within the interval.
	for range 50 {
		bogus := tokentest.SignWith(t, jose.ES256, rotated.EC, "bogus", rotated.Claims("alice", tenant))
		if _, err := v.Verify(ctx, bogus); !errors.Is(err, token.ErrInvalid) {
			t.Fatalf("bogus kid: got error %v, want ErrInvalid", err)
		}
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("got %d fetches after bogus kids, want still 2", got)
	}
	clk.Add(2 * time.Minute)
	bogus := tokentest.SignWith(t, jose.ES256, rotated.EC, "bogus", rotated.Claims("alice", tenant))
	if _, err := v.Verify(ctx, bogus); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("bogus kid: got error %v, want ErrInvalid", err)
	}
	if got := srv.fetches.Load(); got != 3 {
		t.Fatalf("got %d fetches once the interval passed, want 3", got)
	}
}

func TestJWKSURLUnreachableAtStart(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	srv := mustJWKSServer(t, nil)
	clk := &clock{t: now}
	cfg := token.Issuer{Issuer: iss, Audiences: []string{aud}, JWKSURL: srv.srv.URL, Algorithms: []string{"ES256"}}
	v := mustVerifier(t, []token.Issuer{cfg}, token.Options{Now: clk.Now, HTTPClient: srv.srv.Client(), MinRefreshInterval: time.Minute})
	tok := is.Sign(t, is.Claims("alice", tenant))
	// No key, and no way to fetch one: no verdict on the token (an
	// outage, not a bad credential), within the refresh interval too.
	for range 2 {
		_, err := v.Verify(context.Background(), tok)
		if !errors.Is(err, token.ErrKeysUnavailable) || errors.Is(err, token.ErrInvalid) || core.ErrorCode(err) != core.CodeUnavailable {
			t.Fatalf("while down: got error %v (%s), want ErrKeysUnavailable, UNAVAILABLE", err, core.ErrorCode(err))
		}
	}
	srv.set(is.JWKS(t))
	clk.Add(time.Minute)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("once up: got error %v, want none", err)
	}
}

func TestJWKSURLStaleSetRefreshesInBackground(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	srv := mustJWKSServer(t, is.JWKS(t))
	clk := &clock{t: now}
	cfg := token.Issuer{Issuer: iss, Audiences: []string{aud}, JWKSURL: srv.srv.URL, Algorithms: []string{"ES256"}}
	v := mustVerifier(t, []token.Issuer{cfg}, token.Options{Now: clk.Now, HTTPClient: srv.srv.Client(), MaxAge: 10 * time.Minute})
	clk.Add(11 * time.Minute)
	// The stale keys still verify while the refetch runs.
	if _, err := v.Verify(context.Background(), is.Sign(t, with(is.Claims("alice", tenant), "exp", clk.Now().Add(time.Hour).Unix()))); err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	if !await.Within(10*time.Second, func() bool { return srv.fetches.Load() >= 2 }) {
		t.Fatalf("got %d fetches, want a background refetch of the stale set", srv.fetches.Load())
	}
}

func TestJWKSFileReloadOnUnknownKid(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	clk := &clock{t: now}
	v := mustVerifier(t, []token.Issuer{is.Config()}, token.Options{Now: clk.Now, MinRefreshInterval: time.Second})
	next := tokentest.NewIssuer(t, iss, aud, now)
	next.ECKeyID = "ec-next"
	if err := os.WriteFile(is.JWKSFile, next.JWKS(t), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Second)
	if _, err := v.Verify(context.Background(), next.Sign(t, next.Claims("alice", tenant))); err != nil {
		t.Fatalf("got error %v, want the rewritten file's key to verify", err)
	}
}

func TestTokenWithoutKid(t *testing.T) {
	is := tokentest.NewIssuer(t, iss, aud, now)
	v := mustVerifier(t, []token.Issuer{is.Config()}, token.Options{})
	// The JWKS holds one ES256 key, so a token without kid is unambiguous.
	if _, err := v.Verify(context.Background(), tokentest.SignWith(t, jose.ES256, is.EC, "", is.Claims("alice", tenant))); err != nil {
		t.Fatalf("got error %v, want none", err)
	}
}
