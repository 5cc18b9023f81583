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

func mustParseUnit(tb testing.TB, name string) unit {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("systemd", name))
	if err != nil {
		tb.Fatal(err)
	}
	u, err := parseUnit(string(data))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return u
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

// hardened are the [Service] settings every Fraise unit must carry.
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
	"User":                    "fraise",
}

func checkHardened(t *testing.T, name string, u unit) {
	t.Helper()
	for k, want := range hardened {
		if got, ok := u.get("Service", k); !ok || got != want {
			t.Errorf("%s: %s=%q, want %q", name, k, got, want)
		}
	}
	if fams, _ := u.get("Service", "RestrictAddressFamilies"); !strings.Contains(fams, "AF_INET") || strings.Contains(fams, "AF_PACKET") {
		t.Errorf("%s: RestrictAddressFamilies=%q", name, fams)
	}
	exec, _ := u.get("Service", "ExecStart")
	args := strings.Fields(exec)
	i := slices.Index(args, "--config")
	if i < 0 || i+1 >= len(args) {
		t.Errorf("%s: ExecStart %q has no --config", name, exec)
		return
	}
	if ro, _ := u.get("Service", "ReadOnlyPaths"); !strings.HasPrefix(args[i+1], strings.TrimSuffix(ro, "/")+"/") {
		t.Errorf("%s: the configuration %s is not under ReadOnlyPaths=%s", name, args[i+1], ro)
	}
}

func TestSystemdProcessUnit(t *testing.T) {
	u := mustParseUnit(t, "fraise@.service")
	checkHardened(t, "fraise@.service", u)
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
	d := config.Default()
	drain := max(d.Core.DrainDelay.Duration+d.Core.ShutdownTimeout.Duration, d.Authz.DrainDelay.Duration+d.Authz.ShutdownTimeout.Duration)
	if err != nil || time.Duration(secs)*time.Second <= drain {
		t.Errorf("TimeoutStopSec=%s must exceed the longest default drain %s", stop, drain)
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
	checkHardened(t, "fraise-migrate.service", u)
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
