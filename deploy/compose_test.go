package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

const composeDir = "compose"

// composeFile is the part of the Compose specification deploy/compose
// uses, decoded strictly: a misspelt key (depends_on's "conditon") fails
// here rather than being ignored by docker compose.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]struct{}       `json:"volumes"`
	Secrets  map[string]struct {
		File string `json:"file"`
	} `json:"secrets"`
}

type composeService struct {
	Image           string            `json:"image"`
	User            string            `json:"user"`
	Entrypoint      []string          `json:"entrypoint"`
	Command         []string          `json:"command"`
	Environment     map[string]string `json:"environment"`
	MemLimit        string            `json:"mem_limit"`
	Volumes         []string          `json:"volumes"`
	Secrets         []string          `json:"secrets"`
	Ports           []string          `json:"ports"`
	Tmpfs           []string          `json:"tmpfs"`
	ReadOnly        bool              `json:"read_only"`
	CapDrop         []string          `json:"cap_drop"`
	SecurityOpt     []string          `json:"security_opt"`
	StopGracePeriod string            `json:"stop_grace_period"`
	Restart         string            `json:"restart"`
	Healthcheck     *struct {
		Test     []string `json:"test"`
		Interval string   `json:"interval"`
		Timeout  string   `json:"timeout"`
		Retries  int      `json:"retries"`
	} `json:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
}

func mustLoadCompose(tb testing.TB) composeFile {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(composeDir, "compose.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var f composeFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		tb.Fatalf("compose.yaml: %v", err)
	}
	return f
}

// composeMount returns the host path mounted at target, if any.
func composeMount(s composeService, target string) (string, bool) {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0], true
		}
	}
	return "", false
}

func TestComposeServices(t *testing.T) {
	f := mustLoadCompose(t)
	tomlPath := filepath.Join(composeDir, "fraise.toml")
	shared := mustLoadConfig(t, tomlPath, func(string) string { return "" })
	seen := map[string]bool{}
	for _, name := range sortedKeys(f.Services) {
		s := f.Services[name]
		for dep, d := range s.DependsOn {
			target, ok := f.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on unknown service %s", name, dep)
			case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, d.Condition):
				t.Errorf("%s depends on %s with condition %q", name, dep, d.Condition)
			case d.Condition == "service_healthy" && target.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			case d.Condition == "service_completed_successfully" && target.Restart != "no":
				t.Errorf("%s waits for %s to complete, which is not a one-shot (restart: \"no\")", name, dep)
			}
		}
		for _, sec := range s.Secrets {
			if _, ok := f.Secrets[sec]; !ok {
				t.Errorf("%s uses undeclared secret %s", name, sec)
			}
		}
		if s.Image != "fraise" && !strings.HasPrefix(s.Image, "envoyproxy/envoy:") {
			continue
		}
		if !s.ReadOnly || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: want read_only, cap_drop [ALL] and no-new-privileges", name)
		}
		if s.Image != "fraise" {
			seen["envoy"] = true
			checkEnvoyImage(t, name, s.Image)
			if host, ok := composeMount(s, "/etc/envoy/bootstrap-xds.yaml"); !ok || filepath.Clean(filepath.Join(composeDir, host)) != filepath.Join("envoy", "bootstrap-xds.yaml") {
				t.Errorf("%s: must mount deploy/envoy/bootstrap-xds.yaml at /etc/envoy/bootstrap-xds.yaml", name)
			}
			boot, err := os.ReadFile(filepath.Join("envoy", "bootstrap-xds.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			checkBootstrap(t, boot, shared)
			// What the xds service serves, built from the same fraise.toml.
			xdsEnv := func(k string) string { return f.Services["xds"].Environment[k] }
			served := mustGenerateBootstrap(t, tomlPath, xdsEnv, "--out")
			checkEnvoyTLS(t, "deploy/compose", boot, served, mustLoadConfig(t, tomlPath, xdsEnv))
			checkOperatorPorts(t, name, "envoy", shared)
			for key, p := range reads("envoy", shared) {
				if err := composeHasFile(s, p); err != nil {
					t.Errorf("%s: %s: %v", name, key, err)
				}
			}
			args := strings.Join(append(slices.Clone(s.Entrypoint), s.Command...), " ")
			if !strings.Contains(args, "-c /etc/envoy/bootstrap-xds.yaml") {
				t.Errorf("%s runs %q, not the xDS bootstrap", name, args)
			}
			_, listen := portOf(t, "gateway.listen_addr", shared.Gateway.ListenAddr)
			if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+strconv.Itoa(int(listen))) }) {
				t.Errorf("%s publishes %v, not gateway.listen_addr's port %d", name, s.Ports, listen)
			}
			continue
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no command", name)
			continue
		}
		cmd := s.Command[0]
		seen[cmd] = true
		mustRunHelp(t, s.Command)
		i := slices.Index(s.Command, "--config")
		if i < 0 || i+1 >= len(s.Command) {
			continue
		}
		if host, ok := composeMount(s, s.Command[i+1]); !ok || host != "./fraise.toml" {
			t.Errorf("%s: --config %s is not ./fraise.toml mounted", name, s.Command[i+1])
		}
		profile := ""
		if i := slices.Index(s.Command, "--profile"); i >= 0 && i+1 < len(s.Command) {
			profile = s.Command[i+1]
		}
		env := func(k string) string {
			if k == "FRAISE_PROFILE" {
				return profile
			}
			return s.Environment[k]
		}
		cfg := mustLoadConfig(t, tomlPath, env)
		checkRequired(t, name, cmd, cfg, config.ProfileDev)
		if cmd != "migrate" {
			lim, err := parseComposeBytes(s.MemLimit)
			gomem, err2 := parseGoMemLimit(s.Environment["GOMEMLIMIT"])
			if err != nil || err2 != nil || gomem >= lim || gomem < lim*7/10 {
				t.Errorf("%s: GOMEMLIMIT %q must be 70-99%% of mem_limit %q", name, s.Environment["GOMEMLIMIT"], s.MemLimit)
			}
		}
		// Docker's SIGKILL must not cut the drain short.
		drain := map[string]time.Duration{
			"serve": cfg.Server.DrainDelay.Duration + cfg.Server.ShutdownTimeout.Duration,
			"authz": cfg.Authz.DrainDelay.Duration + cfg.Authz.ShutdownTimeout.Duration,
		}[cmd]
		if grace, err := time.ParseDuration(s.StopGracePeriod); drain > 0 && (err != nil || grace <= drain) {
			t.Errorf("%s: stop_grace_period %q must exceed the drain delay plus the shutdown timeout (%s)", name, s.StopGracePeriod, drain)
		}
		checkOperatorPorts(t, name, cmd, cfg)
		// Each process binds its own service name or all interfaces.
		for key, addr := range listens(cmd, cfg) {
			if host, _ := portOf(t, key, addr); host != name && host != "0.0.0.0" && !isLoopback(host) {
				t.Errorf("%s: %s = %q binds neither %s nor 0.0.0.0", name, key, addr, name)
			}
		}
		// Healthchecks ask an HTTP port the process listens on.
		if s.Healthcheck != nil {
			var u *url.URL
			for _, a := range s.Healthcheck.Test {
				if strings.HasPrefix(a, "http://") {
					u, _ = url.Parse(a)
				}
			}
			if u == nil || !slices.Contains(s.Healthcheck.Test, "wget") {
				t.Errorf("%s: healthcheck %v is no wget of an http:// URL", name, s.Healthcheck.Test)
			} else if !isLoopback(u.Hostname()) {
				// A healthcheck runs in the container: its ports need not
				// open beyond loopback for it.
				t.Errorf("%s: healthcheck %s asks beyond the container's loopback", name, u)
			} else {
				var ok bool
				for _, addr := range listens(cmd, cfg) {
					if _, p := portOf(t, "", addr); strconv.Itoa(int(p)) == u.Port() {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s: healthcheck port %s is none of the ports it listens on", name, u.Port())
				}
			}
		}
		// Secret files and certificates: Compose secrets the service has,
		// or under a mounted directory.
		for key, ref := range reads(cmd, cfg) {
			if err := composeHasFile(s, strings.TrimPrefix(ref, "file://")); err != nil {
				t.Errorf("%s: %s: %v", name, key, err)
			}
		}
	}
	for _, want := range []string{"serve", "authz", "ratelimit", "xds", "migrate", "envoy"} {
		if !seen[want] {
			t.Errorf("no service runs %s", want)
		}
	}
	redisAddr, _ := shared.Redis.Endpoint()
	for _, dep := range []struct{ key, addr string }{
		{"server.http_addr", shared.Server.HTTPAddr}, {"server.flight_addr", shared.Server.FlightAddr},
		{"authz.grpc_addr", shared.Authz.GRPCAddr}, {"ratelimit.grpc_addr", shared.RateLimit.GRPCAddr},
		{"xds.grpc_addr", shared.XDS.GRPCAddr}, {"redis.addr", redisAddr},
	} {
		if host, _ := portOf(t, dep.key, dep.addr); f.Services[host].Image == "" {
			t.Errorf("%s = %q: no service %q", dep.key, dep.addr, host)
		}
	}
	for _, key := range secretKeys {
		for _, cmd := range []string{"serve", "authz", "ratelimit", "migrate"} {
			if v := reads(cmd, shared)[key]; v != "" && !config.IsReference(v) {
				t.Errorf("%s is a literal; use a file:// reference to a Compose secret", key)
			}
		}
	}
	// The CA's key signs any certificate, the gateway's included: no
	// service may see it, whole directories of credentials included.
	for name, sec := range f.Secrets {
		if filepath.Base(sec.File) == "ca-key.pem" {
			t.Errorf("secret %s is the CA's key", name)
		}
	}
	for _, name := range sortedKeys(f.Services) {
		for _, v := range f.Services[name].Volumes {
			if host, _, _ := strings.Cut(v, ":"); strings.HasPrefix(filepath.Clean(host), ".dev") {
				t.Errorf("%s mounts %s: give it the files it reads as secrets instead", name, host)
			}
		}
	}
	// The core waits for migrations, as an upgrade must.
	if f.Services["core"].DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Error("core must depend on migrate completing successfully")
	}
}

// TestComposeDataStoresTLSOnly: the PostgreSQL and Redis of deploy/compose
// accept no plaintext connection, and verify clients against the CA whose
// certificates Fraise presents to them ([database.tls], [redis.tls]).
func TestComposeDataStoresTLSOnly(t *testing.T) {
	f := mustLoadCompose(t)
	cfg := mustLoadConfig(t, filepath.Join(composeDir, "fraise.toml"), func(string) string { return "" })
	args := func(name string) string { return " " + strings.Join(f.Services[name].Command, " ") + " " }
	pg := args("postgres")
	for _, want := range []string{" ssl=on ", " ssl_cert_file=/run/secrets/", " ssl_key_file=/run/secrets/", " ssl_ca_file=" + cfg.Database.TLS.CA + " "} {
		if !strings.Contains(pg, want) {
			t.Errorf("postgres runs %q, want %q in it", pg, want)
		}
	}
	hba, err := os.ReadFile(filepath.Join(composeDir, "initdb", "20-tls-only.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hostssl all all all scram-sha-256 clientcert=verify-ca", "host    all all all reject"} {
		if !strings.Contains(string(hba), want) {
			t.Errorf("initdb/20-tls-only.sh: want the pg_hba.conf line %q", want)
		}
	}
	_, port := portOf(t, "redis.addr", func() string { a, _ := cfg.Redis.Endpoint(); return a }())
	rd := args("redis")
	for _, want := range []string{" --port 0 ", fmt.Sprintf(" --tls-port %d ", port), " --tls-auth-clients yes ", " --tls-ca-cert-file " + cfg.Redis.TLS.CA + " "} {
		if !strings.Contains(rd, want) {
			t.Errorf("redis runs %q, want %q in it", rd, want)
		}
	}
	for _, name := range []string{"postgres", "redis"} {
		for _, p := range strings.Fields(args(name)) {
			if sec, ok := strings.CutPrefix(p, "/run/secrets/"); ok && !slices.Contains(f.Services[name].Secrets, sec) {
				t.Errorf("%s reads %s, a secret it does not have", name, p)
			}
		}
	}
}

// composeHasFile says whether the service can read the file at p: a
// Compose secret it has (/run/secrets/<name>), or a file under a directory
// it mounts.
func composeHasFile(s composeService, p string) error {
	if sec, ok := strings.CutPrefix(p, "/run/secrets/"); ok {
		if !slices.Contains(s.Secrets, sec) {
			return fmt.Errorf("%s: the service does not have secret %s", p, sec)
		}
		return nil
	}
	if !slices.ContainsFunc(s.Volumes, func(v string) bool {
		parts := strings.Split(v, ":")
		return len(parts) >= 2 && strings.HasPrefix(p, strings.TrimSuffix(parts[1], "/")+"/")
	}) {
		return fmt.Errorf("%s is under no volume", p)
	}
	return nil
}

// parseGoMemLimit parses GOMEMLIMIT's syntax: bytes with an optional
// B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// parseComposeBytes parses Compose's byte values: a number with an
// optional b, k, m or g (binary multiples), as in mem_limit: 512m.
func parseComposeBytes(s string) (int64, error) {
	mult := int64(1)
	s = strings.TrimSuffix(strings.ToLower(s), "b")
	for suffix, m := range map[string]int64{"k": 1 << 10, "m": 1 << 20, "g": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

func TestComposeByteUnits(t *testing.T) {
	tests := []struct {
		name, compose, gomem string
		compose64, gomem64   int64
	}{
		{"mebibytes", "512m", "450MiB", 512 << 20, 450 << 20},
		{"gibibytes", "2g", "2GiB", 2 << 30, 2 << 30},
		{"bytes", "1048576", "1048576", 1 << 20, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseComposeBytes(tt.compose)
			g, err2 := parseGoMemLimit(tt.gomem)
			if err != nil || err2 != nil || c != tt.compose64 || g != tt.gomem64 {
				t.Errorf("parse(%q, %q) = %d, %d (%v, %v)", tt.compose, tt.gomem, c, g, err, err2)
			}
		})
	}
}

func TestComposeDecodeRejectsTypos(t *testing.T) {
	var f composeFile
	err := yaml.UnmarshalStrict([]byte("services:\n  core:\n    depends_on:\n      migrate: {conditon: service_healthy}\n"), &f)
	if err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("UnmarshalStrict = %v, want an unknown field error", err)
	}
}

// TestEnvoyConfigMatchesCompose: deploy/envoy/fraise.toml, from which the
// checked-in bootstraps are generated, says it uses deploy/compose's
// addresses; every upstream Envoy reaches must be the one compose serves,
// or `envoy -c deploy/envoy/envoy.yaml` sends that traffic elsewhere (its
// Flight cluster once went to Envoy's own loopback).
func TestEnvoyConfigMatchesCompose(t *testing.T) {
	none := func(string) string { return "" }
	ev := mustLoadConfig(t, filepath.Join("envoy", "fraise.toml"), none)
	co := mustLoadConfig(t, filepath.Join(composeDir, "fraise.toml"), none)
	for _, c := range []struct{ what, envoy, compose string }{
		{"server.http_addr", ev.Server.HTTPAddr, co.Server.HTTPAddr},
		{"server.flight_addr", ev.Server.FlightAddr, co.Server.FlightAddr},
		{"authz.grpc_addr", ev.Authz.GRPCAddr, co.Authz.GRPCAddr},
		{"ratelimit.grpc_addr", ev.RateLimit.GRPCAddr, co.RateLimit.GRPCAddr},
		{"xds.grpc_addr", ev.XDS.GRPCAddr, co.XDS.GRPCAddr},
		{"xds.node_id", ev.XDS.NodeID, co.XDS.NodeID},
		{"gateway.listen_addr", ev.Gateway.ListenAddr, co.Gateway.ListenAddr},
		{"tls.server_name", ev.TLS.ServerName, co.TLS.ServerName},
		// The bootstraps name these files: where Envoy's service finds them.
		{"tls.ca", ev.TLS.CA, co.TLS.CA},
		{"tls.server_cert", ev.TLS.ServerCert, co.TLS.ServerCert},
		{"tls.server_key", ev.TLS.ServerKey, co.TLS.ServerKey},
		{"tls.gateway_cert", ev.TLS.GatewayCert, co.TLS.GatewayCert},
		{"tls.gateway_key", ev.TLS.GatewayKey, co.TLS.GatewayKey},
		{"server.tls", strconv.FormatBool(ev.Server.TLS), strconv.FormatBool(co.Server.TLS)},
	} {
		if c.envoy != c.compose {
			t.Errorf("%s: deploy/envoy/fraise.toml has %q, deploy/compose/fraise.toml %q", c.what, c.envoy, c.compose)
		}
	}
}
