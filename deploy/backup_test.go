package deploy_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/test/harness"
)

// backupDir is deploy/backup as an absolute path: PostgreSQL runs its
// archive_command from its own data directory.
func backupDir(tb testing.TB) string {
	tb.Helper()
	d, err := filepath.Abs("backup")
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// runBackupScript runs one of deploy/backup's scripts as PostgreSQL's OS
// user, as an operator runs it, and returns its output.
func runBackupScript(tb testing.TB, env []string, script string, args ...string) (string, error) {
	tb.Helper()
	bin, err := harness.PostgresBinDir()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, err := harness.PostgresCommand(ctx, filepath.Join(backupDir(tb), script), args...)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Env = append(append(os.Environ(), "PG_BINDIR="+bin), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// archivingPostgres starts a server that archives with
// deploy/backup/archive-wal.sh into archive, with the settings of
// deploy/backup/postgresql.conf but for the script's path and the switch
// interval (none: tests switch segments themselves).
func archivingPostgres(tb testing.TB, archive string, extra ...string) *harness.Postgres {
	tb.Helper()
	conf, err := os.ReadFile(filepath.Join("backup", "postgresql.conf"))
	if err != nil {
		tb.Fatal(err)
	}
	var settings []string
	for _, line := range strings.Split(string(conf), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			settings = append(settings, line)
		}
	}
	settings = append(settings,
		"archive_command = '"+filepath.Join(backupDir(tb), "archive-wal.sh")+" "+archive+" %p %f'",
		"archive_timeout = 0")
	return harness.StartPostgresWith(tb, harness.PostgresOptions{WALSegmentMB: 1,
		Settings: append(settings, extra...)})
}

func mustExec(tb testing.TB, url string, sql string, args ...any) {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

func queryString(tb testing.TB, url string, sql string) string {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	var s string
	if err := c.QueryRow(ctx, sql).Scan(&s); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return s
}

// TestArchiveWALScript: the archive_command copies a file once, accepts the
// same file again (PostgreSQL retries a segment whose archiving it did not
// see finish) and refuses a different file of the same name.
func TestArchiveWALScript(t *testing.T) {
	archive := t.TempDir()
	src := filepath.Join(t.TempDir(), "000000010000000000000001")
	if err := os.WriteFile(src, []byte("segment one"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() error {
		return exec.Command(filepath.Join(backupDir(t), "archive-wal.sh"), archive, src, filepath.Base(src)).Run()
	}
	for _, tc := range []struct {
		name    string
		content string
		wantErr bool
	}{
		{"first copy", "segment one", false},
		{"the same file again", "segment one", false},
		{"a different file of the same name", "segment two", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(src, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := run()
			if (err != nil) != tc.wantErr {
				t.Fatalf("got error %v, want error %v", err, tc.wantErr)
			}
			got, _ := os.ReadFile(filepath.Join(archive, "wal", filepath.Base(src)))
			if string(got) != "segment one" {
				t.Fatalf("archived file holds %q, want %q", got, "segment one")
			}
		})
	}
	if leftovers, _ := filepath.Glob(filepath.Join(archive, "wal", ".*")); len(leftovers) > 0 {
		t.Fatalf("temporary files left in the archive: %v", leftovers)
	}
}

// TestBackupAndPointInTimeRestore runs deploy/backup's scripts against a
// real archiving server: a verified base backup, then restores of new data
// directories to a time between two writes, to the end of the archive, and
// to a time after it (a destroyed primary), each started and promoted to a
// new timeline; then a second backup under FRAISE_BACKUP_KEEP=1 removes the
// first one and the WAL only it needed.
func TestBackupAndPointInTimeRestore(t *testing.T) {
	archive := harness.PostgresDir(t)
	pg := archivingPostgres(t, archive)
	url := pg.AdminURL("postgres")
	mustExec(t, url, "CREATE TABLE t (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")

	env := []string{"PGHOST=127.0.0.1", "PGPORT=" + strconv.Itoa(pg.Port), "PGUSER=postgres"}
	out, err := runBackupScript(t, env, "base-backup.sh", archive)
	if err != nil {
		t.Fatalf("base-backup.sh: %v\n%s", err, out)
	}
	backups, _ := filepath.Glob(filepath.Join(archive, "base", "2*"))
	if len(backups) != 1 {
		t.Fatalf("got backups %v, want one\n%s", backups, out)
	}
	if _, err := os.Stat(filepath.Join(backups[0], "backup_manifest")); err != nil {
		t.Fatalf("the backup has no manifest: %v", err)
	}

	mustExec(t, url, "INSERT INTO t (n) SELECT generate_series(1, 100)")
	between := queryString(t, url, "select clock_timestamp()::text")
	mustExec(t, url, "INSERT INTO t (n) SELECT generate_series(101, 200)")
	pg.SwitchWAL(t, time.Minute)

	for _, tc := range []struct {
		name   string
		target string
		want   string // count(*) of t once restored
		says   string // in the script's output
	}{
		{"to a time between the writes", between, "100", "target " + between},
		{"to the end of the archive", "", "200", "target the end of the archive"},
		{"to a time after the last commit", "2999-01-01 00:00:00 UTC", "200", "replaying the whole archive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(harness.PostgresDir(t), "data")
			args := []string{"--archive", archive, "--pgdata", data}
			if tc.target != "" {
				args = append(args, "--target-time", tc.target)
			}
			out, err := runBackupScript(t, nil, "restore.sh", args...)
			if err != nil {
				t.Fatalf("restore.sh: %v\n%s", err, out)
			}
			if !strings.Contains(out, tc.says) {
				t.Fatalf("restore.sh said %q, want it to mention %q", out, tc.says)
			}
			// archive_mode off: the restored server's new timeline must
			// not reach the archive the next case restores from. fsync
			// off spares the data directory's flush at start (seconds on
			// a busy disk) that a test has no use for.
			restored := harness.StartPostgresFrom(t, data, "archive_mode = off", "fsync = off")
			rurl := restored.AdminURL("postgres")
			if got := queryString(t, rurl, "select count(*)::text from t"); got != tc.want {
				t.Fatalf("got %s rows restored, want %s", got, tc.want)
			}
			if got := queryString(t, rurl, "select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"); got == "00000001" {
				t.Fatalf("got timeline %s after the restore, want a new one", got)
			}
			mustExec(t, rurl, "INSERT INTO t (n) VALUES (1000)") // promoted: it takes writes
		})
	}

	// Retention: a second backup with FRAISE_BACKUP_KEEP=1 removes the
	// first, and the WAL only the first needed.
	out, err = runBackupScript(t, append(env, "FRAISE_BACKUP_KEEP=1"), "base-backup.sh", archive)
	if err != nil {
		t.Fatalf("base-backup.sh: %v\n%s", err, out)
	}
	var last string
	for _, line := range strings.Split(out, "\n") {
		if dir, ok := strings.CutPrefix(line, "base-backup: /"); ok {
			last = "/" + dir
		}
	}
	backups, _ = filepath.Glob(filepath.Join(archive, "base", "2*"))
	if len(backups) != 1 || backups[0] != last {
		t.Fatalf("got backups %v, want only the newest, %s\n%s", backups, last, out)
	}
	label, err := os.ReadFile(filepath.Join(last, "backup_label"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(label), "(file ")
	first := rest[:24]
	segs, _ := filepath.Glob(filepath.Join(archive, "wal", "0*"))
	for _, seg := range segs {
		if name := filepath.Base(seg); len(name) == 24 && name < first {
			t.Errorf("segment %s, older than the kept backup's first (%s), is still archived", name, first)
		}
	}
}
