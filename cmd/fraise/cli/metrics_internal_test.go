package cli

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
