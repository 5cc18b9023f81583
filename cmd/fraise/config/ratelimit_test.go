package config_test

import (
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestRateLimitOperatorPorts checks that the rate limiter's HTTP port
// (POST /json spends any tenant's limits) and its debug port (pprof) are
// off unless asked for, and only ever on loopback (security #13, defect 10).
func TestRateLimitOperatorPorts(t *testing.T) {
	if d := config.Default().RateLimit; d.HTTPAddr != "" || d.DebugAddr != "" {
		t.Errorf("got default http_addr %q and debug_addr %q, want both empty (off)", d.HTTPAddr, d.DebugAddr)
	}
	tests := []struct {
		name    string
		file    string
		wantErr []string // empty: valid
	}{
		{name: "off", file: "[ratelimit]\nhttp_addr = \"\"\ndebug_addr = \"\"\n"},
		{name: "IPv4 loopback", file: "[ratelimit]\nhttp_addr = \"127.0.0.1:8082\"\ndebug_addr = \"127.0.0.1:6070\"\n"},
		{name: "IPv6 loopback and localhost", file: "[ratelimit]\nhttp_addr = \"[::1]:8082\"\ndebug_addr = \"localhost:6070\"\n"},
		{
			name:    "every interface",
			file:    "[ratelimit]\nhttp_addr = \"0.0.0.0:8082\"\ndebug_addr = \":6070\"\n",
			wantErr: []string{"ratelimit.http_addr: want a loopback address", "ratelimit.debug_addr: want a loopback address"},
		},
		{
			name:    "a routable address and a name",
			file:    "[ratelimit]\nhttp_addr = \"10.0.0.5:8082\"\ndebug_addr = \"ratelimit:6070\"\n",
			wantErr: []string{"ratelimit.http_addr: want a loopback address", "ratelimit.debug_addr: want a loopback address"},
		},
		{
			name:    "not an address",
			file:    "[ratelimit]\nhttp_addr = \"8082\"\n",
			wantErr: []string{"ratelimit.http_addr: want host:port"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(mustFile(t, tt.file), envOf(nil))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want one naming %v", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
