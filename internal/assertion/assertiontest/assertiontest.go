// Package assertiontest makes identity-assertion keys, and assertions bound
// to requests as extauthz binds them, for tests.
package assertiontest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql/request"
	"github.com/fraise-dev/fraise/internal/assertion"
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

// GraphQL returns the binding extauthz gives a GraphQL request sent with
// method to target (the path and, for GET, the query string) with body:
// the operation named as the core names it (request.OperationHash of the
// document hash and operation name the shared decoder reads). A request
// that does not decode is bound to no operation (the core refuses it while
// decoding, before it compares); a batch is bound to its first request.
func GraphQL(method, target string, body []byte) assertion.Binding {
	path, rawQuery, _ := strings.Cut(target, "?")
	b := assertion.Binding{Audience: assertion.AudienceGraphQL, Method: method, Path: path}
	var p request.Params
	var err error
	if method == "POST" {
		p, err = request.DecodeBody(body)
		if errors.Is(err, request.ErrBatch) {
			var ps []request.Params
			if ps, err = request.DecodeBatch(body, 1<<20); err == nil {
				p = ps[0]
			}
		}
	} else {
		p, err = request.DecodeQuery(rawQuery)
	}
	if err == nil {
		b.Operation = request.OperationHash(p.DocumentHash(), p.OperationName)
	}
	return b
}

// Sign returns s's assertion for p bound to b, with a fresh request id: one
// request's assertion, which the core accepts once.
func Sign(tb testing.TB, s *assertion.Signer, p core.Principal, b assertion.Binding) string {
	tb.Helper()
	tok, err := s.Sign(p, RequestID(), b)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// RequestID returns a fresh random request id.
func RequestID() string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}
