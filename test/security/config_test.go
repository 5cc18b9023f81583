package security_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/internal/assertion"
)

var configAttacks = []attack{
	{
		name: "assertion-keys-over-http", class: classConfig,
		does: "points the server's assertion keys at extauthz's JWKS over plain http (server.assertion_jwks_url), where whoever answers would choose whom the server believes (security #13, defect 5)",
		want: "the server refuses to start, naming server.assertion_jwks_url",
		run: func(t *testing.T, e *env) string {
			err := e.serveWith(t, map[string]string{"FRAISE_SERVER_ASSERTION_JWKS_URL": "http://" + e.s.Addrs.AuthzAdmin + "/.well-known/jwks.json"})
			if err == nil || !strings.Contains(err.Error(), "server.assertion_jwks_url") {
				t.Fatalf("got %v, want the configuration refused naming server.assertion_jwks_url", err)
			}
			return "refused at start: " + firstLine(err)
		},
	},
	{
		name: "assertion-keys-from-untrusted-https", class: classConfig,
		does: "points the server's assertion keys at an https server of its own (a certificate from another CA) publishing its own key",
		want: "the server refuses to start: the keys' server must chain to the internal CA; the attacker's key is never fetched",
		run: func(t *testing.T, e *env) string {
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			jwks, err := assertion.MarshalJWKS(map[string]ed25519.PublicKey{assertion.KeyID(pub): pub})
			if err != nil {
				t.Fatal(err)
			}
			var fetched atomic.Int32
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fetched.Add(1)
				_, _ = w.Write(jwks)
			}))
			defer srv.Close()
			err = e.serveWith(t, map[string]string{"FRAISE_SERVER_ASSERTION_JWKS_URL": srv.URL + "/.well-known/jwks.json"})
			if err == nil {
				t.Fatal("the server started, want it refused")
			}
			if n := fetched.Load(); n != 0 {
				t.Fatalf("the attacker's server answered %d requests", n)
			}
			return "refused at start: " + firstLine(err)
		},
	},
}

// serveWith runs `fraise serve` on the stack's configuration with the
// environment env, and returns its error: nil (a failure of the attack)
// when it is still serving after 20 s.
func (e *env) serveWith(t *testing.T, env map[string]string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	// The dev profile, as the stack runs: a refusal must be for the setting
	// the attack breaks, not for one production would want besides.
	getenv := func(k string) string {
		if v, ok := env[k]; ok || k != "FRAISE_PROFILE" {
			return v
		}
		return "dev"
	}
	err := cli.Run(ctx, []string{"serve", "--config", e.s.ConfigPath}, getenv, &out, &errb)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil
	}
	return err
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
