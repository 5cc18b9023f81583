package config_test

import (
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

func TestObserversValidation(t *testing.T) {
	tests := []struct {
		name, toml, want string
	}{
		{"unknown policy", "[observers]\nbackpressure = \"drop\"", "observers.backpressure"},
		{"reclaim shorter than a timeout", "[observers]\nreclaim_idle = \"5s\"", "observers.reclaim_idle"},
		{"tenant share above the pool", "[observers]\nworkers = 4\nper_tenant = 8", "observers.per_tenant"},
		{"backoff cap above five minutes", "[observers]\nbackoff_cap = \"10m\"", "observers.backoff_cap"},
		{"smtp without a port", "[observers.smtp]\naddr = \"mail\"", "observers.smtp.addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(mustFile(t, tt.toml), func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
	cfg, err := config.Load("", func(k string) string {
		if k == "FRAISE_OBSERVERS_BACKPRESSURE" {
			return "fail-fast"
		}
		return ""
	})
	if err != nil || cfg.Observers.Backpressure != "fail-fast" {
		t.Fatalf("environment override: got %q %v", cfg.Observers.Backpressure, err)
	}
}
