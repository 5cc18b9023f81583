package e2e_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/stack"
)

// httpGet GETs url and returns the status and body.
func httpGet(tb testing.TB, c *http.Client, url string) (int, string) {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// TestEnvoyAdmin checks that Envoy's admin interface serves health and
// metrics for the stack, and that the ingress routes neither.
func TestEnvoyAdmin(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("whole-stack test")
	}
	s := stack.Start(t)
	admin := s.Addrs.EnvoyAdmin
	// One request allowed, one refused, so the ingress's counters moved.
	tok := s.Token(t, demo.TenantAcme, "alice", "viewer")
	if status, _, g := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", map[string]string{"Authorization": "Bearer " + tok}); status != http.StatusOK {
		t.Fatalf("got status %d errors %+v, want 200", status, g.Errors)
	}
	if status, _, _ := stack.Post(t, s.Client, s.Addrs.Gateway, "{ users { id } }", nil); status != http.StatusUnauthorized {
		t.Fatalf("got status %d without a token, want 401", status)
	}

	t.Run("/ready answers LIVE", func(t *testing.T) {
		status, body := httpGet(t, http.DefaultClient, "http://"+admin+"/ready")
		if status != http.StatusOK || strings.TrimSpace(body) != "LIVE" {
			t.Fatalf("got %d %q, want 200 LIVE", status, body)
		}
	})

	t.Run("/stats/prometheus carries the ingress's counters", func(t *testing.T) {
		status, body := httpGet(t, http.DefaultClient, "http://"+admin+"/stats/prometheus")
		if status != http.StatusOK {
			t.Fatalf("got status %d, want 200", status)
		}
		for _, c := range []struct {
			name, series string
			min          float64
		}{
			{"requests", `envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress"}`, 2},
			{"2xx answers", `envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress"}`, 1},
			{"ext_authz allowed", `envoy_http_ext_authz_ok{envoy_http_conn_manager_prefix="ingress"}`, 1},
			{"ext_authz denied", `envoy_http_ext_authz_denied{envoy_http_conn_manager_prefix="ingress"}`, 1},
			{"ratelimit under the limit", `envoy_cluster_ratelimit_ok{envoy_cluster_name="core_http"}`, 1},
			{"extauthz cluster's requests", `envoy_cluster_upstream_rq_total{envoy_cluster_name="extauthz"}`, 2},
			{"ratelimit cluster's requests", `envoy_cluster_upstream_rq_total{envoy_cluster_name="ratelimit"}`, 1},
		} {
			if got := stack.MetricValue(body, c.series); got < c.min {
				t.Errorf("%s: got %s = %v, want at least %v", c.name, c.series, got, c.min)
			}
		}
		if t.Failed() {
			t.Logf("the exposition's ingress, ext_authz and ratelimit lines:\n%s", grepLines(body, "ingress", "ext_authz", "ratelimit"))
		}
	})

	t.Run("neither is reachable through the ingress", func(t *testing.T) {
		for _, path := range []string{"/ready", "/stats/prometheus", "/stats", "/server_info"} {
			status, body := httpGet(t, s.Client, "https://"+s.Addrs.Gateway+path)
			if status != http.StatusNotFound || !strings.Contains(body, "NOT_FOUND") {
				t.Errorf("GET %s through the ingress: got %d %.80q, want 404 NOT_FOUND", path, status, body)
			}
		}
	})
}

// grepLines returns the lines of a Prometheus exposition, comments
// left out, that contain one of subs.
func grepLines(text string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
