package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
)

// PersistedDocuments stores persisted GraphQL documents, named by the
// lower-case hex SHA-256 of their text (DocumentHash), for every core
// replica and extauthz to share: a document registered through one replica
// is found by the others and by extauthz, which must read a hash-only
// request's operation before the policy can decide on it.
//
// Scope. Automatic persisted queries are registered per tenant: a tenant
// finds only the documents it registered itself, so it cannot learn by
// probing hashes which operations another tenant runs (a document with
// literal values in it, an e-mail or an id, would otherwise tell that
// someone queried them); to a tenant, another tenant's document and one
// never registered look the same. Trusted documents are global: the
// operator registers them, every tenant may run them, and they reveal
// nothing about any tenant. Get answers both.
type PersistedDocuments interface {
	// Get returns the document named hash that tenant may run: one tenant
	// registered, or a trusted document; ok is false when there is none.
	// Callers check DocumentHash of what they get before trusting it.
	// Failures are *Error with CodeUnavailable or CodeInternal.
	Get(ctx context.Context, tenant, hash string) (document string, ok bool, err error)
	// Put registers document for tenant under hash, which must be its
	// DocumentHash (the store refuses anything else with CodeInvalid).
	// Registering a registered document changes nothing.
	Put(ctx context.Context, tenant, hash, document string) error
}

// DocumentHash returns the name of document in a PersistedDocuments: the
// lower-case hex SHA-256 of its text, as the automatic persisted query
// protocol's sha256Hash is.
func DocumentHash(document string) string {
	sum := sha256.Sum256([]byte(document))
	return hex.EncodeToString(sum[:])
}
