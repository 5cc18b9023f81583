package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsDocListsEveryMetric checks docs/metrics.md's table lists
// every fraise_* metric the code registers, so what operators are told to
// monitor does not drift from what the processes expose (test/e2e's
// TestMetricsDocumented checks the other way, against running processes).
func TestMetricsDocListsEveryMetric(t *testing.T) {
	documented := documentedMetrics(t)
	name := regexp.MustCompile(`Name:\s*"(fraise_[a-z0-9_]+)"`)
	found := map[string]string{}
	for _, dir := range []string{"adapters", "core", "extauthz", "cmd", "envoy"} {
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
		if documented[m] == "" {
			t.Errorf("%s (registered in %s) is not in docs/metrics.md's table", m, p)
		}
	}
}

// documentedMetrics returns the metrics of docs/metrics.md's table, by
// name, with their types.
func documentedMetrics(tb testing.TB) map[string]string {
	tb.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		tb.Fatal(err)
	}
	// The metrics table's rows name a type; the backup table's (metrics
	// written for node_exporter) do not, and count as documented too.
	row := regexp.MustCompile("(?m)^\\| `([a-z_:0-9]+)` \\|( (counter|gauge|histogram) \\|)?")
	m := map[string]string{}
	for _, r := range row.FindAllStringSubmatch(string(doc), -1) {
		if !strings.HasPrefix(r[1], "fraise_") && !strings.HasPrefix(r[1], "ratelimit_") && !strings.HasPrefix(r[1], "envoy_") {
			continue // an alert's name, or a configuration key
		}
		m[r[1]] = r[3]
		if m[r[1]] == "" {
			m[r[1]] = "gauge"
		}
	}
	if len(m) == 0 {
		tb.Fatal("docs/metrics.md: no metric rows: the table's format changed")
	}
	return m
}
