package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
)

func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestGatewayCommand runs `fraise gateway` from a fraise.toml and checks it
// executes the generated configuration: client certificates required, an
// unreachable extauthz refused with 403 (fail closed), admin paths 404.
func TestGatewayCommand(t *testing.T) {
	dir := t.TempDir()
	certs, err := devcerts.Generate(filepath.Join(dir, "certs"), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`
[tls]
ca = %q
server_cert = %q
server_key = %q
client_cert = %q
client_key = %q
[core]
http_addr = %q
[authz]
grpc_addr = %q
[ratelimit]
grpc_addr = %q
[gateway]
listen_addr = "127.0.0.1:0"
admin_addr = "127.0.0.1:0"
`, certs.CACert, certs.ServerCert, certs.ServerKey, certs.ClientCert, certs.ClientKey, deadAddr(t), deadAddr(t), deadAddr(t))
	cfgPath := filepath.Join(dir, "fraise.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(dir, "ready.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, []string{"gateway", "--config", cfgPath, "--ready-file", ready}, func(string) string { return "" }, io.Discard, io.Discard)
	}()
	var addrs struct{ Gateway, Admin string }
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			if err := json.Unmarshal(b, &addrs); err != nil {
				t.Fatal(err)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("fraise gateway stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("fraise gateway did not become ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(certs.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(certs.ClientCert, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}},
	}}
	anonymous := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"},
	}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		anonymous.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fraise gateway: %v", err)
		}
	})
	resp, err := http.Get("http://" + addrs.Admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin /readyz: got %d, want 200", resp.StatusCode)
	}
	base := "https://" + addrs.Gateway
	if resp, err := anonymous.Get(base + "/graphql"); err == nil {
		resp.Body.Close()
		t.Fatalf("no client certificate: got %d, want the handshake refused", resp.StatusCode)
	}
	for _, tt := range []struct {
		path string
		want int
	}{{"/graphql", http.StatusServiceUnavailable}, {"/metrics", http.StatusNotFound}} { // no extauthz runs: fail closed, 503
		resp, err := client.Post(base+tt.path, "application/json", strings.NewReader(`{"query":"{ a }"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: got %d, want %d", tt.path, resp.StatusCode, tt.want)
		}
	}
}
