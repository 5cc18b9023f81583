package policies_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/extauthz/policy"
	"github.com/fraise-dev/fraise/policies"
)

// TestRego runs the folder's Rego tests through the API behind
// `fraise policy test`, so `go test ./...` fails when a policy test fails.
func TestRego(t *testing.T) {
	rep, err := policy.Test(context.Background(), policies.FS)
	for _, r := range rep.Results {
		if !r.Pass {
			t.Errorf("%s:%d: %s.%s failed: %s%s", r.File, r.Row, r.Package, r.Name, r.Err, r.Output)
		}
	}
	if err != nil {
		t.Fatalf("got error %v, want none", err)
	}
	t.Logf("%d Rego tests passed (revision %s)", rep.Passed, rep.Revision)
}

// TestCheck compiles the folder strictly, as `fraise policy check` does.
func TestCheck(t *testing.T) {
	if err := policy.Check(policies.FS); err != nil {
		t.Fatalf("got error %v, want none", err)
	}
}

// TestFS pins what the embedded folder holds, so a renamed file cannot
// silently drop out of the binary.
func TestFS(t *testing.T) {
	for _, name := range []string{"authz.rego", "authz_test.rego", "data/roles.json"} {
		b, err := fs.ReadFile(policies.FS, name)
		if err != nil {
			t.Fatalf("got error %v reading %s, want the file", err, name)
		}
		if len(strings.TrimSpace(string(b))) == 0 {
			t.Errorf("got an empty %s, want content", name)
		}
	}
}
