package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestObserversReconcileCommand runs `fraise observers reconcile` as the
// runbook does (docs/operations.md, Restore, step 5): --check exits 0 on a
// database that is the incarnation its outbox generation was started on,
// and non-zero once it is not (here the generation is made to name another
// timeline, as a restore or a promotion makes it); reconcile then starts a
// new generation, and --check passes again.
func TestObserversReconcileCommand(t *testing.T) {
	p := mustPipeline(t)
	ctx := context.Background()
	// The core's role, as a core and the runbook use it: the generations'
	// functions are granted to it.
	c := p.Admin.Config()
	dbURL := fmt.Sprintf("postgres://fraise_app@%s:%d/%s?sslmode=disable", c.Host, c.Port, c.Database)
	getenv := func(k string) string {
		switch k {
		case "FRAISE_DATABASE_URL":
			return dbURL
		case "FRAISE_REDIS_ADDR":
			return p.Redis.Addr
		}
		return ""
	}
	run := func(args ...string) (map[string]any, error) {
		t.Helper()
		var out strings.Builder
		err := Run(ctx, append([]string{"observers", "reconcile"}, args...), getenv, &out, io.Discard)
		var got map[string]any
		if out.Len() > 0 {
			if jerr := json.Unmarshal([]byte(out.String()), &got); jerr != nil {
				t.Fatalf("observers reconcile %v: output %q is not JSON: %v", args, out.String(), jerr)
			}
		}
		return got, err
	}
	for _, tc := range []struct {
		name    string
		setup   string
		args    []string
		wantErr error
		want    map[string]any
	}{
		{name: "the database it started on", args: []string{"--check"},
			want: map[string]any{"generation": 0.0, "current": true, "reconciled": true}},
		{name: "a new incarnation, checked", setup: "update fraise.observer_generations set timeline = timeline + 1000",
			args: []string{"--check"}, wantErr: errNeedsReconcile,
			want: map[string]any{"generation": 0.0, "current": false}},
		{name: "a new incarnation, reconciled",
			want: map[string]any{"needed": true, "generation": 1.0, "previous": 0.0, "lost": 0.0}},
		{name: "reconciled, checked", args: []string{"--check"},
			want: map[string]any{"generation": 1.0, "previous": 0.0, "current": true, "reconciled": true}},
		{name: "reconciled, again", want: map[string]any{"needed": false, "generation": 1.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != "" {
				if _, err := p.Admin.Exec(ctx, tc.setup); err != nil {
					t.Fatal(err)
				}
			}
			got, err := run(tc.args...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: got %v, want %v (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

// TestObserversReconcileOverTLS runs the runbook's reconcile against a
// TLS-only PostgreSQL and Redis, reached as a core reaches them: through
// [database.tls] and [redis.tls], with a password read from a file.
func TestObserversReconcileOverTLS(t *testing.T) {
	harness.SkipShort(t)
	ctx := context.Background()
	pg := harness.StartPostgresWith(t, harness.PostgresOptions{TLS: true})
	name := pg.NewDatabase(t)
	postgrestest.Migrate(t, pg, name)
	const redisPassword = "reconcile-secret"
	rd := harness.StartRedisWith(t, harness.RedisOptions{TLS: true, Password: redisPassword})
	dir := t.TempDir()
	dbCert, dbKey := pg.TLS.ClientCert(t, "fraise_app")
	rdCert, rdKey := rd.TLS.ClientCert(t, "fraise")
	pwFile := filepath.Join(dir, "redis-password")
	if err := os.WriteFile(pwFile, []byte(redisPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "fraise.toml")
	toml := fmt.Sprintf(`[database]
url = "postgres://fraise_app@%s:%d/%s"
[database.tls]
ca = %q
cert = %q
key = %q
[redis]
addr = "rediss://%s"
password = "file://%s"
[redis.tls]
ca = %q
cert = %q
key = %q
`, pg.Host, pg.Port, name, pg.TLS.CA, dbCert, dbKey, rd.Addr, pwFile, rd.TLS.CA, rdCert, rdKey)
	if err := os.WriteFile(cfgFile, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	if err := Run(ctx, []string{"observers", "reconcile", "--config", cfgFile}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("observers reconcile: %v\n%s", err, errOut.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("output %q: %v", out.String(), err)
	}
	if got["generation"] != 0.0 {
		t.Errorf("got %v, want generation 0", got)
	}
}
