package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestAdmissionClasses checks the [admission] section: its own keys are
// the graphql class, as before it had classes, and [admission.flight] and
// [admission.observers] set the other classes' limits.
func TestAdmissionClasses(t *testing.T) {
	d := config.Default().Admission
	if got := d.GraphQL(); got.MaxConcurrent != 100 || got.MaxConcurrentPerTenant != 10 || got.MaxQueue != 200 || got.QueueTimeout.Duration != time.Second {
		t.Errorf("got graphql defaults %+v, want the [admission] defaults", got)
	}
	if d.Flight.MaxConcurrent != 4 || d.Flight.MaxConcurrentPerTenant != 2 {
		t.Errorf("got flight defaults %+v, want flight.max_exports' 4 and 2", d.Flight)
	}
	if d.Observers.MaxConcurrent != 256 || d.Observers.MaxConcurrentPerTenant != 64 {
		t.Errorf("got observers defaults %+v, want observers.workers' 256 and 64", d.Observers)
	}
	c, err := config.Load(mustFile(t, `
[admission]
max_concurrent = 50
[admission.flight]
max_concurrent = 3
max_concurrent_per_tenant = 1
max_queue = 2
queue_timeout = "1m"
[admission.observers]
max_concurrent = 32
`), envOf(map[string]string{"FRAISE_ADMISSION_OBSERVERS_MAX_CONCURRENT_PER_TENANT": "8"}))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Admission
	if a.GraphQL().MaxConcurrent != 50 || a.Flight.MaxConcurrent != 3 || a.Flight.MaxConcurrentPerTenant != 1 ||
		a.Flight.MaxQueue != 2 || a.Flight.QueueTimeout.Duration != time.Minute ||
		a.Observers.MaxConcurrent != 32 || a.Observers.MaxConcurrentPerTenant != 8 {
		t.Errorf("got %+v, want the file's and the environment's classes", a)
	}
	if len(c.Deprecations) != 0 {
		t.Errorf("got deprecations %v, want none for the new keys", c.Deprecations)
	}
	// The wiring not yet moved to the classes reads the values in force.
	if c.Flight.MaxExports != 3 || c.Flight.MaxExportsPerTenant != 1 || c.Observers.Workers != 32 || c.Observers.PerTenant != 8 {
		t.Errorf("got old fields %d %d %d %d, want the classes' 3 1 32 8",
			c.Flight.MaxExports, c.Flight.MaxExportsPerTenant, c.Observers.Workers, c.Observers.PerTenant)
	}
}

