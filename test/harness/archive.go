package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// StartPostgresFrom starts a server on the data directory data (a restored
// base backup, say), with settings appended to its postgresql.conf, and
// returns once it accepts writes: a server in archive recovery replays the
// WAL its restore_command finds and is promoted first. The server's files,
// data's parent directory included, are removed when tb ends. data must
// belong to the server's OS user (ChownToPostgres).
func StartPostgresFrom(tb testing.TB, data string, settings ...string) *Postgres {
	tb.Helper()
	SkipShort(tb)
	// hot_standby off: the server admits no connection before its
	// recovery has ended, so "ready" means promoted.
	p, err := startDataDir(filepath.Dir(data), data, FreePort(tb), append([]string{"hot_standby = off"}, settings...))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

// startDataDir starts postgres on data, its socket and log in dir.
func startDataDir(dir, data string, port int, settings []string) (*Postgres, error) {
	pgctl, err := findBin("pg_ctl")
	if err != nil {
		return nil, err
	}
	cred, _, _, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	conf := append([]string{"listen_addresses = '127.0.0.1'", "port = " + strconv.Itoa(port),
		"unix_socket_directories = '" + dir + "'"}, settings...)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString("\n# test/harness\n" + strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	log := filepath.Join(dir, "log")
	if err := run(cred, pgctl, "-D", data, "-l", log, "-w", "-t", "120", "start"); err != nil {
		out, _ := os.ReadFile(log)
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	p := &Postgres{Host: "127.0.0.1", Port: port, dir: dir}
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			_ = run(cred, pgctl, "-D", data, "-m", "immediate", "-w", "stop")
			os.RemoveAll(dir)
		})
	}
	// pg_ctl calls a server in archive recovery started (and one whose
	// recovery then fails, on a target the archive does not reach), so
	// readiness is asked of the server: it refuses connections (57P03)
	// until its recovery has ended and it is promoted. Nothing announces
	// that moment; it is asked every 50 ms.
	if err := waitPromoted(p, 2*time.Minute); err != nil {
		out, _ := os.ReadFile(log)
		p.stop()
		return nil, fmt.Errorf("postgres on %s did not come up: %w\n%s", data, err, out)
	}
	return p, nil
}

// waitPromoted waits until p accepts connections and is out of recovery.
func waitPromoted(p *Postgres, d time.Duration) error {
	ctx, cancel := ctxTimeout(d)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, p.AdminURL("postgres"))
		if err == nil {
			var recovering bool
			err = conn.QueryRow(ctx, "select pg_is_in_recovery()").Scan(&recovering)
			conn.Close(context.Background())
			if err == nil && !recovering {
				return nil
			}
			if err == nil {
				err = errors.New("still in recovery")
			}
		}
		var pgErr *pgconn.PgError
		starting := errors.As(err, &pgErr) && pgErr.Code == "57P03"
		if !starting && err.Error() != "still in recovery" {
			// Refused outright: the postmaster is gone (its recovery
			// failed) unless it has not bound its port yet, which pg_ctl
			// waited for.
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (waited %s)", err, d)
		case <-tick.C:
		}
	}
}

// DataDir is the server's data directory.
func (p *Postgres) DataDir() string { return filepath.Join(p.dir, "data") }

// Log returns what the server has logged so far.
func (p *Postgres) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "log"))
	return string(b)
}

// Destroy kills the server as a lost machine does, without a shutdown
// checkpoint and without archiving the WAL it has not archived yet, and
// removes its files. Stop afterwards does nothing.
func (p *Postgres) Destroy(tb testing.TB) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(p.DataDir(), "postmaster.pid"))
	if err != nil {
		tb.Fatalf("destroy: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		tb.Fatalf("destroy: postmaster.pid: %v", err)
	}
	// The postmaster's whole process group: its children would otherwise
	// go on a moment (the archiver among them) after it died.
	// A process killed with SIGKILL runs no more of its code, so its
	// files may go at once: an archive_command caught mid-copy leaves at
	// most its temporary file, as on a machine that lost power.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if err := os.RemoveAll(p.dir); err != nil {
		tb.Fatalf("destroy: %v", err)
	}
	p.stop = func() {}
}

// PostgresDir returns a new empty directory the server's OS user owns
// (an archive, a backup's destination), removed when tb ends.
func PostgresDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := ChownToPostgres(dir); err != nil {
		tb.Fatal(err)
	}
	// TempDir's parent is private to the test's user.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// ChownToPostgres gives path, recursively, to the OS user PostgreSQL's
