package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestBackupCheck runs `fraise backup check` against a real archiving
// server: healthy with its base backup, then unhealthy (non-zero exit,
// naming the check) once the backup is gone; JSON and the metrics file
// say the same.
func TestBackupCheck(t *testing.T) {
	pg, archive := harness.StartArchivingPostgres(t)
	pg.BaseBackup(t, archive)
	pg.SwitchWAL(t, time.Minute)
	getenv := func(k string) string {
		switch k {
		case "FRAISE_DATABASE_ADMIN_URL":
			return pg.AdminURL("postgres")
		case "FRAISE_BACKUP_ARCHIVE":
			return archive
		}
		return ""
	}
	run := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := cli.Run(context.Background(), append([]string{"backup", "check"}, args...), getenv, &out, &errb)
		return out.String() + errb.String(), err
	}
	textfile := filepath.Join(t.TempDir(), "backup.prom")

	out, err := run("--textfile", textfile)
	if err != nil || !strings.HasPrefix(out, "backup check: healthy") {
		t.Fatalf("got %v and\n%s\nwant a healthy archive", err, out)
	}
	prom, err := os.ReadFile(textfile)
	if err != nil || !strings.Contains(string(prom), "fraise_backup_healthy 1") || !strings.Contains(string(prom), "fraise_backup_base_backups 1") {
		t.Fatalf("metrics file: got %v and\n%s\nwant fraise_backup_healthy 1 and one base backup", err, prom)
	}

	if err := os.RemoveAll(filepath.Join(archive, "base")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"text", []string{"--textfile", textfile}, "fail  base backup"},
		{"json", []string{"--json"}, `"status": "fail"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), "unhealthy") || !strings.Contains(out, tc.want) {
				t.Fatalf("got %v and\n%s\nwant an unhealthy archive, %q", err, out, tc.want)
			}
			if tc.name == "json" {
				var r struct {
					Healthy bool
					Backups int
				}
				if err := json.Unmarshal([]byte(out), &r); err != nil || r.Healthy || r.Backups != 0 {
					t.Fatalf("got %+v (%v), want unhealthy with no backups", r, err)
				}
			}
		})
	}
	prom, _ = os.ReadFile(textfile)
	if !strings.Contains(string(prom), "fraise_backup_healthy 0") || !strings.Contains(string(prom), `fraise_backup_check_failing{check="base backup"} 1`) {
		t.Fatalf("metrics file: got\n%s\nwant fraise_backup_healthy 0 and the base backup check failing", prom)
	}

	if _, err := run("--archive"); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("a flag without its value: got %v, want an error", err)
	}
}
