// Package observability_test lints deploy/observability: the rules'
// PromQL and the Grafana dashboard's. It is a module of its own so that
// Prometheus' PromQL parser, and the dependencies it brings, stay out of
// Fraise's go.mod; deploy/dev/promtool.sh runs it in make test.
package observability_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v2"
)

// documentedMetrics returns the metrics of docs/metrics.md's table, by
// name, with their types.
func documentedMetrics(tb testing.TB) map[string]string {
	tb.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
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

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record string `yaml:"record"`
			Alert  string `yaml:"alert"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func mustRules(tb testing.TB, name string) ruleFile {
	tb.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		tb.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return f
}

// metricNames returns the metric names expr selects, or its parse error.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, nil
}

// known reports whether name is a documented metric (a histogram's
// _bucket, _sum and _count series included), a recording rule, or a series
// Prometheus itself writes (up).
func known(name string, documented map[string]string, recorded map[string]bool) bool {
	if documented[name] != "" || recorded[name] || name == "up" {
		return true
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, s); ok && documented[base] == "histogram" {
			return true
		}
	}
	// The Go runtime's and the process's collectors, which every process
	// exports (docs/metrics.md says so instead of listing them).
	return strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "go_")
}

// TestRulesNameDocumentedMetrics checks that every recording and alerting
// rule parses as PromQL and reads only metrics docs/metrics.md lists (or
// recording rules), and that every alert is explained there and has a
// firing case in alerts_test.yml: promtool runs the tests it is given,
// not the ones missing.
func TestRulesNameDocumentedMetrics(t *testing.T) {
	documented := documentedMetrics(t)
	rules, alerts := mustRules(t, "rules.yml"), mustRules(t, "alerts.yml")
	recorded := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			recorded[r.Record] = true
		}
	}
	doc, _ := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	tests, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var alertNames []string
	for _, f := range []ruleFile{rules, alerts} {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				name := r.Record + r.Alert
				names, err := metricNames(r.Expr)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				for _, n := range names {
					if !known(n, documented, recorded) {
						t.Errorf("%s reads %s, which docs/metrics.md does not list", name, n)
					}
				}
				if r.Alert != "" {
					alertNames = append(alertNames, r.Alert)
				}
			}
		}
	}
	if len(alertNames) == 0 {
		t.Fatal("alerts.yml: no alert")
	}
	firing := regexp.MustCompile(`alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:`)
	tested := map[string]bool{}
	for _, m := range firing.FindAllStringSubmatch(string(tests), -1) {
		tested[m[1]] = true
	}
	for _, a := range alertNames {
		if !strings.Contains(string(doc), "| `"+a+"` |") {
			t.Errorf("%s: not in docs/metrics.md's alerts table", a)
		}
		if !tested[a] {
			t.Errorf("%s: alerts_test.yml never shows it firing", a)
		}
	}
}

type dashboardPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashboardPanel `json:"panels"`
}

// TestDashboard lints the Grafana dashboard: every panel reads the
// Prometheus data source the dashboard asks for, and every target's
// expression parses as PromQL and names only metrics docs/metrics.md lists
// or recording rules of rules.yml.
func TestDashboard(t *testing.T) {
	documented := documentedMetrics(t)
	recorded := map[string]bool{}
	for _, g := range mustRules(t, "rules.yml").Groups {
		for _, r := range g.Rules {
			recorded[r.Record] = true
		}
	}
	b, err := os.ReadFile(filepath.Join("dashboards", "fraise.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string           `json:"title"`
		UID    string           `json:"uid"`
		Panels []dashboardPanel `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard: got title %q uid %q, want both", d.Title, d.UID)
	}
	var ids []int
	var walk func(ps []dashboardPanel)
	queries := 0
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			ids = append(ids, p.ID)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Title == "" {
				t.Errorf("panel %d: no title", p.ID)
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: got data source %+v, want the dashboard's Prometheus variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				names, err := metricNames(tg.Expr)
				if err != nil {
					t.Errorf("panel %q, query %s: %v", p.Title, tg.RefID, err)
					continue
				}
				for _, n := range names {
					if !known(n, documented, recorded) {
						t.Errorf("panel %q, query %s reads %s, which docs/metrics.md does not list", p.Title, tg.RefID, n)
					}
				}
			}
		}
	}
	walk(d.Panels)
	slices.Sort(ids)
	if len(slices.Compact(ids)) != len(ids) {
		t.Errorf("panel ids repeat: %v", ids)
	}
	if queries == 0 {
		t.Fatal("dashboard: no query")
	}
}
