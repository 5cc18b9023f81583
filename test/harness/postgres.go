package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running throwaway PostgreSQL server. Its superuser is
// "postgres" with trust authentication on loopback.
type Postgres struct {
	Host string
	Port int
	dir  string
	stop func()
}

// URL returns a connection URL for database db as user.
func (p *Postgres) URL(user, db string) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", user, p.Host, p.Port, db)
}

// AdminURL returns the superuser's URL for database db.
func (p *Postgres) AdminURL(db string) string { return p.URL("postgres", db) }

// Stop stops the server and removes its files. It is idempotent.
func (p *Postgres) Stop() { p.stop() }

// StartPostgres starts a dedicated PostgreSQL server, stopped when tb ends.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	SkipShort(tb)
	p, err := startPostgres(FreePort(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

var (
	sharedPGOnce sync.Once
	sharedPG     *Postgres
	sharedPGErr  error
	dbSeq        atomic.Int64
)

// SharedPostgres returns a PostgreSQL server shared by every test of this
// test binary (started once, stopped by Main), which saves the second or
// two initdb costs per test. Tests share it safely through NewDatabase.
func SharedPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	SkipShort(tb)
	sharedMu.Lock()
	ok := inMain
	sharedMu.Unlock()
	if !ok {
		tb.Fatal("harness: a shared PostgreSQL needs `func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }`, " +
			"which stops it: without it every run of this package's tests leaves a server behind")
	}
	sharedPGOnce.Do(func() {
		l := FreePort(tb)
		sharedPG, sharedPGErr = startPostgres(l)
		if sharedPGErr == nil {
			onExit(sharedPG.Stop)
		}
	})
	if sharedPGErr != nil {
		tb.Fatal(sharedPGErr)
	}
	return sharedPG
}

// NewDatabase creates an empty database on the shared server and returns its
// name; it is dropped when tb ends.
func NewDatabase(tb testing.TB) (*Postgres, string) {
	tb.Helper()
	p := SharedPostgres(tb)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	ctx, cancel := ctxTimeout(30 * time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.AdminURL("postgres"))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := ctxTimeout(30 * time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.AdminURL("postgres"))
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return p, name
}

func startPostgres(port int) (*Postgres, error) {
	initdb, err := findBin("initdb")
	if err != nil {
		return nil, err
	}
	pgctl, err := findBin("pg_ctl")
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fraise-pg-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if err := run(cred, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	opts := "-c listen_addresses=127.0.0.1 -p " + strconv.Itoa(port) + " -k " + dir +
		" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
	if err := run(cred, pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	var once sync.Once
	p := &Postgres{Host: "127.0.0.1", Port: port, dir: dir}
	p.stop = func() {
		once.Do(func() {
			_ = run(cred, pgctl, "-D", data, "-m", "immediate", "-w", "stop")
			os.RemoveAll(dir)
		})
	}
	return p, nil
}
