package coretest

import (
	"context"
	"sync"

	"github.com/fraise-dev/fraise/core"
)

// PersistedDocuments keeps persisted GraphQL documents in memory
// (core.PersistedDocuments): per tenant the documents it registered, and
// the trusted documents every tenant may run. It is safe for concurrent
// use; set MaxPerTenant before first use.
type PersistedDocuments struct {
	// MaxPerTenant bounds the documents a tenant may register (0: no
	// bound); past it Put fails with CodeTooLarge, as the database's store
	// does past its bound.
	MaxPerTenant int

	mu      sync.Mutex
	tenants map[string]map[string]string
	trusted map[string]string
}

var _ core.PersistedDocuments = (*PersistedDocuments)(nil)

// Trust registers document as trusted, as an operator does: every tenant
// may run it.
func (s *PersistedDocuments) Trust(document string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trusted == nil {
		s.trusted = map[string]string{}
	}
	s.trusted[core.DocumentHash(document)] = document
}

// Get implements core.PersistedDocuments.
func (s *PersistedDocuments) Get(_ context.Context, tenant, hash string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if doc, ok := s.trusted[hash]; ok {
		return doc, true, nil
	}
	doc, ok := s.tenants[tenant][hash]
	return doc, ok, nil
}

// Put implements core.PersistedDocuments. The tenant must be named: a
// document registered by no tenant would be one every tenant finds.
func (s *PersistedDocuments) Put(_ context.Context, tenant, hash, document string) error {
	const op = "coretest.PersistedDocuments.Put"
	if tenant == "" {
		return core.Errorf(core.CodeInvalid, "a tenant is required").WithOp(op)
	}
	if core.DocumentHash(document) != hash {
		return core.Errorf(core.CodeInvalid, "the hash is not the document's SHA-256").WithOp(op)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tenants == nil {
		s.tenants = map[string]map[string]string{}
	}
	docs := s.tenants[tenant]
	if _, ok := docs[hash]; ok {
		return nil
	}
	if s.MaxPerTenant > 0 && len(docs) >= s.MaxPerTenant {
		return core.Errorf(core.CodeTooLarge, "too many persisted documents").WithOp(op)
	}
	if docs == nil {
		docs = map[string]string{}
		s.tenants[tenant] = docs
	}
	docs[hash] = document
	return nil
}