// TestRenamedKeys checks that each old key is accepted with a warning
// naming old and new key, lands on the new key, and that setting both
// names, in the file or the environment, is an error naming both.
func TestRenamedKeys(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		env       map[string]string
		check     func(config.Config) bool
		wantWarns []string // Deprecation.String of each, in the renames' order
		wantErr   []string // substrings the error must name
	}{
		{
			name:  "flight.max_exports",
			file:  "[flight]\nmax_exports = 6\n",
			check: func(c config.Config) bool { return c.Admission.Flight.MaxConcurrent == 6 },
			wantWarns: []string{"flight.max_exports is deprecated and will be removed in the next release: " +
				"set admission.flight.max_concurrent instead"},
		},
		{
			name:  "flight.max_exports_per_tenant",
			file:  "[flight]\nmax_exports_per_tenant = 1\n",
			check: func(c config.Config) bool { return c.Admission.Flight.MaxConcurrentPerTenant == 1 },
			wantWarns: []string{"flight.max_exports_per_tenant is deprecated and will be removed in the next release: " +
				"set admission.flight.max_concurrent_per_tenant instead"},
		},
		{
			name: "observers.workers and per_tenant",
			file: "[observers]\nworkers = 40\nper_tenant = 10\n",
			check: func(c config.Config) bool {
				return c.Admission.Observers.MaxConcurrent == 40 && c.Admission.Observers.MaxConcurrentPerTenant == 10
			},
			wantWarns: []string{
				"observers.workers is deprecated and will be removed in the next release: set admission.observers.max_concurrent instead",
				"observers.per_tenant is deprecated and will be removed in the next release: set admission.observers.max_concurrent_per_tenant instead",
			},
		},
		{
			name:  "old key from the environment",
			env:   map[string]string{"FRAISE_FLIGHT_MAX_EXPORTS": "5"},
			check: func(c config.Config) bool { return c.Admission.Flight.MaxConcurrent == 5 },
			wantWarns: []string{"FRAISE_FLIGHT_MAX_EXPORTS is deprecated and will be removed in the next release: " +
				"set FRAISE_ADMISSION_FLIGHT_MAX_CONCURRENT instead"},
		},
		{
			name:  "new key alone",
			file:  "[admission.flight]\nmax_concurrent = 7\n",
			check: func(c config.Config) bool { return c.Admission.Flight.MaxConcurrent == 7 },
		},
		{
			name:    "both in the file",
			file:    "[flight]\nmax_exports = 6\n[admission.flight]\nmax_concurrent = 7\n",
			wantErr: []string{"flight.max_exports and admission.flight.max_concurrent are both set"},
		},
		{
			name:    "old in the file, new in the environment",
			file:    "[observers]\nworkers = 40\n",
			env:     map[string]string{"FRAISE_ADMISSION_OBSERVERS_MAX_CONCURRENT": "50"},
			wantErr: []string{"observers.workers and admission.observers.max_concurrent are both set"},
		},
		{
			name: "two conflicts at once",
			file: "[flight]\nmax_exports = 6\nmax_exports_per_tenant = 1\n" +
				"[admission.flight]\nmax_concurrent = 7\nmax_concurrent_per_tenant = 2\n",
			wantErr: []string{"flight.max_exports and admission.flight.max_concurrent",
				"flight.max_exports_per_tenant and admission.flight.max_concurrent_per_tenant"},
		},
		{
			name:    "an invalid value names the key it was set as",
			file:    "[flight]\nmax_exports = 100\n",
			wantErr: []string{"admission.flight.max_concurrent (set as flight.max_exports): want 1 to database.max_conns - 1"},
		},
		{
			name:    "the per-tenant share above the class's bound",
			file:    "[observers]\nworkers = 4\nper_tenant = 8\n",
			wantErr: []string{"admission.observers.max_concurrent_per_tenant (set as observers.per_tenant): want 1 to admission.observers.max_concurrent (4), got 8"},
		},
		// [core] is the old name of [server]: the whole table moves, and
		// the old field keeps mirroring it for the code not yet moved.
		{
			name: "[core] in the file",
			file: "[core]\nhttp_addr = \"0.0.0.0:9000\"\nmax_cost = 7\n",
			check: func(c config.Config) bool {
				return c.Server.HTTPAddr == "0.0.0.0:9000" && c.Server.MaxCost == 7 &&
					c.Server.MaxDepth == config.Default().Server.MaxDepth && c.Core.HTTPAddr == "0.0.0.0:9000"
			},
			wantWarns: []string{"[core] is deprecated and will be removed in the next release: set [server] instead"},
		},
		{
			name: "FRAISE_CORE_* in the environment",
			env:  map[string]string{"FRAISE_CORE_HTTP_ADDR": "0.0.0.0:9000", "FRAISE_CORE_INTROSPECTION": "false"},
			check: func(c config.Config) bool {
				return c.Server.HTTPAddr == "0.0.0.0:9000" && !c.Server.Introspection && c.Core.HTTPAddr == "0.0.0.0:9000"
			},
			wantWarns: []string{
				"FRAISE_CORE_HTTP_ADDR is deprecated and will be removed in the next release: set FRAISE_SERVER_HTTP_ADDR instead",
				"FRAISE_CORE_INTROSPECTION is deprecated and will be removed in the next release: set FRAISE_SERVER_INTROSPECTION instead",
			},
		},
		{
			name: "[server] alone",
			file: "[server]\nhttp_addr = \"0.0.0.0:9000\"\n",
			env:  map[string]string{"FRAISE_SERVER_MAX_COST": "7"},
			check: func(c config.Config) bool {
				return c.Server.HTTPAddr == "0.0.0.0:9000" && c.Server.MaxCost == 7 && c.Core.MaxCost == 7
			},
		},
		{
			name:    "[core] and [server] in the file",
			file:    "[core]\nhttp_addr = \"0.0.0.0:9000\"\n[server]\nmax_cost = 7\n",
			wantErr: []string{"[core] and [server] are both set"},
		},
		{
			name:    "[core] in the file, FRAISE_SERVER_* in the environment",
			file:    "[core]\nhttp_addr = \"0.0.0.0:9000\"\n",
			env:     map[string]string{"FRAISE_SERVER_MAX_COST": "7"},
			wantErr: []string{"[core] and [server] are both set"},
		},
		{
			name:    "FRAISE_CORE_* and FRAISE_SERVER_* in the environment",
			env:     map[string]string{"FRAISE_CORE_HTTP_ADDR": "0.0.0.0:9000", "FRAISE_SERVER_HTTP_ADDR": "0.0.0.0:9001"},
			wantErr: []string{"[core] and [server] are both set"},
		},
		{
			name:    "an invalid [core] value names the key it was set as",
			file:    "[core]\nmax_cost = 0\n",
			wantErr: []string{"server.max_cost (set as core.max_cost): want at least 1"},
		},
		{
			name:    "an invalid FRAISE_CORE_* value names the variable",
			env:     map[string]string{"FRAISE_CORE_HTTP_ADDR": "nope"},
			wantErr: []string{"server.http_addr (set as FRAISE_CORE_HTTP_ADDR): want host:port"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := mustLoadCase(t, tt.file, tt.env, tt.wantErr)
			if !ok {
				return
			}
			if !tt.check(c) {
				t.Errorf("got admission %+v, server %+v; want the old key's value on the new key", c.Admission, c.Server)
			}
			var got []string
			for _, d := range c.Deprecations {
				got = append(got, d.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.wantWarns, "\n") {
				t.Errorf("got warnings %q, want %q", got, tt.wantWarns)
			}
		})
	}
}

