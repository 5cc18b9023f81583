package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/await"
)

func mustEdKey(tb testing.TB) ed25519.PrivateKey {
	tb.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// TestAssertionKeyRotation rotates extauthz's assertion key the way an
// operator does (a new PEM behind authz.assertion_key) and checks that a
// core following extauthz's JWKS over HTTP accepts assertions signed with
// the new key at once and with the previous key still.
func TestAssertionKeyRotation(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "assertion.key")
	write := func(k ed25519.PrivateKey) {
		b, err := assertion.MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(mustEdKey(t))
	ref := "file://" + keyFile
	signer, err := loadSigner(ref, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int64
	ca := mustCA(t)
	jwks := mustTLSServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		b, _ := signer.JWKS()
		_, _ = w.Write(b)
	}))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	v := assertion.NewVerifier(nil, nil)
	if err := followAssertionKeys(ctx, v, jwks.URL, clientTrusting(t, ca, nil), time.Hour, log); err != nil {
		t.Fatal(err)
	}
	p := core.Principal{Subject: "alice", Tenant: "11111111-1111-4111-8111-111111111111", Kind: core.KindJWT}
	b := assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql"}
	before, err := signer.Sign(p, "r1", b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(before, assertion.AudienceGraphQL); err != nil {
		t.Fatalf("before rotation: got %v, want accepted", err)
	}

	oldKid := signer.KeyID()
	write(mustEdKey(t))
	go reloadSigner(ctx, signer, ref, os.Getenv, 10*time.Millisecond, log)
	await.Until(t, 10*time.Second, "the signer to pick up the new key", func() bool { return signer.KeyID() != oldKid })
	after, err := signer.Sign(p, "r2", b)
	if err != nil {
		t.Fatal(err)
	}
	n := fetches.Load()
	for name, tok := range map[string]string{"new key": after, "previous key": before} {
		if _, err := v.Verify(tok, assertion.AudienceGraphQL); err != nil {
			t.Errorf("%s: got %v, want accepted", name, err)
		}
	}
	if got := fetches.Load(); got != n+1 {
		t.Errorf("got %d JWKS fetches for the new key, want exactly 1", got-n)
	}
}
