package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core"
	"github.com/fraise-dev/fraise/deploy/demo"
)

func mustGet(tb testing.TB, s *postgres.PersistedDocuments, tenant, hash string) (string, bool) {
	tb.Helper()
	doc, ok, err := s.Get(context.Background(), tenant, hash)
	if err != nil {
		tb.Fatalf("Get(%s, %s): %v", tenant, hash, err)
	}
	return doc, ok
}

func TestPersistedDocumentsAreSharedAndPerTenant(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	// Two stores on two pools stand for two core replicas (or a replica
	// and extauthz), each with its own cache.
	a := postgres.NewPersistedDocuments(mustOpen(t, f, postgres.Options{}), postgres.PersistedOptions{})
	b := postgres.NewPersistedDocuments(mustOpen(t, f, postgres.Options{}), postgres.PersistedOptions{})
	const doc = "{ users { id name } }"
	hash := core.DocumentHash(doc)

	if _, ok := mustGet(t, b, demo.TenantAcme, hash); ok {
		t.Fatal("found a document nobody registered")
	}
	if err := a.Put(ctx, demo.TenantAcme, hash, doc); err != nil {
		t.Fatal(err)
	}
	// b missed a moment ago: a miss must not be cached.
	if got, ok := mustGet(t, b, demo.TenantAcme, hash); !ok || got != doc {
		t.Fatalf("the other store got %q, %v; want the registered document", got, ok)
	}
	for _, tenant := range []string{demo.TenantGlobex, "", "not-a-uuid"} {
		if got, ok := mustGet(t, b, tenant, hash); ok {
			t.Fatalf("tenant %q found acme's document %q", tenant, got)
		}
	}
	// Registering again changes nothing, from either store.
	if err := b.Put(ctx, demo.TenantAcme, hash, doc); err != nil {
		t.Fatalf("registering again: %v", err)
	}
	// Globex registers the same text: it gets its own row.
	if err := b.Put(ctx, demo.TenantGlobex, hash, doc); err != nil {
		t.Fatal(err)
	}
	fresh := postgres.NewPersistedDocuments(mustOpen(t, f, postgres.Options{}), postgres.PersistedOptions{})
	if _, ok := mustGet(t, fresh, demo.TenantGlobex, hash); !ok {
		t.Fatal("globex's own registration not found")
	}
}

func TestPersistedDocumentsRefuseBadInput(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	s := postgres.NewPersistedDocuments(mustOpen(t, f, postgres.Options{}), postgres.PersistedOptions{})
	const doc = "{ users { id } }"
	tests := []struct {
		name         string
		tenant, hash string
		document     string
	}{
		{name: "hash of another document", tenant: demo.TenantAcme, hash: core.DocumentHash("{ posts { id } }"), document: doc},
		{name: "upper-case hash", tenant: demo.TenantAcme, hash: "A" + core.DocumentHash(doc)[1:], document: doc},
		{name: "no tenant", tenant: "", hash: core.DocumentHash(doc), document: doc},
		{name: "tenant not a UUID", tenant: "acme", hash: core.DocumentHash(doc), document: doc},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Put(ctx, tt.tenant, tt.hash, tt.document)
			if core.ErrorCode(err) != core.CodeInvalid {
				t.Fatalf("got %v, want CodeInvalid", err)
			}
		})
	}
	for _, h := range []string{"", "abc", "'; drop table fraise.persisted_documents; --"} {
		if _, ok, err := s.Get(ctx, demo.TenantAcme, h); ok || err != nil {
			t.Fatalf("Get(%q) = %v, %v; want a plain miss", h, ok, err)
		}
	}
}

// TestPersistedDocumentsNarrowPathForTheAppRole checks what the table
// allows the application role directly, whatever the adapter does: its own
// tenant's rows under their true hash, inserted and read, nothing else.
func TestPersistedDocumentsNarrowPathForTheAppRole(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	s := postgres.NewPersistedDocuments(mustOpen(t, f, postgres.Options{}), postgres.PersistedOptions{})
	const doc = "{ users { id } }"
	if err := s.Put(ctx, demo.TenantAcme, core.DocumentHash(doc), doc); err != nil {
		t.Fatal(err)
	}
	if err := postgres.LoadTrustedDocuments(ctx, f.pg.AdminURL(f.db), map[string]string{core.DocumentHash(doc): doc}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, f.pg.URL("fraise_app", f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tests := []struct{ name, sql string }{
		{name: "insert under a wrong hash", sql: `insert into fraise.persisted_documents (tenant_id, hash, document)
			values ('` + demo.TenantAcme + `', '` + core.DocumentHash("other") + `', 'x')`},
		{name: "insert for another tenant", sql: `insert into fraise.persisted_documents (tenant_id, hash, document)
			values ('` + demo.TenantGlobex + `', '` + core.DocumentHash("x") + `', 'x')`},
		{name: "rewrite a document", sql: `update fraise.persisted_documents set document = 'x'`},
		{name: "delete documents", sql: `delete from fraise.persisted_documents`},
		{name: "register a trusted document", sql: `insert into fraise.trusted_documents (hash, document) values ('` + core.DocumentHash("x") + `', 'x')`},
		{name: "delete trusted documents", sql: `delete from fraise.trusted_documents`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "select set_config('fraise.tenant', $1, true)", demo.TenantAcme); err != nil {
					t.Fatal(err)
				}
				_, err := tx.Exec(ctx, tt.sql)
				return err
			})
			if err == nil {
				t.Fatal("the application role was allowed to")
			}
		})
	}
	var n int
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "select set_config('fraise.tenant', $1, true)", demo.TenantGlobex); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "select count(*) from fraise.persisted_documents").Scan(&n)
	})
	if err != nil || n != 0 {
		t.Fatalf("globex counts %d of acme's documents (err %v), want 0", n, err)
	}
}

