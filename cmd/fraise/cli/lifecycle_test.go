package cli_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/internal/assertion"
)

// mustPublicKeyFile writes a new Ed25519 public key as PEM (an assertion
// key the core trusts) and returns its path.
func mustPublicKeyFile(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := assertion.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "assertion.pub")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freeAddr returns a loopback address no one listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestFailedStartReleasesItsPorts: a server that cannot start (a database
// it cannot reach, a key it cannot read, a port taken) says why and leaves
// none of the ports it bound behind, whichever step failed.
func TestFailedStartReleasesItsPorts(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	pub := mustPublicKeyFile(t)
	tests := []struct {
		name  string
		args  []string
		ports []string // the FRAISE_* variables of the ports given free addresses
		env   map[string]string
		want  string
	}{
		{
			name: "serve, database unreachable", args: []string{"serve"},
			ports: []string{"FRAISE_CORE_HTTP_ADDR", "FRAISE_CORE_ADMIN_ADDR", "FRAISE_CORE_FLIGHT_ADDR"},
			env: map[string]string{"FRAISE_CORE_ASSERTION_KEYS": pub,
				"FRAISE_DATABASE_URL": "postgres://fraise_app:x@127.0.0.1:1/fraise?connect_timeout=1"},
			want: "127.0.0.1:1: connect: connection refused",
		},
		{
			name: "serve, no assertion key", args: []string{"serve"},
			ports: []string{"FRAISE_CORE_HTTP_ADDR", "FRAISE_CORE_ADMIN_ADDR", "FRAISE_CORE_FLIGHT_ADDR"},
			env:   map[string]string{"FRAISE_CORE_ASSERTION_KEYS": "/nonexistent/assertion.pub"},
			want:  "server.assertion_keys",
		},
		{
			name: "serve, a port taken", args: []string{"serve"},
			ports: []string{"FRAISE_CORE_HTTP_ADDR", "FRAISE_CORE_ADMIN_ADDR"},
			env:   map[string]string{"FRAISE_CORE_FLIGHT_ADDR": taken.Addr().String()},
			want:  "server.flight_addr",
		},
		{
			name: "authz, no assertion key", args: []string{"authz"},
			ports: []string{"FRAISE_AUTHZ_GRPC_ADDR", "FRAISE_AUTHZ_ADMIN_ADDR", "FRAISE_AUTHZ_JWKS_ADDR"},
			env:   map[string]string{"FRAISE_AUTHZ_ASSERTION_KEY": "file:///nonexistent/assertion.key"},
			want:  "authz.assertion_key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"FRAISE_PROFILE": "dev"}
			for k, v := range tt.env {
				env[k] = v
			}
			var addrs []string
			for _, k := range tt.ports {
				env[k] = freeAddr(t)
				addrs = append(addrs, env[k])
			}
			err := cli.Run(context.Background(), tt.args, func(k string) string { return env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
			for i, addr := range addrs {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Errorf("%s (%s) still bound after the failed start: %v", tt.ports[i], addr, err)
					continue
				}
				ln.Close()
			}
		})
	}
}
