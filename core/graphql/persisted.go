package graphql

import (
	"context"

	"github.com/fraise-dev/fraise/core"
)

// persistedDocument is the automatic persisted query protocol over the
// shared store (Options.Persisted): a hash alone is looked up for tenant,
// a hash with its query registers the query for tenant once the hash is
// checked. Whatever the store returns is hashed again before it runs, so a
// corrupted row cannot run as another document.
//
// A registration that fails does not fail the request: the query is here
// and runs; the next hash-only request misses and the client sends the
// query again, as the protocol has it.
func (e *Engine) persistedDocument(ctx context.Context, tenant, hash, query string) (string, *Response) {
	if query == "" {
		doc, ok, err := e.opts.Persisted.Get(ctx, tenant, hash)
		if err != nil {
			r := requestError(extensionCode(err), "persisted queries are unavailable: "+core.ErrorMessage(err))
			r.Errors[0].Err = err
			return "", r
		}
		if !ok || core.DocumentHash(doc) != hash {
			return "", requestError(CodePersistedNotFound, "PersistedQueryNotFound")
		}
		return doc, nil
	}
	if core.DocumentHash(query) != hash {
		return "", requestError(CodePersistedHash, "persistedQuery.sha256Hash does not match the query")
	}
	// Registered before validation: an invalid document fails the same
	// way whether it comes by text or by hash.
	_ = e.opts.Persisted.Put(ctx, tenant, hash, query)
	return query, nil
}
