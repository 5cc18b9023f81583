package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
)

// mustCA writes a fresh development CA with a server certificate for
// loopback into a temporary directory.
func mustCA(tb testing.TB) devcerts.Files {
	tb.Helper()
	f, err := devcerts.Generate(tb.TempDir(), devcerts.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// mustTLSServer serves h over TLS on loopback with ca's server certificate.
func mustTLSServer(tb testing.TB, ca devcerts.Files, h http.Handler) *httptest.Server {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(ca.ServerCert, ca.ServerKey)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	return srv
}

// jwksHandler serves the keys of signers as extauthz's admin port does,
// counting requests.
func jwksHandler(n *atomic.Int64, signers ...*assertion.Signer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		keys := map[string]ed25519.PublicKey{}
		for _, s := range signers {
			for kid, pub := range s.PublicKeys() {
				keys[kid] = pub
			}
		}
		b, _ := assertion.MarshalJWKS(keys)
		_, _ = w.Write(b)
	})
}

// clientTrusting is the client the core would use with tls.ca = ca.
func clientTrusting(tb testing.TB, ca devcerts.Files, proxy *url.URL) *http.Client {
	tb.Helper()
	pem, err := os.ReadFile(ca.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func mustSign(tb testing.TB, s *assertion.Signer) string {
	tb.Helper()
	tok, err := s.Sign(core.Principal{Subject: "alice", Tenant: "11111111-1111-4111-8111-111111111111", Kind: core.KindJWT}, "r1",
		assertion.Binding{Audience: assertion.AudienceGraphQL, Method: "POST", Path: "/graphql"})
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// TestAssertionKeysFetch is security issue #13, defect 5: the core fetched
// extauthz's assertion keys from any URL, over plain HTTP, following
// redirects and through a proxy, and the keys it fetched replaced the
// configured ones. Whoever could answer that URL chose the keys the core
// trusts. Now only an https URL answered by a server whose certificate
// chains to the internal CA is fetched, directly and without redirects,
// and the configured keys stay trusted whatever it answers.
func TestAssertionKeysFetch(t *testing.T) {
	ca := mustCA(t)
	configured, configuredKeys := assertiontest.New(t, nil) // server.assertion_keys
	extauthz, _ := assertiontest.New(t, nil)                // what extauthz signs with now
	attacker, _ := assertiontest.New(t, nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	var attackerFetches atomic.Int64
	attackerTLS := mustTLSServer(t, ca, jwksHandler(&attackerFetches, attacker))
	attackerHTTP := httptest.NewServer(jwksHandler(&attackerFetches, attacker))
	t.Cleanup(attackerHTTP.Close)
	redirecting := mustTLSServer(t, ca, http.RedirectHandler(attackerTLS.URL+"/.well-known/jwks.json", http.StatusFound))

	// Each case makes the core follow a URL an attacker can answer; none
	// may make it trust the attacker's key.
	for _, tc := range []struct {
		name string
		url  string
		want string // in the error
	}{
		{name: "plain http", url: attackerHTTP.URL + "/.well-known/jwks.json", want: "https"},
		{name: "redirect", url: redirecting.URL + "/.well-known/jwks.json", want: "redirect"},
		{name: "credentials in the URL", url: strings.Replace(attackerTLS.URL, "https://", "https://u:p@", 1), want: "https"},
		{name: "not a URL", url: "127.0.0.1:9192/.well-known/jwks.json", want: "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := assertion.NewVerifier(configuredKeys, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err := followAssertionKeys(ctx, v, tc.url, clientTrusting(t, ca, nil), time.Hour, log)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got error %v, want one saying %q", err, tc.want)
			}
			if _, err := v.Verify(mustSign(t, attacker), assertion.AudienceGraphQL); err == nil {
				t.Fatal("got the attacker's assertion accepted, want it refused")
			}
		})
	}

	t.Run("through a proxy", func(t *testing.T) {
		// As HTTPS_PROXY in the environment makes Go's default transport
		// do: the proxy could answer in extauthz's place.
		var proxied atomic.Int64
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			proxied.Add(1)
			http.Error(w, "no", http.StatusForbidden)
		}))
		t.Cleanup(proxy.Close)
		proxyURL, _ := url.Parse(proxy.URL)
		var n atomic.Int64
		good := mustTLSServer(t, ca, jwksHandler(&n, extauthz))
		v := assertion.NewVerifier(configuredKeys, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := followAssertionKeys(ctx, v, good.URL+"/.well-known/jwks.json", clientTrusting(t, ca, proxyURL), time.Hour, log); err != nil {
			t.Fatalf("got error %v, want the keys fetched directly", err)
		}
		if got := proxied.Load(); got != 0 {
			t.Fatalf("got %d requests through the proxy, want none", got)
		}
	})

	t.Run("fetched keys add to the configured ones", func(t *testing.T) {
		var n atomic.Int64
		var logs bytes.Buffer
		good := mustTLSServer(t, ca, jwksHandler(&n, extauthz))
		v := assertion.NewVerifier(configuredKeys, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := followAssertionKeys(ctx, v, good.URL+"/.well-known/jwks.json", clientTrusting(t, ca, nil), time.Hour,
			slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]*assertion.Signer{"configured key": configured, "fetched key": extauthz} {
			if _, err := v.Verify(mustSign(t, s), assertion.AudienceGraphQL); err != nil {
				t.Errorf("%s: got %v, want accepted", name, err)
			}
		}
		if !strings.Contains(logs.String(), configured.KeyID()) {
			t.Errorf("got logs %q, want a warning naming the configured key extauthz no longer publishes", logs.String())
		}
	})

	t.Run("the core's client trusts tls.ca alone", func(t *testing.T) {
		client, err := assertionKeyClient(ca.CACert)
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int64
		foreign := mustTLSServer(t, mustCA(t), jwksHandler(&n, attacker))
		good := mustTLSServer(t, ca, jwksHandler(&n, extauthz))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		v := assertion.NewVerifier(configuredKeys, nil)
		if err := followAssertionKeys(ctx, v, foreign.URL, client, time.Hour, log); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("server of another CA: got error %v, want a certificate error", err)
		}
		if err := followAssertionKeys(ctx, v, good.URL, client, time.Hour, log); err != nil {
			t.Errorf("server of tls.ca: got error %v, want the keys fetched", err)
		}
		if _, err := assertionKeyClient(ca.ServerKey); err == nil || !strings.Contains(err.Error(), "tls.ca") {
			t.Errorf("CA file without a certificate: got error %v, want one naming tls.ca", err)
		}
	})

	t.Run("a fetch retires the keys of the previous fetch, never a configured one", func(t *testing.T) {
		var current atomic.Pointer[assertion.Signer]
		current.Store(extauthz)
		var n atomic.Int64
		srv := mustTLSServer(t, ca, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			jwksHandler(&n, current.Load()).ServeHTTP(w, r)
		}))
		v := assertion.NewVerifier(configuredKeys, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := followAssertionKeys(ctx, v, srv.URL, clientTrusting(t, ca, nil), time.Hour, log); err != nil {
			t.Fatal(err)
		}
		before := mustSign(t, extauthz)
		rotated, _ := assertiontest.New(t, nil)
		// extauthz replaced its key and dropped the old one; an assertion
		// with the new, unknown key id makes the core fetch again.
		current.Store(rotated)
		if _, err := v.Verify(mustSign(t, rotated), assertion.AudienceGraphQL); err != nil {
			t.Fatalf("rotated key: got %v, want accepted", err)
		}
		if got := n.Load(); got != 2 {
			t.Fatalf("got %d fetches, want 2", got)
		}
		if _, err := v.Verify(before, assertion.AudienceGraphQL); err == nil {
			t.Error("key extauthz no longer publishes: got accepted, want refused")
		}
		if _, err := v.Verify(mustSign(t, configured), assertion.AudienceGraphQL); err != nil {
			t.Errorf("configured key: got %v, want still accepted", err)
		}
	})
}