// TestAdmissionClassValidation checks each class's values are reported
// once, under the class's own key.
func TestAdmissionClassValidation(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		want       []string
	}{
		{"flight at the pool's size", "[database]\nmax_conns = 4\n[admission.flight]\nmax_concurrent = 4\nmax_concurrent_per_tenant = 1\n",
			[]string{"admission.flight.max_concurrent: want 1 to database.max_conns - 1 (3), got 4"}},
		{"flight negative", "[admission.flight]\nmax_concurrent = -1\n",
			[]string{"admission.flight.max_concurrent: want 1 to database.max_conns - 1 (19), got -1",
				"admission.flight.max_concurrent_per_tenant: want 1 to admission.flight.max_concurrent (-1), got 2"}},
		{"observers without slots", "[admission.observers]\nmax_concurrent = 0\n",
			[]string{"admission.observers.max_concurrent: want at least 1, got 0",
				"admission.observers.max_concurrent_per_tenant: want 1 to admission.observers.max_concurrent (0), got 64"}},
		{"negative queues", "[admission.flight]\nmax_queue = -1\n[admission.observers]\nqueue_timeout = \"-1s\"\n",
			[]string{"admission.flight.max_queue: must not be negative (0 queues none)",
				"admission.observers.queue_timeout: must not be negative"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(mustFile(t, tt.file), envOf(nil))
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("got %d problems %q, want %d", len(lines), lines, len(tt.want))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to say %q", err, w)
				}
			}
		})
	}
}
