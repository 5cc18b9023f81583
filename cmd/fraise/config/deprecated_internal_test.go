package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRenameMovesATable checks the mechanism on a renamed table, which
// renaming a section (such as [core] to [server]) needs: every key of the old table,
// from the file or the environment, lands in the new one, and both names
// set is an error. Two tables of one type stand in for such a rename.
func TestRenameMovesATable(t *testing.T) {
	saved := renames
	renames = []Rename{{Old: "admission.observers", New: "admission.flight"}}
	t.Cleanup(func() { renames = saved })

	for _, tt := range []struct {
		name    string
		file    string
		env     map[string]string
		want    func(AdmissionClass) bool // of admission.flight
		wantErr string
	}{
		{name: "old table in the file", file: "[admission.observers]\nmax_concurrent = 3\nmax_concurrent_per_tenant = 1\n",
			want: func(f AdmissionClass) bool { return f.MaxConcurrent == 3 && f.MaxConcurrentPerTenant == 1 }},
		{name: "old table's key in the environment", env: map[string]string{"FRAISE_ADMISSION_OBSERVERS_MAX_QUEUE": "9"},
			// The other keys keep the new table's defaults, which the old
			// table mirrors until it is set.
			want: func(f AdmissionClass) bool { return f.MaxQueue == 9 && f.MaxConcurrent == 4 }},
		{name: "both tables", file: "[admission.observers]\nmax_concurrent = 3\n[admission.flight]\nmax_queue = 1\n",
			wantErr: "[admission.observers] and [admission.flight] are both set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = filepath.Join(t.TempDir(), "fraise.toml")
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(path, func(k string) string {
				switch k {
				case "FRAISE_PROFILE":
					return ProfileDev
				case "FRAISE_DATABASE_MAX_CONNS":
					return "1000" // room for the observers' bounds as flight's
				}
				return tt.env[k]
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c.Admission.Flight) || len(c.Deprecations) != 1 {
				t.Errorf("got flight %+v, deprecations %v; want the old table's values and one deprecation",
					c.Admission.Flight, c.Deprecations)
			}
		})
	}
}
