package redis_test

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fraise-dev/fraise/adapters/redis"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/test/harness"
)

// clientTLS trusts r's CA and presents a client certificate of it.
func clientTLS(tb testing.TB, ca *harness.ServerTLS) func() *tls.Config {
	tb.Helper()
	cfg := ca.ClientConfig(tb, "fraise")
	cfg.ServerName = "" // the adapter verifies the address's host
	return func() *tls.Config { return cfg.Clone() }
}

// TestTLS runs the queue on a TLS-only Redis and checks the refusals: a
// server certificate of another CA, plaintext towards the TLS server, and
// TLS towards a server that does not speak it.
func TestTLS(t *testing.T) {
	rd := harness.StartRedisWith(t, harness.RedisOptions{TLS: true, Password: "s3cret"})
	other := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true}) // another CA
	plain := harness.StartRedis(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		o       redis.Options
		wantErr string // "" to work
	}{
		{"TLS with a client certificate", redis.Options{Addr: rd.Addr, TLS: clientTLS(t, rd.TLS), Password: "s3cret"}, ""},
		{"a server certificate from another CA", redis.Options{Addr: rd.Addr, TLS: clientTLS(t, other.TLS), Password: "s3cret"}, "certificate signed by unknown authority"},
		{"plaintext to the TLS server", redis.Options{Addr: rd.Addr, Password: "s3cret"}, "EOF"},
		// A server without TLS takes the ClientHello for a command and
		// never answers it: the handshake times out.
		{"TLS to a server without it", redis.Options{Addr: plain.Addr, TLS: clientTLS(t, rd.TLS), DialTimeout: 200 * time.Millisecond}, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := redis.New(tc.o)
			defer q.Close()
			err := q.Ping(ctx)
			if err == nil {
				err = q.Enqueue(ctx, []core.Job{job("a", "1")})
				if n, _ := q.Backlog(ctx, "a"); err == nil && n != 1 {
					t.Fatalf("backlog: got %d, want 1", n)
				}
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got %v, want served", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("got served, want refused (%s)", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// password is a password source as a watched file gives it.
type password struct {
	mu sync.Mutex
	v  string
}

func (p *password) get() string { p.mu.Lock(); defer p.mu.Unlock(); return p.v }
func (p *password) set(v string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.v = v
}

// TestPasswordRotation rotates the password with ACL, both accepted
// during the change: the connections opened after the source changed use
// the new password, which alone is accepted at the end.
func TestPasswordRotation(t *testing.T) {
	rd := harness.StartRedisWith(t, harness.RedisOptions{TLS: true, Password: "one"})
	ctx := context.Background()
	adminTLS := rd.TLS.ClientConfig(t, "admin")
	admin := goredis.NewClient(&goredis.Options{Addr: rd.Addr, Password: "one", TLSConfig: adminTLS})
	defer admin.Close()
	pw := &password{v: "one"}
	q := redis.New(redis.Options{Addr: rd.Addr, TLS: clientTLS(t, rd.TLS), PasswordSource: pw.get, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second})
	defer q.Close()
	if err := q.Ping(ctx); err != nil {
		t.Fatalf("the first password: %v", err)
	}
	// Both passwords accepted, the source changed, the old one removed.
	for _, step := range []func() error{
		func() error { return admin.Do(ctx, "ACL", "SETUSER", "default", ">two").Err() },
		func() error { pw.set("two"); return nil },
		func() error { return admin.Do(ctx, "ACL", "SETUSER", "default", "<one").Err() },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
		if err := q.Ping(ctx); err != nil {
			t.Fatalf("during the change: %v", err)
		}
	}
	// Drop the queue's connections: the next ones authenticate with the
	// source's password, the only one the server accepts now.
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(ctx, []core.Job{job("a", "1")}); err != nil {
		t.Fatalf("new connections after the change: got %v, want served with the new password", err)
	}
	old := goredis.NewClient(&goredis.Options{Addr: rd.Addr, Password: "one", TLSConfig: rd.TLS.ClientConfig(t, "old")})
	defer old.Close()
	if err := old.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("the old password: got %v, want WRONGPASS", err)
	}
}
