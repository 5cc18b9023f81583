package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a running throwaway PostgreSQL server. Its superuser is
// "postgres", with trust authentication on loopback unless
// PostgresOptions say otherwise.
type Postgres struct {
	Host string
	Port int
	// TLS is the server's TLS when it was started TLS-only
	// (PostgresOptions.TLS), nil otherwise.
	TLS  *ServerTLS
	opts PostgresOptions
	dir  string
	stop func()
}

// SuperuserPassword is the superuser's password on a server started with
// PostgresOptions.Password.
const SuperuserPassword = "postgres-superuser"

// PostgresOptions vary a dedicated server (StartPostgresWith).
type PostgresOptions struct {
	// TLS makes the server TLS-only: ssl = on with a certificate of a CA
	// of its own, and pg_hba.conf holding hostssl lines alone, so a
	// connection without TLS is refused; a client must present a
	// certificate of that CA whose common name is the user it connects
	// as (cert authentication, or clientcert=verify-full with Password).
	TLS bool
	// Password requires SCRAM passwords (the superuser's is
	// SuperuserPassword), besides the client certificate under TLS.
	Password bool
	// Settings are postgresql.conf lines appended to the generated file:
	// `archive_mode = on`, `archive_timeout = 4`, ... (the backup and
	// restore tests need WAL archiving, which other tests have no use for).
	Settings []string
	// WALSegmentMB is initdb's --wal-segsize (16 when zero). A test that
	// switches segments every second or two keeps its archive small with 1.
	WALSegmentMB int
	// Durable keeps fsync and full_page_writes on (the harness turns them
	// off for speed): a test that destroys and restores a server wants the
	// WAL it archives to be the WAL a production server writes.
	Durable bool
	// BinDir is the directory of the PostgreSQL programs to run (initdb,
	// pg_ctl; pg_ctl runs the postgres beside it), for a test that needs
	// a version other than the machine's: test/bench runs FraiseQL, which
	// requires PostgreSQL 18, on the binaries of test/bench/postgres18.
	// Empty means PATH, then the newest /usr/lib/postgresql/*/bin. When
	// the harness runs as root the programs run as the postgres user, so
	// they and their libraries must be readable and executable by it.
	BinDir string
}

// URL returns a connection URL for database db as user, without a
// password; on a TLS-only server it verifies the server in full
// (sslmode=verify-full against the server's CA) and presents a client
// certificate for user.
func (p *Postgres) URL(user, db string) string { return p.URLWithPassword(user, "", db) }

// URLWithPassword is URL with a password ("" for none).
func (p *Postgres) URLWithPassword(user, password, db string) string {
	u := &url.URL{Scheme: "postgres", Host: net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), Path: "/" + db}
	u.User = url.User(user)
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	q := url.Values{"sslmode": {"disable"}}
	if p.TLS != nil {
		cert, key, err := p.TLS.clientCert(user)
		if err != nil {
			// URL has no test to fail: issuing a certificate fails only
			// when the disk does.
			panic(err)
		}
		q = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {p.TLS.CA}, "sslcert": {cert}, "sslkey": {key}}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// AdminURL returns the superuser's URL for database db.
func (p *Postgres) AdminURL(db string) string {
	if p.opts.Password {
		return p.URLWithPassword("postgres", SuperuserPassword, db)
	}
	return p.URL("postgres", db)
}

// Stop stops the server and removes its files. It is idempotent.
func (p *Postgres) Stop() { p.stop() }

// StartPostgres starts a dedicated PostgreSQL server, stopped when tb ends.
func StartPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	return StartPostgresWith(tb, PostgresOptions{})
}

// StartPostgresWith starts a dedicated PostgreSQL server as o describes,
// stopped when tb ends.
func StartPostgresWith(tb testing.TB, o PostgresOptions) *Postgres {
	tb.Helper()
	SkipShort(tb)
	p, err := startPostgres(FreePort(tb), o)
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
		sharedPG, sharedPGErr = startPostgres(l, PostgresOptions{})
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
	return p, p.NewDatabase(tb)
}

// NewDatabase creates an empty database on p and returns its name; it is
// dropped when tb ends.
func (p *Postgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
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
	return name
}

