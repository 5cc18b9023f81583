package e2e_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// documentedMetric is a row of docs/metrics.md's table.
type documentedMetric struct {
	name, typ string
	labels    []string
	processes []string
}

// readMetricsDoc returns the rows of docs/metrics.md's metrics table.
func readMetricsDoc(tb testing.TB) []documentedMetric {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		tb.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_0-9]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|[^|]*\\|([^|]+)\\|$")
	var rows []documentedMetric
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		d := documentedMetric{name: m[1], typ: m[2]}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				d.labels = append(d.labels, l)
			}
		}
		for _, p := range strings.Split(m[4], ",") {
			d.processes = append(d.processes, strings.TrimSpace(p))
		}
		rows = append(rows, d)
	}
	if len(rows) == 0 {
		tb.Fatal("docs/metrics.md: no metric rows: the table's format changed")
	}
	return rows
}

// scrape GETs a Prometheus text exposition and parses it.
func scrape(tb testing.TB, url string) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("scrape %s: got status %d, want 200", url, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	return mfs
}

// TestMetricsDocumented runs the whole stack (Envoy on the xDS bootstrap,
// observers on), sends traffic through it, scrapes every process and
// compares what each exports with docs/metrics.md's table: every
// documented metric is exported by each process the table names, with
// the documented type and no label the table does not list, and every
// fraise_* and ratelimit_* metric a process exports is documented.
func TestMetricsDocumented(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	doc := readMetricsDoc(t)
	s := stack.StartWith(t, stack.Options{XDS: true, TOML: "\n[observers]\nenabled = true\n", PerTenant: 3})

	// Traffic: reads allowed and then over the tenant's budget (3 a
	// minute), a request refused for want of a token, and a Flight call.
	tok := s.Token(t, demo.TenantAcme, "alice", "analyst")
	auth := map[string]string{"Authorization": "Bearer " + tok}
	var codes []int
	for range 4 {
		status, _, _ := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", auth)
		codes = append(codes, status)
	}
	if !slices.Contains(codes, http.StatusOK) || !slices.Contains(codes, http.StatusTooManyRequests) {
		t.Fatalf("got statuses %v, want 200s and then 429 (budget 3 a minute)", codes)
	}
	if status, _, _ := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", nil); status != http.StatusUnauthorized {
		t.Fatalf("got status %d without a token, want 401", status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Another tenant's budget: Acme's is spent.
	ftok := s.Token(t, demo.TenantGlobex, "carol", "analyst")
	st, err := s.FlightClient(t, s.Addrs.Gateway).ListFlights(stack.Bearer(ctx, ftok), &flight.Criteria{})
	if err != nil {
		t.Fatalf("ListFlights: %v", err)
	}
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Logf("ListFlights: %v (counted all the same)", err)
			}
			break
		}
	}

	urls := map[string]string{
		"server":    "http://" + s.Addrs.CoreAdmin + "/metrics",
		"extauthz":  "http://" + s.Addrs.AuthzAdmin + "/metrics",
		"ratelimit": "http://" + s.Addrs.RateLimitAdmin + "/metrics",
		"xds":       "http://" + s.Addrs.XDSAdmin + "/metrics",
		"envoy":     "http://" + s.Addrs.EnvoyAdmin + "/stats/prometheus",
	}
	scraped := map[string]map[string]*dto.MetricFamily{}
	for p, u := range urls {
		if strings.HasPrefix(u, "http:///") || strings.HasPrefix(u, "http://:") {
			t.Fatalf("%s: fraise dev reported no admin address (%s)", p, u)
		}
		scraped[p] = scrape(t, u)
	}

	documented := map[string]bool{}
	for _, d := range doc {
		documented[d.name] = true
		for _, p := range d.processes {
			mfs, ok := scraped[p]
			if !ok {
				t.Errorf("%s: docs/metrics.md names process %q, which is none of %v", d.name, p, slices.Sorted(maps.Keys(urls)))
				continue
			}
			mf, ok := mfs[d.name]
			if !ok {
				t.Errorf("%s: documented, but %s does not export it", d.name, p)
				continue
			}
			if got := strings.ToLower(mf.GetType().String()); got != d.typ {
				t.Errorf("%s (%s): got type %s, docs/metrics.md says %s", d.name, p, got, d.typ)
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if !slices.Contains(d.labels, l.GetName()) {
						t.Errorf("%s (%s): got label %s, docs/metrics.md lists %v", d.name, p, l.GetName(), d.labels)
					}
				}
			}
		}
	}
	for p, mfs := range scraped {
		for name := range mfs {
			if (strings.HasPrefix(name, "fraise_") || strings.HasPrefix(name, "ratelimit_")) && !documented[name] {
				t.Errorf("%s exports %s, which docs/metrics.md does not list", p, name)
			}
		}
	}
}
