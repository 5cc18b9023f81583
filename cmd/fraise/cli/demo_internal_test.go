package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestMigrateDemoAndTheDemoRule runs `fraise migrate --demo`, which says
// what it does step by step, then has the demo rule created and, as a
// second `make run` does, pointed at another receiver: one rule, the
// latest address.
func TestMigrateDemoAndTheDemoRule(t *testing.T) {
	harness.SkipShort(t)
	ctx := context.Background()
	pg, name := harness.NewDatabase(t)
	cfgPath := filepath.Join(t.TempDir(), "fraise.toml")
	cfg := fmt.Sprintf("[database]\nurl = %q\nadmin_url = %q\n", pg.URL("fraise_app", name), pg.AdminURL(name))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := Run(ctx, []string{"migrate", "--demo", "--config", cfgPath}, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"fraise migrate: applying the migrations (", "fraise migrate: applying the demo schema and data ("} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("got stderr\n%s\nwant %q", errb.String(), want)
		}
	}
	if !strings.HasPrefix(out.String(), "applied migrations and the demo schema and data in ") {
		t.Errorf("got stdout %q, want the total", out.String())
	}

	for _, url := range []string{"http://127.0.0.1:1111/observer", "http://127.0.0.1:2222/observer"} {
		if err := ensureDemoRule(ctx, pg.URL("fraise_app", name), url); err != nil {
			t.Fatalf("ensureDemoRule(%s): %v", url, err)
		}
	}
	conn, err := pgx.Connect(ctx, pg.AdminURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT tenant_id::text, name, actions->0->>'url' FROM fraise.observer_rules")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var tenant, name, url string
		err := r.Scan(&tenant, &name, &url)
		return tenant + " " + name + " " + url, err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := demo.TenantAcme + " " + demoRuleName + " http://127.0.0.1:2222/observer"
	if len(got) != 1 || got[0] != want {
		t.Errorf("got rules %q, want [%q]", got, want)
	}
}
