package postgres_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/test/harness"
)

// clientTLS is a TLS configuration trusting ca's server and presenting
// user's certificate from it.
func clientTLS(tb testing.TB, ca *harness.ServerTLS, user string) func() *tls.Config {
	tb.Helper()
	cfg := ca.ClientConfig(tb, user)
	cfg.ServerName = "" // the adapter verifies the URL's host
	return func() *tls.Config { return cfg.Clone() }
}

func pingErr(tb testing.TB, url string, o postgres.Options) error {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, url, o)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Ping(ctx)
}

// TestTLS connects to a TLS-only PostgreSQL with verify-full and a client
// certificate, and checks every refusal: a server certificate of another
// CA, a URL asking for less than verify-full, a client without a
// certificate, and a server that does not speak TLS (no plaintext
// fallback).
func TestTLS(t *testing.T) {
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true})
	other := harness.StartRedisWith(t, harness.RedisOptions{TLS: true}) // another CA
	plain := harness.SharedPostgres(t)
	bare := "postgres://postgres@" + pg.Host + ":" + itoa(pg.Port) + "/postgres"
	noCert := func() *tls.Config { c := clientTLS(t, pg.TLS, "postgres")(); c.Certificates = nil; return c }
	for _, tc := range []struct {
		name    string
		url     string
		tls     func() *tls.Config
		wantErr string // "" to connect
	}{
		{"verify-full with a client certificate", bare, clientTLS(t, pg.TLS, "postgres"), ""},
		{"sslmode=verify-full in the URL", bare + "?sslmode=verify-full", clientTLS(t, pg.TLS, "postgres"), ""},
		{"a server certificate from another CA", bare, clientTLS(t, other.TLS, "postgres"), "certificate signed by unknown authority"},
		{"the server named otherwise", bare, func() *tls.Config { c := clientTLS(t, pg.TLS, "postgres")(); c.ServerName = "db.example.com"; return c }, "certificate is valid for"},
		{"sslmode=require in the URL", bare + "?sslmode=require", clientTLS(t, pg.TLS, "postgres"), "sslmode"},
		{"sslmode=disable in the URL", bare + "?sslmode=disable", clientTLS(t, pg.TLS, "postgres"), "sslmode"},
		{"no client certificate", bare, noCert, "certificate"},
		{"a server without TLS", "postgres://postgres@" + plain.Host + ":" + itoa(plain.Port) + "/postgres", clientTLS(t, pg.TLS, "postgres"), "server refused TLS connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pingErr(t, tc.url, postgres.Options{TLS: tc.tls})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want connected", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("got connected, want refused (%s)", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
	if err := pingErr(t, bare+"?sslmode=disable", postgres.Options{TLS: clientTLS(t, pg.TLS, "postgres")}); !errors.Is(err, postgres.ErrSSLMode) {
		t.Errorf("sslmode=disable: got %v, want ErrSSLMode", err)
	}
}

// rotatingPassword is a password source as a watched file gives it.
type rotatingPassword struct {
	mu        sync.Mutex
	cur, prev string
}

func (r *rotatingPassword) get() (string, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur, r.prev
}

func (r *rotatingPassword) set(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prev, r.cur = r.cur, p
}

// TestPasswordRotation rotates the app role's password the way an
// operator does, the file first and ALTER ROLE after, and shows that a new
// connection is made at every step: with the previous password while the
// server does not know the new one, with the new one once it does.
func TestPasswordRotation(t *testing.T) {
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true, Password: true})
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE ROLE app LOGIN PASSWORD 'one'"); err != nil {
		t.Fatal(err)
	}
	pw := &rotatingPassword{cur: "one"}
	db, err := postgres.Open(ctx, "postgres://app@"+pg.Host+":"+itoa(pg.Port)+"/postgres", postgres.Options{
		TLS: clientTLS(t, pg.TLS, "app"), Password: pw.get, MaxConns: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newConn := func(step string) {
		t.Helper()
		postgres.ResetPool(db)
		before := postgres.NewConns(db)
		if err := db.Ping(ctx); err != nil {
			t.Fatalf("%s: got %v, want a new connection", step, err)
		}
		if got := postgres.NewConns(db); got != before+1 {
			t.Fatalf("%s: got %d new connections, want 1", step, got-before)
		}
	}
	newConn("the first password")
	pw.set("two")
	newConn("the new password in the file, not yet in the database")
	if _, err := admin.Exec(ctx, "ALTER ROLE app PASSWORD 'two'"); err != nil {
		t.Fatal(err)
	}
	newConn("the new password in both")
	// The previous password is no longer accepted: what connects now is
	// the new one.
	pw.mu.Lock()
	pw.prev = "wrong"
	pw.mu.Unlock()
	newConn("the new password alone")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestPasswordChangedWhileConnecting: the server takes the new password
// (ALTER ROLE) just after a new connection's probe found it unknown, so
// the connection made with the previous password is refused. A request
// must not fail for it: it is sent again, on a connection made with the
// new password. Both ways a request reaches the database are shown: a
// transaction (writes, Flight) and a pipelined read.
func TestPasswordChangedWhileConnecting(t *testing.T) {
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true, Password: true})
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	const tenant = "11111111-1111-4111-8111-111111111111"
	for i, tc := range []struct {
		name string
		run  func(db *postgres.DB) error
	}{
		{"a transaction", func(db *postgres.DB) error {
			return db.InTenant(ctx, tenant, func(context.Context, core.Querier) error { return nil })
		}},
		{"a pipelined read", func(db *postgres.DB) error {
			_, err := db.QueryJSONBatch(ctx, tenant, []core.Statement{{SQL: "select '1'::jsonb"}})
			return err
		}},
		// The statements sent outside a transaction: the observers'
		// outbox, rules and cursor, the catalog, API keys, persisted
		// documents.
		{"a statement", func(db *postgres.DB) error { return postgres.Exec(ctx, db, "select 1") }},
		{"a query", func(db *postgres.DB) error { _, err := postgres.QueryInt(ctx, db, "select 1"); return err }},
		{"a single row", func(db *postgres.DB) error { _, err := postgres.QueryRowInt(ctx, db, "select 1"); return err }},
		{"a batch", func(db *postgres.DB) error { return postgres.SendBatch(ctx, db, "select 1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			role := "app" + itoa(i)
			if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'one'"); err != nil {
				t.Fatal(err)
			}
			// Between Fraise and the server, a proxy that changes the
			// password before it forwards the third connection: the
			// first is the pool's with "one", the second the probe of
			// "two" (refused), the third the connection made with "one"
			// again.
			proxy := startProxy(t, pg.Host+":"+itoa(pg.Port), func(n int) {
				if n == 3 {
					if _, err := admin.Exec(ctx, "ALTER ROLE "+role+" PASSWORD 'two'"); err != nil {
						t.Error(err)
					}
				}
			})
			pw := &rotatingPassword{cur: "one"}
			db, err := postgres.Open(ctx, "postgres://"+role+"@"+proxy+"/postgres", postgres.Options{TLS: clientTLS(t, pg.TLS, role), Password: pw.get, MaxConns: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := tc.run(db); err != nil {
				t.Fatalf("the first password: got %v, want served", err)
			}
			pw.set("two")
			postgres.ResetPool(db)
			if err := tc.run(db); err != nil {
				t.Fatalf("the password changed on the server while connecting: got %v, want served", err)
			}
		})
	}
}

// startProxy forwards each TCP connection to addr, calling before(n) for
// the nth before it connects to addr. It returns its host:port.
func startProxy(tb testing.TB, addr string, before func(n int)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			before(n)
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return ln.Addr().String()
}
