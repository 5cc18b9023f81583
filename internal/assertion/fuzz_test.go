package assertion_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/internal/assertion"
)

// FuzzVerify feeds the verifier arbitrary tokens: it must never panic,
// and it must accept no token but the one the signer issued, byte for
// byte.
func FuzzVerify(f *testing.F) {
	pub, priv := mustKey(f)
	now := time.Now()
	good, err := mustSigner(f, priv, func() time.Time { return now }).Sign(alice, "r", gql)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good + "\n")
	f.Add("e30.e30.AAAA")
	v := assertion.NewVerifier(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub}, func() time.Time { return now })
	f.Fuzz(func(t *testing.T, token string) {
		if _, err := v.Verify(token, assertion.AudienceGraphQL); err == nil && token != good {
			t.Fatalf("accepted a token that was not issued: %q", token)
		}
	})
}
