package cli_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/envoy"
)

// TestCheckedInBootstrapsAreCurrent regenerates deploy/envoy's bootstraps
// from deploy/envoy/fraise.toml and fails when the checked-in files differ:
// a change to the Envoy configuration must come with `make generate`.
func TestCheckedInBootstrapsAreCurrent(t *testing.T) {
	deploy := filepath.Join("..", "..", "..", "deploy", "envoy")
	dir := t.TempDir()
	var out bytes.Buffer
	err := cli.Run(context.Background(), []string{"envoy", "bootstrap", "--config", filepath.Join(deploy, "fraise.toml"), "--dir", dir},
		func(string) string { return "" }, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"envoy.yaml", "bootstrap-xds.yaml"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(deploy, name))
		if err != nil {
			t.Fatalf("%v (run make generate)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("deploy/envoy/%s is stale: run make generate", name)
		}
		// What is checked in is what Envoy would load.
		b, err := envoy.ParseBootstrapYAML(got)
		if err != nil {
			t.Fatalf("deploy/envoy/%s: %v", name, err)
		}
		if err := envoy.ValidateDeep(b); err != nil {
			t.Fatalf("deploy/envoy/%s: %v", name, err)
		}
	}
}

func TestEnvoyBootstrapUsage(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"no subcommand", []string{"envoy"}},
		{"dir with out", []string{"envoy", "bootstrap", "--dir", "x", "--out", "y"}},
		{"stray argument", []string{"envoy", "bootstrap", "extra"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := cli.Run(context.Background(), tt.args, func(string) string { return "" }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "usage") {
				t.Fatalf("got %v, want the usage", err)
			}
		})
	}
}

func TestEnvoyBootstrapToStdout(t *testing.T) {
	var out bytes.Buffer
	if err := cli.Run(context.Background(), []string{"envoy", "bootstrap", "--profile", "dev", "--xds-out", "-"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, err := envoy.ParseBootstrapYAML(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName(); got != envoy.ClusterXDS {
		t.Fatalf("got ADS cluster %q, want %q", got, envoy.ClusterXDS)
	}
}
