package cli_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
)

const rateLimitConfig = `
[tls]
ca = %q
server_cert = %q
server_key = %q
[redis]
addr = %q
[ratelimit]
grpc_addr = %q
[ratelimit.tiers.default]
tenant = { requests = %d, unit = "hour" }
[xds]
poll_interval = "50ms"
`

// TestRateLimitFollowsConfig runs `fraise ratelimit`, then edits the tiers
// in fraise.toml and expects the running service to enforce the new limit.
func TestRateLimitFollowsConfig(t *testing.T) {
	if raceDetector {
		t.Skip("envoyproxy/ratelimit races with itself on a limits reload (race_on_test.go); tested without -race")
	}
	rd := harness.StartRedis(t)
	grpcAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(harness.FreePort(t)))
	dir := t.TempDir()
	certs, err := devcerts.Generate(filepath.Join(dir, "certs"), devcerts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "fraise.toml")
	write := func(limit int) {
		t.Helper()
		cfg := fmt.Sprintf(rateLimitConfig, certs.CACert, certs.ServerCert, certs.ServerKey, rd.Addr, grpcAddr, limit)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cli.Run(ctx, []string{"ratelimit", "--config", cfgPath}, func(string) string { return "" }, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fraise ratelimit: %v", err)
		}
	})
	// As Envoy: mutual TLS with the gateway's certificate.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(gatewayTLS(t, certs))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := rlsv3.NewRateLimitServiceClient(conn)
	// allowed reports how many of three calls for a fresh tenant pass.
	allowed := func(i int) (int, error) {
		n := 0
		for j := 0; j < 3; j++ {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			r, err := c.ShouldRateLimit(cctx, &rlsv3.RateLimitRequest{Domain: "fraise", HitsAddend: 1,
				Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{
					{Key: "tier", Value: "default"}, {Key: "tenant", Value: "t" + strconv.Itoa(i)},
				}}}})
			ccancel()
			if err != nil {
				return 0, err
			}
			if r.OverallCode == rlsv3.RateLimitResponse_OK {
				n++
			}
		}
		return n, nil
	}
	waitAllowed := func(want int) {
		t.Helper()
		var got, i int
		var err error
		if !await.Within(20*time.Second, func() bool {
			got, err = allowed(want*1000 + i)
			i++
			return err == nil && got == want
		}) {
			t.Fatalf("got %d of 3 calls allowed (%v), want %d", got, err, want)
		}
	}
	waitAllowed(1)
	write(2)
	waitAllowed(2)
}

// gatewayTLS is Envoy's TLS towards the sidecars: the gateway's client
// certificate, the server verified against the CA for localhost.
func gatewayTLS(tb testing.TB, certs devcerts.Files) *tls.Config {
	tb.Helper()
	pem, err := os.ReadFile(certs.CACert)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	kp, err := tls.LoadX509KeyPair(certs.GatewayCert, certs.GatewayKey)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
}
