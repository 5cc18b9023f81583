package assertion_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
)

func mustKey(tb testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return pub, priv
}

func mustSigner(tb testing.TB, priv ed25519.PrivateKey, now func() time.Time) *assertion.Signer {
	tb.Helper()
	s, err := assertion.NewSigner(priv, assertion.KeyID(priv.Public().(ed25519.PublicKey)), now)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var alice = core.Principal{Subject: "alice", Tenant: "11111111-1111-4111-8111-111111111111", Roles: []string{"viewer"}, Scopes: []string{"read:User.email"}, Kind: core.KindJWT, Tier: "default"}

// gql is a GraphQL request's binding, as extauthz signs one.
var gql = assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql",
	Operation: strings.Repeat("ab", 32)}

func TestRoundTrip(t *testing.T) {
	pub, priv := mustKey(t)
	s := mustSigner(t, priv, nil)
	flight := assertion.Binding{Audience: assertion.AudienceFlight, Method: "POST",
		Path: "/arrow.flight.protocol.FlightService/GetFlightInfo", Body: strings.Repeat("cd", 32)}
	for _, b := range []assertion.Binding{gql, flight} {
		tok, err := s.Sign(alice, "req-1", b)
		if err != nil {
			t.Fatal(err)
		}
		v := assertion.NewVerifier(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}, nil)
		a, err := v.Verify(tok, b.Audience)
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if a.ID != "req-1" {
			t.Errorf("got request id %q, want req-1", a.ID)
		}
		if a.Binding != b {
			t.Errorf("got binding %+v, want %+v", a.Binding, b)
		}
		if d := time.Until(a.Expiry); d <= 0 || d > assertion.DefaultTTL {
			t.Errorf("got expiry in %s, want within %s", d, assertion.DefaultTTL)
		}
		got := a.Principal
		if got.Subject != alice.Subject || got.Tenant != alice.Tenant || !slices.Equal(got.Roles, alice.Roles) ||
			!slices.Equal(got.Scopes, alice.Scopes) || got.Kind != alice.Kind || got.Tier != alice.Tier {
			t.Errorf("got %+v, want %+v", got, alice)
		}
	}
}

// TestAudiencePerListener shows an assertion accepted only by the listener
// it names: HTTP and Flight no longer share one audience (security #13,
// defect 4).
func TestAudiencePerListener(t *testing.T) {
	pub, priv := mustKey(t)
	v := assertion.NewVerifier(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}, nil)
	tok, err := mustSigner(t, priv, nil).Sign(alice, "r", gql)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok, assertion.AudienceFlight); !errors.Is(err, assertion.ErrInvalid) {
		t.Fatalf("a GraphQL assertion presented to Flight: got %v, want ErrInvalid", err)
	}
	if _, err := v.Verify(tok, "fraise-core"); !errors.Is(err, assertion.ErrInvalid) {
		t.Fatalf("the old shared audience: got %v, want ErrInvalid", err)
	}
}

func TestSignRefusesAnUnboundAssertion(t *testing.T) {
	_, priv := mustKey(t)
	s := mustSigner(t, priv, nil)
	tests := []struct {
		name string
		id   string
		b    assertion.Binding
	}{
		{name: "no audience", id: "r", b: assertion.Binding{Method: "POST", Path: "/graphql"}},
		{name: "the old shared audience", id: "r", b: assertion.Binding{Audience: "fraise-core", Method: "POST", Path: "/graphql"}},
		{name: "no method", id: "r", b: assertion.Binding{Audience: assertion.AudienceGraphQL, Path: "/graphql"}},
		{name: "no path", id: "r", b: assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST"}},
		{name: "no request id", b: gql},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, err := s.Sign(alice, tt.id, tt.b); err == nil {
				t.Fatalf("got %s, want an error", tok)
			}
		})
	}
}

