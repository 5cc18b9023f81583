package ratelimit_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/test/harness"
)

// coreTLS is how the core's observer workers reach the service: with the
// core's client certificate, expecting the service's name localhost.
func coreTLS(f devcerts.Files) ratelimit.ClientTLS {
	return ratelimit.ClientTLS{CA: f.CACert, Cert: f.CoreClientCert, Key: f.CoreClientKey, ServerName: "localhost"}
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
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: s.GRPCAddr(), Domain: "fraise", Timeout: time.Second, TLS: coreTLS(certs)})
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
	wrong := coreTLS(certs)
	wrong.Cert, wrong.Key = certs.ClientCert, certs.ClientKey
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
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: dead, Domain: "fraise", Timeout: 100 * time.Millisecond, TLS: coreTLS(mustCerts(t))})
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
	certs := mustCerts(t)
	tests := []struct {
		name    string
		edit    func(*ratelimit.ClientTLS)
		wantErr string
	}{
		{"no CA", func(c *ratelimit.ClientTLS) { c.CA = "" }, "CA"},
		{"no certificate", func(c *ratelimit.ClientTLS) { c.Cert, c.Key = "", "" }, "certificate"},
		{"missing CA file", func(c *ratelimit.ClientTLS) { c.CA = certs.CACert + ".missing" }, "no such file"},
		{"key of another certificate", func(c *ratelimit.ClientTLS) { c.Key = certs.GatewayKey }, "private key does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := coreTLS(certs)
			tt.edit(&c)
			l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: "127.0.0.1:1", Domain: "fraise", Timeout: time.Second, TLS: c})
			if err == nil {
				l.Close()
				t.Fatalf("got no error, want one containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %q, want one containing %q", err, tt.wantErr)
			}
		})
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
	c := coreTLS(certs)
	c.Cert, c.Key = filepath.Join(dir, "worker.pem"), filepath.Join(dir, "worker-key.pem")
	install := func(cert, key string) {
		for _, f := range []struct{ from, to string }{{key, c.Key}, {cert, c.Cert}} {
			b, err := os.ReadFile(f.from)
			if err != nil {
				t.Fatal(err)
			}
			replace(t, f.to, b)
		}
	}
	// A certificate the service refuses (an end user's) first.
	install(certs.ClientCert, certs.ClientKey)
	l, err := ratelimit.NewActionLimiter(ratelimit.ActionLimiterOptions{Addr: s.GRPCAddr(), Domain: "fraise", Timeout: time.Second, TLS: c})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.Allow(context.Background(), "a", "webhook"); err == nil {
		t.Fatal("end user's certificate: got no error, want the service to refuse it")
	}
	install(certs.CoreClientCert, certs.CoreClientKey)
	// gRPC reconnects with backoff: the renewed certificate is used from
	// its next attempt.
	eventually(t, "the renewed certificate accepted", func(int) bool {
		_, _, err := l.Allow(context.Background(), "a", "webhook")
		return err == nil
	})
}