// programs run as (a no-op unless the tests run as root).
func ChownToPostgres(path string) error {
	cred, uid, gid, err := postgresCredential()
	if err != nil || cred == nil {
		return err
	}
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// PostgresCommand returns a command running PostgreSQL's program name (or
// any program, when name holds a slash) as the OS user the server runs as,
// so the files it writes are the server's.
func PostgresCommand(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	bin := name
	if !strings.Contains(name, "/") {
		b, err := findBin(name)
		if err != nil {
			return nil, err
		}
		bin = b
	}
	cred, _, _, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return cmd, nil
}

// PostgresBinDir is the directory of PostgreSQL's programs (pg_ctl,
// pg_basebackup, ...).
func PostgresBinDir() (string, error) {
	p, err := findBin("pg_ctl")
	if err != nil {
		return "", err
	}
	// A pg_ctl on PATH may be a link to the installation's own directory,
	// which alone holds every program.
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return filepath.Dir(p), nil
}

// SwitchWAL ends the current WAL segment (pg_switch_wal) and waits until the
// archiver has archived it, for at most d: what a test writes before it is
// then in the archive. It returns the segment's file name. A server that
// wrote nothing since the last switch has nothing to switch: its last
// archived segment is returned.
func (p *Postgres) SwitchWAL(tb testing.TB, d time.Duration) string {
	tb.Helper()
	ctx, cancel := ctxTimeout(d)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminURL("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(context.Background())
	var seg string
	// pg_switch_wal returns a location in the segment it ended, or, with
	// nothing to switch, the start of the current one, which
	// pg_walfile_name names as the end of the segment before it.
	if err := conn.QueryRow(ctx, "select pg_walfile_name(pg_switch_wal())").Scan(&seg); err != nil {
		tb.Fatal(err)
	}
	p.WaitArchived(tb, seg, d)
	return seg
}

// WaitArchived waits until the archiver has archived segment seg (or a
// later one), for at most d. Nothing announces an archived segment, so
// pg_stat_archiver is asked every 20 ms.
func (p *Postgres) WaitArchived(tb testing.TB, seg string, d time.Duration) {
	tb.Helper()
	ctx, cancel := ctxTimeout(d)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminURL("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(context.Background())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var last, failed string
		err := conn.QueryRow(ctx, "select coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '') from pg_stat_archiver").Scan(&last, &failed)
		if err != nil {
			tb.Fatalf("waiting for %s to be archived: %v (last failure: %s)\n%s", seg, err, failed, p.Log())
		}
		// Segment names (timeline, log, segment in fixed-width hex) sort
		// in WAL order; a history or backup file names its segment first.
		if len(last) >= 24 && last[:24] >= seg[:24] {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%s not archived within %s: last archived %q, last failure %q\n%s", seg, d, last, failed, p.Log())
		case <-tick.C:
		}
	}
}

// StartArchivingPostgres starts a dedicated server that archives every
// completed WAL segment into archive/wal (archive is a new directory the
// server's OS user owns), with 1 MB segments and no archive_timeout: a
// test switches segments itself (SwitchWAL). settings are appended.
func StartArchivingPostgres(tb testing.TB, settings ...string) (p *Postgres, archive string) {
	tb.Helper()
	archive = PostgresDir(tb)
	wal := filepath.Join(archive, "wal")
	if err := os.Mkdir(wal, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := ChownToPostgres(wal); err != nil {
		tb.Fatal(err)
	}
	p = StartPostgresWith(tb, PostgresOptions{WALSegmentMB: 1, Settings: append([]string{
		"archive_mode = on", "archive_timeout = 0",
		"archive_command = 'test ! -f " + wal + "/%f && cp %p " + wal + "/%f'",
	}, settings...)})
	return p, archive
}

// BaseBackup takes a plain-format base backup of p into archive/base/<UTC
// stamp>, as deploy/backup/base-backup.sh names them, and returns its
// directory. Its WAL is in the archive (pg_basebackup -X none waits for it).
func (p *Postgres) BaseBackup(tb testing.TB, archive string) string {
	tb.Helper()
	dir := filepath.Join(archive, "base", time.Now().UTC().Format("20060102T150405.000Z"))
	ctx, cancel := ctxTimeout(2 * time.Minute)
	defer cancel()
	cmd, err := PostgresCommand(ctx, "pg_basebackup", "-D", dir, "-Fp", "-X", "none", "-c", "fast",
		"-h", p.Host, "-p", strconv.Itoa(p.Port), "-U", "postgres")
	if err != nil {
		tb.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	return dir
}

// RestoreFromArchive restores the newest base backup in archive/base into a
// new data directory, replays archive/wal up to target (a time PostgreSQL
// reads; "" replays it all), starts the server and returns it once promoted
// to a new timeline, as deploy/backup/restore.sh and a start do. settings
// are appended to its configuration (the backup's own, archiving included,
// is kept unless they say otherwise).
func RestoreFromArchive(tb testing.TB, archive, target string, settings ...string) *Postgres {
	tb.Helper()
	backups, err := filepath.Glob(filepath.Join(archive, "base", "2*"))
	if err != nil || len(backups) == 0 {
		tb.Fatalf("no base backup in %s/base (%v)", archive, err)
	}
	data := filepath.Join(PostgresDir(tb), "data")
	ctx, cancel := ctxTimeout(2 * time.Minute)
	defer cancel()
	cmd, err := PostgresCommand(ctx, "/bin/cp", "-a", backups[len(backups)-1], data)
	if err != nil {
		tb.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("copying the base backup: %v\n%s", err, out)
	}
	conf := []string{"restore_command = 'cp " + filepath.Join(archive, "wal") + "/%f %p'",
		"recovery_target_timeline = 'latest'", "recovery_target_action = 'promote'"}
	if target != "" {
		conf = append(conf, "recovery_target_time = '"+target+"'")
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = f.WriteString(strings.Join(conf, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(data, "recovery.signal"), nil, 0o600)
	}
	if err == nil {
		err = ChownToPostgres(data)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return StartPostgresFrom(tb, data, settings...)
}
