package harness_test

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

func TestPostgresDatabasesAreSeparate(t *testing.T) {
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
