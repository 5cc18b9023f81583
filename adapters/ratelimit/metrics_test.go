package ratelimit_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/fraise-dev/fraise/test/harness"
)

// TestMetrics checks that envoyproxy/ratelimit's own stats reach a
// Prometheus registry, named by Prometheus' conventions, with the
// descriptor path the configuration names (never a request's tenant or
// subject) as the label.
func TestMetrics(t *testing.T) {
	rd := harness.StartRedis(t)
	reg := prometheus.NewPedanticRegistry()
	o := tiers()
	o.Metrics = reg
	c, _ := mustService(t, rd.Addr, o)
	for range 3 {
		ask(t, c, desc("tier", "default", "tenant", "t1", "op", "write"))
	}
	tests := []struct {
		name   string
		family string
		labels map[string]string
		want   float64
	}{
		{"hits", "ratelimit_service_rate_limit_total_hits_total", map[string]string{"domain": "fraise", "descriptor": "tier.tenant.op_write"}, 3},
		{"within", "ratelimit_service_rate_limit_within_limit_total", map[string]string{"domain": "fraise", "descriptor": "tier.tenant.op_write"}, 1},
		{"over", "ratelimit_service_rate_limit_over_limit_total", map[string]string{"domain": "fraise", "descriptor": "tier.tenant.op_write"}, 2},
		{"requests", "ratelimit_server_requests_total", map[string]string{"grpc_method": "ShouldRateLimit"}, 3},
		{"config loaded", "ratelimit_service_config_loads_total", map[string]string{"result": "success"}, 1},
		{"response time", "ratelimit_server_response_time_seconds", map[string]string{"grpc_method": "ShouldRateLimit"}, 3},
		{"shadow mode, at zero", "ratelimit_service_rate_limit_shadow_mode_total", map[string]string{"domain": "fraise", "descriptor": "tier.tenant.op_write"}, 0},
		{"redis errors, at zero", "ratelimit_service_should_rate_limit_errors_total", map[string]string{"type": "redis_error"}, 0},
		{"config errors, at zero", "ratelimit_service_config_loads_total", map[string]string{"result": "error"}, 0},
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sample(mfs, tt.family, tt.labels)
			if !ok {
				t.Fatalf("no %s%v among %d families", tt.family, tt.labels, len(mfs))
			}
			if got != tt.want {
				t.Errorf("%s%v: got %v, want %v", tt.family, tt.labels, got, tt.want)
			}
		})
	}
	// A second scrape adds nothing that did not happen: counters arrive
	// from the store as deltas.
	if got := testutil.CollectAndCount(reg, "ratelimit_server_requests_total"); got != 1 {
		t.Errorf("ratelimit_server_requests_total series: got %d, want 1", got)
	}
	mfs, _ = reg.Gather()
	if got, _ := sample(mfs, "ratelimit_server_requests_total", map[string]string{"grpc_method": "ShouldRateLimit"}); got != 3 {
		t.Errorf("requests after a second scrape: got %v, want 3", got)
	}
}

// sample returns the value (a histogram's count) of the series of family
// with labels.
func sample(mfs []*dto.MetricFamily, family string, labels map[string]string) (float64, bool) {
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}
