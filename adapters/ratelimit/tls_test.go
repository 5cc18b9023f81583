package ratelimit_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/adapters/secretfile"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestMutualTLS checks that the gRPC port answers the gateway and the
// core, over mutual TLS, and nobody else: not a plaintext client, not a
// TLS client without a certificate, not an end user's certificate from the
// same CA, not the gateway's name on a certificate from another CA
// (security #12).
func TestMutualTLS(t *testing.T) {
	rd := harness.StartRedis(t)
	certs, other := mustCerts(t), mustCerts(t)
	s := mustStart(t, rd.Addr, certs, tiers())
	tests := []struct {
		name   string
		creds  credentials.TransportCredentials
		wantOK bool
	}{
		{"gateway certificate", credentials.NewTLS(clientTLS(t, certs.GatewayCert, certs.GatewayKey, certs.CACert)), true},
		{"core client certificate", credentials.NewTLS(clientTLS(t, certs.CoreClientCert, certs.CoreClientKey, certs.CACert)), true},
		{"plaintext", insecure.NewCredentials(), false},
		{"TLS without a client certificate", credentials.NewTLS(clientTLS(t, "", "", certs.CACert)), false},
		{"end user's certificate from the same CA", credentials.NewTLS(clientTLS(t, certs.ClientCert, certs.ClientKey, certs.CACert)), false},
		{"gateway's name from another CA", credentials.NewTLS(clientTLS(t, other.GatewayCert, other.GatewayKey, certs.CACert)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := mustConn(t, s.GRPCAddr(), tt.creds)
			r, err := try(rlsv3.NewRateLimitServiceClient(conn), desc("tier", "default", "tenant", "mtls"))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			h, herr := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: ratelimit.HealthService})
			if !tt.wantOK {
				if status.Code(err) != codes.Unavailable || status.Code(herr) != codes.Unavailable {
					t.Fatalf("got ShouldRateLimit %v, %v and health %v, %v; want both refused (Unavailable)", r.GetOverallCode(), err, h.GetStatus(), herr)
				}
				return
			}
			if err != nil || r.OverallCode != rlsv3.RateLimitResponse_OK {
				t.Fatalf("ShouldRateLimit: got %v, %v; want OK", r.GetOverallCode(), err)
			}
			// Envoy health-checks the service on the same port, over the
			// same TLS.
			if herr != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health: got %v, %v; want SERVING", h.GetStatus(), herr)
			}
		})
	}
}

// servedSerial returns the serial of the certificate the service at addr
// presents, connecting as the gateway and trusting caFiles.
func servedSerial(tb testing.TB, addr, cert, key string, caFiles ...string) string {
	tb.Helper()
	c := clientTLS(tb, cert, key, caFiles...)
	c.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		tb.Fatalf("TLS handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func fileSerial(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		tb.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	return c.SerialNumber.String()
}

// replace writes content over path atomically, as a certificate manager
// does.
func replace(tb testing.TB, path string, content []byte) {
	tb.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".new-"+filepath.Base(path))
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// TestServerCertificateReload renews the service's certificate on disk and
// expects the next connection, once the files were checked, to get the new
// one, without a restart; a broken file keeps the last good certificate.
func TestServerCertificateReload(t *testing.T) {
	rd := harness.StartRedis(t)
	certs, next := mustCerts(t), mustCerts(t)
	o := tiers()
	var w *secretfile.Watcher
	o.TLS, w = serverTLS(t, certs)
	s := mustStart(t, rd.Addr, certs, o)
	served := func() string {
		return servedSerial(t, s.GRPCAddr(), certs.GatewayCert, certs.GatewayKey, certs.CACert, next.CACert)
	}
	if got, want := served(), fileSerial(t, certs.ServerCert); got != want {
		t.Fatalf("got serial %s, want the configured certificate's %s", got, want)
	}
	for _, f := range []struct{ from, to string }{{next.ServerKey, certs.ServerKey}, {next.ServerCert, certs.ServerCert}} {
		b, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		replace(t, f.to, b)
	}
	w.Check()
	want := fileSerial(t, next.ServerCert)
	if got := served(); got != want {
		t.Fatalf("after renewal: got serial %s, want the new certificate's %s", got, want)
	}
	replace(t, certs.ServerCert, []byte("not a certificate"))
	w.Check()
	if got := served(); got != want {
		t.Fatalf("after a broken renewal: got serial %s, want the last good certificate's %s", got, want)
	}
}

// listeningPorts returns the TCP ports this process listens on.
func listeningPorts(tb testing.TB) map[int]bool {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skip("reads the process's sockets from /proc")
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	ports := map[int]bool{}
	for _, f := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ... inode (10th field)
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" || !inodes[fs[9]] {
				continue
			}
			_, hex, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hex, 16, 16); err == nil {
				ports[int(p)] = true
			}
		}
	}
	return ports
}