func TestBindingCheck(t *testing.T) {
	tests := []struct {
		name                          string
		method, path, operation, body string
		wantErr                       bool
	}{
		{name: "the request it was issued for", method: "POST", path: "/graphql", operation: gql.Operation},
		{name: "another method", method: "GET", path: "/graphql", operation: gql.Operation, wantErr: true},
		{name: "another path", method: "POST", path: "/graphql/", operation: gql.Operation, wantErr: true},
		{name: "another operation", method: "POST", path: "/graphql", operation: strings.Repeat("ef", 32), wantErr: true},
		{name: "no operation", method: "POST", path: "/graphql", wantErr: true},
		{name: "a body it did not see", method: "POST", path: "/graphql", operation: gql.Operation, body: strings.Repeat("01", 32), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := gql.Check(tt.method, tt.path, tt.operation, tt.body)
			if tt.wantErr != errors.Is(err, assertion.ErrMismatch) || !tt.wantErr && err != nil {
				t.Fatalf("got %v, want ErrMismatch: %v", err, tt.wantErr)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	pub, priv := mustKey(t)
	otherPub, otherPriv := mustKey(t)
	now := time.Now()
	good := mustSigner(t, priv, nil)
	tok := func(s *assertion.Signer, p core.Principal) string {
		t.Helper()
		x, err := s.Sign(p, "r", gql)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	valid := tok(good, alice)
	tampered := []byte(valid)
	// Flip a payload character: the signature must no longer match.
	dot := strings.IndexByte(valid, '.')
	if tampered[dot+5] == 'A' {
		tampered[dot+5] = 'B'
	} else {
		tampered[dot+5] = 'A'
	}
	noTenant := alice
	noTenant.Tenant = ""
	// craft signs a header of its own over valid's payload with the right
	// key: only the header's content can make it fail.
	craft := func(header string) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(header)) + valid[dot:strings.LastIndexByte(valid, '.')]
		return h + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(priv, []byte(h)))
	}
	kid := assertion.KeyID(pub)
	if _, err := assertion.NewVerifier(map[string]ed25519.PublicKey{kid: pub}, func() time.Time { return now }).Verify(
		craft(`{"alg":"EdDSA","kid":"`+kid+`"}`), assertion.AudienceGraphQL); err != nil {
		t.Fatalf("a crafted token with a plain header: %v, want it valid (the cases below differ only in their header)", err)
	}
	tests := []struct {
		name  string
		token string
		keys  map[string]ed25519.PublicKey
	}{
		{"empty", "", nil},
		{"garbage", "not.a.jws", nil},
		{"tampered payload", string(tampered), nil},
		{"unknown key id", tok(mustSigner(t, otherPriv, nil), alice), nil},
		{"expired", tok(mustSigner(t, priv, func() time.Time { return now.Add(-2 * time.Minute) }), alice), nil},
		{"issued in the future", tok(mustSigner(t, priv, func() time.Time { return now.Add(2 * time.Minute) }), alice), nil},
		{"no tenant", tok(good, noTenant), nil},
		{"right kid, wrong key", valid, map[string]ed25519.PublicKey{assertion.KeyID(pub): otherPub}},
		{"oversized", strings.Repeat("a", 17<<10), nil},
		{"alg none", craft(`{"alg":"none","kid":"` + kid + `"}`), nil},
		{"alg HS256", craft(`{"alg":"HS256","kid":"` + kid + `"}`), nil},
		{"crit header", craft(`{"alg":"EdDSA","kid":"` + kid + `","crit":["exp"],"exp":1}`), nil},
		{"unencoded payload", craft(`{"alg":"EdDSA","kid":"` + kid + `","b64":false,"crit":["b64"]}`), nil},
		{"header not JSON", craft(`alg=EdDSA`), nil},
		{"four parts", valid + ".AAAA", nil},
		{"no signature", valid[:strings.LastIndexByte(valid, '.')+1], nil},
		{"short signature", valid[:len(valid)-4], nil},
		// base64 decoders skip CR and LF and, unless strict, ignore the
		// last character's unused bits: each would be another spelling of
		// one signed assertion.
		{"newline in the signature", valid[:len(valid)-2] + "\n" + valid[len(valid)-2:], nil},
		{"signature's unused bits set", respell(valid), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys := tt.keys
			if keys == nil {
				keys = map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}
			}
			v := assertion.NewVerifier(keys, func() time.Time { return now })
			if _, err := v.Verify(tt.token, assertion.AudienceGraphQL); !errors.Is(err, assertion.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestRotationAcceptsCurrentAndPrevious(t *testing.T) {
	oldPub, oldPriv := mustKey(t)
	newPub, newPriv := mustKey(t)
	v := assertion.NewVerifier(map[string]ed25519.PublicKey{
		assertion.KeyID(oldPub): oldPub, assertion.KeyID(newPub): newPub,
	}, nil)
	for _, priv := range []ed25519.PrivateKey{oldPriv, newPriv} {
		tok, err := mustSigner(t, priv, nil).Sign(alice, "r", gql)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok, assertion.AudienceGraphQL); err != nil {
			t.Fatalf("got %v, want both keys accepted", err)
		}
	}
	v.SetKeys(map[string]ed25519.PublicKey{assertion.KeyID(newPub): newPub})
	tok, _ := mustSigner(t, oldPriv, nil).Sign(alice, "r", gql)
	if _, err := v.Verify(tok, assertion.AudienceGraphQL); err == nil {
		t.Fatal("retired key still accepted")
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	pub, priv := mustKey(t)
	pp, err := assertion.MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := assertion.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	gotPriv, err := assertion.ParsePrivateKeyPEM(pp)
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	gotPub, err := assertion.ParsePublicKeyPEM(bp)
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if _, err := assertion.ParsePublicKeyPEM(pp); err == nil {
		t.Fatal("a private key parsed as a public key")
	}
}

// respell sets the unused low bits of a compact JWS's last character,
// which a lenient base64 decoder reads as the same signature.
func respell(token string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, token[len(token)-1])
	return token[:len(token)-1] + string(alphabet[i|1])
}
