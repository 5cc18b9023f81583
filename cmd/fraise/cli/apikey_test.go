package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres/postgrestest"
	"github.com/fraise-dev/fraise/cmd/fraise/cli"
	"github.com/fraise-dev/fraise/extauthz/apikey"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestAPIKeyCommands creates, lists and revokes a key with `fraise apikey`
// against a real PostgreSQL: the secret is printed once and never listed.
func TestAPIKeyCommands(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	postgrestest.Migrate(t, pg, "postgres")
	getenv := func(k string) string {
		if k == "FRAISE_DATABASE_ADMIN_URL" {
			return pg.AdminURL("postgres")
		}
		return ""
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := cli.Run(ctx, append([]string{"apikey"}, args...), getenv, &out, &errOut); err != nil {
			t.Fatalf("fraise apikey %v: %v (%s)", args, err, errOut.String())
		}
		return out.String()
	}
	const tenant = "11111111-1111-4111-8111-111111111111"
	raw := strings.TrimSpace(run("create", "--tenant", tenant, "--roles", "viewer,operator", "--scopes", "read:User", "--name", "ci", "--created-by", "alice"))
	id, secret, err := apikey.Parse(raw)
	if err != nil {
		t.Fatalf("create printed %q: %v, want a key", raw, err)
	}
	list := run("list", "--tenant", tenant)
	for _, want := range []string{id, tenant, "viewer,operator", "read:User", "alice", "never", "active"} {
		if !strings.Contains(list, want) {
			t.Errorf("list: got\n%s\nwant %q in it", list, want)
		}
	}
	if strings.Contains(list, secret) {
		t.Fatal("list shows the secret")
	}
	if out := run("revoke", raw); !strings.Contains(out, "revoked "+id) {
		t.Fatalf("revoke: got %q", out)
	}
	if list := run("list"); !strings.Contains(list, "revoked 20") {
		t.Fatalf("list after revoke: got\n%s\nwant the key revoked", list)
	}
	var out, errOut bytes.Buffer
	if err := cli.Run(ctx, []string{"apikey", "revoke", id}, getenv, &out, &errOut); err == nil || !strings.Contains(err.Error(), "no such unrevoked API key") {
		t.Fatalf("revoke twice: got %v, want not found", err)
	}
}