func portOf(tb testing.TB, addr string) int {
	tb.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func get(tb testing.TB, method, url, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOperatorPorts checks that the HTTP port (POST /json spends any
// tenant's limits) and the debug port (pprof) are off by default, serve on
// loopback when asked, and are refused anywhere else (security #13,
// defect 10).
func TestOperatorPorts(t *testing.T) {
	rd := harness.StartRedis(t)
	certs := mustCerts(t)

	t.Run("off by default", func(t *testing.T) {
		before := listeningPorts(t)
		s := mustStart(t, rd.Addr, certs, tiers())
		var opened []int
		for p := range listeningPorts(t) {
			if !before[p] {
				opened = append(opened, p)
			}
		}
		if grpcPort := portOf(t, s.GRPCAddr()); len(opened) != 1 || opened[0] != grpcPort {
			t.Errorf("got new listening ports %v, want only the gRPC port %d", opened, grpcPort)
		}
		if s.HTTPAddr() != "" || s.DebugAddr() != "" {
			t.Errorf("got HTTP %q and debug %q addresses, want none", s.HTTPAddr(), s.DebugAddr())
		}
	})

	t.Run("on loopback when asked", func(t *testing.T) {
		o := tiers()
		o.HTTPAddr, o.DebugAddr = "127.0.0.1:0", "127.0.0.1:0"
		s := mustStart(t, rd.Addr, certs, o)
		for _, tt := range []struct {
			name, method, path, body string
			addr, want               string
		}{
			{"health", "GET", "/healthcheck", "", s.HTTPAddr(), "OK"},
			{"json", "POST", "/json", `{"domain":"fraise","descriptors":[{"entries":[{"key":"tier","value":"default"},{"key":"tenant","value":"json"}]}]}`, s.HTTPAddr(), `"overallCode":"OK"`},
			{"limits", "GET", "/rlconfig", "", s.DebugAddr(), "requests_per_unit=3"},
			{"pprof", "GET", "/debug/pprof/", "", s.DebugAddr(), "goroutine"},
		} {
			code, body := get(t, tt.method, "http://"+tt.addr+tt.path, tt.body)
			if code != http.StatusOK || !strings.Contains(body, tt.want) {
				t.Errorf("%s: got %d %q, want 200 containing %q", tt.name, code, body, tt.want)
			}
		}
	})

	for _, tt := range []struct{ name, http, debug, wantErr string }{
		{"HTTP port on every interface", "0.0.0.0:0", "", "http address"},
		{"HTTP port on an empty host", ":0", "", "http address"},
		{"debug port on a routable name", "", "example.com:0", "debug address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tiers()
			o.GRPCAddr, o.RedisAddr = "127.0.0.1:0", rd.Addr
			o.TLS, _ = serverTLS(t, certs)
			o.HTTPAddr, o.DebugAddr = tt.http, tt.debug
			s, err := ratelimit.Start(context.Background(), o)
			if err == nil {
				s.Close()
				t.Fatalf("got a running service, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "loopback") {
				t.Fatalf("got error %q, want one containing %q and loopback", err, tt.wantErr)
			}
		})
	}
}

// TestStartErrors checks that what would make the service fail to serve is
// an error from Start, never a running service without TLS, nor a crash of
// the process.
func TestStartErrors(t *testing.T) {
	rd := harness.StartRedis(t)
	certs := mustCerts(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadRedis := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name    string
		edit    func(*ratelimit.Options)
		wantErr string
	}{
		{"no TLS", func(o *ratelimit.Options) { o.TLS = nil }, "TLS"},
		{"Redis unreachable", func(o *ratelimit.Options) { o.RedisAddr = deadRedis }, "redis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tiers()
			o.GRPCAddr, o.RedisAddr = "127.0.0.1:0", rd.Addr
			o.TLS, _ = serverTLS(t, certs)
			tt.edit(&o)
			s, err := ratelimit.Start(context.Background(), o)
			if err == nil {
				s.Close()
				t.Fatalf("got a running service, want an error containing %q", tt.wantErr)
			}
			if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tt.wantErr)) {
				t.Fatalf("got error %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestListener serves on a listener the caller bound, as `fraise dev`
// does with every port before it starts anything.
func TestListener(t *testing.T) {
	rd := harness.StartRedis(t)
	certs := mustCerts(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := tiers()
	o.Listener, o.RedisAddr = ln, rd.Addr
	o.TLS, _ = serverTLS(t, certs)
	s, err := ratelimit.Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.GRPCAddr() != ln.Addr().String() {
		t.Fatalf("got GRPCAddr %q, want the listener's %q", s.GRPCAddr(), ln.Addr())
	}
	c := rlsv3.NewRateLimitServiceClient(mustConn(t, s.GRPCAddr(),
		credentials.NewTLS(clientTLS(t, certs.GatewayCert, certs.GatewayKey, certs.CACert))))
	if r := ask(t, c, desc("tier", "default", "tenant", "l")); r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("got %v, want OK", r.OverallCode)
	}
}
