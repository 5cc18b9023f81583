package security_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var tokenAttacks = []attack{
	{
		name: "token-missing", class: classToken,
		does: "sends a query without Authorization",
		want: "401 UNAUTHENTICATED with WWW-Authenticate: Bearer, from extauthz; the server sees nothing",
		run:  func(t *testing.T, e *env) string { return e.tokenRefused(t, "", nil) },
	},
	{
		name: "token-garbage", class: classToken,
		does: "sends Bearer garbage that is no JWT",
		want: "401 UNAUTHENTICATED",
		run:  func(t *testing.T, e *env) string { return e.tokenRefused(t, "not.a.jwt", nil) },
	},
	{
		name: "token-not-bearer", class: classToken,
		does: "sends Basic credentials instead of a bearer token",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			return e.tokenRefused(t, "", http.Header{"Authorization": {"Basic YWxpY2U6YWRtaW4="}})
		},
	},
	{
		name: "token-alg-none", class: classToken,
		does: "sends an unsigned token (alg none, None, NONE, nOnE) claiming Acme's admin",
		want: "401 UNAUTHENTICATED for each",
		run: func(t *testing.T, e *env) string {
			var got string
			for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
				tok := jwsInput(t, map[string]any{"alg": alg, "typ": "JWT"}, e.dev.claims(acme, "mallory", "admin")) + "."
				got = e.tokenRefused(t, tok, nil)
			}
			return got + " (4 spellings)"
		},
	},
	{
		name: "token-hs256-signed-with-issuer-public-key", class: classToken,
		does: "signs an admin token with HS256 using the issuer's public key (PEM, PEM without newline, DER, the JWKS) as the HMAC secret: key confusion",
		want: "401 UNAUTHENTICATED for each: HS* verifies only with a configured secret, and this issuer allows ES256 only",
		run: func(t *testing.T, e *env) string {
			der, err := x509.MarshalPKIXPublicKey(&e.dev.key.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			jwks, err := os.ReadFile(filepath.Join(e.s.Dir, "keys", "dev-issuer.jwks"))
			if err != nil {
				t.Fatal(err)
			}
			var got string
			for _, secret := range [][]byte{pemKey, []byte(strings.TrimSpace(string(pemKey))), der, jwks} {
				h := map[string]any{"alg": "HS256", "typ": "JWT", "kid": e.dev.kid}
				input := jwsInput(t, h, e.dev.claims(acme, "mallory", "admin"))
				got = e.tokenRefused(t, input+"."+b64(hs256(secret, input)), nil)
			}
			return got + " (4 encodings of the key)"
		},
	},
	{
		name: "token-alg-not-allowed", class: classToken,
		does: "sends tokens under the issuer's key id with algorithms the issuer does not allow (RS256, PS256, EdDSA, ES384)",
		want: "401 UNAUTHENTICATED for each",
		run: func(t *testing.T, e *env) string {
			var got string
			for _, alg := range []string{"RS256", "PS256", "EdDSA", "ES384"} {
				h := map[string]any{"alg": alg, "typ": "JWT", "kid": e.dev.kid}
				input := jwsInput(t, h, e.dev.claims(acme, "mallory", "admin"))
				got = e.tokenRefused(t, input+"."+b64(es256(t, e.dev.key, input)), nil)
			}
			return got + " (4 algorithms)"
		},
	},
	{
		name: "token-kid-path-traversal", class: classToken,
		does: "names key ids that are paths (../../keys/dev-issuer.jwks, /etc/passwd, /dev/null, ../keys/assertion.pub), signed with its own key and with the issuer's",
		want: "401 UNAUTHENTICATED for each: a kid is looked up among the issuer's keys, never opened",
		run: func(t *testing.T, e *env) string {
			mallory := newIssuer(t, e.dev.iss)
			var got string
			for _, kid := range []string{"../../keys/dev-issuer.jwks", "/etc/passwd", "/dev/null", "../keys/assertion.pub", "..%2F..%2Fkeys%2Fdev-issuer.jwks"} {
				for _, key := range []*ecdsa.PrivateKey{mallory.key, e.dev.key} {
					h := map[string]any{"alg": "ES256", "typ": "JWT", "kid": kid}
					input := jwsInput(t, h, e.dev.claims(acme, "mallory", "admin"))
					got = e.tokenRefused(t, input+"."+b64(es256(t, key, input)), nil)
				}
			}
			return got + " (5 paths, 2 keys)"
		},
	},
	{
		name: "token-embedded-jwk", class: classToken,
		does: "embeds its own public key in the token's header (jwk) and signs with it",
		want: "401 UNAUTHENTICATED: keys come from the issuer's configuration only",
		run: func(t *testing.T, e *env) string {
			mallory := newIssuer(t, e.dev.iss)
			jwk, err := json.Marshal(jose.JSONWebKey{Key: &mallory.key.PublicKey, KeyID: mallory.kid, Algorithm: "ES256"})
			if err != nil {
				t.Fatal(err)
			}
			h := map[string]any{"alg": "ES256", "typ": "JWT", "jwk": json.RawMessage(jwk)}
			got := e.tokenRefused(t, mallory.sign(t, h, e.dev.claims(acme, "mallory", "admin")), nil)
			h["kid"] = e.dev.kid
			return e.tokenRefused(t, mallory.sign(t, h, e.dev.claims(acme, "mallory", "admin")), nil) + "; " + got
		},
	},
	{
		name: "token-jku-header", class: classToken,
		does: "points the token's jku and x5u headers at its own server publishing its key",
		want: "401 UNAUTHENTICATED, and extauthz never fetches the URL",
		run: func(t *testing.T, e *env) string {
			mallory := newIssuer(t, e.dev.iss)
			var fetched atomic.Int32
			jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &mallory.key.PublicKey, KeyID: mallory.kid, Algorithm: "ES256"}}})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fetched.Add(1)
				_, _ = w.Write(jwks)
			}))
			defer srv.Close()
			h := map[string]any{"alg": "ES256", "typ": "JWT", "kid": mallory.kid, "jku": srv.URL + "/jwks.json", "x5u": srv.URL + "/cert.pem"}
			got := e.tokenRefused(t, mallory.sign(t, h, e.dev.claims(acme, "mallory", "admin")), nil)
			if n := fetched.Load(); n != 0 {
				t.Errorf("extauthz fetched the attacker's URL %d times, want never", n)
			}
			return got + "; the URL never fetched"
		},
	},
	{
		name: "token-foreign-key-under-known-kid", class: classToken,
		does: "signs an admin token with its own key under the issuer's key id",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			mallory := newIssuer(t, e.dev.iss)
			return e.tokenRefused(t, mallory.sign(t, e.dev.header(), e.dev.claims(acme, "mallory", "admin")), nil)
		},
	},
	{
		name: "token-tampered-payload", class: classToken,
		does: "takes a valid viewer token of Acme and rewrites its payload to Globex's admin, keeping the signature",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			parts := strings.Split(e.token(t, acme, "victor", "viewer"), ".")
			payload := strings.Split(jwsInput(t, e.dev.header(), e.dev.claims(globex, "victor", "admin")), ".")[1]
			return e.tokenRefused(t, parts[0]+"."+payload+"."+parts[2], nil)
		},
	},
	{
		name: "token-expired", class: classToken,
		does: "sends a correctly signed token that expired an hour ago",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			c["iat"], c["nbf"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "token-not-yet-valid", class: classToken,
		does: "sends a correctly signed token whose nbf is an hour ahead",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			c["nbf"] = time.Now().Add(time.Hour).Unix()
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "token-issued-in-the-future", class: classToken,
		does: "sends a correctly signed token whose iat is an hour ahead",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			c["iat"] = time.Now().Add(time.Hour).Unix()
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "token-without-expiry", class: classToken,
		does: "sends a correctly signed token with no exp, valid forever if accepted",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			delete(c, "exp")
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "token-wrong-audience", class: classToken,
		does: "sends a correctly signed token for another audience (another service of the same identity provider)",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			c["aud"] = "billing"
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "token-wrong-issuer", class: classToken,
		does: "sends a token signed with a trusted key but naming an issuer nobody configured",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			c["iss"] = "https://evil.test"
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "token-issuer-key-swap", class: classToken,
		does: "claims Acme's identity provider as issuer but signs with the development issuer's key and key id (a key of another trusted issuer)",
		want: "401 UNAUTHENTICATED: each issuer's tokens verify with its own keys only",
		run: func(t *testing.T, e *env) string {
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), e.acmeIdP.claims(acme, "alice", "admin")), nil)
		},
	},
	{
		name: "token-oversized", class: classToken,
		does: "sends a correctly signed token of 12 KiB (a padded claim)",
		want: "401 UNAUTHENTICATED: extauthz refuses tokens over 8 KiB before verifying them",
		run: func(t *testing.T, e *env) string {
			c := e.dev.claims(acme, "alice", "admin")
			c["pad"] = strings.Repeat("A", 12<<10)
			return e.tokenRefused(t, e.dev.sign(t, e.dev.header(), c), nil)
		},
	},
	{
		name: "issuer-bound-token-names-other-tenant", class: classToken,
		does: "signs, as Acme's identity provider (bound to Acme), an admin token naming Globex's tenant (security #13, defect 3)",
		want: "401 UNAUTHENTICATED: an issuer names only the tenants it is bound to",
		run: func(t *testing.T, e *env) string {
			return e.tokenRefused(t, e.acmeIdP.token(t, globex, "alice", "admin"), nil)
		},
	},
	{
		name: "issuer-set-token-names-other-tenant", class: classToken,
		does: "signs, as a shared realm bound to tenants = [Acme], an admin token naming Globex",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			return e.tokenRefused(t, e.partners.token(t, globex, "paula", "admin"), nil)
		},
	},
	{
		name: "issuer-set-token-names-no-tenant", class: classToken,
		does: "signs, as the shared realm, a token naming no tenant (hoping for a default)",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			return e.tokenRefused(t, e.partners.token(t, "", "paula", "admin"), nil)
		},
	},
	{
		name: "issuer-bound-token-stays-in-its-tenant", class: classToken,
		does: "signs, as Acme's identity provider, a token naming no tenant, and reads users",
		want: "served as Acme, the bound tenant: Acme's users only",
		run: func(t *testing.T, e *env) string {
			status, g := e.query(t, e.acmeIdP.token(t, "", "alice", "viewer"), usersQuery)
			wantAcmeMasked(t, status, g)
			return "confined: served as the bound tenant, Acme's users only"
		},
	},
	{
		name: "apikey-wrong-secret", class: classToken,
		does: "sends a real API key's id with another secret",
		want: "401 UNAUTHENTICATED",
		run: func(t *testing.T, e *env) string {
			key := e.apiKey(t, "wrong-secret")
			id, _, _ := strings.Cut(strings.TrimPrefix(key, "frs_"), "_")
			return e.tokenRefused(t, "frs_"+id+"_"+strings.Repeat("a", 52), nil)
		},
	},
	{
		name: "apikey-junk-ids-do-not-starve-a-real-key", class: classToken,
		does: "sends 40 made-up API keys as fast as it can from one client, between uses of a real key (security #13, defect 6)",
		want: "the junk is refused (401, then 429 RATE_LIMITED once the client's lookups are spent), never served; the real key is served before and after",
		run: func(t *testing.T, e *env) string {
			key := e.apiKey(t, "junk-flood")
			if status, g := e.query(t, key, usersQuery); status != http.StatusOK {
				t.Fatalf("the real key before: got %d %+v, want 200", status, g.Errors)
			}
			byStatus := map[int]int{}
			for range 40 {
				id := make([]byte, 8)
				_, _ = rand.Read(id)
				status, g := e.query(t, fmt.Sprintf("frs_%s_%s", hex.EncodeToString(id), strings.Repeat("b", 52)), usersQuery)
				byStatus[status]++
				if g.HasData() {
					t.Fatalf("a made-up key got data %s", g.Data)
				}
			}
			if byStatus[http.StatusOK] > 0 || byStatus[http.StatusTooManyRequests] == 0 || byStatus[http.StatusUnauthorized]+byStatus[http.StatusTooManyRequests] != 40 {
				t.Errorf("made-up keys got %v, want only 401 and 429, some 429", byStatus)
			}
			status, g := e.query(t, key, usersQuery)
			wantAcmeMasked(t, status, g)
			return fmt.Sprintf("junk refused (%d × 401, %d × 429 RATE_LIMITED); the real key still served", byStatus[401], byStatus[429])
		},
	},
}

// tokenRefused sends a users query with the bearer token tok ("" for none)
// and the headers extra, and checks extauthz refused it as
// unauthenticated.
func (e *env) tokenRefused(t *testing.T, tok string, extra http.Header) string {
	t.Helper()
	before := e.counts(t)
	status, hdr, g := e.post(t, e.s.Client, tok, jsonBody(map[string]any{"query": usersQuery}), extra)
	if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("got WWW-Authenticate %q, want Bearer", hdr.Get("WWW-Authenticate"))
	}
	return e.refused(t, before, status, g, http.StatusUnauthorized, "UNAUTHENTICATED", byAuthz)
}

// apiKey creates an Acme viewer's API key named name and returns it.
func (e *env) apiKey(t *testing.T, name string) string {
	t.Helper()
	out := e.s.Run(t, "apikey", "create", "--config", e.s.ConfigPath, "--tenant", acme, "--roles", "viewer", "--name", name)
	for _, l := range strings.Split(out, "\n") {
		if k := strings.TrimSpace(l); strings.HasPrefix(k, "frs_") {
			return k
		}
	}
	t.Fatalf("fraise apikey create printed no key: %q", out)
	return ""
}
