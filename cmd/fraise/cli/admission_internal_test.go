package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/internal/admission"
)

// TestLoadConfigLogsRenamedKeys checks that a key set under its old name
// is logged at start, once, as a warning naming the old and the new key,
// and that the value is in force under both names ([core] still loads,
// for the wiring that reads cfg.Core until it moves to cfg.Server).
func TestLoadConfigLogsRenamedKeys(t *testing.T) {
	for _, tt := range []struct {
		name     string
		file     string
		check    func(config.Config) bool
		old, use string // the warning's key and use
	}{
		{name: "flight.max_exports", file: "[flight]\nmax_exports = 3\n",
			check: func(c config.Config) bool { return c.Admission.Flight.MaxConcurrent == 3 },
			old:   "flight.max_exports", use: "admission.flight.max_concurrent"},
		{name: "[core]", file: "[core]\nhttp_addr = \"127.0.0.1:7000\"\n",
			check: func(c config.Config) bool {
				return c.Server.HTTPAddr == "127.0.0.1:7000" && c.Core.HTTPAddr == "127.0.0.1:7000"
			},
			old: "core", use: "server"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fraise.toml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			env := Env{Stderr: &stderr, Stdout: &bytes.Buffer{}, Getenv: func(k string) string {
				if k == "FRAISE_PROFILE" {
					return "dev"
				}
				return ""
			}}
			cfg, _, err := loadConfig(path, env)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("got admission %+v, server %+v; want the old key's value", cfg.Admission, cfg.Server)
			}
			out := stderr.String()
			if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, "key="+tt.old+" ") ||
				!strings.Contains(out, "use="+tt.use) || !strings.Contains(out, "deprecated") {
				t.Errorf("got log %q, want one warning naming %s and %s", out, tt.old, tt.use)
			}
		})
	}
}

// TestAdmittersFromConfig checks that admitters builds each class's
// controller from its own keys of [admission], and counts all of them in
// one set of metrics.
func TestAdmittersFromConfig(t *testing.T) {
	c := config.Default().Admission
	c.MaxConcurrent, c.MaxQueue = 3, 0
	c.Flight.MaxConcurrent, c.Flight.MaxConcurrentPerTenant, c.Flight.MaxQueue = 2, 2, 0
	c.Observers.MaxConcurrent, c.Observers.MaxConcurrentPerTenant, c.Observers.MaxQueue = 1, 1, 0
	reg := prometheus.NewRegistry()
	adm := admitters(c, reg)
	for _, tt := range []struct {
		class admission.Class
		want  int
	}{{admission.ClassGraphQL, 3}, {admission.ClassFlight, 2}, {admission.ClassObservers, 1}} {
		n := 0
		for ; n < 10; n++ {
			release, err := adm.Of(tt.class).Admit(context.Background(), fmt.Sprint("tenant-", n))
			if err != nil {
				break
			}
			defer release()
		}
		if n != tt.want {
			t.Errorf("%s: got %d admitted, want %d", tt.class, n, tt.want)
		}
	}
	if n := testutil.CollectAndCount(reg, "fraise_admission_decisions_total"); n != 24 {
		t.Errorf("got %d admission decision series, want 24 (3 classes × admitted and 7 reasons)", n)
	}
}
