package graphql_test

import (
	"context"
	"testing"

	"github.com/fraise-dev/fraise/adapters/postgres"
	"github.com/fraise-dev/fraise/core/graphql"
	"github.com/fraise-dev/fraise/deploy/demo"
)

// TestPersistedQueriesSharedStore runs APQ over the PostgreSQL store with
// two engines, each with its own store and cache, as two core replicas.
func TestPersistedQueriesSharedStore(t *testing.T) {
	d := mustDemoDB(t)
	replica := func() *graphql.Engine {
		return mustEngine(t, d, graphql.Options{APQ: true, Persisted: postgres.NewPersistedDocuments(d.db, postgres.PersistedOptions{})})
	}
	one, two := replica(), replica()
	const q = `{ users { name } }`
	const acmeUsers = `{"users": [{"name": "Alice"}, {"name": "Bob"}]}`

	mustCode(t, two.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(q))}), graphql.CodePersistedNotFound)
	mustCode(t, one.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Extensions: persisted(hashOf("{ posts { id } }"))}), graphql.CodePersistedHash)
	mustData(t, one.Execute(as(demo.TenantAcme), graphql.Request{Query: q, Extensions: persisted(hashOf(q))}), acmeUsers)
	t.Run("registered on one replica, found on the other", func(t *testing.T) {
		mustData(t, two.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(q))}), acmeUsers)
	})
	t.Run("another tenant cannot tell it was registered", func(t *testing.T) {
		mustCode(t, two.Execute(as(demo.TenantGlobex), graphql.Request{Extensions: persisted(hashOf(q))}), graphql.CodePersistedNotFound)
		mustCode(t, one.Execute(as(demo.TenantGlobex), graphql.Request{Extensions: persisted(hashOf(q))}), graphql.CodePersistedNotFound)
	})
	t.Run("another tenant registering the same text reads its own rows", func(t *testing.T) {
		mustData(t, two.Execute(as(demo.TenantGlobex), graphql.Request{Query: q, Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`)
		mustData(t, one.Execute(as(demo.TenantGlobex), graphql.Request{Extensions: persisted(hashOf(q))}), `{"users": [{"name": "Carol"}, {"name": "Dave"}]}`)
	})
	t.Run("an invalid registered document fails as its text does", func(t *testing.T) {
		const bad = `{ nope }`
		mustCode(t, one.Execute(as(demo.TenantAcme), graphql.Request{Query: bad, Extensions: persisted(hashOf(bad))}), graphql.CodeValidationFailed)
		mustCode(t, two.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(bad))}), graphql.CodeValidationFailed)
	})
	t.Run("a document stored under another hash does not run", func(t *testing.T) {
		e := mustEngine(t, d, graphql.Options{APQ: true, Persisted: swapped{doc: q}})
		mustCode(t, e.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf("{ posts { id } }"))}), graphql.CodePersistedNotFound)
	})
	t.Run("a store that cannot be reached fails the request", func(t *testing.T) {
		// Nothing listens on port 1 of the loopback.
		db, err := postgres.Open(context.Background(), "postgres://fraise_app@127.0.0.1:1/fraise?sslmode=disable&connect_timeout=2", postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		e := mustEngine(t, d, graphql.Options{APQ: true, Persisted: postgres.NewPersistedDocuments(db, postgres.PersistedOptions{})})
		r := e.Execute(as(demo.TenantAcme), graphql.Request{Extensions: persisted(hashOf(q))})
		if r.Data != nil || len(r.Errors) == 0 || r.Errors[0].Extensions["code"] == graphql.CodePersistedNotFound {
			t.Fatalf("got %s %+v, want a request error other than not found", r.Data, r.Errors)
		}
	})
}

// swapped is a corrupted store: whatever the hash, it returns doc.
type swapped struct{ doc string }

func (s swapped) Get(context.Context, string, string) (string, bool, error) { return s.doc, true, nil }
func (swapped) Put(context.Context, string, string, string) error           { return nil }
