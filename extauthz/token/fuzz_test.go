package token_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz/token"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
)

// FuzzVerify feeds untrusted bearer tokens to Verify: every input is
// either refused with ErrInvalid and CodeUnauthenticated, or is a token the
// issuer signed. Seeds are in testdata/fuzz/FuzzVerify.
func FuzzVerify(f *testing.F) {
	is := tokentest.NewIssuer(f, iss, aud, now)
	v := mustVerifier(f, []token.Issuer{is.Config()}, token.Options{Now: func() time.Time { return now }, CacheTTL: -1})
	good := is.Sign(f, is.Claims("alice", tenant, "viewer"))
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Fuzz(func(t *testing.T, raw string) {
		id, err := v.Verify(context.Background(), raw)
		if err != nil {
			if !errors.Is(err, token.ErrInvalid) || core.ErrorCode(err) != core.CodeUnauthenticated {
				t.Fatalf("got error %v, want ErrInvalid with CodeUnauthenticated", err)
			}
			return
		}
		if id.Principal.Subject == "" || id.Issuer != iss {
			t.Fatalf("got %+v accepted, want only the issuer's tokens", id)
		}
	})
}
