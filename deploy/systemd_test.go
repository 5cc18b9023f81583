package deploy_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// unit is a systemd unit file: section → key → values in order (keys such
// as SystemCallFilter may repeat), plus its comments.
type unit struct {
	sections map[string]map[string][]string
	comments string
}

func (u unit) get(section, key string) (string, bool) {
	vs := u.sections[section][key]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

func parseUnit(text string) (unit, error) {
	u := unit{sections: map[string]map[string][]string{}}
	var section string
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
			u.comments += line + "\n"
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if u.sections[section] == nil {
				u.sections[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				return u, fmt.Errorf("line %d: %q is no key=value in a section", n, line)
			}
			u.sections[section][k] = append(u.sections[section][k], v)
		}
	}
	return u, sc.Err()
}

const systemdDir = "systemd"

func mustParseUnit(tb testing.TB, name string) unit {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(systemdDir, name))
	if err != nil {
		tb.Fatal(err)
	}
	u, err := parseUnit(string(data))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return u
}

// mustLoadUnit parses the unit as systemd loads it for name (a unit, or
// an instance of a template such as fraise@serve.service): the unit file,
// then the drop-ins of its name's .d directory in order, whose values
// follow the file's (a list setting such as LoadCredential= grows, a
// single one is replaced: get returns the last).
func mustLoadUnit(tb testing.TB, name string) unit {
	tb.Helper()
	file := name
	if prefix, rest, ok := strings.Cut(name, "@"); ok {
		_, suffix, _ := strings.Cut(rest, ".")
		file = prefix + "@." + suffix
	}
	u := mustParseUnit(tb, file)
	dirs := []string{file + ".d"}
	if file != name {
		dirs = append(dirs, name+".d")
	}
	for _, dir := range dirs {
		dropins, _ := filepath.Glob(filepath.Join(systemdDir, dir, "*.conf"))
		slices.Sort(dropins)
		for _, p := range dropins {
			d := mustParseUnit(tb, filepath.Join(dir, filepath.Base(p)))
			for section, keys := range d.sections {
				if u.sections[section] == nil {
					u.sections[section] = map[string][]string{}
				}
				for k, vs := range keys {
					u.sections[section][k] = append(u.sections[section][k], vs...)
				}
			}
			u.comments += d.comments
		}
	}
	return u
}

// environment returns the variables the unit's Environment= lines set
// (one NAME=value each, as the units here write them).
func (u unit) environment() func(string) string {
	env := map[string]string{}
	for _, e := range u.sections["Service"]["Environment"] {
		if k, v, ok := strings.Cut(e, "="); ok {
			env[k] = v
		}
	}
	return func(k string) string { return env[k] }
}

// credentials returns the unit's LoadCredential= settings, ID → source.
func (u unit) credentials() map[string]string {
	creds := map[string]string{}
	for _, c := range u.sections["Service"]["LoadCredential"] {
		id, src, _ := strings.Cut(c, ":")
		creds[id] = src
	}
	return creds
}

func TestParseUnitRejects(t *testing.T) {
	tests := []struct{ name, text string }{
		{"key outside a section", "User=fraise\n[Service]\n"},
		{"no equals sign", "[Service]\nNoNewPrivileges\n"},
		{"continuation line", "[Service]\nExecStart=/bin/true \\\n  --flag\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseUnit(tt.text); err == nil {
				t.Errorf("parseUnit(%q) accepted it", tt.text)
			}
		})
	}
}

// hardened are the [Service] settings every unit here must carry (User:
// fraise, or envoy for Envoy's).
var hardened = map[string]string{
	"NoNewPrivileges":         "true",
	"CapabilityBoundingSet":   "",
	"AmbientCapabilities":     "",
	"ProtectSystem":           "strict",
	"ProtectHome":             "true",
	"PrivateTmp":              "true", // ratelimit writes its limits under $TMPDIR
	"PrivateDevices":          "true",
	"RestrictSUIDSGID":        "true",
	"SystemCallArchitectures": "native",
	"SystemCallErrorNumber":   "EPERM",
	// Every file a process reads comes from its credentials directory,
	// which systemd fills from the root-only sources before dropping
	// privileges: the process never sees the others.
	"WorkingDirectory":  "%d",
	"InaccessiblePaths": credentialSources,
}

// credentialSources is where the credentials' sources live: root-only,
// read by systemd alone.
const credentialSources = "/etc/fraise/credentials"

