package e2e_test

import (
	"context"
	"crypto/tls"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/fraise-dev/fraise/test/stack"
)

// TestReadyMeansEveryComponentServes: the moment fraise dev says it is
// ready (its ready file, the banner), extauthz answers SERVING and the core
// /readyz, without waiting for either: the request the banner prints works
// when pasted at once. extauthz runs its policy's tests before it serves;
// a slow test among them makes it the last component up.
func TestReadyMeansEveryComponentServes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyDir(t, filepath.Join(repoRoot(t), "policies"), dir)
	slow := "package fraise.authz_slow_test\n\nimport rego.v1\n\n" +
		"test_takes_a_while if count(numbers.range(1, 300000)) > 0\n" // a few tenths of a second; well under OPA's 10 s limit with other stacks starting beside it
	if err := os.WriteFile(filepath.Join(dir, "slow_test.rego"), []byte(slow), 0o600); err != nil {
		t.Fatal(err)
	}
	s := stack.StartWith(t, stack.Options{Env: map[string]string{"FRAISE_AUTHZ_POLICY_DIR": dir}})
	creds := credentials.NewTLS(&tls.Config{RootCAs: s.CAPool(t), ServerName: "localhost", Certificates: []tls.Certificate{s.GatewayCertificate(t)}})
	conn, err := grpc.NewClient(s.Addrs.Authz, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("extauthz when fraise dev said ready: got %v, %v, want SERVING", resp.GetStatus(), err)
	}
	r, err := (&http.Client{Timeout: time.Second}).Get("http://" + s.Addrs.CoreAdmin + "/readyz")
	if err != nil {
		t.Fatalf("the core's /readyz when fraise dev said ready: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("the core's /readyz when fraise dev said ready: got %d, want 200", r.StatusCode)
	}
}

// repoRoot is the repository's root, above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// copyDir copies the regular files of src, recursively, into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
