package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDeploymentDocMetrics checks docs/deployment.md lists every fraise_*
// metric the code registers, so what operators are told to monitor does
// not drift from what the processes expose.
func TestDeploymentDocMetrics(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "deployment.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`Name:\s*"(fraise_[a-z0-9_]+)"`)
	found := map[string]string{}
	for _, dir := range []string{"adapters", "core", "extauthz", "cmd"} {
		err := filepath.WalkDir(filepath.Join("..", dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			src, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range name.FindAllStringSubmatch(string(src), -1) {
				found[m[1]] = p
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(found) == 0 {
		t.Fatal("found no fraise_* metric in the code: the pattern is stale")
	}
	for m, p := range found {
		if !strings.Contains(string(doc), "`"+m+"`") {
			t.Errorf("%s (registered in %s) is not in docs/deployment.md", m, p)
		}
	}
}
