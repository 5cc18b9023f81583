package envoy_test

// Envoy's own validation (`envoy --mode validate`) of every configuration
// Fraise writes: the bootstraps envoy.Build generates and the copies
// checked in for deploy/envoy, deploy/compose and deploy/k8s. Proto
// validation (Resources.Validate, ValidateAll) checks each field on its
// own; Envoy also loads the certificates, resolves the clusters routes
// name and parses the addresses, which only it can vouch for.

import (
	"bytes"
	"context"
	"fmt"
	"github.com/BurntSushi/toml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/fraise-dev/fraise/adapters/devcerts"
	"github.com/fraise-dev/fraise/envoy"
	"github.com/fraise-dev/fraise/envoy/envoytest"
	"github.com/fraise-dev/fraise/envoy/process"
)

// envoyValidate runs `envoy --mode validate` on the bootstrap y and returns
// Envoy's verdict: nil when it reports the configuration OK.
func envoyValidate(tb testing.TB, y []byte) error {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, envoytest.Bin(tb), "--mode", "validate", "-c", path,
		"--disable-hot-restart", "--concurrency", "1", "--log-level", "error").CombinedOutput()
	if err != nil {
		return fmt.Errorf("envoy --mode validate: %w: %s", err, bytes.TrimSpace(out))
	}
	if !bytes.Contains(out, []byte("OK")) {
		return fmt.Errorf("envoy --mode validate said %q, not OK", bytes.TrimSpace(out))
	}
	return nil
}

