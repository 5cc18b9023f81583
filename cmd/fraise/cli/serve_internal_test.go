package cli

import (
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
	"github.com/fraise-dev/fraise/cmd/fraise/gctune"
)

// TestCoreHeapFloor checks the core's heap goal floor stays at half the
// heap admission refuses at, so garbage alone never makes it refuse.
func TestCoreHeapFloor(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     config.Admission
		floor uint64
	}{
		{"no memory budget", config.Admission{MemoryThreshold: 0.8}, gctune.DefaultHeapFloor},
		{"a large budget", config.Admission{MemoryLimitBytes: 1 << 30, MemoryThreshold: 0.8}, gctune.DefaultHeapFloor},
		{"a small budget", config.Admission{MemoryLimitBytes: 100 << 20, MemoryThreshold: 0.8}, 40 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := coreHeapFloor(tc.a); got != tc.floor {
				t.Fatalf("got %d, want %d", got, tc.floor)
			}
		})
	}
}

// TestAppPassword checks which password `fraise migrate` takes from
// database.url for the app role: only the app role's own, from the URL.
func TestAppPassword(t *testing.T) {
	env := map[string]string{"DB": "postgres://fraise_app:from%20env@db/fraise", "PGPASSWORD": "admins"}
	getenv := func(k string) string { return env[k] }
	for _, tc := range []struct {
		name, url, want string
		wantErr         bool
	}{
		{"the app role's password", "postgres://fraise_app:s3cret@db:5432/fraise?sslmode=verify-full", "s3cret", false},
		{"escaped, through a reference", "env://DB", "from env", false},
		{"another user", "postgres://someone:s3cret@db/fraise", "", false},
		{"no password: PGPASSWORD is not the app role's", "postgres://fraise_app@db/fraise", "", false},
		{"a key=value string", "host=db user=fraise_app password=s3cret", "", false},
		{"no URL", "", "", false},
		{"an unreadable reference", "file:///nonexistent/url", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appPassword(config.Database{URL: tc.url, AppRole: "fraise_app"}, getenv)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("got %q, %v; want %q (error: %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
