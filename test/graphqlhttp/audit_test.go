// Package graphqlhttp runs the GraphQL-over-HTTP conformance suite, the
// serverAudits of the graphql-http npm package, against a running core:
// `fraise serve` started through the same Run the binary runs, on a
// throwaway PostgreSQL with the demo schema. Every MUST audit has to pass;
// every SHOULD or MAY audit that does not must be listed, with its reason, in
// docs/graphql-over-http.md.
package graphqlhttp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/internal/assertion"
	"github.com/fraise-dev/fraise/internal/assertion/assertiontest"
	"github.com/fraise-dev/fraise/internal/await"
	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

type auditResult struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"` // ok, notice, warn or error
	Reason      string `json:"reason"`
	HTTPStatus  int    `json:"httpStatus"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

func TestServerAudits(t *testing.T) {
	harness.SkipShort(t)
	mustNodeModules(t)
	url, key, kid := mustCore(t, "")

	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "audit.mjs")
	cmd.Env = append(os.Environ(),
		"FRAISE_AUDIT_URL="+url,
		"FRAISE_AUDIT_KEY="+string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"FRAISE_AUDIT_KID="+kid,
		"FRAISE_AUDIT_TENANT="+demo.TenantAcme,
	)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node audit.mjs: %v\n%s", err, stderr.String())
	}
	var results []auditResult
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("audit output is not JSON: %v\n%s", err, out)
	}
	if len(results) < 40 {
		t.Fatalf("got %d audits, want the whole suite (at least 40)", len(results))
	}

	documented := mustDocumentedWarnings(t)
	var must, others int
	for _, r := range results {
		level, _, _ := strings.Cut(r.Name, " ")
		if level == "MUST" {
			must++
		} else {
			others++
		}
		if r.Status == "ok" {
			if _, listed := documented[r.ID]; listed {
				t.Errorf("%s %s passes but docs/graphql-over-http.md lists it as a warning: remove it there", r.ID, r.Name)
			}
			continue
		}
		detail := fmt.Sprintf("%s %s: %s (got %d %s: %.300s)", r.ID, r.Name, r.Reason, r.HTTPStatus, r.ContentType, r.Body)
		if level == "MUST" {
			t.Errorf("MUST audit failed: %s", detail)
			continue
		}
		if _, listed := documented[r.ID]; !listed {
			t.Errorf("%s audit not met and not listed with its reason in docs/graphql-over-http.md: %s", level, detail)
			continue
		}
		t.Logf("documented %s", detail)
	}
	t.Logf("%d audits: %d MUST, %d SHOULD or MAY", len(results), must, others)
}

// mustNodeModules installs the audit suite from the committed lock file when
// node_modules is missing or older than the lock, so a fresh clone works.
func mustNodeModules(tb testing.TB) {
	tb.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s is not on PATH: the GraphQL-over-HTTP audits need Node.js (12 or later) and npm (make deps installs them)", bin)
		}
	}
	lock, err := os.Stat("package-lock.json")
	if err != nil {
		tb.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join("node_modules", ".package-lock.json")); err == nil && !st.ModTime().Before(lock.ModTime()) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("npm ci: %v\n%s", err, out)
	}
}

// auditRow matches a row of the warnings table in docs/graphql-over-http.md:
// | `22EB` | SHOULD ... | reason |
var auditRow = regexp.MustCompile("^\\|\\s*`([0-9A-Z]{4})`\\s*\\|")

func mustDocumentedWarnings(tb testing.TB) map[string]bool {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "graphql-over-http.md"))
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := auditRow.FindStringSubmatch(line); m != nil {
			out[m[1]] = true
		}
	}
	return out
}

// mustCore starts `fraise serve` on a fresh database with the demo schema,
// extra added to its [server] section, and returns its GraphQL URL and the key
// its verifier trusts.
func mustCore(tb testing.TB, extra string) (string, ed25519.PrivateKey, string) {
	tb.Helper()
	pg, db := harness.NewDatabase(tb)
	dir := tb.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pubPEM, err := assertion.MarshalPublicKeyPEM(pub)
	if err != nil {
		tb.Fatal(err)
	}
	pubPath := filepath.Join(dir, "assertion.pub")
	if err := os.WriteFile(pubPath, pubPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(tb))
	cfg := fmt.Sprintf(`
[log]
level = "warn"
[database]
url = %q
admin_url = %q
[server]
http_addr = %q
admin_addr = ""
# No Flight: its default port is make run's (8815).
flight_addr = ""
tls = false
introspection = true
assertion_keys = [%q]
%s
`, pg.URL("fraise_app", db), pg.AdminURL(db), addr, "file://"+pubPath, extra)
	cfgPath := filepath.Join(dir, "fraise.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	getenv := func(k string) string { return map[string]string{"FRAISE_PROFILE": "dev"}[k] }
	var logs bytes.Buffer
	if err := cli.Run(context.Background(), []string{"migrate", "--demo", "--config", cfgPath}, getenv, &logs, &logs); err != nil {
		tb.Fatalf("fraise migrate: %v\n%s", err, logs.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var serveLogs bytes.Buffer
	go func() {
		done <- cli.Run(ctx, []string{"serve", "--config", cfgPath}, getenv, &bytes.Buffer{}, &serveLogs)
	}()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("fraise serve exited with %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Errorf("fraise serve did not stop within 30s")
		}
	})
	var exited error
	if !await.WithinEvery(30*time.Second, 50*time.Millisecond, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return true
		}
		select {
		case exited = <-done:
			return true
		default:
			return false
		}
	}) {
		tb.Fatalf("fraise serve not listening on %s after 30s", addr)
	}
	if exited != nil {
		tb.Fatalf("fraise serve exited before serving: %v\n%s", exited, serveLogs.String())
	}
	return "http://" + addr + "/graphql", priv, assertion.KeyID(pub)
}

// TestBatchConfigured shows server.max_batch reaching the served handler: a
// batch within it runs, one past it is refused.
func TestBatchConfigured(t *testing.T) {
	harness.SkipShort(t)
	url, key, kid := mustCore(t, "max_batch = 2")
	signer, err := assertion.NewSigner(key, kid, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantPrefix string
	}{
		// The assertion names one operation, which every entry must be.
		{name: "within the limit", body: `[{"query":"{ __typename }"},{"query":"{ __typename }"}]`, wantStatus: 200, wantPrefix: `[{"data":{"__typename":"Query"}},{"data":{"__typename":"Query"}}]`},
		{name: "past the limit", body: `[{"query":"{ a }"},{"query":"{ b }"},{"query":"{ c }"}]`, wantStatus: 400, wantPrefix: `{"errors":[`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := signer.Sign(core.Principal{Subject: "batch-test", Tenant: demo.TenantAcme}, assertiontest.RequestID(),
				assertiontest.GraphQL(http.MethodPost, "/graphql", []byte(tt.body)))
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(assertion.Header, tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.HasPrefix(string(b), tt.wantPrefix) {
				t.Fatalf("got %d %s, want %d and a body starting %s", resp.StatusCode, b, tt.wantStatus, tt.wantPrefix)
			}
		})
	}
}
