// Package tokentest issues real JWTs for tests of code that authenticates
// them: an issuer with an ES256 and an RS256 key, its JWKS written to a
// file, and helpers to sign well-formed and deliberately broken tokens.
package tokentest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fraise-dev/fraise/extauthz/token"
)

// Issuer is a test identity provider.
type Issuer struct {
	Issuer   string
	Audience string
	// Now is the time tokens are issued at.
	Now time.Time

	EC       *ecdsa.PrivateKey
	ECKeyID  string
	RSA      *rsa.PrivateKey
	RSAKeyID string
	// JWKSFile holds the public keys of EC and RSA.
	JWKSFile string
}

// NewIssuer returns an issuer named iss for audience aud issuing at now,
// with fresh keys and its JWKS in a temporary file.
func NewIssuer(tb testing.TB, iss, aud string, now time.Time) *Issuer {
	tb.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	is := &Issuer{Issuer: iss, Audience: aud, Now: now, EC: ec, ECKeyID: "ec-1", RSA: rk, RSAKeyID: "rsa-1"}
	is.JWKSFile = filepath.Join(tb.TempDir(), "jwks.json")
	if err := os.WriteFile(is.JWKSFile, is.JWKS(tb), 0o600); err != nil {
		tb.Fatal(err)
	}
	return is
}

// JWKS returns the issuer's public keys as a JWKS document.
func (is *Issuer) JWKS(tb testing.TB) []byte {
	tb.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &is.EC.PublicKey, KeyID: is.ECKeyID, Algorithm: string(jose.ES256), Use: "sig"},
		{Key: &is.RSA.PublicKey, KeyID: is.RSAKeyID, Algorithm: string(jose.RS256), Use: "sig"},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Config is the token.Issuer that trusts this issuer through its JWKS
// file, accepting ES256 and RS256.
func (is *Issuer) Config() token.Issuer {
	return token.Issuer{
		Issuer: is.Issuer, Audiences: []string{is.Audience}, JWKSFile: is.JWKSFile,
		Algorithms: []string{"ES256", "RS256"},
	}
}

// Claims returns a valid claim set: issued now, valid for an hour.
func (is *Issuer) Claims(sub, tenant string, roles ...string) map[string]any {
	if roles == nil {
		roles = []string{}
	}
	return map[string]any{
		"iss": is.Issuer, "aud": is.Audience, "sub": sub,
		"iat": is.Now.Unix(), "nbf": is.Now.Unix(), "exp": is.Now.Add(time.Hour).Unix(),
		"tenant": tenant, "roles": roles,
	}
}

// Sign signs claims with the ES256 key.
func (is *Issuer) Sign(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return SignWith(tb, jose.ES256, is.EC, is.ECKeyID, claims)
}

// SignWith signs claims with any algorithm and key, naming kid ("" for
// none) in the header.
func SignWith(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Unsigned returns a compact JWS with the given header and claims and an
// empty signature, e.g. for alg "none".
func Unsigned(tb testing.TB, header, claims map[string]any) string {
	tb.Helper()
	return segment(tb, header) + "." + segment(tb, claims) + "."
}

// WithClaims returns tok with its payload replaced by claims, keeping its
// header and signature: a tampered token.
func WithClaims(tb testing.TB, tok string, claims map[string]any) string {
	tb.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		tb.Fatalf("token %q is not a compact JWS", tok)
	}
	return parts[0] + "." + segment(tb, claims) + "." + parts[2]
}

func segment(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
