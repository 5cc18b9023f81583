package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fraise-dev/fraise/cmd/fraise/config"
)

// TestResolveAdminURL checks how [database.tls] reaches database.admin_url,
// which one-shot commands (migrate, apikey) connect with: as libpq's
// parameters, unless the URL chose its own sslmode.
func TestResolveAdminURL(t *testing.T) {
	on := config.DataTLS{CA: "/tls/ca.pem", Cert: "/tls/c.pem", Key: "/tls/k.pem"}
	for _, tc := range []struct {
		name, url string
		tls       config.DataTLS
		want      string
	}{
		{"TLS off", "postgres://postgres@db/fraise", config.DataTLS{}, "postgres://postgres@db/fraise"},
		{"a URL", "postgres://postgres@db/fraise", on,
			"postgres://postgres@db/fraise?sslcert=%2Ftls%2Fc.pem&sslkey=%2Ftls%2Fk.pem&sslmode=verify-full&sslrootcert=%2Ftls%2Fca.pem"},
		{"a URL with its own sslmode", "postgres://postgres@db/fraise?sslmode=verify-full&sslcert=/own.pem", on,
			"postgres://postgres@db/fraise?sslmode=verify-full&sslcert=/own.pem"},
		{"the CA alone", "postgres://postgres@db/fraise", config.DataTLS{CA: "/tls/ca.pem"},
			"postgres://postgres@db/fraise?sslmode=verify-full&sslrootcert=%2Ftls%2Fca.pem"},
		{"key=value", "host=db user=postgres", config.DataTLS{CA: "/tls/it's.pem"},
			`host=db user=postgres sslmode='verify-full' sslrootcert='/tls/it\'s.pem'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolveAdminURL(config.Database{AdminURL: tc.url, TLS: tc.tls}, func(string) string { return "" })
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestDatabaseURLPassword follows the password of a database URL held in
// a file, as new connections take it: the current URL's and the one
// before it; other references are fixed.
func TestDatabaseURLPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), "url")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("postgres://fraise_app:one@db/fraise\n")
	sec := newSecrets(func(k string) string { return map[string]string{"DB": "postgres://fraise_app:env@db/fraise"}[k] }, nil)
	url, pw, err := sec.databaseURL("database.url", "file://"+path)
	if err != nil {
		t.Fatal(err)
	}
	if url != "postgres://fraise_app:one@db/fraise" {
		t.Errorf("url: got %q", url)
	}
	if cur, prev := pw(); cur != "one" || prev != "" {
		t.Errorf("at start: got %q, %q; want one and none", cur, prev)
	}
	write("postgres://fraise_app:t%40o@db/fraise")
	sec.w.Check()
	if cur, prev := pw(); cur != "t@o" || prev != "one" {
		t.Errorf("after the change: got %q, %q; want t@o (unescaped) and one", cur, prev)
	}
	url, pw, err = sec.databaseURL("authz.database_url", "env://DB")
	if err != nil || url != "postgres://fraise_app:env@db/fraise" || pw != nil {
		t.Errorf("env://: got %q, password source %v, %v; want the URL and no source", url, pw != nil, err)
	}
}