// validOptions are options whose every file exists: devcerts in a
// temporary directory. Every address is one Envoy can parse.
func validOptions(tb testing.TB) (envoy.Options, devcerts.Files) {
	tb.Helper()
	certs, err := devcerts.Generate(filepath.Join(tb.TempDir(), "certs"), devcerts.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return envoy.Options{
		ListenAddr: "0.0.0.0:8443", AdminAddr: "127.0.0.1:9901",
		CoreHTTPAddr: "127.0.0.1:8080", CoreFlightAddr: "core:8815",
		AuthzAddr: "127.0.0.1:9191", RateLimitAddr: "ratelimit:8081",
		CACert: certs.CACert, ServerCert: certs.ServerCert, ServerKey: certs.ServerKey,
		UpstreamCA: certs.CACert, UpstreamCert: certs.GatewayCert, UpstreamKey: certs.GatewayKey,
		OTLPEndpoint: "127.0.0.1:4317", TraceSamplePercent: 10, XDSAddr: "xds:18000",
	}, certs
}

func mustYAML(tb testing.TB, b *bootstrapv3.Bootstrap, err error) []byte {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
	if err := envoy.ValidateDeep(b); err != nil {
		tb.Fatalf("proto validation refuses the bootstrap: %v", err)
	}
	y, err := envoy.BootstrapYAML(b)
	if err != nil {
		tb.Fatal(err)
	}
	return y
}

func TestEnvoyValidatesGeneratedBootstraps(t *testing.T) {
	t.Parallel()
	o, _ := validOptions(t)
	noFlight := o
	noFlight.CoreFlightAddr, noFlight.OTLPEndpoint = "", ""
	for _, tt := range []struct {
		name string
		o    envoy.Options
	}{{"every option", o}, {"no Flight, no tracing", noFlight}} {
		res := mustBuild(t, tt.o)
		if err := res.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, b := range []struct {
			name  string
			build func() (*bootstrapv3.Bootstrap, error)
		}{{"static", res.Bootstrap}, {"xDS", res.XDSBootstrap}} {
			t.Run(tt.name+", "+b.name, func(t *testing.T) {
				t.Parallel()
				bs, err := b.build()
				if err := envoyValidate(t, mustYAML(t, bs, err)); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// checkedInBootstraps are the generated files deployments run, by path
// from the repository's root, each with the fraise.toml it is generated
// from (whose [tls] section names the certificate files it reads): the
// static and xDS bootstraps of deploy/envoy, the one Compose mounts (the
// xDS one, today), and the Kubernetes and systemd ones.
func checkedInBootstraps(tb testing.TB, root string) map[string]string {
	tb.Helper()
	files := map[string]string{
		"deploy/envoy/envoy.yaml":           "deploy/envoy/fraise.toml",
		"deploy/envoy/bootstrap-xds.yaml":   "deploy/envoy/fraise.toml",
		"deploy/k8s/envoy-bootstrap.yaml":   "deploy/k8s/fraise.toml",
		"deploy/systemd/bootstrap-xds.yaml": "deploy/systemd/fraise.toml",
	}
	// Compose mounts its bootstrap into the Envoy container from the host.
	compose, err := os.ReadFile(filepath.Join(root, "deploy/compose/compose.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`"([^":]+\.yaml):/etc/envoy/[^"]*"`).FindSubmatch(compose)
	if m == nil {
		tb.Fatal("deploy/compose/compose.yaml mounts no Envoy bootstrap under /etc/envoy")
	}
	rel, err := filepath.Rel(root, filepath.Join(root, "deploy/compose", string(m[1])))
	if err != nil {
		tb.Fatal(err)
	}
	if rel = filepath.ToSlash(rel); files[rel] == "" {
		tb.Fatalf("Compose mounts %s, which no fraise.toml here generates", rel)
	}
	return files
}

var filenameLine = regexp.MustCompile(`^(\s*filename: )(\S+)$`)

// certFiles maps each certificate path the [tls] section of the
// fraise.toml at tomlPath names to the development file of the same role
// in certs: a deployment's paths do not exist on this machine.
func certFiles(tb testing.TB, tomlPath string, certs devcerts.Files) map[string]string {
	tb.Helper()
	var cfg struct {
		TLS map[string]any `toml:"tls"`
	}
	if _, err := toml.DecodeFile(tomlPath, &cfg); err != nil {
		tb.Fatal(err)
	}
	roles := map[string]string{
		"ca": certs.CACert, "server_cert": certs.ServerCert, "server_key": certs.ServerKey,
		"client_cert": certs.ClientCert, "client_key": certs.ClientKey,
		"gateway_cert": certs.GatewayCert, "gateway_key": certs.GatewayKey,
		"core_client_cert": certs.CoreClientCert, "core_client_key": certs.CoreClientKey,
	}
	m := map[string]string{}
	for key, file := range roles {
		if p, ok := cfg.TLS[key].(string); ok && p != "" {
			m[p] = file
		}
	}
	return m
}

// withCertsIn rewrites every certificate file y names to the development
// file of the same role (files, from certFiles) and checks that the
// rewrite changed those paths and nothing else.
func withCertsIn(tb testing.TB, y []byte, files map[string]string) []byte {
	tb.Helper()
	lines := strings.Split(string(y), "\n")
	out := make([]string, len(lines))
	rewritten := 0
	for i, l := range lines {
		out[i] = l
		m := filenameLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		p, ok := files[m[2]]
		if !ok {
			tb.Fatalf("line %d names %s, which the deployment's [tls] section does not", i+1, m[2])
		}
		out[i] = m[1] + p
		rewritten++
	}
	if rewritten == 0 {
		tb.Fatal("no certificate path to rewrite")
	}
	// Only paths changed: the same lines, each either equal or a filename
	// line whose value alone differs.
	for i := range lines {
		if lines[i] == out[i] {
			continue
		}
		a, b := filenameLine.FindStringSubmatch(lines[i]), filenameLine.FindStringSubmatch(out[i])
		if a == nil || b == nil || a[1] != b[1] {
			tb.Fatalf("line %d: rewriting paths changed %q to %q", i+1, lines[i], out[i])
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func TestEnvoyValidatesCheckedInBootstraps(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := process.RepoRoot(wd)
	_, certs := validOptions(t)
	for f, tomlPath := range checkedInBootstraps(t, root) {
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			y, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				t.Fatal(err)
			}
			b, err := envoy.ParseBootstrapYAML(y)
			if err != nil {
				t.Fatalf("%s does not parse: %v", f, err)
			}
			if err := envoy.ValidateDeep(b); err != nil {
				t.Fatalf("proto validation refuses %s: %v", f, err)
			}
			if err := envoyValidate(t, withCertsIn(t, y, certFiles(t, filepath.Join(root, tomlPath), certs))); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		})
	}
}

// TestEnvoyRefusesWhatProtoValidationAccepts: configurations every proto
// validation rule accepts and Envoy refuses to load. Each is first shown
// to pass Resources.Validate and ValidateDeep, then refused by
// `envoy --mode validate` for the reason named.
func TestEnvoyRefusesWhatProtoValidationAccepts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		opts    func(*envoy.Options, devcerts.Files)
		breakIt func(*testing.T, *envoy.Resources)
		want    string
	}{
		{name: "server certificate that does not exist", opts: func(o *envoy.Options, c devcerts.Files) {
			o.ServerCert = filepath.Join(filepath.Dir(c.CACert), "no-such-server.pem")
		}, want: "no-such-server.pem"},
		{name: "server key of another certificate", opts: func(o *envoy.Options, c devcerts.Files) {
			o.ServerKey = c.GatewayKey
		}, want: "KEY_VALUES_MISMATCH"},
		{name: "upstream CA that does not exist", opts: func(o *envoy.Options, c devcerts.Files) {
			o.UpstreamCA = filepath.Join(filepath.Dir(c.CACert), "no-such-ca.pem")
		}, want: "no-such-ca.pem"},
		{name: "route to a cluster that does not exist", breakIt: func(t *testing.T, res *envoy.Resources) {
			routesOf(res)["graphql"].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "core_htp"}
		}, want: "unknown cluster 'core_htp'"},
		// What Build refuses in its options, should it get through some
		// other way.
		{name: "listener address a host name", breakIt: func(t *testing.T, res *envoy.Resources) {
			res.Listeners[0].GetAddress().GetSocketAddress().Address = "localhost"
		}, want: "malformed IP address: localhost"},
		{name: "negative route timeout", breakIt: func(t *testing.T, res *envoy.Resources) {
			routesOf(res)["graphql"].GetRoute().Timeout = durationpb.New(-time.Second)
		}, want: "negative"},
		{name: "negative connection idle timeout", breakIt: func(t *testing.T, res *envoy.Resources) {
			f := res.Listeners[0].GetFilterChains()[0].GetFilters()[1]
			h := hcmOf(t, res)
			h.GetCommonHttpProtocolOptions().IdleTimeout = durationpb.New(-time.Second)
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}
		}, want: "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, certs := validOptions(t)
			if tt.opts != nil {
				tt.opts(&o, certs)
			}
			res := mustBuild(t, o)
			if tt.breakIt != nil {
				tt.breakIt(t, res)
			}
			if err := res.Validate(); err != nil {
				t.Fatalf("proto validation refuses it already: %v", err)
			}
			b, err := res.Bootstrap()
			y := mustYAML(t, b, err)
			err = envoyValidate(t, y)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want Envoy's refusal naming %q", err, tt.want)
			}
		})
	}
}
