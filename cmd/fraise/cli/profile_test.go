package cli_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
)

// TestProductionRefusesToStartWithoutItsSettings: a server command with
// no configuration stops before it listens, naming each missing key; fraise
// dev runs the dev profile only.
func TestProductionRefusesToStartWithoutItsSettings(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{[]string{"serve"}, nil, []string{"fraise serve in the production profile needs", "database.url", "server.schema"}},
		{[]string{"authz"}, nil, []string{"fraise authz", "authz.assertion_key", "authz.issuers"}},
		{[]string{"ratelimit"}, nil, []string{"fraise ratelimit", "redis.addr"}},
		{[]string{"xds"}, nil, []string{"fraise xds", "tls.gateway_cert"}},
		{[]string{"migrate"}, nil, []string{"fraise migrate", "database.admin_url"}},
		{[]string{"serve", "--profile", "production"}, map[string]string{"FRAISE_PROFILE": "dev"}, []string{"production profile needs", "server.schema"}},
		{[]string{"dev", "--profile", "production"}, nil, []string{"fraise dev runs the dev profile only"}},
		{[]string{"dev"}, map[string]string{"FRAISE_PROFILE": "production"}, []string{"fraise dev runs the dev profile only"}},
		{[]string{"serve", "--profile", "staging"}, nil, []string{"want dev or production"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			err := cli.Run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, io.Discard, io.Discard)
			if err == nil {
				t.Fatal("started; want a refusal")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %v\nwant it to name %q", err, w)
				}
			}
		})
	}
}
