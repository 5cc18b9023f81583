package cli

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/extauthz"
)

// TestUpGauge: the gauge the store-down alerts read is 1 when the ping
// answers, 0 when it fails or does not answer within a second.
func TestUpGauge(t *testing.T) {
	tests := []struct {
		name string
		ping func(context.Context) error
		want float64
	}{
		{"answers", func(context.Context) error { return nil }, 1},
		{"fails", func(context.Context) error { return errors.New("connection refused") }, 0},
		{"does not answer", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testutil.ToFloat64(upGauge("fraise_test_up", "test", tt.ping)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAuthzMetricsCountErrorsByCode checks extauthz's outcomes reach
// fraise_errors_total by code: denials and failures, not allowed checks.
func TestAuthzMetricsCountErrorsByCode(t *testing.T) {
	m := newAuthzMetrics()
	m.observe(extauthz.Outcome{Result: extauthz.OutcomeAllow, Status: 200})
	m.observe(extauthz.Outcome{Result: extauthz.OutcomeDeny, Status: 401, Code: core.CodeUnauthenticated})
	m.observe(extauthz.Outcome{Result: extauthz.OutcomeError, Status: 500, Code: core.CodeInternal})
	for _, c := range core.Codes() {
		want := 0.0
		if c == core.CodeUnauthenticated || c == core.CodeInternal {
			want = 1
		}
		if got := testutil.ToFloat64(m.errors.WithLabelValues("extauthz", string(c))); got != want {
			t.Errorf("got fraise_errors_total{transport=extauthz,code=%s} %v, want %v", c, got, want)
		}
	}
}
