package assertion_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/assertion"
)

// TestRotation rotates the signing key twice: the verifier, fed the
// signer's JWKS, accepts the current and the previous key and refuses the
// one before.
func TestRotation(t *testing.T) {
	_, k1 := mustKey(t)
	_, k2 := mustKey(t)
	_, k3 := mustKey(t)
	kid := func(k ed25519.PrivateKey) string { return assertion.KeyID(k.Public().(ed25519.PublicKey)) }
	s := mustSigner(t, k1, nil)
	sign := func() string {
		t.Helper()
		tok, err := s.Sign(alice, "r", gql)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	fromJWKS := func() map[string]ed25519.PublicKey {
		t.Helper()
		b, err := s.JWKS()
		if err != nil {
			t.Fatal(err)
		}
		keys, err := assertion.ParseJWKS(b)
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	v := assertion.NewVerifier(fromJWKS(), nil)
	signedBy1 := sign()

	if err := s.Rotate(k2, kid(k2)); err != nil {
		t.Fatal(err)
	}
	if s.KeyID() != kid(k2) {
		t.Fatalf("got key id %s, want %s", s.KeyID(), kid(k2))
	}
	if got := len(s.PublicKeys()); got != 2 {
		t.Fatalf("got %d published keys after one rotation, want current and previous", got)
	}
	v.SetKeys(fromJWKS())
	signedBy2 := sign()
	for name, tok := range map[string]string{"previous key": signedBy1, "current key": signedBy2} {
		if _, err := v.Verify(tok, assertion.AudienceGraphQL); err != nil {
			t.Errorf("%s: got %v, want accepted", name, err)
		}
	}

	if err := s.Rotate(k3, kid(k3)); err != nil {
		t.Fatal(err)
	}
	v.SetKeys(fromJWKS())
	if _, err := v.Verify(signedBy1, assertion.AudienceGraphQL); !errors.Is(err, assertion.ErrInvalid) || !strings.Contains(err.Error(), "unknown key id") {
		t.Errorf("key before the previous: got %v, want refused", err)
	}
	if _, err := v.Verify(signedBy2, assertion.AudienceGraphQL); err != nil {
		t.Errorf("previous key: got %v, want accepted", err)
	}
	if _, err := v.Verify(sign(), assertion.AudienceGraphQL); err != nil {
		t.Errorf("current key: got %v, want accepted", err)
	}
}

// TestVerifierRefreshOnUnknownKey picks up a rotation on the first
// assertion signed with the new key, and asks at most once per interval.
func TestVerifierRefreshOnUnknownKey(t *testing.T) {
	_, k1 := mustKey(t)
	_, k2 := mustKey(t)
	now := time.Now()
	clock := func() time.Time { return now }
	s := mustSigner(t, k1, clock)
	v := assertion.NewVerifier(s.PublicKeys(), clock)
	fetches := 0
	v.SetRefresh(func() (map[string]ed25519.PublicKey, error) {
		fetches++
		b, err := s.JWKS()
		if err != nil {
			return nil, err
		}
		return assertion.ParseJWKS(b)
	}, time.Minute)
	if err := s.Rotate(k2, assertion.KeyID(k2.Public().(ed25519.PublicKey))); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(alice, "r", gql)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := v.Verify(tok, assertion.AudienceGraphQL); err != nil {
			t.Fatalf("got %v, want the new key fetched and accepted", err)
		}
	}
	_, stranger := mustKey(t)
	bogus := mustSigner(t, stranger, clock)
	for range 5 {
		tok, _ := bogus.Sign(alice, "r", gql)
		if _, err := v.Verify(tok, assertion.AudienceGraphQL); err == nil {
			t.Fatal("got a stranger's assertion accepted, want refused")
		}
	}
	if fetches != 1 {
		t.Fatalf("got %d fetches, want 1: the rotation's, then unknown keys are rate-limited", fetches)
	}
}

func TestParseJWKSRefuses(t *testing.T) {
	pub, priv := mustKey(t)
	for _, tt := range []struct{ name, jwks, want string }{
		{name: "not JSON", jwks: "nope", want: "JWKS"},
		{name: "empty", jwks: `{"keys":[]}`, want: "no Ed25519"},
		{name: "kid is not the thumbprint", jwks: mustJWKSWithKid(t, pub, "other"), want: "thumbprint"},
		{name: "private key", jwks: mustPrivateJWKS(t, priv), want: "not public"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := assertion.ParseJWKS([]byte(tt.jwks)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func mustJWKSWithKid(tb testing.TB, pub ed25519.PublicKey, kid string) string {
	tb.Helper()
	b, err := assertion.MarshalJWKS(map[string]ed25519.PublicKey{kid: pub})
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func mustPrivateJWKS(tb testing.TB, priv ed25519.PrivateKey) string {
	tb.Helper()
	pub := priv.Public().(ed25519.PublicKey)
	good := mustJWKSWithKid(tb, pub, assertion.KeyID(pub))
	// Add the private part, "d", to the one key.
	d := base64.RawURLEncoding.EncodeToString(priv.Seed())
	return strings.Replace(good, `"x":`, `"d":"`+d+`","x":`, 1)
}
