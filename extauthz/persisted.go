package extauthz

import (
	"context"
	"fmt"

	"github.com/fraise-dev/fraise/core"
)

// PersistedStore resolves persisted-operation hashes from the store the
// core registers automatic persisted queries in (and the operator's
// trusted documents), so a hash-only request is decided on its real
// operation. It checks the hash of every document it returns: the policy
// must decide on the document the core will run, and the core runs only a
// document whose hash it checked too.
type PersistedStore struct {
	// Docs is the shared store, as the core's: tenant scoping is its own.
	Docs core.PersistedDocuments
}

var _ PersistedOperations = PersistedStore{}

// Lookup implements PersistedOperations. A document whose hash is not the
// one asked for is an error, so extauthz fails closed and logs it.
func (p PersistedStore) Lookup(ctx context.Context, tenant, hash string) (string, bool, error) {
	doc, ok, err := p.Docs.Get(ctx, tenant, hash)
	if err != nil || !ok {
		return "", false, err
	}
	if core.DocumentHash(doc) != hash {
		return "", false, fmt.Errorf("the stored document under %s has another hash", hash)
	}
	return doc, true, nil
}
