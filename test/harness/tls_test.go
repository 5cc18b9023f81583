package harness_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fraise-dev/fraise/test/harness"
)

// withQuery returns u with its query parameters set to q's.
func withQuery(tb testing.TB, u string, q map[string]string) string {
	tb.Helper()
	p, err := url.Parse(u)
	if err != nil {
		tb.Fatal(err)
	}
	v := p.Query()
	for k, x := range q {
		if x == "" {
			v.Del(k)
		} else {
			v.Set(k, x)
		}
	}
	p.RawQuery = v.Encode()
	return p.String()
}

// TestPostgresTLSOnly checks the TLS-only server: it serves a client that
// verifies it in full and presents a certificate for its user, and
// refuses plaintext, a client without a certificate, a certificate for
// another user, and a client that trusts another CA.
func TestPostgresTLSOnly(t *testing.T) {
	t.Parallel()
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true})
	other := harness.StartRedisWith(t, harness.RedisOptions{TLS: true}) // another CA
	wrongCert, wrongKey := pg.TLS.ClientCert(t, "someone_else")
	ok := pg.AdminURL("postgres")
	for _, tc := range []struct {
		name    string
		url     string
		wantErr string // "" to connect
	}{
		{"verify-full with the postgres certificate", ok, ""},
		{"plaintext", withQuery(t, ok, map[string]string{"sslmode": "disable", "sslrootcert": "", "sslcert": "", "sslkey": ""}), "no encryption"},
		{"no client certificate", withQuery(t, ok, map[string]string{"sslcert": "", "sslkey": ""}), "certificate"},
		{"another user's certificate", withQuery(t, ok, map[string]string{"sslcert": wrongCert, "sslkey": wrongKey}), "certificate authentication failed"},
		{"another CA", withQuery(t, ok, map[string]string{"sslrootcert": other.TLS.CA}), "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, tc.url)
			if err == nil {
				defer conn.Close(ctx)
				var ssl bool
				err = conn.QueryRow(ctx, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").Scan(&ssl)
				if err == nil && !ssl {
					t.Fatal("connected without TLS")
				}
			}
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
}

// TestPostgresTLSAndPassword checks the server that wants both a client
// certificate and a password: either alone is refused.
func TestPostgresTLSAndPassword(t *testing.T) {
	t.Parallel()
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true, Password: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.AdminURL("postgres"))
	if err != nil {
		t.Fatalf("certificate and password: got %v, want connected", err)
	}
	conn.Close(ctx)
	for name, u := range map[string]string{
		"no password":    pg.URL("postgres", "postgres"),
		"wrong password": pg.URLWithPassword("postgres", "wrong", "postgres"),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pgx.Connect(ctx, u)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Fatalf("got %v, want invalid_password (28P01)", err)
			}
		})
	}
}

// redisPing sends PING over c and returns the first line of the answer.
func redisPing(c net.Conn) (string, error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestRedisTLSOnly checks the TLS-only redis-server: a client with a
// certificate of its CA that verifies it is served; plaintext, a client
// without a certificate and one trusting another CA are refused.
func TestRedisTLSOnly(t *testing.T) {
	t.Parallel()
	r := harness.StartRedisWith(t, harness.RedisOptions{TLS: true, Password: "s3cret"})
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true}) // another CA
	good := r.TLS.ClientConfig(t, "fraise")
	noCert := good.Clone()
	noCert.Certificates = nil
	otherCA := good.Clone()
	otherCA.RootCAs = pg.TLS.Pool(t)
	for _, tc := range []struct {
		name    string
		tls     *tls.Config // nil: plaintext
		want    string      // the answer to PING, "" when refused
		wantErr string
	}{
		{"TLS with a client certificate", good, "-NOAUTH", ""},
		{"plaintext", nil, "", ""},
		{"no client certificate", noCert, "", ""},
		{"another CA", otherCA, "", "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", r.Addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.tls != nil {
				tc2 := tls.Client(c, tc.tls)
				err = tc2.Handshake()
				c = tc2
			}
			var got string
			if err == nil {
				got, err = redisPing(c)
			}
			switch {
			case tc.want != "" && !strings.HasPrefix(got, tc.want):
				t.Fatalf("got %q, %v; want an answer starting %q", got, err, tc.want)
			case tc.want == "" && err == nil:
				t.Fatalf("got %q, want the connection refused", got)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}