func startPostgres(port int, o PostgresOptions) (*Postgres, error) {
	initdb, err := findBinIn(o.BinDir, "initdb")
	if err != nil {
		return nil, err
	}
	pgctl, err := findBinIn(o.BinDir, "pg_ctl")
	if err != nil {
		return nil, err
	}
	cred, uid, gid, err := postgresCredential()
	if err != nil {
		return nil, err
	}
	sweepOrphans()
	dir, err := os.MkdirTemp("", "fraise-pg-")
	if err != nil {
		return nil, err
	}
	if err := claim(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initArgs := []string{"-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"}
	if o.Password {
		pw := filepath.Join(dir, "pwfile")
		if err := os.WriteFile(pw, []byte(SuperuserPassword+"\n"), 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		initArgs = append(initArgs, "--pwfile", pw)
	}
	if o.WALSegmentMB > 0 {
		initArgs = append(initArgs, "--wal-segsize="+strconv.Itoa(o.WALSegmentMB))
	}
	if err := initCluster(cred, initdb, data, initArgs); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	opts := "-c listen_addresses=127.0.0.1 -p " + strconv.Itoa(port) + " -k " + dir + " -c max_connections=200"
	if !o.Durable {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	if len(o.Settings) > 0 {
		if err := appendConf(filepath.Join(data, "postgresql.conf"), o.Settings); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	p := &Postgres{Host: "127.0.0.1", Port: port, dir: dir, opts: o}
	if o.TLS || o.Password {
		if o.TLS {
			if p.TLS, err = newServerTLS(filepath.Join(dir, "tls"), "postgres", uid, gid); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			opts += " -c ssl=on -c ssl_cert_file=" + p.TLS.Cert + " -c ssl_key_file=" + p.TLS.Key + " -c ssl_ca_file=" + p.TLS.CA
		}
		if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hbaConf(o)), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		if cred != nil {
			if err := os.Chown(filepath.Join(data, "pg_hba.conf"), uid, gid); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
	}
	if err := run(cred, pgctl, "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			_ = run(cred, pgctl, "-D", data, "-m", "immediate", "-w", "stop")
			os.RemoveAll(dir)
		})
	}
	return p, nil
}

// appendConf appends lines to the postgresql.conf at path.
func appendConf(path string, lines []string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n# test/harness\n" + strings.Join(lines, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// hbaConf is the pg_hba.conf of a server started with o: the Unix socket
// trusted (pg_ctl's own checks), TCP as o says and nothing else.
func hbaConf(o PostgresOptions) string {
	var tcp string
	switch {
	case o.TLS && o.Password:
		tcp = "hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full"
	case o.TLS:
		tcp = "hostssl all all 127.0.0.1/32 cert"
	default:
		tcp = "host all all 127.0.0.1/32 scram-sha-256"
	}
	return "local all all trust\n" + tcp + "\n"
}

// initCluster makes the cluster initdb would make with args in data, from
// a copy of one made earlier with the same initdb and arguments (but the
// directory) when there is one: make test starts dozens of servers across
// its test binaries, and copying a cluster costs a fraction of initdb's
// bootstrap. The copies live in the system's temporary directory, keyed
// by initdb's path, size and time and by the arguments, so a new
// PostgreSQL or other options never reuse them; a copy is published by
// renaming a finished directory, so a binary that races another either
// sees a whole one or none.
func initCluster(cred *syscall.Credential, initdb, data string, args []string) error {
	st, err := os.Stat(initdb)
	if err != nil {
		return err
	}
	key := []string{initdb, strconv.FormatInt(st.Size(), 10), st.ModTime().UTC().Format(time.RFC3339Nano)}
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-D":
			i++ // the directory is this server's own
		case "--pwfile":
			i++
			pw, err := os.ReadFile(args[i])
			if err != nil {
				return err
			}
			key = append(key, "--pwfile="+string(pw))
		default:
			key = append(key, args[i])
		}
	}
	sum := sha256.Sum256([]byte(strings.Join(key, "\x00")))
	cache := filepath.Join(os.TempDir(), "fraise-initdb", hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(cache, "PG_VERSION")); err == nil {
		if err := exec.Command("cp", "-a", cache, data).Run(); err == nil {
			return nil
		}
		os.RemoveAll(data) // a copy that failed half way: make it anew
	}
	if err := run(cred, initdb, args...); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
		return nil // no cache, still a cluster
	}
	tmp, err := os.MkdirTemp(filepath.Dir(cache), "tmp-")
	if err != nil {
		return nil
	}
	defer os.RemoveAll(tmp)
	if exec.Command("cp", "-a", data, filepath.Join(tmp, "data")).Run() == nil {
		_ = os.Rename(filepath.Join(tmp, "data"), cache) // lost a race: the other's is as good
	}
	return nil
}
