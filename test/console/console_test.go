// Package console_test drives the Fraise console in a real browser:
// Debian's Chromium, headless, through playwright-core (pinned in
// package-lock.json beside this file) running browse.mjs, against the
// whole stack through the real ingress (Envoy, mTLS, extauthz). It saves a
// screenshot of every screen each role sees in bin/console-screenshots/
// (docs/console.md shows them).
package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/test/harness"
)

var fixture = flag.Bool("console.fixture", false, "drive the console against canned APIs (fixture_test.go) instead of the whole stack: only to develop browse.mjs quickly")

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// browserConfig is browse.mjs's configuration (see its header).
type browserConfig struct {
	Base       string              `json:"base"`
	ClientCert *clientCert         `json:"clientCert"`
	Chromium   string              `json:"chromium"`
	Shots      string              `json:"shots"`
	Users      map[string]roleUser `json:"users"`
	Explorer   *explorerCase       `json:"explorer,omitempty"`
	Playground *playgroundCase     `json:"playground,omitempty"`
	DLQ        *dlqCase            `json:"dlq,omitempty"`
	TimeoutMs  int                 `json:"timeoutMs"`
	// Fixture says the APIs are canned: checks of what only the real
	// policy decides are left out.
	Fixture bool `json:"fixture,omitempty"`
}

type dlqCase struct {
	Role string `json:"role"`
}

type clientCert struct {
	CertPath string `json:"certPath"`
	KeyPath  string `json:"keyPath"`
}

type roleUser struct {
	Subject string   `json:"subject"`
	Screens []string `json:"screens"`
}

type explorerCase struct {
	Role string `json:"role"`
	// Persisted, when set, is the name of a persisted operation to load
	// from the list (its document must be Query); else Query is typed.
	Persisted string `json:"persisted,omitempty"`
	Query     string `json:"query"`
	Expect    string `json:"expect"`
}

type playgroundCase struct {
	Role      string `json:"role"`
	Subject   string `json:"subject"`
	Operation string `json:"operation"`
	File      string `json:"file"`
	Append    string `json:"append"`
}

// roleScreens is what each role may see (docs/console.md, policies/data/roles.json).
var roleScreens = map[string][]string{
	"admin":    {"explorer", "playground", "decisions", "observers", "quotas"},
	"operator": {"explorer", "decisions", "observers", "quotas"},
	"security": {"explorer", "playground", "decisions"},
	"viewer":   {"explorer", "decisions", "quotas"},
}

// chromiumPath finds Debian's Chromium. Where it is missing but apt-get
// could install it, the test fails saying how; only where it cannot be
// installed at all does the test skip.
func chromiumPath(t *testing.T) string {
	t.Helper()
	// Debian's /usr/bin/chromium is a shell wrapper; the browser itself
	// is beside its libraries.
	for _, p := range []string{"/usr/lib/chromium/chromium", "/usr/lib/chromium-browser/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no Chromium here and no apt-get to install Debian's: the console's browser tests need one (make deps installs it on Debian)")
	}
	t.Fatal("no Chromium: run make deps (it installs Debian's chromium)")
	return ""
}

// nodeReady checks node and playwright-core (test/console/node_modules).
func nodeReady(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("no node: run make deps")
	}
	if _, err := os.Stat("node_modules/playwright-core/package.json"); err != nil {
		t.Fatal("no playwright-core in test/console/node_modules: run make deps")
	}
}

// shotsDir is where the screenshots go: bin/<name> at the repository's
// root, emptied first.
func shotsDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("../../bin", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runBrowser runs browse.mjs with cfg and fails t on each failed check,
// logging every line the script prints, and returns those lines.
func runBrowser(t *testing.T, cfg browserConfig) []string {
	t.Helper()
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "browse.mjs")
	cmd.Env = append(os.Environ(), "CONSOLE_CONFIG="+path)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); pw.Close() }()
	var fails, lines []string
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		lines = append(lines, line)
		if strings.HasPrefix(line, "console: FAIL ") {
			fails = append(fails, strings.TrimPrefix(line, "console: FAIL "))
		}
	}
	err = <-done
	for _, f := range fails {
		t.Error(f)
	}
	var exit *exec.ExitError
	if err != nil && (len(fails) == 0 || !errors.As(err, &exit)) {
		t.Errorf("browse.mjs: %v", err)
	}
	t.Logf("screenshots: %s", cfg.Shots)
	return lines
}

// TestConsoleFixture drives the browser against canned APIs; it runs only
// with -console.fixture, to develop the browser script without the stack.
func TestConsoleFixture(t *testing.T) {
	if !*fixture {
		t.Skip("only with -console.fixture: TestConsole is the test that counts")
	}
	chromium := chromiumPath(t)
	nodeReady(t)
	srv := startFixture(t)
	users := map[string]roleUser{}
	for _, u := range fixtureUsers {
		users[u.Role] = roleUser{Subject: u.Subject, Screens: u.Screens}
	}
	runBrowser(t, browserConfig{
		Base: srv.URL + "/console/", Chromium: chromium, Shots: shotsDir(t, "console-screenshots-fixture"), Users: users, TimeoutMs: 15000, Fixture: true,
		Explorer:   &explorerCase{Role: "viewer", Persisted: "RecentOrders", Query: "query RecentOrders { orders { id total } }", Expect: "12.5"},
		Playground: &playgroundCase{Role: "security", Subject: "vera", Operation: "mutation createOrder", File: "authz.rego", Append: "\n# allow it\n"},
		DLQ:        &dlqCase{Role: "operator"},
	})
}
