package ratelimit_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/test/harness"
)

// coreTLS is how the core's observer workers reach the service: with the
// client certificate in cert and key (the core's), expecting the
// service's name localhost, the files read again at each Check of the
// watcher returned.
func coreTLS(tb testing.TB, f devcerts.Files, cert, key string) (func() *tls.Config, *secretfile.Watcher) {
	tb.Helper()
	w := secretfile.NewWatcher(nil)
	pair, err := w.KeyPair("tls.core_client_cert", cert, key)
	if err != nil {
		tb.Fatal(err)
	}
	cas, err := w.CertPool("tls.ca", f.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	return secretfile.ClientTLS{RootCAs: cas, Cert: pair, ServerName: "localhost"}.Config, w
}

// TestActionLimiter runs the real service with a per-action limit and asks
// it through ActionLimiter over mutual TLS, as observer workers do.
func TestActionLimiter(t *testing.T) {
	rd := harness.StartRedis(t)
	certs := mustCerts(t)
	s := mustStart(t, rd.Addr, certs, ratelimit.Options{
		Tiers:   map[string]ratelimit.Tier{ratelimit.DefaultTier: {Tenant: ratelimit.Limit{Requests: 1000, Unit: "hour"}}},
		Actions: map[string]ratelimit.Limit{"email": {Requests: 2, Unit: "hour"}},
	})
	core, _ := coreTLS(t, certs, certs.CoreClientCert, certs.CoreClientKey)
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: s.GRPCAddr(), Domain: "fraise", Timeout: time.Second, TLS: core})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if ok, _, err := l.Allow(ctx, "a", "email"); err != nil || !ok {
			t.Fatalf("email %d: got %v %v, want allowed", i+1, ok, err)
		}
	}
	ok, wait, err := l.Allow(ctx, "a", "email")
	if err != nil || ok || wait <= 0 || wait > time.Hour {
		t.Fatalf("third email: got allowed=%v wait=%v err=%v, want refused with a wait up to an hour", ok, wait, err)
	}
	if ok, _, _ := l.Allow(ctx, "b", "email"); !ok {
		t.Fatal("tenant b was limited by tenant a's emails")
	}
	if ok, _, _ := l.Allow(ctx, "a", "webhook"); !ok {
		t.Fatal("webhooks were limited by emails")
	}

	// A worker holding a certificate the service does not accept (here an
	// end user's, from the same CA) gets an error, and fails open.
	wrong, _ := coreTLS(t, certs, certs.ClientCert, certs.ClientKey)
	l2, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: s.GRPCAddr(), Domain: "fraise", Timeout: time.Second, TLS: wrong})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if ok, _, err := l2.Allow(ctx, "a", "email"); err == nil || !ok {
		t.Fatalf("end user's certificate: got allowed=%v err=%v, want allowed (fail open) with the error", ok, err)
	}
}

func TestActionLimiterUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	certs := mustCerts(t)
	core, _ := coreTLS(t, certs, certs.CoreClientCert, certs.CoreClientKey)
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: dead, Domain: "fraise", Timeout: 100 * time.Millisecond, TLS: core})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ok, _, err := l.Allow(context.Background(), "a", "email")
	if err == nil || !ok {
		t.Fatalf("got allowed=%v err=%v, want allowed (fail open) with the error", ok, err)
	}
}

func TestActionLimiterNeedsTLS(t *testing.T) {
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: "127.0.0.1:1", Domain: "fraise", Timeout: time.Second})
	if err == nil {
		l.Close()
		t.Fatal("no TLS: got an action limiter, want an error")
	}
	if !errors.Is(err, ratelimit.ErrTLS) {
		t.Fatalf("no TLS: got %v, want ErrTLS", err)
	}
}

// TestActionLimiterCertificateReload renews the worker's certificate on
// disk: the next connection presents the new one, without a new
// ActionLimiter.
func TestActionLimiterCertificateReload(t *testing.T) {
	rd := harness.StartRedis(t)
	certs := mustCerts(t)
	s := mustStart(t, rd.Addr, certs, tiers())
	dir := t.TempDir()
	workerCert, workerKey := filepath.Join(dir, "worker.pem"), filepath.Join(dir, "worker-key.pem")
	install := func(cert, key string) {
		for _, f := range []struct{ from, to string }{{key, workerKey}, {cert, workerCert}} {
			b, err := os.ReadFile(f.from)
			if err != nil {
				t.Fatal(err)
			}
			replace(t, f.to, b)
		}
	}
	// A certificate the service refuses (an end user's) first.
	install(certs.ClientCert, certs.ClientKey)
	c, w := coreTLS(t, certs, workerCert, workerKey)
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: s.GRPCAddr(), Domain: "fraise", Timeout: time.Second, TLS: c})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.Allow(context.Background(), "a", "webhook"); err == nil {
		t.Fatal("end user's certificate: got no error, want the service to refuse it")
	}
	install(certs.CoreClientCert, certs.CoreClientKey)
	w.Check()
	// gRPC reconnects with backoff: the renewed certificate is used from
	// its next attempt.
	eventually(t, "the renewed certificate accepted", func(int) bool {
		_, _, err := l.Allow(context.Background(), "a", "webhook")
		return err == nil
	})
}
