package postgres_test

import (
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/test/harness"
)

// mustArchivingServer starts a server that archives into dir/wal, with a
// base backup in dir/base and two segments archived after it.
func mustArchivingServer(tb testing.TB) (*harness.Postgres, string) {
	tb.Helper()
	pg, dir := harness.StartArchivingPostgres(tb)
	execSQL(tb, pg.AdminURL("postgres"), "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000)")
	pg.BaseBackup(tb, dir)
	for i := 0; i < 2; i++ {
		execSQL(tb, pg.AdminURL("postgres"), "INSERT INTO t SELECT generate_series(1, 1000)")
		pg.SwitchWAL(tb, time.Minute)
	}
	return pg, dir
}

func execSQL(tb testing.TB, url, sql string) {
	tb.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
}

// copyArchive copies the archive dir so a case can damage its copy.
func copyArchive(tb testing.TB, dir string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "archive")
	if out, err := osexec.Command("cp", "-a", dir, dst).CombinedOutput(); err != nil {
		tb.Fatalf("cp: %v\n%s", err, out)
	}
	return dst
}

func statuses(r postgres.ArchiveReport) map[string]string {
	m := map[string]string{}
	for _, c := range r.Checks {
		m[c.Name] = c.Status
	}
	return m
}

// TestCheckArchive checks a real archiving server and its archive, healthy
// and then damaged each way an operator must hear about.
func TestCheckArchive(t *testing.T) {
	pg, dir := mustArchivingServer(t)
	url := pg.AdminURL("postgres")
	for _, tc := range []struct {
		name    string
		archive func(t *testing.T) string
		later   time.Duration // the check's clock runs this far ahead
		want    map[string]string
	}{
		{"healthy", func(t *testing.T) string { return dir }, 0,
			map[string]string{"archiving": "ok", "archive_timeout": "warn", "archiver": "ok", "pending": "ok", "base backup": "ok", "continuity": "ok"}},
		{"no base backup", func(t *testing.T) string {
			d := copyArchive(t, dir)
			if err := os.RemoveAll(filepath.Join(d, "base")); err != nil {
				t.Fatal(err)
			}
			return d
		}, 0, map[string]string{"base backup": "fail", "continuity": "skip"}},
		{"the base backup is old", func(t *testing.T) string { return dir }, 27 * time.Hour,
			map[string]string{"base backup": "fail", "continuity": "ok"}},
		{"a segment is missing", func(t *testing.T) string {
			d := copyArchive(t, dir)
			segs, _ := filepath.Glob(filepath.Join(d, "wal", "000000010000000000000*"))
			var whole []string
			for _, s := range segs {
				if len(filepath.Base(s)) == 24 {
					whole = append(whole, s)
				}
			}
			sort.Strings(whole)
			if len(whole) < 3 {
				t.Fatalf("want three archived segments to remove the middle one, got %v", whole)
			}
			if err := os.Remove(whole[len(whole)-2]); err != nil {
				t.Fatal(err)
			}
			return d
		}, 0, map[string]string{"base backup": "ok", "continuity": "fail"}},
		{"the server archives elsewhere", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.MkdirAll(filepath.Join(d, "wal"), 0o755); err != nil {
				t.Fatal(err)
			}
			return d
		}, 0, map[string]string{"base backup": "fail", "continuity": "fail"}},
		{"no archive directory", func(t *testing.T) string { return "" }, 0,
			map[string]string{"archiver": "ok", "base backup": "skip", "continuity": "skip"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := postgres.CheckArchive(context.Background(), url, postgres.ArchiveCheck{
				Dir: tc.archive(t), Now: func() time.Time { return time.Now().Add(tc.later) }})
			if err != nil {
				t.Fatal(err)
			}
			got := statuses(r)
			healthy := true
			for name, want := range tc.want {
				if got[name] != want {
					t.Errorf("check %q: got %q, want %q (%+v)", name, got[name], want, r.Checks)
				}
				if want == postgres.CheckFail {
					healthy = false
				}
			}
			if r.Healthy != healthy {
				t.Errorf("got healthy %v, want %v (%+v)", r.Healthy, healthy, r.Checks)
			}
		})
	}

	t.Run("archive_command failing", func(t *testing.T) {
		execSQL(t, url, "ALTER SYSTEM SET archive_command = 'exit 1'")
		execSQL(t, url, "SELECT pg_reload_conf()")
		waitArchiverFailure(t, url)
		r, err := postgres.CheckArchive(context.Background(), url, postgres.ArchiveCheck{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(r)["archiver"]; got != postgres.CheckFail || r.Healthy {
			t.Fatalf("archiver: got %q (healthy %v), want fail: %+v", got, r.Healthy, r.Checks)
		}
		// A segment left waiting past MaxPendingAge is a lost primary's loss.
		r, err = postgres.CheckArchive(context.Background(), url, postgres.ArchiveCheck{Dir: dir,
			Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(r)["pending"]; got != postgres.CheckFail || r.Pending < 1 {
			t.Fatalf("pending: got %q with %d pending, want fail with at least 1: %+v", got, r.Pending, r.Checks)
		}
	})

	t.Run("archiving off", func(t *testing.T) {
		shared, db := harness.NewDatabase(t)
		r, err := postgres.CheckArchive(context.Background(), shared.AdminURL(db), postgres.ArchiveCheck{})
		if err != nil {
			t.Fatal(err)
		}
		if got := statuses(r)["archiving"]; got != postgres.CheckFail || r.Healthy {
			t.Fatalf("archiving: got %q (healthy %v), want fail: %+v", got, r.Healthy, r.Checks)
		}
	})
}

// waitArchiverFailure writes and switches segments until pg_stat_archiver
// counts a failure: the archiver may take the first segment before it has
// read the new archive_command. Nothing announces a failure, so it is asked
// every 20 ms, for at most a minute.
func waitArchiverFailure(tb testing.TB, url string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close(context.Background())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		if i%50 == 0 {
			if _, err := c.Exec(ctx, "INSERT INTO t SELECT generate_series(1, 1000)"); err != nil {
				tb.Fatal(err)
			}
			if _, err := c.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
				tb.Fatal(err)
			}
		}
		var n int64
		if err := c.QueryRow(ctx, "select failed_count from pg_stat_archiver").Scan(&n); err != nil {
			tb.Fatal(err)
		}
		if n > 0 {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatal("the archiver counted no failure within a minute")
		case <-tick.C:
		}
	}
}
