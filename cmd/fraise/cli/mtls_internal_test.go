package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/extauthz/token/tokentest"
)

// testTLS writes development certificates for one test and returns the
// configuration naming them.
func testTLS(tb testing.TB) config.TLS {
	tb.Helper()
	f, err := devcerts.Generate(filepath.Join(tb.TempDir(), "certs"), devcerts.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	t := config.Default().TLS
	t.CA, t.ServerCert, t.ServerKey = f.CACert, f.ServerCert, f.ServerKey
	t.ClientCert, t.ClientKey = f.ClientCert, f.ClientKey
	t.GatewayCert, t.GatewayKey = f.GatewayCert, f.GatewayKey
	t.CoreClientCert, t.CoreClientKey = f.CoreClientCert, f.CoreClientKey
	return t
}

// clientTLS is the client side of mTLS presenting certFile/keyFile ("" for
// no certificate), verifying the server as Envoy does.
func clientTLS(tb testing.TB, t config.TLS, certFile, keyFile string) *tls.Config {
	tb.Helper()
	pem, err := os.ReadFile(t.CA)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &tls.Config{RootCAs: pool, ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			tb.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// grpcHealth asks addr's gRPC health service over creds and returns the
// error, if any: within a few seconds, or, waiting for the server to come
// up, within wait.
func grpcHealth(tb testing.TB, addr string, creds credentials.TransportCredentials, wait time.Duration) error {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	timeout, opts := 5*time.Second, []grpc.CallOption(nil)
	if wait > 0 {
		timeout, opts = wait, []grpc.CallOption{grpc.WaitForReady(true)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, opts...)
	return err
}

// TestSidecarsAcceptOnlyTheGateway starts extauthz and the xDS server as
// fraise runs them and speaks to each as a plaintext client, as an end user
// holding a certificate of the same CA, and as the gateway: only the
// gateway is answered.
func TestSidecarsAcceptOnlyTheGateway(t *testing.T) {
	tc := testTLS(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := Env{Getenv: func(string) string { return "" }, Stdout: io.Discard, Stderr: io.Discard}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	cfg := config.Default()
	cfg.TLS = tc
	is := tokentest.NewIssuer(t, "https://idp.test/", "fraise", time.Now())
	cfg.Authz.AssertionKey = "file://" + mustAssertionKeyFile(t)
	cfg.Authz.Issuers = []config.Issuer{{Issuer: is.Issuer, Audiences: []string{is.Audience}, JWKSFile: is.JWKSFile, Algorithms: []string{"ES256"}}}
	authzLn := listen()
	authzDone := make(chan error, 1)
	go func() { authzDone <- serveAuthz(ctx, cfg, env, quiet, authzLn, nil, nil) }()

	xdsLn := listen()
	srv, err := newXDSServer(ctx, cfg, quiet)
	if err != nil {
		t.Fatal(err)
	}
	xdsDone := make(chan error, 1)
	go func() { xdsDone <- serveXDS(ctx, srv, cfg, xdsLn, quiet, nil) }()
	t.Cleanup(func() {
		cancel()
		for _, d := range []chan error{authzDone, xdsDone} {
			if err := <-d; err != nil {
				t.Errorf("server: %v", err)
			}
		}
	})

	for _, side := range []struct{ name, addr string }{
		{"extauthz", authzLn.Addr().String()},
		{"xds", xdsLn.Addr().String()},
	} {
		// extauthz loads and tests its policy before it answers: wait for
		// the gateway's first answer before judging the others.
		if err := grpcHealth(t, side.addr, credentials.NewTLS(clientTLS(t, tc, tc.GatewayCert, tc.GatewayKey)), 30*time.Second); err != nil {
			t.Fatalf("%s: the gateway's certificate was not answered: %v", side.name, err)
		}
		for _, c := range []struct {
			name  string
			creds credentials.TransportCredentials
		}{
			{"plaintext", insecure.NewCredentials()},
			{"TLS without a client certificate", credentials.NewTLS(clientTLS(t, tc, "", ""))},
			{"an end user's certificate from the same CA", credentials.NewTLS(clientTLS(t, tc, tc.ClientCert, tc.ClientKey))},
			{"the core's client certificate", credentials.NewTLS(clientTLS(t, tc, tc.CoreClientCert, tc.CoreClientKey))},
		} {
			if err := grpcHealth(t, side.addr, c.creds, 0); err == nil {
				t.Errorf("%s: %s was answered, want it refused", side.name, c.name)
			} else {
				t.Logf("%s: %s refused: %v", side.name, c.name, err)
			}
		}
	}
}
