package ratelimit_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	goredis "github.com/redis/go-redis/v9"
	"google.golang.org/grpc/credentials"

	"github.com/fraise-dev/fraise/adapters/ratelimit"
	"github.com/fraise-dev/fraise/test/harness"
)

// redisTLS trusts ca's server and presents a client certificate of it.
func redisTLS(tb testing.TB, ca *harness.ServerTLS) func() *tls.Config {
	tb.Helper()
	cfg := ca.ClientConfig(tb, "ratelimit")
	cfg.ServerName = "" // the adapter verifies the address's host
	return func() *tls.Config { return cfg.Clone() }
}

type secret struct {
	mu sync.Mutex
	v  string
}

func (s *secret) get() string { s.mu.Lock(); defer s.mu.Unlock(); return s.v }
func (s *secret) set(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v = v
}

// TestRedisTLS runs the limiter on a TLS-only Redis, and refuses to start
// when the Redis presents a certificate of another CA.
func TestRedisTLS(t *testing.T) {
	rd := harness.StartRedisWith(t, harness.RedisOptions{TLS: true, Password: "one"})
	other := harness.StartRedisWith(t, harness.RedisOptions{TLS: true})
	certs := mustCerts(t)
	o := tiers()
	o.RedisTLS, o.RedisPassword = redisTLS(t, other.TLS), "one"
	o.GRPCAddr, o.RedisAddr = "127.0.0.1:0", rd.Addr
	o.TLS, _ = serverTLS(t, certs)
	if s, err := ratelimit.Start(context.Background(), o); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Redis with a certificate of another CA: got %v, want unknown authority", err)
	}
	o = tiers()
	o.RedisTLS, o.RedisPassword = redisTLS(t, rd.TLS), "one"
	c, _ := mustService(t, rd.Addr, o)
	if r, err := try(c, desc("tier", "default", "tenant", "tls")); err != nil || r.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("got %v, %v; want OK", r.GetOverallCode(), err)
	}
}

// TestRedisPasswordRotation rotates the limiter's Redis password with ACL
// (both accepted during the change), and once more before Redis accepts
// the new one: the limiter keeps answering throughout, and ends on
// connections made with the new password, the only one Redis accepts.
func TestRedisPasswordRotation(t *testing.T) {
	rd := harness.StartRedisWith(t, harness.RedisOptions{TLS: true, Password: "one"})
	ctx := context.Background()
	admin := goredis.NewClient(&goredis.Options{Addr: rd.Addr, Password: "one", TLSConfig: rd.TLS.ClientConfig(t, "admin")})
	defer admin.Close()
	pw := &secret{v: "one"}
	var logs logSink
	o := tiers()
	o.RedisTLS, o.RedisPasswordSource, o.Logger = redisTLS(t, rd.TLS), pw.get, logs.logger()
	certs := mustCerts(t)
	s := mustStart(t, rd.Addr, certs, o)
	c := rlsv3.NewRateLimitServiceClient(mustConn(t, s.GRPCAddr(), credentials.NewTLS(clientTLS(t, certs.GatewayCert, certs.GatewayKey, certs.CACert))))
	served := func(step string) {
		t.Helper()
		if r, err := try(c, desc("tier", "enterprise", "tenant", "rotation")); err != nil || r.OverallCode != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%s: got %v, %v; want OK", step, r.GetOverallCode(), err)
		}
	}
	acl := func(rule string) {
		t.Helper()
		if err := admin.Do(ctx, "ACL", "SETUSER", "default", rule).Err(); err != nil {
			t.Fatal(err)
		}
	}
	served("the first password")
	acl(">two")
	pw.set("two")
	if err := s.ReconnectRedis(); err != nil {
		t.Fatalf("reconnect with a password Redis accepts: %v", err)
	}
	acl("<one")
	served("after the change")

	// A password Redis does not know yet: the open connections keep
	// serving, and the move happens once Redis accepts it.
	pw.set("three")
	if err := s.ReconnectRedis(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("reconnect with a password Redis refuses: got %v, want WRONGPASS", err)
	}
	served("while Redis refuses the new password")
	acl(">three")
	if !logs.wait("reconnected to redis") {
		t.Fatal("no reconnection once Redis accepted the new password")
	}
	acl("<two")
	// Every connection but the admin's dropped: the limiter's next ones
	// authenticate with the only password Redis accepts.
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "served on new connections", func(int) bool {
		r, err := try(c, desc("tier", "enterprise", "tenant", "rotation"))
		return err == nil && r.OverallCode == rlsv3.RateLimitResponse_OK
	})
}

// logSink is a log the test waits on: each write wakes the waiters.
type logSink struct {
	mu      sync.Mutex
	b       strings.Builder
	changed chan struct{}
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	return l.b.Write(p)
}

func (l *logSink) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// wait waits up to 10s for the log to hold s.
func (l *logSink) wait(s string) bool {
	timeout := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		if strings.Contains(l.b.String(), s) {
			l.mu.Unlock()
			return true
		}
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			return false
		}
	}
}
