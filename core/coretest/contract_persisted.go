package coretest

import (
	"context"
	"testing"

	"github.com/fraise-dev/fraise/core"
)

// PersistedDocumentsFixture is an implementation of
// core.PersistedDocuments under test and the means to trust a document.
type PersistedDocumentsFixture struct {
	Store core.PersistedDocuments
	// Trust registers document as trusted, as an operator does.
	Trust func(tb testing.TB, document string)
}

// NewPersistedDocumentsFixture returns an in-memory PersistedDocuments.
func NewPersistedDocumentsFixture(*testing.T) PersistedDocumentsFixture {
	s := &PersistedDocuments{}
	return PersistedDocumentsFixture{Store: s, Trust: func(_ testing.TB, doc string) { s.Trust(doc) }}
}

// TestPersistedDocumentsContract runs core.PersistedDocuments' contract
// against the implementations newStore returns, a new one for each case. The cases run in parallel.
func TestPersistedDocumentsContract(t *testing.T, newStore func(t *testing.T) PersistedDocumentsFixture) {
	ctx := context.Background()
	const doc = "query Orders { orders { id } }"
	hash := core.DocumentHash(doc)
	put := func(tb testing.TB, s core.PersistedDocuments, tenant, document string) {
		tb.Helper()
		if err := s.Put(ctx, tenant, core.DocumentHash(document), document); err != nil {
			tb.Fatalf("Put: %v", err)
		}
	}
	get := func(tb testing.TB, s core.PersistedDocuments, tenant, hash string) (string, bool) {
		tb.Helper()
		d, ok, err := s.Get(ctx, tenant, hash)
		if err != nil {
			tb.Fatalf("Get: %v", err)
		}
		return d, ok
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f PersistedDocumentsFixture)
	}{
		{"a registered document is found by its tenant", func(t *testing.T, f PersistedDocumentsFixture) {
			put(t, f.Store, TenantA, doc)
			put(t, f.Store, TenantA, doc) // again: no change, no error
			if d, ok := get(t, f.Store, TenantA, hash); !ok || d != doc {
				t.Fatalf("got %q %v, want the document", d, ok)
			}
		}},
		{"another tenant does not find it", func(t *testing.T, f PersistedDocumentsFixture) {
			put(t, f.Store, TenantA, doc)
			if d, ok := get(t, f.Store, TenantB, hash); ok {
				t.Fatalf("tenant B got %q, want nothing", d)
			}
		}},
		{"an unknown or malformed hash is not found", func(t *testing.T, f PersistedDocumentsFixture) {
			for _, h := range []string{hash, "not-a-hash", ""} {
				if d, ok := get(t, f.Store, TenantA, h); ok {
					t.Errorf("hash %q: got %q, want nothing", h, d)
				}
			}
		}},
		{"a trusted document is found by every tenant", func(t *testing.T, f PersistedDocumentsFixture) {
			f.Trust(t, doc)
			for _, tenant := range []string{TenantA, TenantB, ""} {
				if d, ok := get(t, f.Store, tenant, hash); !ok || d != doc {
					t.Errorf("tenant %q: got %q %v, want the trusted document", tenant, d, ok)
				}
			}
		}},
		{"a hash that is not the document's is refused", func(t *testing.T, f PersistedDocumentsFixture) {
			err := f.Store.Put(ctx, TenantA, core.DocumentHash("{ other }"), doc)
			if core.ErrorCode(err) != core.CodeInvalid {
				t.Fatalf("got %v, want INVALID", err)
			}
			if _, ok := get(t, f.Store, TenantA, core.DocumentHash("{ other }")); ok {
				t.Fatal("the refused document was stored")
			}
		}},
		{"a document is registered by a tenant", func(t *testing.T, f PersistedDocumentsFixture) {
			if err := f.Store.Put(ctx, "", hash, doc); core.ErrorCode(err) != core.CodeInvalid {
				t.Fatalf("got %v, want INVALID", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}
