package config_test

import (
	"testing"
	"time"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestDataTLS checks the keys of TLS towards PostgreSQL and Redis and of
// secrets' reloading: what they turn on, their environment overrides, and
// every combination refused.
func TestDataTLS(t *testing.T) {
	for _, tc := range []struct {
		name      string
		file      string
		env       map[string]string
		wantAddr  string
		wantTLS   bool
		wantErr   []string
		wantCheck func(t *testing.T, c config.Config)
	}{
		{name: "defaults: plaintext", wantAddr: "127.0.0.1:56379", wantCheck: func(t *testing.T, c config.Config) {
			if c.Database.TLS.Enabled() || c.Secrets.ReloadInterval.Duration != time.Second ||
				c.Database.MaxConnLifetime.Duration != 30*time.Minute || c.Redis.MaxConnLifetime.Duration != 30*time.Minute {
				t.Errorf("got database TLS %v, reload %v, lifetimes %v and %v; want off, 1s, 30m and 30m",
					c.Database.TLS.Enabled(), c.Secrets.ReloadInterval, c.Database.MaxConnLifetime, c.Redis.MaxConnLifetime)
			}
		}},
		{name: "both sections", file: `
[database.tls]
ca = "/tls/pg/ca.crt"
cert = "/tls/pg/tls.crt"
key = "/tls/pg/tls.key"
[redis]
addr = "redis:6379"
[redis.tls]
ca = "/tls/redis/ca.crt"
server_name = "redis.internal"
[secrets]
reload_interval = "5s"
`, wantAddr: "redis:6379", wantTLS: true, wantCheck: func(t *testing.T, c config.Config) {
			if !c.Database.TLS.Enabled() || c.Database.TLS.Key != "/tls/pg/tls.key" || c.Redis.TLS.ServerName != "redis.internal" ||
				c.Secrets.ReloadInterval.Duration != 5*time.Second {
				t.Errorf("got %+v, %+v, %v", c.Database.TLS, c.Redis.TLS, c.Secrets.ReloadInterval)
			}
		}},
		{name: "rediss:// alone: TLS with the system's roots", file: "[redis]\naddr = \"rediss://cache.example.com:6380\"\n",
			wantAddr: "cache.example.com:6380", wantTLS: true},
		{name: "redis:// is plaintext", file: "[redis]\naddr = \"redis://cache:6379\"\n", wantAddr: "cache:6379"},
		{name: "from the environment", env: map[string]string{
			"FRAISE_DATABASE_TLS_CA": "/ca.pem", "FRAISE_REDIS_TLS_CA": "/ca.pem", "FRAISE_SECRETS_RELOAD_INTERVAL": "250ms",
		}, wantAddr: "127.0.0.1:56379", wantTLS: true, wantCheck: func(t *testing.T, c config.Config) {
			if c.Database.TLS.CA != "/ca.pem" || c.Secrets.ReloadInterval.Duration != 250*time.Millisecond {
				t.Errorf("got %+v, %v", c.Database.TLS, c.Secrets.ReloadInterval)
			}
		}},
		{name: "a client certificate without a CA", file: "[database.tls]\ncert = \"c\"\nkey = \"k\"\n", wantErr: []string{"database.tls.ca"}},
		{name: "a certificate without its key", file: "[redis.tls]\nca = \"ca\"\ncert = \"c\"\n", wantErr: []string{"redis.tls.cert"}},
		{name: "redis:// with [redis.tls]", file: "[redis]\naddr = \"redis://cache:6379\"\n[redis.tls]\nca = \"ca\"\n", wantErr: []string{"redis.addr", "rediss://"}},
		{name: "rediss:// without a port", file: "[redis]\naddr = \"rediss://cache\"\n", wantErr: []string{"redis.addr"}},
		{name: "no reload interval", file: "[secrets]\nreload_interval = \"0s\"\n", wantErr: []string{"secrets.reload_interval"}},
		{name: "no connection lifetime", file: "[database]\nmax_conn_lifetime = \"0s\"\n[redis]\nmax_conn_lifetime = \"0s\"\n",
			wantErr: []string{"database.max_conn_lifetime", "redis.max_conn_lifetime"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := mustLoadCase(t, tc.file, tc.env, tc.wantErr)
			if !ok {
				return
			}
			if addr, useTLS := c.Redis.Endpoint(); addr != tc.wantAddr || useTLS != tc.wantTLS {
				t.Errorf("redis endpoint: got %q, TLS %v; want %q, %v", addr, useTLS, tc.wantAddr, tc.wantTLS)
			}
			if tc.wantCheck != nil {
				tc.wantCheck(t, c)
			}
		})
	}
}