func TestTrustedDocumentsAreGlobalAndReplaced(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	db := mustOpen(t, f, postgres.Options{})
	const q1, q2 = "{ users { id } }", "{ posts { id } }"
	h1, h2 := core.DocumentHash(q1), core.DocumentHash(q2)
	if err := postgres.LoadTrustedDocuments(ctx, f.pg.AdminURL(f.db), map[string]string{h1: q1}); err != nil {
		t.Fatal(err)
	}
	s := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})
	for _, tenant := range []string{demo.TenantAcme, demo.TenantGlobex, ""} {
		if got, ok := mustGet(t, s, tenant, h1); !ok || got != q1 {
			t.Fatalf("tenant %q got %q, %v; want the trusted document", tenant, got, ok)
		}
	}
	// The manifest is the set: loading another replaces it.
	if err := postgres.LoadTrustedDocuments(ctx, f.pg.AdminURL(f.db), map[string]string{h2: q2}); err != nil {
		t.Fatal(err)
	}
	fresh := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})
	if _, ok := mustGet(t, fresh, demo.TenantAcme, h1); ok {
		t.Fatal("a document removed from the manifest is still trusted")
	}
	if _, ok := mustGet(t, fresh, demo.TenantAcme, h2); !ok {
		t.Fatal("the new manifest's document is not trusted")
	}
	if err := postgres.LoadTrustedDocuments(ctx, f.pg.AdminURL(f.db), map[string]string{h1: q2}); err == nil {
		t.Fatal("loaded a document under another document's hash")
	}
}

func TestPersistedDocumentsCacheIsBounded(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	db := mustOpen(t, f, postgres.Options{})
	s := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{CacheBytes: 64})
	docs := []string{"{ users { id } }", "{ users { name } }", "{ posts { id } }", "{ posts { title } }", "{ users { id name } }"}
	for _, d := range docs {
		if err := s.Put(ctx, demo.TenantAcme, core.DocumentHash(d), d); err != nil {
			t.Fatal(err)
		}
	}
	// Past the cache's bound, every document still comes back (from the
	// database when evicted).
	for _, d := range docs {
		if got, ok := mustGet(t, s, demo.TenantAcme, core.DocumentHash(d)); !ok || got != d {
			t.Fatalf("got %q, %v; want %q", got, ok, d)
		}
	}
}

func TestPersistedDocumentsPerTenantBound(t *testing.T) {
	f := mustDemo(t)
	ctx := context.Background()
	db := mustOpen(t, f, postgres.Options{})
	s := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{MaxPerTenant: 2})
	put := func(s *postgres.PersistedDocuments, tenant, doc string) error {
		return s.Put(ctx, tenant, core.DocumentHash(doc), doc)
	}
	for _, d := range []string{"{ users { id } }", "{ posts { id } }"} {
		if err := put(s, demo.TenantAcme, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(s, demo.TenantAcme, "{ users { name } }"); core.ErrorCode(err) != core.CodeTooLarge {
		t.Fatalf("third document: got %v, want CodeTooLarge", err)
	}
	// At the bound, a registered document registers again (from a store
	// that has not cached it), and other tenants are not affected.
	fresh := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{MaxPerTenant: 2})
	if err := put(fresh, demo.TenantAcme, "{ users { id } }"); err != nil {
		t.Fatalf("registering a registered document at the bound: %v", err)
	}
	if err := put(fresh, demo.TenantGlobex, "{ users { name } }"); err != nil {
		t.Fatalf("another tenant: %v", err)
	}
	if _, ok := mustGet(t, fresh, demo.TenantAcme, core.DocumentHash("{ users { name } }")); ok {
		t.Fatal("the refused document was stored")
	}
}

// BenchmarkPersistedDocumentsGet measures a lookup served by the cache
// (every hash-only request after the first on a process) and one that
// reaches PostgreSQL (the first, and every one past the cache's bound).
func BenchmarkPersistedDocumentsGet(b *testing.B) {
	f := mustDemo(b)
	ctx := context.Background()
	db := mustOpen(b, f, postgres.Options{})
	const doc = "{ users { id name } }"
	hash := core.DocumentHash(doc)
	if err := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{}).Put(ctx, demo.TenantAcme, hash, doc); err != nil {
		b.Fatal(err)
	}
	b.Run("cached", func(b *testing.B) {
		s := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})
		mustGet(b, s, demo.TenantAcme, hash)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, ok, err := s.Get(ctx, demo.TenantAcme, hash); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	b.Run("database", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s := postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})
			if _, ok, err := s.Get(ctx, demo.TenantAcme, hash); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
