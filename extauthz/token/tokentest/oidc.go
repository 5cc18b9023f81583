package tokentest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fraise-dev/fraise/extauthz/token"
)

// Provider is an OpenID Connect provider served over loopback HTTP: a
// discovery document and a JWKS, with ES256 keys that rotate.
type Provider struct {
	Server   *httptest.Server
	Audience string
	// JWKSFetches counts requests for the JWKS.
	JWKSFetches atomic.Int64

	mu      sync.Mutex
	keys    []providerKey // published keys, the current one last
	counter int
}

type providerKey struct {
	kid string
	key *ecdsa.PrivateKey
}

// NewProvider starts a provider for audience with one key.
func NewProvider(tb testing.TB, audience string) *Provider {
	tb.Helper()
	p := &Provider{Audience: audience}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.Issuer(), "jwks_uri": p.Issuer() + "/protocol/openid-connect/certs",
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /protocol/openid-connect/certs", func(w http.ResponseWriter, r *http.Request) {
		p.JWKSFetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(p.JWKS(tb))
	})
	p.Server = httptest.NewServer(mux)
	tb.Cleanup(p.Server.Close)
	p.Rotate(tb, false)
	return p
}

// Issuer is the provider's issuer URL, its iss claim.
func (p *Provider) Issuer() string { return p.Server.URL }

// Config trusts the provider through discovery, accepting ES256.
func (p *Provider) Config() token.Issuer {
	return token.Issuer{Issuer: p.Issuer(), Audiences: []string{p.Audience}, Discovery: true, Algorithms: []string{"ES256"}}
}

// Rotate adds a new signing key and makes it current; with retire, the
// keys before it stop being published, as a provider does once tokens
// signed with them have expired.
func (p *Provider) Rotate(tb testing.TB, retire bool) string {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counter++
	kid := fmt.Sprintf("key-%d", p.counter)
	if retire {
		p.keys = nil
	}
	p.keys = append(p.keys, providerKey{kid: kid, key: k})
	return kid
}

// JWKS returns the published public keys.
func (p *Provider) JWKS(tb testing.TB) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := jose.JSONWebKeySet{}
	for _, k := range p.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.key.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"})
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Error(err)
	}
	return b
}

// Sign signs claims with the current key; iss and aud are set for the
// provider, and iat, nbf and exp (an hour) from now.
func (p *Provider) Sign(tb testing.TB, now time.Time, claims map[string]any) string {
	tb.Helper()
	p.mu.Lock()
	cur := p.keys[len(p.keys)-1]
	p.mu.Unlock()
	c := map[string]any{"iss": p.Issuer(), "aud": p.Audience, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	return SignWith(tb, jose.ES256, cur.key, cur.kid, c)
}
