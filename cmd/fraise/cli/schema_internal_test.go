package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
	"github.com/fraise-dev/fraise/test/harness"
)

// TestSchemaReload serves server.schema = "auto": a view created after start
// is served after a SIGHUP or a watch tick, and a schema that does not
// build keeps the one served.
func TestSchemaReload(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pg, name := harness.NewDatabase(t)
	if err := postgres.Migrate(ctx, pg.AdminURL(name), postgres.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := demo.Apply(ctx, pg.AdminURL(name), "fraise_app"); err != nil {
		t.Fatal(err)
	}
	db, err := postgres.Open(ctx, pg.URL("fraise_app", name), postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	admin := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, pg.AdminURL(name))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	sdl, err := generateSchema(ctx, db, []string{"public"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := graphql.ParseSchema(sdl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(ctx, db); err != nil {
		t.Fatal(err)
	}
	engine := graphql.NewEngine(s, db, graphql.Options{Batcher: db, Writer: db})
	r := &schemaReloader{db: db, schemas: []string{"public"}, engine: engine, log: slog.New(slog.DiscardHandler), last: sdl}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := make(chan time.Time)
	type result struct {
		changed bool
		err     error
	}
	done := make(chan result)
	go r.run(ctx, hup, tick, func(changed bool, err error) { done <- result{changed, err} })

	query := func(q string) *graphql.Response {
		pctx := core.WithPrincipal(ctx, core.Principal{Subject: "t", Tenant: demo.TenantAcme})
		return engine.Execute(pctx, graphql.Request{Query: q})
	}
	if r := query(`{ notes { text } }`); len(r.Errors) == 0 {
		t.Fatalf("got %s before the view exists, want an error", r.Data)
	}

	admin(`create view public.v_note with (security_invoker = true) as
		select p.id, p.tenant_id, jsonb_build_object('id', p.id, 'text', p.title) as data from public.posts p;
		grant select on public.v_note to fraise_app`)
	t.Run("SIGHUP", func(t *testing.T) {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if got := <-done; !got.changed || got.err != nil {
			t.Fatalf("got changed %v, err %v, want the schema reloaded", got.changed, got.err)
		}
		resp := query(`{ notes(where: {text: {eq: "Hello from Acme"}}) { text } }`)
		var compact bytes.Buffer
		_ = json.Compact(&compact, resp.Data)
		if len(resp.Errors) > 0 || compact.String() != `{"notes":[{"text":"Hello from Acme"}]}` {
			t.Fatalf("got %s %+v, want the new view served", resp.Data, resp.Errors)
		}
	})
	t.Run("a tick without change", func(t *testing.T) {
		tick <- time.Time{}
		if got := <-done; got.changed || got.err != nil {
			t.Fatalf("got changed %v, err %v, want nothing to do", got.changed, got.err)
		}
	})
	t.Run("a schema that does not build keeps the one served", func(t *testing.T) {
		admin(`create view public.v_broken as select id, 'x'::text as data from public.users; grant select on public.v_broken to fraise_app`)
		tick <- time.Time{}
		if got := <-done; got.changed || got.err == nil {
			t.Fatalf("got changed %v, err %v, want an error", got.changed, got.err)
		}
		if resp := query(`{ notes { text } }`); len(resp.Errors) > 0 {
			t.Fatalf("got %+v, want the previous schema still served", resp.Errors[0])
		}
	})
}
