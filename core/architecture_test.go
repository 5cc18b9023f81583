package core_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/fraise-dev/fraise/"

// goList runs `go list` with a format over patterns.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}

// TestCoreStaysInward fails when the domain reaches an outer layer: the core
// must be testable without adapters, transports or Envoy's types.
func TestCoreStaysInward(t *testing.T) {
	forbidden := []string{
		module + "adapters", module + "extauthz", module + "envoy", module + "cmd", module + "test",
		module + "policies", module + "deploy",
		"github.com/jackc/pgx", "github.com/redis/go-redis", "github.com/envoyproxy/",
		"google.golang.org/grpc", "net/http",
	}
	for _, dep := range goList(t, "-deps", "../core/...") {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) {
				t.Errorf("core depends on %s", dep)
			}
		}
	}
}

// TestAdaptersAreIndependent fails when one adapter imports another: a
// layered adapter depends on a port in core, never on a sibling.
func TestAdaptersAreIndependent(t *testing.T) {
	lines := goList(t, "-f", "{{.ImportPath}}={{join .Imports \",\"}}", "../adapters/...")
	for _, line := range lines {
		pkg, imports, _ := strings.Cut(line, "=")
		own := adapterOf(pkg)
		for _, imp := range strings.Split(imports, ",") {
			if other := adapterOf(imp); other != "" && other != own {
				t.Errorf("adapter %s imports adapter %s (%s)", own, other, imp)
			}
		}
	}
}

// adapterOf returns the adapter a package belongs to, or "".
func adapterOf(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module+"adapters/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}
