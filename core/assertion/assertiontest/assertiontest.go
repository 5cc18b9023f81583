// Package assertiontest makes identity-assertion keys for tests.
package assertiontest

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core/assertion"
)

// New returns a signer with a fresh Ed25519 key (on clock now; nil is
// time.Now) and the public keys a verifier of its assertions trusts, for
// assertion.NewVerifier with whatever clock the test needs.
func New(tb testing.TB, now func() time.Time) (*assertion.Signer, map[string]ed25519.PublicKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	kid := assertion.KeyID(pub)
	signer, err := assertion.NewSigner(priv, kid, now)
	if err != nil {
		tb.Fatal(err)
	}
	return signer, map[string]ed25519.PublicKey{kid: pub}
}