func checkHardened(t *testing.T, name, user string, u unit) {
	t.Helper()
	for k, want := range hardened {
		if got, ok := u.get("Service", k); !ok || got != want {
			t.Errorf("%s: %s=%q, want %q", name, k, got, want)
		}
	}
	if got, _ := u.get("Service", "User"); got != user {
		t.Errorf("%s: User=%q, want %q", name, got, user)
	}
	if fams, _ := u.get("Service", "RestrictAddressFamilies"); !strings.Contains(fams, "AF_INET") || strings.Contains(fams, "AF_PACKET") {
		t.Errorf("%s: RestrictAddressFamilies=%q", name, fams)
	}
	exec, _ := u.get("Service", "ExecStart")
	args := strings.Fields(exec)
	i := slices.Index(args, "--config")
	if user == "envoy" {
		i = slices.Index(args, "-c")
	}
	if i < 0 || i+1 >= len(args) {
		t.Errorf("%s: ExecStart %q names no configuration", name, exec)
		return
	}
	if ro, _ := u.get("Service", "ReadOnlyPaths"); !strings.HasPrefix(args[i+1], strings.TrimSuffix(ro, "/")+"/") {
		t.Errorf("%s: the configuration %s is not under ReadOnlyPaths=%s", name, args[i+1], ro)
	}
}

func TestSystemdProcessUnit(t *testing.T) {
	u := mustParseUnit(t, "fraise@.service")
	checkHardened(t, "fraise@.service", "fraise", u)
	exec, _ := u.get("Service", "ExecStart")
	args := strings.Fields(exec)
	if len(args) < 2 || args[0] != "/usr/local/bin/fraise" || args[1] != "%i" {
		t.Fatalf("ExecStart=%q: want /usr/local/bin/fraise %%i ...", exec)
	}
	// The instances the header documents are real subcommands whose flags
	// parse.
	instances := map[string]bool{}
	for _, m := range regexp.MustCompile(`fraise@([a-z]+)`).FindAllStringSubmatch(u.comments, -1) {
		instances[m[1]] = true
	}
	for _, want := range []string{"serve", "authz", "ratelimit", "xds"} {
		if !instances[want] {
			t.Errorf("the header does not document fraise@%s", want)
		}
	}
	for inst := range instances {
		a := slices.Clone(args[1:])
		a[0] = inst
		mustRunHelp(t, a)
	}
	// SIGTERM drains; systemd must wait longer than the longest drain.
	if sig, _ := u.get("Service", "KillSignal"); sig != "SIGTERM" {
		t.Errorf("KillSignal=%s, want SIGTERM", sig)
	}
	stop, _ := u.get("Service", "TimeoutStopSec")
	secs, err := strconv.Atoi(stop)
	deployed := mustLoadConfig(t, filepath.Join(systemdDir, "fraise.toml"), func(string) string { return "" })
	for _, cmd := range []string{config.CommandServe, config.CommandAuthz, config.CommandRateLimit, config.CommandXDS, config.CommandMigrate} {
		checkRequired(t, "deploy/systemd fraise@"+cmd, cmd, deployed, config.ProfileProduction)
	}
	for _, d := range []config.Config{config.Default(), deployed} {
		drain := max(d.Server.DrainDelay.Duration+d.Server.ShutdownTimeout.Duration, d.Authz.DrainDelay.Duration+d.Authz.ShutdownTimeout.Duration)
		if err != nil || time.Duration(secs)*time.Second <= drain {
			t.Errorf("TimeoutStopSec=%s must exceed the longest drain %s", stop, drain)
		}
	}
	// GOMEMLIMIT sits below MemoryMax, so the GC works before the kernel
	// kills.
	var gomem string
	for _, e := range u.sections["Service"]["Environment"] {
		if v, ok := strings.CutPrefix(e, "GOMEMLIMIT="); ok {
			gomem = v
		}
	}
	g, err := parseGoMemLimit(gomem)
	maxStr, _ := u.get("Service", "MemoryMax")
	m, err2 := parseSystemdBytes(maxStr)
	if err != nil || err2 != nil || g >= m || g < m*7/10 {
		t.Errorf("GOMEMLIMIT=%q must be 70-99%% of MemoryMax=%q", gomem, maxStr)
	}
	if after, _ := u.get("Unit", "After"); !strings.Contains(after, "fraise-migrate.service") {
		t.Errorf("After=%q: the processes must start after the migrations", after)
	}
}

// parseSystemdBytes parses a MemoryMax value: bytes with an optional K, M,
// G or T (binary multiples).
func parseSystemdBytes(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = v, m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

func TestSystemdMigrateUnit(t *testing.T) {
	u := mustParseUnit(t, "fraise-migrate.service")
	checkHardened(t, "fraise-migrate.service", "fraise", u)
	if typ, _ := u.get("Service", "Type"); typ != "oneshot" {
		t.Errorf("Type=%s, want oneshot", typ)
	}
	exec, _ := u.get("Service", "ExecStart")
	args := strings.Fields(exec)
	if len(args) < 2 || args[0] != "/usr/local/bin/fraise" || args[1] != "migrate" {
		t.Fatalf("ExecStart=%q: want /usr/local/bin/fraise migrate ...", exec)
	}
	mustRunHelp(t, args[1:])
}

// TestSystemdCredentials: each unit loads, as credentials, exactly the
// files its process reads per deploy/systemd/fraise.toml, which names them
// relative to the working directory, the credentials directory (%d): one
// fraise.toml serves every unit, Envoy included, each reading its own
// copies. Only Envoy's listener and the operator-free ports leave loopback.
func TestSystemdCredentials(t *testing.T) {
	file := filepath.Join(systemdDir, "fraise.toml")
	for _, tt := range []struct{ unit, cmd, user string }{
		{"fraise@serve.service", "serve", "fraise"},
		{"fraise@authz.service", "authz", "fraise"},
		{"fraise@ratelimit.service", "ratelimit", "fraise"},
		{"fraise@xds.service", "xds", "fraise"},
		{"fraise-migrate.service", "migrate", "fraise"},
		{"fraise-envoy.service", "envoy", "envoy"},
	} {
		t.Run(tt.unit, func(t *testing.T) {
			u := mustLoadUnit(t, tt.unit)
			checkHardened(t, tt.unit, tt.user, u)
			cfg := mustLoadConfig(t, file, u.environment())
			creds := u.credentials()
			read := map[string]bool{}
			for key, ref := range reads(tt.cmd, cfg) {
				if strings.HasPrefix(ref, "env://") {
					continue // from EnvironmentFile=, root-only
				}
				p := strings.TrimPrefix(ref, "file://")
				if filepath.IsAbs(p) || strings.Contains(p, "/") {
					t.Errorf("%s: %s = %s: want a credential's name, read from the credentials directory", tt.unit, key, p)
					continue
				}
				read[p] = true
				if _, ok := creds[p]; !ok {
					t.Errorf("%s: %s = %s, which the unit does not load (LoadCredential=%s:%s/...)", tt.unit, key, p, p, credentialSources)
				}
			}
			for _, id := range sortedKeys(creds) {
				if !read[id] {
					t.Errorf("%s: LoadCredential=%s, which the process never reads", tt.unit, id)
				}
				if src := creds[id]; !strings.HasPrefix(src, credentialSources+"/") {
					t.Errorf("%s: LoadCredential=%s:%s: want a source under %s", tt.unit, id, src, credentialSources)
				}
			}
			checkOperatorPorts(t, tt.unit, tt.cmd, cfg)
			for key, addr := range listens(tt.cmd, cfg) {
				if host, _ := portOf(t, key, addr); !isLoopback(host) && key != "gateway.listen_addr" {
					t.Errorf("%s: %s = %q: on one host, only Envoy's listener leaves loopback", tt.unit, key, addr)
				}
			}
		})
	}
}

// TestSystemdEnvoy: fraise-envoy.service runs Envoy on the bootstrap `make
// generate` writes from deploy/systemd/fraise.toml, which presents the
// gateway certificate; so does what fraise@xds serves.
func TestSystemdEnvoy(t *testing.T) {
	file := filepath.Join(systemdDir, "fraise.toml")
	checkBootstrapCurrent(t, filepath.Join(systemdDir, "bootstrap-xds.yaml"), file)
	boot, err := os.ReadFile(filepath.Join(systemdDir, "bootstrap-xds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustLoadConfig(t, file, func(string) string { return "" })
	checkBootstrap(t, boot, cfg)
	xdsEnv := mustLoadUnit(t, "fraise@xds.service").environment()
	served := mustGenerateBootstrap(t, file, xdsEnv, "--out")
	checkEnvoyTLS(t, "deploy/systemd", boot, served, mustLoadConfig(t, file, xdsEnv))

	u := mustLoadUnit(t, "fraise-envoy.service")
	exec, _ := u.get("Service", "ExecStart")
	args := strings.Fields(exec)
	if len(args) == 0 || filepath.Base(args[0]) != "envoy" {
		t.Fatalf("ExecStart=%q: want envoy", exec)
	}
	i := slices.Index(args, "-c")
	if i < 0 || i+1 >= len(args) || filepath.Base(args[i+1]) != "bootstrap-xds.yaml" {
		t.Errorf("ExecStart=%q: want -c .../bootstrap-xds.yaml", exec)
	}
	if !strings.Contains(u.comments, "deploy/systemd/bootstrap-xds.yaml "+args[i+1]) {
		t.Errorf("the unit's header must say how %s is installed", args[i+1])
	}
	if after, _ := u.get("Unit", "After"); !strings.Contains(after, "fraise@xds.service") {
		t.Errorf("After=%q: Envoy takes its configuration from fraise@xds", after)
	}
}
